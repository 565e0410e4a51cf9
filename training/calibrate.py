"""python -m training.calibrate --checkpoint DIR [--scenes N] [--json PATH] [--dry-run]

Sets a trained model's mask threshold (`MaskDecoderConfig.threshold`, in DIR/config.json): the
mask-logit threshold with the best mean mask IoU on validation scenes. Those are synthetic scenes
rendered as the recipe's (DIR/../recipe.json) from seeds at VALIDATION_SEED on, which no recipe
trains on (training seeds start at 0), `training.eval` and `earthx eval` do not evaluate on
(100000 on) and the demo's samples do not come from (200000 on). Every referring-segmentation
request (text) and visual-prompt segmentation request (box, mask, polygon, point, scribble) of
those scenes is asked once; its logits are thresholded at each of THRESHOLDS through the
runtime's postprocess, and the threshold with the highest mean IoU over all of them is taken
(the one nearest 0 on a tie).

Why: the decoder's logits are not calibrated probabilities. Trained with a positive-weighted BCE
and a Dice loss on the S/4 grid, then upsampled bilinearly, the earthx-tiny masks came out at
0.81-0.92 of the ground truth's area at logit 0 (48 validation scenes); a decoder that
refines at S/2, trained the same way, over-paints at 0 instead.

The sweep (mean IoU per task and sensor at every threshold) is written to DIR/calibration.json;
config.json is rewritten through a temporary file. `python -m training` runs this at the end of a
recipe with synthetic scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

VALIDATION_SEED = 300_000
SCENES = 48
# Up to 4: a decoder that refines its masks at S/2 (MaskDecoderConfig.refine) is best above 0
# (earthx-tiny-refine: the mean IoU still rose at 1, the old grid's end).
THRESHOLDS = tuple(float(t) for t in np.arange(-5.0, 4.01, 0.5))
TASKS = ("refer_seg", "prompt_seg")
CALIBRATION = "calibration.json"


def sweep(model, scenes: int = SCENES, spec=None, thresholds=THRESHOLDS,
          max_new_tokens: int = 12) -> dict:
    """Mean mask IoU at each threshold on `scenes` validation scenes.

    Returns:
        {"thresholds": [...], "n": {task: {sensor: count}},
         "iou": {task: {sensor: [mean IoU per threshold]}}, "overall": [mean over all masks]}.
        A request that answered without a mask counts as an empty mask (IoU 0 against its
        non-empty target).
    """
    import torch

    from earthx_sdk.demo import mask_iou
    from earthx_sdk.ops.masks import postprocess_masks
    from training.recipes import SceneSpec
    from training.synthetic import render_scene
    from training.templates import samples_for

    if scenes < 1:
        raise ValueError(f"sweep: scenes must be >= 1, got {scenes}")
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        raise ValueError("sweep: thresholds must not be empty")
    spec = SceneSpec() if spec is None else spec
    rng = np.random.default_rng(VALIDATION_SEED)
    ious: dict[str, dict[str, list[list[float]]]] = {t: {} for t in TASKS}
    model.eval()
    for s in range(scenes):
        for sensor, rec in render_scene(VALIDATION_SEED + s, (spec.size, spec.size),
                                        object_scale=spec.object_scale).items():
            for sample in samples_for(rec, tasks=TASKS, rng=rng):
                query = {k: v for k, v in sample.items()
                         if k not in ("task", "answer", "target_masks")}
                enc = model.processor.encode(**query)
                with torch.no_grad():
                    gen = model.generate(enc, max_new_tokens=max_new_tokens)
                truth = np.asarray(sample["target_masks"][0], bool)
                info = enc.info
                row = []
                for t in thresholds:
                    if len(gen.mask_logits):
                        pred = postprocess_masks(gen.mask_logits[:1].float().cpu().numpy(),
                                                 info.size, info.resized_hw, info.orig_hw,
                                                 t)[0] > 0
                    else:
                        pred = np.zeros_like(truth)
                    row.append(mask_iou(pred, truth))
                ious[sample["task"]].setdefault(sensor, []).append(row)
    every = [row for by_sensor in ious.values() for rows in by_sensor.values() for row in rows]
    return {"thresholds": thresholds,
            "n": {task: {s: len(rows) for s, rows in d.items()} for task, d in ious.items()},
            "iou": {task: {s: np.mean(rows, 0).round(4).tolist() for s, rows in d.items()}
                    for task, d in ious.items()},
            "overall": np.mean(every, 0).round(4).tolist()}


def best_threshold(report: dict) -> float:
    """The threshold of `sweep`'s report with the highest overall mean IoU; on a tie, the one
    nearest 0."""
    ts, overall = report["thresholds"], report["overall"]
    if len(ts) != len(overall) or not ts:
        raise ValueError(f"best_threshold: {len(ts)} thresholds against {len(overall)} means")
    top = max(overall)
    return min((t for t, v in zip(ts, overall, strict=True) if v == top), key=abs)


def calibrate(model_dir: str | Path, scenes: int = SCENES, write: bool = True) -> dict:
    """Sweeps the model in `model_dir`, and (write=True) sets its config's mask.threshold and
    writes calibration.json next to it.

    Returns:
        the sweep report with "threshold" (the one taken), "previous" (the config's before) and
        "validation_seed".

    Raises:
        FileNotFoundError: no EarthX model in `model_dir`.
    """
    import dataclasses

    from earthx_sdk.modeling.model import EarthXModel
    from training.eval import _scene_spec

    model_dir = Path(model_dir)
    model = EarthXModel.load(model_dir)
    report = sweep(model, scenes=scenes, spec=_scene_spec(model_dir))
    report.update(threshold=best_threshold(report), previous=model.cfg.mask.threshold,
                  validation_seed=VALIDATION_SEED, scenes=scenes)
    if write:
        cfg = dataclasses.replace(model.cfg, mask=dataclasses.replace(
            model.cfg.mask, threshold=report["threshold"]))
        tmp = model_dir / (CALIBRATION + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        cfg.save(model_dir / "config.json")
        os.replace(tmp, model_dir / CALIBRATION)
    return report


def format_report(report: dict) -> str:
    """A markdown table: mean IoU per task and sensor at each threshold, the taken one marked."""
    ts = report["thresholds"]
    lines = ["| task | sensor | n | " + " | ".join(
        f"**{t:g}**" if t == report.get("threshold") else f"{t:g}" for t in ts) + " |",
        "|---|---|---|" + "---|" * len(ts)]
    for task, by_sensor in report["iou"].items():
        for sensor, vals in by_sensor.items():
            lines.append(f"| {task} | {sensor} | {report['n'][task][sensor]} | "
                         + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines.append("| all | | | " + " | ".join(f"{v:.3f}" for v in report["overall"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a model directory, or a training output directory (uses its model/)")
    parser.add_argument("--scenes", type=int, default=SCENES,
                        help=f"validation scenes (default {SCENES})")
    parser.add_argument("--json", help="also write the sweep here")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the sweep, change nothing")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        parser.error(f"--scenes must be >= 1, got {args.scenes}")
    from training.eval import model_dir

    path = model_dir(parser, args.checkpoint)
    report = calibrate(path, scenes=args.scenes, write=not args.dry_run)
    print(format_report(report))
    verb = "would set" if args.dry_run else "set"
    print(f"{verb} mask.threshold {report['previous']:g} -> {report['threshold']:g} in "
          f"{path / 'config.json'}", file=sys.stderr)
    if args.json:
        tmp = args.json + ".tmp"
        Path(tmp).write_text(json.dumps(report, indent=2))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
