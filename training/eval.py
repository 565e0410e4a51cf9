"""python -m training.eval --checkpoint DIR [--json PATH] [--scenes N]

Held-out evaluation on synthetic scenes the training recipes never draw (seeds from 100000 on),
rendered as the recipe's scenes (size, object scale: from DIR/recipe.json, which `python -m
training` writes; the default SceneSpec without it), per sensor: region classification (S-IoU,
and SS when all-MiniLM-L6-v2 is installed), referring segmentation from text (cIoU, gIoU at
image resolution: the S/4 logits go through the runtime's `postprocess_masks`, at the model's
calibrated threshold, `training.calibrate`) and captions
(BLEU-4, ROUGE-L, CIDEr-D, exact-match METEOR).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from earthx_sdk.evaluation import SCENES

HELD_OUT_SEED = 100_000


def evaluate(model, scenes: int = SCENES, max_new_tokens: int = 24, spec=None) -> dict:
    """Metrics per sensor on `scenes` held-out synthetic scenes rendered as `spec` (a
    training.recipes.SceneSpec; None: the default one)."""
    import torch

    from earthx_sdk.ops.masks import postprocess_masks
    from training.caption_metrics import caption_scores
    from training.metrics import SentenceEmbedder, mask_ious, s_iou, semantic_similarity
    from training.recipes import SceneSpec
    from training.synthetic import render_scene
    from training.templates import samples_for

    try:
        embedder, ss_note = SentenceEmbedder(), None
    except FileNotFoundError as exc:
        embedder, ss_note = None, str(exc)
    spec = SceneSpec() if spec is None else spec
    rng = np.random.default_rng(HELD_OUT_SEED)
    by_sensor: dict[str, dict[str, list]] = {}
    model.eval()
    for s in range(scenes):
        for sensor, rec in render_scene(HELD_OUT_SEED + s, (spec.size, spec.size),
                                        object_scale=spec.object_scale).items():
            acc = by_sensor.setdefault(sensor, {k: [] for k in
                                                ("cls_pred", "cls_gt", "seg_pred", "seg_gt",
                                                 "cap_pred", "cap_gt")})
            for sample in samples_for(rec, tasks=("region_class", "refer_seg", "caption"), rng=rng):
                answer, targets = sample["answer"], sample["target_masks"]
                query = {k: v for k, v in sample.items()
                         if k not in ("task", "answer", "target_masks")}
                enc = model.processor.encode(**query)
                with torch.no_grad():
                    gen = model.generate(enc, max_new_tokens=max_new_tokens)
                if sample["task"] == "region_class":
                    acc["cls_pred"].append(gen.text.strip().rstrip("."))
                    acc["cls_gt"].append(answer.rstrip("."))
                elif sample["task"] == "refer_seg":
                    # the predicted logits mapped back onto the image (the runtime's postprocess)
                    info = enc.info
                    truth = np.asarray(targets[0], bool)
                    if len(gen.mask_logits):
                        logits = gen.mask_logits[:1].float().cpu().numpy()
                        pred = postprocess_masks(logits, info.size, info.resized_hw,
                                                 info.orig_hw, model.cfg.mask.threshold)[0] > 0
                    else:
                        pred = np.zeros_like(truth)
                    acc["seg_pred"].append(pred)
                    acc["seg_gt"].append(truth)
                else:
                    acc["cap_pred"].append(gen.text)
                    acc["cap_gt"].append(rec.captions)
    report: dict = {"scenes": scenes, "held_out_seed": HELD_OUT_SEED,
                    "scene_spec": spec.to_dict(), "sensors": {}}
    if ss_note:
        report["ss_unavailable"] = ss_note
    for sensor, acc in by_sensor.items():
        r = {"region_classification": {"n": len(acc["cls_gt"]),
                                       "S-IoU": s_iou(acc["cls_pred"], acc["cls_gt"])}}
        if embedder is not None:
            r["region_classification"]["SS"] = semantic_similarity(acc["cls_pred"], acc["cls_gt"],
                                                                   embedder)
        ciou, giou = mask_ious(acc["seg_pred"], acc["seg_gt"])
        r["referring_segmentation"] = {"n": len(acc["seg_gt"]), "cIoU": ciou, "gIoU": giou}
        r["caption"] = {"n": len(acc["cap_gt"]), **caption_scores(acc["cap_pred"], acc["cap_gt"])}
        report["sensors"][sensor] = r
    return report


def _scene_spec(model_dir: Path):
    """The SceneSpec in the training directory's recipe.json (the model folder's parent), or
    None."""
    from training.recipes import SceneSpec

    path = model_dir.parent / "recipe.json"
    if not path.is_file():
        return None
    scenes = json.loads(path.read_text()).get("scenes")
    if scenes is None:
        return None
    try:
        return SceneSpec(**scenes)
    except TypeError as exc:
        raise ValueError(f"{path}: 'scenes' must hold the fields of SceneSpec, got "
                         f"{sorted(scenes)} ({exc})") from None


def model_dir(parser: argparse.ArgumentParser, checkpoint: str) -> Path:
    """--checkpoint's model directory: the path itself, or its model/ folder (a training output
    directory); a parser error where neither holds a config.json."""
    path = Path(checkpoint)
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        parser.error(f"--checkpoint {checkpoint}: no EarthX model there (config.json missing in "
                     "it and in its model/ folder)")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a model directory, or a training output directory (uses its model/)")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--scenes", type=int, default=SCENES,
                        help=f"held-out synthetic scenes (default {SCENES})")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        parser.error(f"--scenes must be >= 1, got {args.scenes}")
    path = model_dir(parser, args.checkpoint)
    spec = _scene_spec(path)
    from earthx_sdk.modeling.model import EarthXModel

    report = evaluate(EarthXModel.load(path), scenes=args.scenes, spec=spec)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        tmp = args.json + ".tmp"
        Path(tmp).write_text(text)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
