"""`earthx ask` and `earthx segment` (and `earthx info` still answering)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from earthx_sdk import cli
from tests.runtime.cases import images


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("cli") / "scene.png"
    Image.fromarray(images()["optical"]).save(path)
    return path


def test_ask_json_equals_the_api(tiny_bundle, ort_model, png, capsys):
    from earthx_sdk.prompts import Box, Point, Polygon

    rc = cli.main(["ask", str(tiny_bundle), str(png), "Is <region> near <region> and <region>?",
                   "--box", "10,8,50,40", "--point", "60,30", "--polygon", "5,5,40,10,30,50",
                   "--max-new-tokens", "3", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    got = json.loads(out)
    want = ort_model.ask(png, "Is <region> near <region> and <region>?",
                         [Box(10, 8, 50, 40), Point(60, 30), Polygon(((5, 5), (40, 10),
                                                                      (30, 50)))],
                         max_new_tokens=3)
    assert got["token_ids"] == want.token_ids and got["masks"] == want.masks
    assert [r["kind"] for r in got["regions"]] == ["box", "point", "polygon"]  # CLI order kept
    assert set(got["timings"]) >= {"vision", "prefill", "decode", "mask_decoder"}


def test_segment_mask_threshold_option(tiny_bundle, png, capsys):
    """--mask-threshold overrides the model's threshold: below every logit the mask is the whole
    image, above every logit it is empty."""
    from earthx_sdk.ops.masks import rle_decode

    areas = []
    for t in ("-1e9", "1e9"):
        rc = cli.main(["segment", str(tiny_bundle), str(png), "--box", "10,8,50,40",
                       f"--mask-threshold={t}", "--json"])
        out = capsys.readouterr().out
        assert rc == 0
        areas.append(int(rle_decode(json.loads(out)["masks"][0]).sum()))
    assert areas == [72 * 96, 0]


def test_ask_streams_text(tiny_bundle, png, capsys):
    rc = cli.main(["ask", str(tiny_bundle), str(png), "Describe this image.", "--sensor",
                   "optical", "--max-new-tokens", "2"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "timings: preprocess" in cap.err and "vision" in cap.err
    assert cap.out.endswith("\n")


def test_segment_overlay_and_geojson(tiny_bundle, png, tmp_path, capsys):
    from PIL import Image

    out, gj = tmp_path / "o.png", tmp_path / "o.geojson"
    rc = cli.main(["segment", str(tiny_bundle), str(png), "--box", "10,8,60,50", "--out",
                   str(out), "--geojson", str(gj)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    im = np.asarray(Image.open(out))
    assert im.shape == (72, 96, 3)
    assert (im[8, 10:60] == (255, 0, 0)).all()  # the box prompt's outline, in red
    assert json.loads(gj.read_text())["crs"]["properties"]["name"] == "pixel"
    assert "<seg>" in cap.out


def test_segment_tiled_shows_progress(tiny_bundle, tmp_path, capsys):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.fromarray((np.random.default_rng(0).random((100, 140, 3)) * 255).astype(
        np.uint8)).save(big)
    rc = cli.main(["segment", str(tiny_bundle), str(big), "the fields", "--tile-size", "64"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "segment" in cap.err and "6/6" in cap.err  # 2 x 3 tiles


@pytest.mark.parametrize("args,message", [
    (["--polygon", ""], "argument --polygon: Polygon vertices must be"),
    (["--polygon", "1,2,3"], "argument --polygon: --polygon takes x,y pairs"),
    (["--box", "1,2,3"], "argument --box: --box takes 4 numbers, got 3"),
    (["--point", "a,b"], "argument --point: --point takes comma-separated numbers"),
    (["--box", "5,5,1,1"], "Box must have x0 <= x1"),
])
def test_bad_prompt_options(tiny_bundle, png, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["ask", str(tiny_bundle), str(png), "What is in <region>?", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_are_reported_not_raised(tiny_bundle, png, tmp_path, capsys):
    rc = cli.main(["ask", str(tiny_bundle), str(tmp_path / "none.png"), "Describe this image."])
    assert rc == 2
    assert "earthx ask: error: " in capsys.readouterr().err
    rc = cli.main(["ask", str(tiny_bundle), str(png), "What is in <region>?", "--box",
                   "500,500,600,600"])
    assert rc == 2
    assert "wholly outside the image" in capsys.readouterr().err


def test_info_still_answers(capsys):
    assert cli.main(["info", "--json"]) == 0
    assert "native" in json.loads(capsys.readouterr().out)
