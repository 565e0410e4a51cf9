"""Image inputs (files, arrays, PIL, layouts, sensors), large scenes, and every bad input the
runtime refuses with a clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from earthx_sdk.io.images import ImageTooLargeError, load_image, to_hwc
from earthx_sdk.prompts import Box, Point, Polygon
from tests.runtime.cases import images


@pytest.fixture(scope="module")
def imgs():
    return images()


@pytest.fixture(scope="module")
def files(tmp_path_factory, imgs):
    import tifffile
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    rgb = imgs["optical"]
    Image.fromarray(rgb).save(d / "a.png")
    yy, xx = np.mgrid[0:72, 0:96]
    smooth = np.dstack([xx * 2, yy * 3, xx + yy]).astype(np.uint8)
    Image.fromarray(smooth).save(d / "a.jpg", quality=95)
    tifffile.imwrite(d / "a.tif", rgb)
    tifffile.imwrite(d / "planar.tif", np.ascontiguousarray(rgb.transpose(2, 0, 1)),
                     photometric="rgb", planarconfig="separate")
    tifffile.imwrite(d / "ir.tif", imgs["infrared"])
    tifffile.imwrite(d / "deflate.tif", rgb, compression="zlib")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    (d / "corrupt.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    return d


def test_files_and_arrays_read_the_same_pixels(files, imgs):
    rgb = imgs["optical"]
    for name in ("a.png", "a.tif", "planar.tif", "deflate.tif"):
        im = load_image(files / name)
        np.testing.assert_array_equal(np.asarray(im.pixels), rgb, err_msg=name)
        assert im.geo is None and im.key[0] == "file"
    jpg = load_image(files / "a.jpg").pixels  # lossy: a smooth image survives it
    yy, xx = np.mgrid[0:72, 0:96]
    smooth = np.dstack([xx * 2, yy * 3, xx + yy]).astype(np.uint8)
    assert jpg.shape == rgb.shape and np.abs(jpg.astype(int) - smooth).mean() < 2
    ir = load_image(files / "ir.tif")
    assert ir.pixels.dtype == np.uint16 and ir.pixels.shape == (60, 90, 1)
    from PIL import Image

    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)).pixels, rgb)
    np.testing.assert_array_equal(load_image(rgb.transpose(2, 0, 1)).pixels, rgb)  # CHW auto
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]))
    np.testing.assert_array_equal(load_image(rgba).pixels, rgb)  # alpha dropped


def test_same_answer_from_every_form_of_an_image(ort_model, files, imgs):
    from PIL import Image

    rgb = imgs["optical"]
    q = dict(text="What is in <region>?", prompts=[Box(5, 5, 40, 30)], max_new_tokens=3)
    want = ort_model.ask(rgb, sensor="optical", **q)
    for src in (files / "a.png", str(files / "a.tif"), Image.fromarray(rgb),
                np.ascontiguousarray(rgb.transpose(2, 0, 1))):
        r = ort_model.ask(src, **q)  # sensor auto: 3 bands of uint8 are optical
        assert r.sensor == "optical"
        assert r.token_ids == want.token_ids and r.masks == want.masks


def test_sensor_auto(ort_model, imgs):
    assert ort_model.ask(imgs["sar_complex"], "Describe this image.",
                         max_new_tokens=1).sensor == "sar"
    assert ort_model.ask(imgs["sar2"], "Describe this image.", max_new_tokens=1).sensor == "sar"
    assert ort_model.ask(imgs["multispectral"], "Describe this image.",
                         max_new_tokens=1).sensor == "multispectral"
    with pytest.raises(ValueError, match="cannot tell the sensor.*pass sensor="):
        ort_model.ask(imgs["infrared"], "Describe this image.")  # 1 band: SAR or thermal?


def test_complex_sar_equals_its_amplitude(ort_model, imgs):
    z = imgs["sar_complex"]
    a = ort_model.ask(z, "Describe this image.", sensor="sar", max_new_tokens=3)
    b = ort_model.ask(np.abs(z).astype(np.float32), "Describe this image.", sensor="sar",
                      max_new_tokens=3)
    assert a.token_ids == b.token_ids


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

def test_missing_and_corrupt_files(ort_model, files):
    with pytest.raises(FileNotFoundError, match="nothere.png does not exist"):
        ort_model.ask(files / "nothere.png", "Describe this image.")
    with pytest.raises(ValueError, match="corrupt.png.*not a readable image"):
        ort_model.ask(files / "corrupt.png", "Describe this image.")
    with pytest.raises(ValueError, match="corrupt.tif.*not a readable TIFF"):
        ort_model.ask(files / "corrupt.tif", "Describe this image.")
    with pytest.raises(ValueError, match="empty.jpg is empty"):
        ort_model.ask(files / "empty.jpg", "Describe this image.")
    with pytest.raises(ValueError, match="notes.txt.*not a readable image"):
        ort_model.ask(files / "notes.txt", "Describe this image.")
    with pytest.raises(ValueError, match="is not a file"):
        ort_model.ask(files, "Describe this image.")


def test_unsupported_dtype_and_band_count(ort_model, imgs):
    with pytest.raises(TypeError, match="dtype must be one of .* got int64"):
        ort_model.ask(np.zeros((32, 32, 3), np.int64), "Describe this image.")
    with pytest.raises(TypeError, match="dtype must be one of .* got bool"):
        ort_model.ask(np.zeros((32, 32), bool), "Describe this image.", sensor="sar")
    with pytest.raises(ValueError, match="sensor 'optical' takes \\[3\\] band\\(s\\).*has 5"):
        ort_model.ask(np.zeros((32, 32, 5), np.uint8), "Describe this image.", sensor="optical")
    with pytest.raises(ValueError, match="at most 16 bands"):
        to_hwc(np.zeros((40, 40, 20), np.uint8), "hwc")
    with pytest.raises(ValueError, match="cannot tell the band axis"):
        load_image(np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="sensor must be 'auto' or one of"):
        ort_model.ask(imgs["optical"], "Describe this image.", sensor="lidar")
    with pytest.raises(TypeError, match="must be a file path, a numpy array or a PIL image"):
        ort_model.ask(12, "Describe this image.")


def test_prompts_outside_empty_or_miscounted(ort_model, imgs):
    img = imgs["optical"]  # 96 x 72
    with pytest.raises(ValueError, match="prompts\\[0\\]: box .* wholly outside the image of "
                                         "96x72"):
        ort_model.ask(img, "What is in <region>?", [Box(200, 200, 300, 300)])
    with pytest.raises(ValueError, match="Polygon vertices must be \\[N, 2\\].*N >= 3"):
        Polygon(())
    with pytest.raises(ValueError, match="degenerate"):
        Polygon(((0, 0), (5, 5), (10, 10)))
    with pytest.raises(ValueError, match="2 <region> placeholder\\(s\\) for 1 prompt"):
        ort_model.ask(img, "Is <region> like <region>?", [Box(0, 0, 9, 9)])
    with pytest.raises(ValueError, match="0 <region> placeholder\\(s\\) for 1 prompt.*write"):
        ort_model.ask(img, "What is this?", [Point(3, 3)])
    with pytest.raises(TypeError, match="prompts\\[0\\] must be a Point"):
        ort_model.ask(img, "What is in <region>?", [(0, 0, 4, 4)])
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1"):
        ort_model.ask(img, "Describe this image.", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        ort_model.ask(img, "Describe this image.", temperature=-1)


def test_nan_pixels(ort_model, imgs):
    img = imgs["infrared"].astype(np.float32)
    img[3:5, 7:10] = np.nan
    with pytest.raises(ValueError, match="6 pixel\\(s\\) hold NaN or Inf.*allow_invalid=True"):
        ort_model.ask(img, "Describe this image.", sensor="infrared")
    lenient = ort_model.with_options(allow_invalid=True)
    r = lenient.ask(img, "Describe this image.", sensor="infrared", max_new_tokens=2)
    assert r.invalid_pixels == 6
    all_nan = np.full((20, 20), np.nan, np.float32)
    with pytest.raises(ValueError, match="no valid"):
        lenient.ask(all_nan, "Describe this image.", sensor="infrared")


def test_huge_scene_is_refused_before_it_is_read(ort_model, tmp_path):
    """A 20000 x 20000 scene: refused from its shape (a zero-copy broadcast array) or from its
    file header (a sparse TIFF), with the memory it would need; nothing is allocated."""
    import tifffile

    lazy = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))
    with pytest.raises(ImageTooLargeError, match="20000x20000 pixels \\(400.0 MP.*would need "
                                                 "1.49 GiB resident"):
        ort_model.ask(lazy, "Describe this image.")
    path = tmp_path / "huge.tif"
    with tifffile.TiffWriter(path) as tw:  # header + strip offsets only: a sparse file
        tw.write(shape=(20000, 20000, 3), dtype=np.uint8, photometric="rgb")
    assert path.stat().st_blocks * 512 < 50e6  # sparse on disk
    with pytest.raises(ImageTooLargeError, match="huge.tif: image of 20000x20000"):
        ort_model.segment(path, "the fields")


def test_bundle_missing_a_component(tiny_bundle, tmp_path):
    from earthx_sdk import EarthX
    from earthx_sdk.bundle import BundleError

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    (b / "mask_decoder.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="mask_decoder"):
        EarthX.load(b)
    shutil.rmtree(b)
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    for name in ("llm", "llm_embed"):
        del m["components"][name]
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="missing component\\(s\\) \\['llm', 'llm_embed'\\]"):
        EarthX.load(b)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EarthX.load(tmp_path / "nope")
    with pytest.raises(ValueError, match="neither a bundle"):
        EarthX.load(tmp_path)


def test_backend_choices(tiny_bundle, tiny_ckpt):
    from earthx_sdk import EarthX

    with pytest.raises(ValueError, match="is a checkpoint: the onnxruntime backend runs a "
                                         "bundle"):
        EarthX.load(tiny_ckpt, backend="onnxruntime")
    with pytest.raises(ValueError, match="is a bundle .*torch backend runs a checkpoint"):
        EarthX.load(tiny_bundle, backend="torch")
    with pytest.raises(RuntimeError, match="backend=.tensorrt.: .*use backend=.onnxruntime."):
        EarthX.load(tiny_bundle, backend="tensorrt")
    with pytest.raises(ValueError, match="backend must be one of"):
        EarthX.load(tiny_bundle, backend="tvm")


# ------------------------------------------------------------------------------------------------
# large scenes: tiled grounding
# ------------------------------------------------------------------------------------------------

def test_tiled_segment_stitches_the_tiles_it_ran(ort_model):
    rng = np.random.default_rng(5)
    img = (rng.random((150, 200, 3)) * 255).astype(np.uint8)
    tiled = ort_model.with_options(tile_size=64, tile_overlap=16)
    from earthx_sdk.ops.tiling import tile_grid

    grid = tile_grid(150, 200, 64, 16)
    box = Box(20, 20, 70, 50)  # touches the tiles of the top-left corner only
    touched = [b for b in grid if not (b[3] < 20 or b[2] < 20 or b[1] > 70 or b[0] > 50)]
    progress = []
    r = tiled.segment(img, prompts=[box], progress=lambda i, n: progress.append((i, n)))
    assert r.tiles == len(touched) < len(grid)
    assert progress[-1] == (len(touched), len(touched))
    assert r.timings["vision"].calls == len(touched)
    m = r.mask(0)
    assert m.shape == (150, 200)
    covered = np.zeros((150, 200), bool)
    for y0, x0, y1, x1 in touched:
        covered[y0:y1, x0:x1] = True
    assert not m[~covered].any()  # nothing outside the tiles that ran
    t = tiled.segment(img, "the roads")
    assert t.tiles == len(grid) and t.mask(0).shape == (150, 200)
    # an image that fits one tile is not tiled
    small = tiled.segment(img[:60, :60], prompts=[Box(5, 5, 30, 30)])
    assert small.tiles == 1
    with pytest.raises(ValueError, match="runs tiled, where a text with <region>"):
        tiled.segment(img, "Segment <region>.", [box])
    with pytest.raises(ValueError, match="prompts\\[1\\]: point .* wholly outside the image "
                                         "of 200x150"):
        tiled.segment(img, prompts=[box, Point(500, 20)])


def test_uncompressed_tiff_is_memory_mapped_and_tiles(ort_model, tmp_path):
    import tifffile

    rng = np.random.default_rng(6)
    img = (rng.random((130, 170, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "scene.tif", img)
    im = load_image(tmp_path / "scene.tif")
    assert isinstance(im.pixels, np.memmap)  # nothing read before it is needed
    r = ort_model.with_options(tile_size=64, tile_overlap=8).segment(
        tmp_path / "scene.tif", prompts=[Box(100, 60, 160, 120)])
    assert r.tiles >= 1 and r.mask(0).shape == (130, 170)
    want = ort_model.with_options(tile_size=64, tile_overlap=8).segment(
        img, prompts=[Box(100, 60, 160, 120)])
    assert r.masks == want.masks


def test_a_file_seen_before_is_not_read_again(ort_model, files, monkeypatch, tmp_path):
    from earthx_sdk import api

    model = ort_model.with_options()
    calls = []
    real = api.load_image
    monkeypatch.setattr(api, "load_image", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    path = tmp_path / "a.png"
    shutil.copy(files / "a.png", path)
    r1 = model.ask(path, "Describe this image.", max_new_tokens=1)
    r2 = model.ask(str(path), "Describe this image.", max_new_tokens=1)
    assert len(calls) == 1 and r2.timings["vision"].status == "cached"
    from PIL import Image

    Image.fromarray(np.zeros((72, 96, 3), np.uint8)).save(path)  # the file changes: read anew
    r3 = model.ask(path, "Describe this image.", max_new_tokens=1)
    assert len(calls) == 2 and r3.timings["vision"].status == "ran"
    assert r1.token_ids == r2.token_ids
