"""python -m training --recipe NAME --out DIR [--init MODEL] [--resume] [--steps N] [--lora-rank R]

Data parallel: torchrun --nproc_per_node N -m training --recipe NAME --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path


def _write_recipe(out: Path, recipe, model_cfg, init: str | None) -> None:
    """OUT/recipe.json: the recipe's name, model preset and synthetic scenes (python -m
    training.eval renders its held-out scenes the same way). Rank 0 writes it."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    out.mkdir(parents=True, exist_ok=True)
    info = {"recipe": recipe.name, "preset": recipe.preset, "model": model_cfg.name,
            "scenes": recipe.scenes.to_dict() if recipe.scenes is not None else None,
            "init": init}
    tmp = out / "recipe.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(out / "recipe.json")


def main(argv: list[str] | None = None) -> int:
    from training.recipes import RECIPES

    parser = argparse.ArgumentParser(prog="python -m training",
                                     description="Train an EarthX model.")
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES),
                        help="; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--init", metavar="MODEL",
                        help="start from the weights of this model directory (required by a "
                             "recipe that continues another's model: that run's OUT/model); "
                             "tensors the recipe adds start fresh")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--steps", type=int, help="override the recipe's step count")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--calibration-scenes", type=int, default=None,
                        help="validation scenes of the mask-threshold calibration that ends a "
                             "recipe with synthetic scenes (default: training.calibrate's; 0 "
                             "skips it)")
    parser.add_argument("--lora-rank", type=int,
                        help="train LoRA adapters of this rank on the LLM (merged on save)")
    args = parser.parse_args(argv)

    if args.calibration_scenes is not None and args.calibration_scenes < 0:
        parser.error(f"--calibration-scenes must be >= 0, got {args.calibration_scenes}")
    import torch

    from earthx_sdk.modeling.model import EarthXModel
    from training.recipes import get_recipe
    from training.trainer import train

    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    recipe = get_recipe(args.recipe)
    cfg = recipe.train
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    if args.lora_rank is not None:
        cfg = dataclasses.replace(cfg, lora_rank=args.lora_rank)
    if recipe.init is not None and args.init is None:
        parser.error(f"recipe {recipe.name} continues the model of recipe {recipe.init}: pass "
                     f"--init DIR, that run's OUT/model")
    print(f"recipe {recipe.name}: building samples", file=sys.stderr)
    sources = recipe.sources()
    print("samples per source: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(sources.items())),
          file=sys.stderr)
    torch.manual_seed(cfg.seed)
    model = EarthXModel(recipe.model_config())
    if args.init is not None:
        from training.checkpoint import init_from

        added = init_from(model, args.init)
        print(f"initialized from {args.init}; starting fresh: {', '.join(added) or 'nothing'}",
              file=sys.stderr)
    _write_recipe(Path(args.out), recipe, model.cfg, args.init)
    rows = train(model, sources, cfg, args.out, resume=args.resume)
    if rows:
        print(f"final: step {rows[-1]['step']} loss {rows[-1]['loss']:.4f}; model in "
              f"{args.out}/model")
    if (recipe.scenes is not None and args.calibration_scenes != 0
            and int(os.environ.get("RANK", "0")) == 0):
        # the mask threshold, on validation scenes rendered as the recipe's
        from training.calibrate import SCENES, calibrate, format_report

        report = calibrate(Path(args.out) / "model", scenes=args.calibration_scenes or SCENES)
        print(format_report(report))
        print(f"mask threshold {report['threshold']:g} (calibrated on {report['scenes']} "
              f"validation scenes) in {args.out}/model/config.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
