"""Parameter count per component of a preset, built on the meta device (no memory, no weights).

    python -m earthx_sdk.modeling.summary base [--json]
"""

from __future__ import annotations

import argparse
import json

import torch

from earthx_sdk.modeling.config import PRESETS, EarthXConfig


def count_parameters(cfg: EarthXConfig) -> dict[str, int]:
    """{component: parameter count}; the vision encoder is split into its experts and the rest."""
    from earthx_sdk.modeling.model import EarthXModel

    with torch.device("meta"):
        model = EarthXModel(cfg)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    vit, cnx = n(model.vision.vit), n(model.vision.convnext)
    counts = {
        "vision.vit": vit,
        "vision.convnext": cnx,
        "vision.stems+fusion+projector": n(model.vision) - vit - cnx,
        "prompt_encoder": n(model.prompt_encoder),
        "llm": n(model.llm),
        "mask_decoder": n(model.mask_decoder),
    }
    counts["total"] = n(model)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m earthx_sdk.modeling.summary")
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = count_parameters(EarthXConfig.from_name(args.preset))
    if args.json:
        print(json.dumps(counts, indent=2))
    else:
        for k, v in counts.items():
            print(f"{k:<32} {v / 1e6:>10.2f} M")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
