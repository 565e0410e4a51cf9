"""The embedded default model and the sample scenes, rebuilt from a checkout.

    python -m export.default_model --train OUT [--recipe earthx-tiny-refine] [--steps N]
        [--threads N]
    python -m export.default_model --checkpoint DIR
    python -m export.default_model --samples [--checkpoint DIR]

The chain: train (`python -m training --recipe R --out OUT/R [--init ...]` for the recipe and
each one it continues: earthx-tiny, then earthx-tiny-place, then earthx-tiny-tune, then
earthx-tiny-refine; skipped with --checkpoint) ->
export (`export.pipeline.export_bundle`: onnxruntime graphs, int8 LLM) -> the bundle replaces
`earthx_sdk/assets/default/` (with `training.json`: the recipe, scenes and last training row)
-> the sample scenes `earthx_sdk/assets/samples/` are regenerated for the recipe's scene spec ->
`earthx eval` prints the held-out figures. `--samples` only regenerates the samples.

Sample scenes: synthetic scenes (`training.synthetic.render_scene`) from seeds at SAMPLE_SEED on,
which no recipe trains on (training seeds start at 0, held-out evaluation at 100000): the first
seed whose scene holds enough distinct, large objects gives the sample of each sensor (optical
PNG, SAR float32 amplitude TIFF, thermal infrared uint16 TIFF). `samples.json` holds each one's
ground truth: the objects, and the four demo questions' prompts and answers (box -> class,
point -> region caption, polygon -> the object's mask, referring text -> its mask, masks as
COCO RLE).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "earthx_sdk" / "assets"
SAMPLE_SEED = 200_000
SAMPLE_SENSORS = ("optical", "sar", "infrared")
ASSET_LIMIT = 30 * 2**20  # bytes committed under earthx_sdk/assets
DEFAULT_RECIPE = "earthx-tiny-refine"  # the embedded model's last stage
_PREFER = ("airplane", "ship", "building", "storage tank", "vehicle", "tree")  # demo targets
_MIN_AREA = 80  # pixels of a demo target at 224 px (scaled with the scene's area)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _save_image(path: Path, img: np.ndarray) -> None:
    """optical uint8 RGB -> PNG; SAR float32 / infrared uint16 -> uncompressed TIFF."""
    import io

    buf = io.BytesIO()
    if path.suffix == ".png":
        from PIL import Image

        Image.fromarray(img).save(buf, format="PNG", optimize=True)
    else:
        import tifffile

        tifffile.imwrite(buf, img)
    _write_atomic(path, buf.getvalue())


def _pick(record, hw) -> dict | None:
    """The four demo targets of one scene (distinct objects), or None when it has too few."""
    from training.templates import _region_caption

    anns = list(record.annotations)
    masks = [np.asarray(a.mask(), bool) for a in anns]
    min_area = _MIN_AREA * hw[0] * hw[1] / 224**2
    counts: dict[str, int] = {}
    for a in anns:
        counts[a.category] = counts.get(a.category, 0) + 1
    cand = [i for i, (a, m) in enumerate(zip(anns, masks, strict=True))
            if a.category in _PREFER and m.sum() >= min_area]
    rank = sorted(cand, key=lambda i: (_PREFER.index(anns[i].category), -masks[i].sum()))
    # the referring target: an object alone of its class (its phrase names it unambiguously)
    refer = [i for i in rank if counts[anns[i].category] == 1]
    if not refer:
        return None
    r = refer[0]
    rest = [i for i in rank if i != r]
    by_class: list[int] = []
    for i in rest:  # prefer targets of different classes
        if anns[i].category not in {anns[j].category for j in by_class}:
            by_class.append(i)
    by_class += [i for i in rest if i not in by_class]
    if len(by_class) < 3:
        return None
    b, p, g = by_class[:3]
    from earthx_sdk.ops.masks import rle_encode

    def rle(m):
        e = rle_encode(m.astype(np.uint8))
        c = e["counts"]
        return {"size": [int(v) for v in e["size"]],
                "counts": c.decode("ascii") if isinstance(c, bytes) else c}

    ys, xs = np.nonzero(masks[p])
    k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))  # inside, near the centre
    return {
        "box": {"box": [float(v) for v in anns[b].box], "class": anns[b].category},
        "point": {"point": [float(xs[k]) + 0.5, float(ys[k]) + 0.5], "class": anns[p].category,
                  "caption": _region_caption(anns[p], masks[p], hw)},
        "polygon": {"polygon": [[round(float(x), 2), round(float(y), 2)]
                                for x, y in anns[g].polygon],
                    "class": anns[g].category, "mask": rle(masks[g])},
        "refer": {"text": anns[r].phrase, "class": anns[r].category, "mask": rle(masks[r])},
    }


def write_samples(out: Path, spec=None) -> list[dict]:
    """Renders the sample scenes into `out` (images + samples.json).

    Args:
        out: the samples folder (created; its files are replaced).
        spec: a training.recipes.SceneSpec (size, object scale; None: the default one).

    Returns:
        the samples.json entries.
    """
    from training.recipes import SceneSpec
    from training.synthetic import render_scene

    spec = SceneSpec() if spec is None else spec
    hw = (spec.size, spec.size)
    out.mkdir(parents=True, exist_ok=True)
    entries, seed = [], SAMPLE_SEED
    for sensor in SAMPLE_SENSORS:
        while True:
            if seed > SAMPLE_SEED + 1000:
                raise RuntimeError(f"no scene from seed {SAMPLE_SEED} to {seed} holds enough "
                                   f"large objects for the demo at {spec}")
            rec = render_scene(seed, hw, object_scale=spec.object_scale)[sensor]
            seed += 1
            picked = _pick(rec, hw)
            if picked is not None:
                break
        file = f"{sensor}.png" if sensor == "optical" else f"{sensor}.tif"
        _save_image(out / file, rec.image)
        entries.append({
            "name": sensor, "file": file, "sensor": sensor, "seed": seed - 1,
            "dtype": str(rec.image.dtype), "size": list(hw),
            "objects": [{"class": a.category, "box": [float(v) for v in a.box],
                         "phrase": a.phrase} for a in rec.annotations],
            "caption": rec.captions[0], **picked})
    doc = {"generator": "python -m export.default_model --samples",
           "source": "training.synthetic.render_scene (synthetic scenes, generated here)",
           "scene_spec": spec.to_dict(), "samples": entries}
    _write_atomic(out / "samples.json", (json.dumps(doc, indent=1) + "\n").encode())
    return entries


def scene_spec(model_dir: Path | None):
    """The SceneSpec a model was trained on: from a training directory's recipe.json
    (model_dir = OUT/model or OUT), or a bundle's training.json; else the default."""
    from training.recipes import SceneSpec

    if model_dir is not None:
        for p in (model_dir / "recipe.json", model_dir.parent / "recipe.json"):
            if p.is_file() and json.loads(p.read_text()).get("scenes"):
                return SceneSpec(**json.loads(p.read_text())["scenes"])
        card = model_dir / "training.json"
        if card.is_file():
            scenes = (json.loads(card.read_text()).get("recipe") or {}).get("scenes")
            if scenes:
                return SceneSpec(**scenes)
    return SceneSpec()


def _assets_size() -> int:
    return sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())


def install_bundle(checkpoint: Path, llm: str = "int8", provisional: bool = False) -> Path:
    """Exports `checkpoint` and puts the bundle in place of earthx_sdk/assets/default/.

    `provisional` marks the bundle (training.json) as a stand-in before the final model:
    tests/test_demo.py then reports the demo's answers against the ground truth as an expected
    failure instead of failing.

    Raises:
        RuntimeError: the assets would exceed ASSET_LIMIT (nothing is replaced then).
    """
    from earthx_sdk.bundle import verify
    from export.pipeline import export_bundle

    dest = ASSETS / "default"
    ASSETS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".default.", dir=ASSETS))
    try:
        export_bundle(checkpoint, tmp, "fp32", llm=llm)
        card = {"checkpoint": str(checkpoint), "llm": llm, "provisional": provisional}
        step = None
        if (checkpoint / "state.json").is_file():  # a resumable checkpoint knows its step
            step = json.loads((checkpoint / "state.json").read_text()).get("step")
            card["step"] = step
        for d in (checkpoint, checkpoint.parent):
            if (d / "recipe.json").is_file():
                card["recipe"] = json.loads((d / "recipe.json").read_text())
            if (d / "metrics.jsonl").is_file():
                rows = [json.loads(r) for r in
                        (d / "metrics.jsonl").read_text().strip().splitlines() if r]
                if step is not None:
                    rows = [r for r in rows if r.get("step", 0) <= step]
                card["training_row"] = rows[-1] if rows else None
        cal = checkpoint / "calibration.json"  # training.calibrate's sweep
        card["calibration"] = ({k: v for k, v in json.loads(cal.read_text()).items()
                                if k in ("threshold", "scenes", "validation_seed", "thresholds",
                                         "overall")} if cal.is_file() else None)
        (tmp / "training.json").write_text(json.dumps(card, indent=1) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        for f in tmp.iterdir():
            f.chmod(0o644)  # some writers create 0600 files; the wheel must be readable
        verify(tmp)
        old = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) \
            if dest.is_dir() else 0
        total = _assets_size() - old
        if total > ASSET_LIMIT:
            raise RuntimeError(f"earthx_sdk/assets would hold {total / 2**20:.1f} MiB, above "
                               f"the {ASSET_LIMIT / 2**20:.0f} MiB limit: the default bundle "
                               f"is left as it was")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.replace(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def train_chain(recipe: str, out: Path, steps: int | None = None,
                threads: int | None = None) -> Path:
    """Trains `recipe` and the recipes it continues (training.recipes.recipe_chain), each by
    `python -m training` into OUT/<recipe name>, each stage starting from the previous one's
    model; a stage whose OUT/<name>/model exists is not trained again. Returns the last model
    directory."""
    from training.recipes import recipe_chain

    model = None
    for r in recipe_chain(recipe):
        stage = out / r.name
        if not (stage / "model" / "config.json").is_file():
            cmd = [sys.executable, "-m", "training", "--recipe", r.name, "--out", str(stage)]
            cmd += ["--init", str(model)] if model is not None else []
            cmd += ["--steps", str(steps)] if steps else []
            cmd += ["--threads", str(threads)] if threads else []
            print("+ " + " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True, cwd=ROOT)
        model = stage / "model"
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.default_model",
                                description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--train", type=Path, metavar="OUT",
                   help="train the recipe into OUT first (then export OUT/model)")
    g.add_argument("--checkpoint", type=Path, help="a trained model directory (OUT/model)")
    p.add_argument("--samples", action="store_true",
                   help="only regenerate the sample scenes (for --checkpoint's scene spec)")
    p.add_argument("--recipe", default=DEFAULT_RECIPE,
                   help="recipe of --train (with the recipes it continues, each before it)")
    p.add_argument("--steps", type=int, help="--train: override every stage's steps")
    p.add_argument("--threads", type=int,
                   help="--train: torch threads of every stage (the shipped model: 1)")
    p.add_argument("--llm", default="int8", choices=("fp32", "int8", "int4"))
    p.add_argument("--provisional", action="store_true",
                   help="mark the bundle as a stand-in for the final model (see install_bundle)")
    args = p.parse_args(argv)
    if args.train is not None:
        checkpoint = train_chain(args.recipe, args.train, args.steps, args.threads)
    else:
        checkpoint = args.checkpoint
        if (checkpoint / "model" / "config.json").is_file():
            checkpoint = checkpoint / "model"
    if not (checkpoint / "config.json").is_file():
        p.error(f"{checkpoint}: not a model directory (no config.json)")
    if not (checkpoint / "calibration.json").is_file():
        print(f"note: {checkpoint} has no calibrated mask threshold (calibration.json); "
              f"python -m training.calibrate --checkpoint {checkpoint} sets it", file=sys.stderr)
    if not args.samples:
        dest = install_bundle(checkpoint, args.llm, args.provisional)
        print(f"bundle -> {dest}", file=sys.stderr)
    entries = write_samples(ASSETS / "samples", scene_spec(checkpoint))
    print(f"samples -> {ASSETS / 'samples'}: " + ", ".join(
        f"{e['file']} (seed {e['seed']})" for e in entries), file=sys.stderr)
    print(f"earthx_sdk/assets: {_assets_size() / 2**20:.1f} MiB (limit "
          f"{ASSET_LIMIT / 2**20:.0f})", file=sys.stderr)
    print("next: earthx demo; earthx eval --json eval.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
