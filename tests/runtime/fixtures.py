"""The runtime tests' model files: a seeded, seg-prone tiny checkpoint and its bundle.

    python -m tests.runtime.fixtures DIR    # writes DIR/ckpt and DIR/bundle (needs torch, export)

The tests build them once per session (tests/runtime/conftest.py), or reuse DIR when the
environment variable EARTHX_RUNTIME_FIXTURES names it: that is how CI's torch-free environment
gets a bundle exported by the main one.

The tiny model has random weights, so it would rarely emit `<seg>`; `seg_prone` nudges the
`<seg>` embedding row (tied with the LM head) so that greedy answers are `<seg>` for some requests
and other tokens for others, and the reference's own `generate` returns masks to compare with.
"""

from __future__ import annotations

import sys
from pathlib import Path

SENSORS = ("optical", "multispectral", "sar", "infrared")


def seg_prone(model) -> None:
    """Makes `<seg>` a likely greedy answer of the random-weight tiny model (in place): its row
    becomes the newline row (what random tiny models answer with) plus a small step along the
    final hidden state of an optical prompt."""
    import torch

    from tests.runtime.cases import images

    tok = model.tokenizer
    table = model.llm.get_input_embeddings().weight
    with torch.no_grad():
        s = model.processor.encode(images()["optical"], "optical", "Describe this image.")
        _, embeds, _ = model._prepare([s])
        h = model.llm(inputs_embeds=embeds[0][None], output_hidden_states=True)
        h = h.hidden_states[-1][0, -1]  # [hidden]
        nl = tok.encode("\n")[0]
        table[tok.seg_id] = table[nl] + 0.02 * table[nl].norm() * h / h.norm()


def build_ckpt(path: Path, mask: dict | None = None, tweak=None) -> Path:
    """The seeded, seg-prone tiny checkpoint; `mask`: MaskDecoderConfig fields to set; `tweak`:
    called on the model before it is saved."""
    import dataclasses

    import torch

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    cfg = EarthXConfig.from_name("tiny")
    if mask:
        cfg = dataclasses.replace(cfg, mask=dataclasses.replace(cfg.mask, **mask))
    torch.manual_seed(0)
    model = EarthXModel(cfg).eval()
    seg_prone(model)
    if tweak is not None:
        with torch.no_grad():
            tweak(model)
    model.save(path)
    return path


def build_bundle(ckpt: Path, out: Path, sensors=SENSORS) -> Path:
    """export_bundle: vision graphs of `sensors`, prompt encoder, mask decoder, fp32 LLM."""
    from export.pipeline import export_bundle

    export_bundle(ckpt, out, "fp32", sensors=list(sensors), llm="fp32")
    return out


def optical_bundle(ckpt: Path, out: Path) -> Path:
    """build_bundle with the optical vision graph only; skips the test where the export's
    packages are missing."""
    import pytest

    pytest.importorskip("onnx", reason="ONNX export needs onnx (the `export` extra)")
    pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")
    return build_bundle(ckpt, out, sensors=("optical",))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.runtime.fixtures DIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    build_bundle(build_ckpt(root / "ckpt"), root / "bundle")
    print(f"wrote {root / 'ckpt'} and {root / 'bundle'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
