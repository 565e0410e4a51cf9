"""The embedded default model, the sample scenes, `earthx demo` and `earthx eval`.

`test_demo_answers_match_the_ground_truth` only passes with a trained default model; while the
embedded bundle is a provisional stand-in (`"provisional": true` in
earthx_sdk/assets/default/training.json) it reports an expected failure with the figures. The
lead regenerates the bundle and the samples with `python -m export.default_model --checkpoint
DIR` (see export/default_model.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from earthx_sdk import cli, defaults
from earthx_sdk.demo import (
    Answer,
    caption_matches,
    caption_mentions,
    class_matches,
    draw_overlay,
    mask_iou,
    place_of,
)
from earthx_sdk.prompts import Box, Polygon

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "earthx_sdk" / "assets"

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`earthx demo` on the sample scenes with the embedded model (run once)."""
    from earthx_sdk.demo import run

    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    reports = run("default", out=out, emit=lines.append)
    return out, reports, lines


def _card() -> dict:
    return json.loads((defaults.DEFAULT_BUNDLE / "training.json").read_text())


# -- the name `default` ---------------------------------------------------------------------

def test_default_names_the_embedded_bundle(tmp_path):
    assert defaults.resolve_bundle("default") == defaults.DEFAULT_BUNDLE
    assert defaults.resolve_bundle(str(tmp_path)) == tmp_path
    assert defaults.resolve_bundle("./default") == Path("default")  # a folder called default
    with pytest.raises(TypeError, match="bundle must be a path"):
        defaults.resolve_bundle(3)


def test_earthx_load_default_runs_on_onnxruntime():
    from earthx_sdk import EarthX

    m = EarthX.load("default")
    info = m.info()
    assert Path(info["source"]) == defaults.DEFAULT_BUNDLE
    assert info["backend"]["name"] == "onnxruntime"
    assert {"optical", "sar", "infrared"} <= set(info["sensors"])


def test_embedded_bundle_verifies_fits_and_ships_in_the_wheel():
    from earthx_sdk.bundle import load_bundle

    man = load_bundle(defaults.DEFAULT_BUNDLE)
    assert man.components["llm"].precision == "int8"
    files = [f for f in ASSETS.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20
    # scikit-build-core's wheel.packages copies every file of earthx_sdk/ that git does not
    # ignore: none of the assets may be ignored
    if shutil.which("git") and (ROOT / ".git").exists():
        rel = [str(f.relative_to(ROOT)) for f in files]
        r = subprocess.run(["git", "check-ignore", "--no-index", *rel], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.stdout.strip() == "", f"git-ignored assets would miss the wheel: {r.stdout}"


# -- the samples ----------------------------------------------------------------------------

def test_samples_hold_consistent_ground_truth():
    from earthx_sdk.io.images import load_image
    from earthx_sdk.ops.masks import rle_decode

    entries = defaults.samples()
    assert [e["sensor"] for e in entries] == ["optical", "sar", "infrared"]
    for e in entries:
        img = load_image(e["path"])
        h, w = img.hw
        assert [h, w] == e["size"]
        x0, y0, x1, y1 = e["box"]["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        for key in ("polygon", "refer"):
            m = rle_decode(e[key]["mask"])
            assert m.shape == (h, w) and m.any()
        # the point lies on the object its caption is about, the polygon encloses its mask
        px, py = e["point"]["point"]
        assert e["point"]["class"] in e["point"]["caption"].lower()
        gm = rle_decode(e["polygon"]["mask"])
        poly = Polygon(tuple(map(tuple, e["polygon"]["polygon"]))).rasterize((h, w))
        assert mask_iou(poly, gm) > 0.9
        assert 0 <= px < w and 0 <= py < h


def test_samples_regenerate_bit_identically(tmp_path):
    pytest.importorskip("torch")  # training.synthetic runs on numpy; its package imports torch
    from earthx_sdk.io.images import load_image
    from export.default_model import scene_spec, write_samples

    write_samples(tmp_path, scene_spec(defaults.DEFAULT_BUNDLE))
    names = sorted(f.name for f in defaults.SAMPLES_DIR.iterdir())
    assert sorted(f.name for f in tmp_path.iterdir()) == names
    hint = "differs from what python -m export.default_model --samples writes: regenerate"
    for name in names:
        new, old = tmp_path / name, defaults.SAMPLES_DIR / name
        if name.endswith(".json"):  # pixels and JSON compared, not the encoders' bytes
            assert json.loads(new.read_text()) == json.loads(old.read_text()), f"{name} {hint}"
        else:
            a, b = load_image(new).pixels, load_image(old).pixels
            assert a.dtype == b.dtype and np.array_equal(a, b), f"{name} {hint}"


# -- the demo -------------------------------------------------------------------------------

def test_demo_writes_overlays_and_prints_answers_and_latency(demo_run):
    out, reports, lines = demo_run
    assert len(reports) == 3
    for r in reports:
        assert [a.kind for a in r.answers] == ["box", "point", "polygon", "refer"]
        png = Path(r.overlay)
        assert png.is_file() and png.parent == out
        from PIL import Image

        with Image.open(png) as im:
            h, w = defaults.samples()[0]["size"]
            assert im.mode == "RGB"
            scale = max(1, round(448 / max(h, w)))
            assert im.width == scale * w and im.height > scale * h
        for a in r.answers:
            assert a.timings["prefill"] > 0  # every request ran the LLM
            if a.kind in ("polygon", "refer"):
                assert a.timings["mask_decoder"] > 0 and a.mask is not None
    text = "\n".join(lines)
    assert "latency over 12 requests" in text and "answers matching the ground truth" in text
    doc = json.loads((out / "demo.json").read_text())
    assert len(doc["scenes"]) == 3


def test_demo_answers_match_the_ground_truth(demo_run):
    _, reports, _ = demo_run
    wrong = [f"{r.name}/{a.kind}: {a.text!r} (expected {a.expected!r}"
             + (f", IoU {a.iou:.2f}" if a.iou is not None else "") + ")"
             for r in reports for a in r.answers if not a.correct]
    if wrong and _card().get("provisional"):
        pytest.xfail("the embedded model is provisional (regenerate it with python -m "
                     "export.default_model --checkpoint DIR): " + "; ".join(wrong))
    assert not wrong, "; ".join(wrong)


def test_demo_cli_on_an_image_with_prompts(tmp_path, capsys):
    sar = str(defaults.SAMPLES_DIR / "sar.tif")
    rc = cli.main(["demo", "--image", sar, "--sensor", "sar", "--out", str(tmp_path),
                   "--box", "10,10,60,60", "--point", "30,40", "--polygon",
                   "100,100,140,100,120,150", "--refer", "the airplane"])
    assert rc == 0
    assert (tmp_path / "sar_overlay.png").is_file()
    out = capsys.readouterr().out
    assert "box (10, 10, 60, 60)" in out and "Please segment the airplane." in out


@pytest.mark.parametrize("argv, message", [
    (["demo", "--box", "1,2,3,4"], "go with --image"),
    (["demo", "--image", "x.png", "--box", "1,2,3"], "--box takes 4 numbers"),
    (["demo", "--image", "x.png", "--polygon", "1,2,3,4"], "--polygon takes >= 3"),
    (["demo", "--image", "/nonexistent.png"], "does not exist"),
    (["demo", "--bundle", "/nonexistent"], "does not exist"),
])
def test_demo_cli_refuses_bad_input(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


# -- overlay drawing and matching rules -----------------------------------------------------

def test_overlay_draws_prompts_and_masks():
    from earthx_sdk.overlay import PROMPT_COLOR

    rgb = np.full((40, 50, 3), 100, np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[20:30, 5:15] = 1
    answers = [Answer("box", "q", Box(30, 5, 45, 15), "ship"),
               Answer("polygon", "q", Polygon(((5, 20), (15, 20), (15, 30))), "<seg>",
                      mask=mask)]
    im = np.asarray(draw_overlay(rgb, answers, scale=2, title="t"))
    assert im.shape[1] == 100 and im.shape[0] > 80 + 2 * 12  # the image 2x, a legend below
    assert tuple(im[20, 60]) == PROMPT_COLOR  # the box's left edge at x = 30 (scaled 2x)
    inside = im[2 * 27, 2 * 8].astype(int)  # the mask's interior: tinted toward its colour
    assert not np.array_equal(inside, [100, 100, 100])
    assert tuple(im[2 * 5, 2 * 5]) == (100, 100, 100)  # outside everything: untouched


def test_matching_rules():
    assert class_matches("Ship.", "ship") and class_matches("a storage tank", "storage tank")
    assert not class_matches("ship wreck", "ship")
    assert caption_mentions("The storage tank at the top.", "storage tank")
    assert not caption_mentions("The tanker.", "tank")
    # the place: the ninth a caption names, an ordinal's "from the left" aside
    assert place_of("The tree in the top left.") == "top left"
    assert place_of("The second vehicle from the left at the bottom.") == "bottom"
    assert place_of("The vehicle on the left.") == "left"
    assert place_of("The first tree from the left in the bottom right.") == "bottom right"
    assert place_of("A tree.") is None
    assert caption_matches("The tree at the bottom.", "The first tree from the left at the "
                           "bottom.", "tree")
    assert not caption_matches("The tree in the top right.", "The tree at the bottom.", "tree")
    assert not caption_matches("The ship at the bottom.", "The tree at the bottom.", "tree")
    a = np.zeros((4, 4), bool)
    a[:2] = True
    assert mask_iou(a, a) == 1.0 and mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match="shape"):
        mask_iou(np.zeros((2, 2)), np.zeros((3, 3)))


# -- eval -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_eval_reports_held_out_figures(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "eval.json"
    assert cli.main(["eval", "--scenes", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    for sensor in ("optical", "sar", "infrared"):
        r = report["synthetic"]["sensors"][sensor]
        assert r["region_classification"]["n"] >= 5
        assert 0.0 <= r["referring_segmentation"]["gIoU"] <= 1.0
        cap = r["region_caption"]
        assert cap["n"] == 5 and 0.0 <= cap["both"] <= min(cap["class"], cap["place"])
    assert report["mask_threshold"] == defaults_threshold()
    df = report["deepforest"]
    if "unavailable" not in df:
        assert df["SOAP_061_dead_alive"]["n"] == 18
    out = capsys.readouterr().out
    assert "region classification" in out and "gIoU" in out and "region captions" in out
    assert f"masks at logit > {report['mask_threshold']:g}" in out


def defaults_threshold() -> float:
    """The embedded bundle's calibrated mask threshold (its model config)."""
    manifest = json.loads((defaults.DEFAULT_BUNDLE / "manifest.json").read_text())
    return float(manifest["model_config"]["mask"].get("threshold", 0.0))


def test_eval_names_what_it_needs_without_a_checkout(monkeypatch, tmp_path):
    from earthx_sdk import evaluation

    monkeypatch.setattr(evaluation, "__file__", str(tmp_path / "earthx_sdk" / "evaluation.py"))
    with pytest.raises(RuntimeError, match="needs a checkout"):
        evaluation.checkout_root()
