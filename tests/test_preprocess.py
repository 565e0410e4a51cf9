import math

import numpy as np
import pytest

from earthx_sdk import _ext
from earthx_sdk.io.sensors import SENSORS, SensorSpec, estimate_band_stats, get_sensor
from earthx_sdk.ops import preprocess as P
from tests.cases import AWKWARD_SHAPES, TOL
from tests.conftest import requires_native

IMPLS = ["ref", pytest.param("native", marks=requires_native)]
MS4 = SENSORS["multispectral"].with_stats([0.10, 0.11, 0.12, 0.13], [0.030, 0.031, 0.032, 0.033])
SAR_INT = SensorSpec("sar-int", "sar_db", None, (0.5,), (0.5,), sar_input="intensity")
SAR_CPLX = SensorSpec("sar-cplx", "sar_db", None, (0.5,), (0.5,), sar_input="complex")


def _image(rng, hw, sensor, dtype):
    h, w = hw
    bands = {"optical": 3, "multispectral": 4}.get(sensor, 1)
    shape = (h, w, bands)
    if np.issubdtype(dtype, np.complexfloating):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        hi = min(np.iinfo(dtype).max, 60000)
        return rng.integers(0, hi, shape).astype(dtype)
    return (rng.random(shape) * 2.0).astype(dtype)


def _spec(sensor, dtype):
    if sensor == "multispectral":
        return MS4
    if sensor == "sar" and np.issubdtype(dtype, np.complexfloating):
        return SAR_CPLX
    return sensor


def _assert_close(a, b):
    rtol, atol = TOL[np.float32]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


CASES = [("optical", np.uint8), ("multispectral", np.uint16), ("sar", np.float32),
         ("sar", np.complex64), ("infrared", np.uint16), ("infrared", np.float64),
         ("multispectral", np.int16), ("optical", np.float32), ("sar", np.int32)]


# every mode on the small shapes; the large one once per sensor, in auto mode
PARITY = [(hw, mode) for hw in AWKWARD_SHAPES for mode in ("auto", "bilinear", "area")
          if hw != (2049, 1537) or mode == "auto"]


@requires_native
@pytest.mark.parametrize("hw,mode", PARITY)
@pytest.mark.parametrize("sensor,dtype", CASES)
def test_preprocess_native_matches_ref(rng, hw, sensor, dtype, mode):
    img = _image(rng, hw, sensor, dtype)
    spec = _spec(sensor, dtype)
    a, ia = P.preprocess(img, spec, 64, resize_mode=mode, impl="native")
    b, ib = P.preprocess(img, spec, 64, resize_mode=mode, impl="ref")
    assert a.shape == b.shape == (img.shape[2], 64, 64) and a.dtype == np.float32
    assert ia == ib
    _assert_close(a, b)


@requires_native
@pytest.mark.parametrize("out_hw", [(1, 1), (13, 7), (5, 1023), (300, 301)])
def test_resize_native_matches_ref(rng, out_hw):
    img = rng.standard_normal((97, 211, 2)).astype(np.float32)
    for mode in ("auto", "bilinear", "area"):
        _assert_close(P.resize(img, out_hw, mode=mode, impl="native"),
                      P.resize(img, out_hw, mode=mode, impl="ref"))


@requires_native
def test_non_contiguous_inputs_read_in_place(rng):
    chw = rng.integers(0, 60000, (4, 301, 257)).astype(np.uint16)
    strided = rng.integers(0, 60000, (602, 771, 4)).astype(np.uint16)[::2, ::3]
    for img, layout in ((chw, "chw"), (strided, "hwc")):
        view = P.as_hwc(img, layout)
        assert not view.flags.c_contiguous
        a, _ = P.preprocess(img, MS4, 128, layout=layout, impl="native")
        b, _ = P.preprocess(np.ascontiguousarray(view), MS4, 128, impl="ref")
        _assert_close(a, b)
    f = rng.standard_normal((50, 60, 3)).astype(np.float32)[:, ::-1]
    _assert_close(P.resize(f, (20, 31), impl="native"),
                  P.resize(np.ascontiguousarray(f), (20, 31), impl="ref"))


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_checked_values(impl):
    # optical uint8: 255 -> (1 - mean) / std per band; a 2x2 image kept at size 2.
    img = np.full((2, 2, 3), 255, np.uint8)
    out, info = P.preprocess(img, "optical", 2, impl=impl)
    expect = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                          strict=True)]
    np.testing.assert_allclose(out[:, 0, 0], expect, rtol=1e-6)
    assert info.resized_hw == (2, 2) and info.invalid_pixels == 0
    # SAR intensity 1.0 is 0 dB: (0 - -30) / 40 = 0.75 -> (0.75 - 0.5) / 0.5 = 0.5.
    # Intensity 1e-6 is -60 dB, clipped to -30 dB -> -1.
    sar = np.array([[1.0, 1e-6]], np.float32)
    out, _ = normalize(sar, SAR_INT, impl)
    np.testing.assert_allclose(out[0, :, 0], [0.5, -1.0], rtol=1e-6)
    # Amplitude 10 is intensity 100, 20 dB, clipped to 10 dB -> 1.
    out, _ = normalize(np.array([[10.0]], np.float32), "sar", impl)
    np.testing.assert_allclose(out[0, 0, 0], 1.0, rtol=1e-6)
    # Percentiles of 0..100: p2 = 2, p98 = 98; x = 50 -> 0.5 -> 0.0; x = 0 -> clipped 0 -> -1.
    ramp = np.arange(101, dtype=np.uint16).reshape(1, 101)
    out, _ = normalize(ramp, "infrared", impl)
    np.testing.assert_allclose(out[0, [0, 50, 100], 0], [-1.0, 0.0, 1.0], atol=1e-6)


def normalize(img, sensor, impl):
    return P.normalize(img, sensor, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_resize_rules(impl):
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    # area 4x4 -> 2x2 is the mean of each 2x2 block
    np.testing.assert_allclose(P.resize(img, (2, 2), mode="area", impl=impl),
                               [[2.5, 4.5], [10.5, 12.5]])
    # same size is the identity in both modes
    for mode in ("bilinear", "area"):
        np.testing.assert_array_equal(P.resize(img, (4, 4), mode=mode, impl=impl), img)
    # bilinear 2x upscale of a row [0, 1]: half-pixel centers -> [0, .25, .75, 1]
    row = np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_allclose(P.resize(row, (1, 4), mode="bilinear", impl=impl),
                               [[0.0, 0.25, 0.75, 1.0]])
    # area 3 -> 2: output 0 covers [0, 1.5): (a + 0.5 b) / 1.5
    row3 = np.array([[3.0, 6.0, 9.0]], np.float32)
    np.testing.assert_allclose(P.resize(row3, (1, 2), mode="area", impl=impl),
                               [[(3 + 3) / 1.5, (3 + 9) / 1.5]], rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_geometry_and_padding(impl, rng):
    img = rng.integers(0, 255, (2049, 1537, 3)).astype(np.uint8)
    out, info = P.preprocess(img, "optical", 448, impl=impl)
    assert info.resized_hw == (448, 336) == P.resized_hw(2049, 1537, 448)
    assert info.scale == (336 / 1537, 448 / 2049)
    assert np.all(out[:, :, 336:] == 0) and np.any(out[:, :, 335] != 0)
    tall = np.ones((10, 1), np.uint8)
    out, info = P.preprocess(tall, SensorSpec("gray", "linear", 1, (0.0,), (1.0,)), 20, impl=impl)
    assert info.resized_hw == (20, 2)
    assert np.all(out[0, :, :2] > 0) and np.all(out[0, :, 2:] == 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_inf_and_nodata_are_neutral_not_propagated(impl, rng):
    img = rng.random((40, 30, 4)).astype(np.float32) * 3000
    img[3, 4, 1] = np.nan
    img[10, 10, :] = np.inf
    img[20, 5, 2] = -np.inf
    img[30, 29, 0] = 7.0  # nodata
    norm, invalid = P.normalize(img, MS4, nodata=7.0, impl=impl)
    assert invalid == 4
    assert np.all(np.isfinite(norm))
    assert norm[3, 4, 1] == 0 and np.all(norm[10, 10] == 0) and norm[20, 5, 2] == 0
    assert norm[30, 29, 0] == 0 and norm[3, 4, 0] != 0
    out, info = P.preprocess(img, MS4, 64, nodata=7.0, impl=impl)
    assert info.invalid_pixels == 4 and np.all(np.isfinite(out))
    # percentile statistics ignore invalid pixels (checked against numpy's own percentile)
    ir = rng.integers(1000, 2000, (50, 50)).astype(np.uint16)
    ir[0, 0] = 65535
    masked, _ = P.normalize(ir, "infrared", nodata=65535, impl=impl)
    lo, hi = np.percentile(ir.ravel()[1:].astype(np.float64), [2, 98])
    expect = (np.clip((ir.astype(np.float64) - lo) / (hi - lo), 0, 1) - 0.5) / 0.5
    assert masked[0, 0, 0] == 0
    np.testing.assert_allclose(masked[..., 0].ravel()[1:], expect.ravel()[1:], atol=1e-6)
    # complex SAR with a NaN part
    z = (rng.standard_normal((5, 5)) + 1j).astype(np.complex64)
    z[2, 2] = complex(np.nan, 1.0)
    out, n_bad = P.normalize(z, SAR_CPLX, impl=impl)
    assert n_bad == 1 and out[2, 2, 0] == 0 and np.all(np.isfinite(out))


@pytest.mark.parametrize("impl", IMPLS)
def test_constant_band_under_percentiles_is_defined(impl):
    out, _ = P.normalize(np.full((4, 4), 300, np.uint16), "infrared", impl=impl)
    np.testing.assert_array_equal(out, np.full((4, 4, 1), -1.0, np.float32))


# --- bad input: one test per rule, every implementation -----------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_wrong_dtype(impl):
    with pytest.raises(TypeError, match=r"image must have dtype .* got bool"):
        P.preprocess(np.ones((4, 4, 3), bool), "optical", 8, impl=impl)
    with pytest.raises(TypeError, match=r"image must have dtype .* got int8"):
        P.preprocess(np.ones((4, 4, 3), np.int8), "optical", 8, impl=impl)
    with pytest.raises(TypeError, match="image must be a numpy array"):
        P.preprocess(object(), "optical", 8, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_wrong_ndim(impl):
    with pytest.raises(ValueError, match=r"image must be .*ndim 2 or 3.*\[1, 4, 4, 3\]"):
        P.preprocess(np.ones((1, 4, 4, 3), np.uint8), "optical", 8, impl=impl)
    with pytest.raises(ValueError, match=r"ndim 2 or 3.*\[5\]"):
        P.resize(np.ones(5, np.float32), (2, 2), impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0, 3), (0, 0)])
def test_zero_size_image(impl, shape):
    with pytest.raises(ValueError, match="image must not be empty"):
        P.preprocess(np.ones(shape, np.uint8), "optical", 8, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_band_count_must_match_sensor(impl):
    with pytest.raises(ValueError, match=r"sensor 'optical' expects 3 band\(s\), got .* 4"):
        P.preprocess(np.ones((4, 4, 4), np.uint8), "optical", 8, impl=impl)
    with pytest.raises(ValueError, match=r"'multispectral' expects 4 band\(s\), got .* 13"):
        P.preprocess(np.ones((4, 4, 13), np.uint16), MS4, 8, impl=impl)
    any_bands = SensorSpec("ms", "linear", None, (0.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="statistics for 2 bands, got an image with 3"):
        P.preprocess(np.ones((4, 4, 3), np.uint16), any_bands, 8, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_real_complex_mismatch(impl):
    with pytest.raises(TypeError, match="sar_input='amplitude'.*real dtype, got complex64"):
        P.preprocess(np.ones((4, 4), np.complex64), "sar", 8, impl=impl)
    with pytest.raises(TypeError, match="complex dtype, got float32"):
        P.preprocess(np.ones((4, 4), np.float32), SAR_CPLX, 8, impl=impl)
    with pytest.raises(TypeError, match="takes real pixels, got complex64"):
        P.preprocess(np.ones((4, 4, 3), np.complex64), "optical", 8, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_size_mode_nodata(impl):
    img = np.ones((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        P.preprocess(img, "optical", 0, impl=impl)
    with pytest.raises(TypeError, match="size must be an integer, got float"):
        P.preprocess(img, "optical", 8.0, impl=impl)
    with pytest.raises(ValueError, match="resize_mode must be one of .* got 'cubic'"):
        P.preprocess(img, "optical", 8, resize_mode="cubic", impl=impl)
    with pytest.raises(ValueError, match="nodata must not be NaN"):
        P.preprocess(img, "optical", 8, nodata=math.nan, impl=impl)
    with pytest.raises(ValueError, match=r"resize: out_hw must be >= 1 in both dims, got \(0, 3\)"):
        P.resize(np.ones((4, 4), np.float32), (0, 3), impl=impl)
    with pytest.raises(TypeError, match="image must have dtype float32"):
        P.resize(np.ones((4, 4), np.uint8), (2, 2), impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_band_without_valid_pixel_under_percentiles(impl):
    img = np.full((3, 3, 2), np.nan, np.float32)
    img[..., 0] = 1.0
    with pytest.raises(ValueError, match="band 1 has no valid pixel"):
        P.preprocess(img, "infrared", 8, impl=impl)


def test_unknown_sensor_and_bad_spec():
    with pytest.raises(ValueError, match=r"sensor must be one of \['infrared', .* got 'lidar'"):
        get_sensor("lidar")
    with pytest.raises(ValueError, match=r"std must be finite and > 0, got \(0.0,\)"):
        SensorSpec("x", "linear", 1, (0.0,), (0.0,))
    with pytest.raises(ValueError, match="percentiles must satisfy"):
        SensorSpec("x", "percentile", 1, (0.0,), (1.0,), percentiles=(50.0, 50.0))


def test_impl_argument():
    img = np.ones((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"impl must be one of .* got 'gpu'"):
        P.preprocess(img, "optical", 8, impl="gpu")


@requires_native
def test_native_checks_its_own_inputs():
    C = _ext.native()
    img = np.ones((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"params must be \[C, 4\] with C = 3 bands, got \[2, 4\]"):
        C.preprocess(img, 0, np.zeros((2, 4)), None, 4, 4, 8, "auto")
    with pytest.raises(TypeError, match="params must have dtype float64, got float32"):
        C.normalize(img, 0, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"kind must be a code in 0..4 .* got 9"):
        C.normalize(img, 9, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"resized image \(9, 4\) must fit in size 8"):
        C.preprocess(img, 0, np.zeros((3, 4)), None, 9, 4, 8, "auto")
    with pytest.raises(TypeError, match="does not fit the normalization kind 3"):
        C.normalize(img, 3, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"image must be \[H, W, C\] \(3 dims\), got \[4, 4\]"):
        C.resize(np.ones((4, 4), np.float32), 2, 2, "area")


def test_estimate_band_stats(rng):
    a = rng.standard_normal((30, 20, 3)) * [1, 2, 3] + [10, 20, 30]
    a[0, 0, 1] = np.nan
    mean, std = estimate_band_stats([a[:15], a[15:]])
    valid = a.reshape(-1, 3)
    np.testing.assert_allclose(mean, np.nanmean(valid, 0))
    np.testing.assert_allclose(std, np.nanstd(valid, 0))
    with pytest.raises(ValueError, match=r"bands \[0\] are constant"):
        estimate_band_stats(np.ones((3, 3, 1)))


# --- CUDA ----------------------------------------------------------------------------------------

def _cuda_torch():
    torch = pytest.importorskip("torch", reason="the CUDA preprocess tests use torch tensors")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    if not _ext.native_available() or not _ext.build_info()["cuda_compiled"]:
        pytest.skip("earthx_sdk._C was built without CUDA")
    return torch


@pytest.mark.gpu
@pytest.mark.parametrize("hw", AWKWARD_SHAPES)
@pytest.mark.parametrize("sensor,dtype", [c for c in CASES if c[1] != np.complex64])
def test_preprocess_cuda_matches_ref(rng, hw, sensor, dtype):
    torch = _cuda_torch()
    img = _image(rng, hw, sensor, dtype)
    spec = _spec(sensor, dtype)
    for layout, arr in (("hwc", img), ("chw", np.ascontiguousarray(img.transpose(2, 0, 1)))):
        dev = torch.from_numpy(arr).cuda()
        out, info = P.preprocess_cuda(dev, spec, 64, layout=layout)
        torch.cuda.synchronize()
        ref, _ = P.preprocess(img, spec, 64, impl="ref")
        assert info.invalid_pixels is None
        _assert_close(out.cpu().numpy(), ref)


def test_preprocess_cuda_rejects_host_arrays():
    with pytest.raises(TypeError, match="image must expose __cuda_array_interface__"):
        P.preprocess_cuda(np.zeros((4, 4, 3), np.uint8), "optical", 8)


@requires_native
def test_preprocess_cuda_without_cuda_build_says_so():
    if _ext.build_info()["cuda_compiled"]:
        # the argument checks run before any device work: a null pointer is refused by name
        with pytest.raises(ValueError, match="src and dst must be device pointers, got 0"):
            _ext.native().preprocess_cuda(0, [4, 4, 3], [12, 3, 1], "|u1", 0,
                                          np.zeros((3, 4)), None, None, 0, 4, 4, 8, "auto", 0)
    else:
        with pytest.raises(RuntimeError, match="has no CUDA"):
            _ext.native().preprocess_cuda(1, [4, 4, 3], [12, 3, 1], "|u1", 0,
                                          np.zeros((3, 4)), None, None, 1, 4, 4, 8, "auto", 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_prompts_map_through_the_image_geometry(impl):
    # A bright 40x60 block in a 300x200 image, and a box prompt around it in image pixels: on the
    # model input and on a 1/4 feature grid the rasterized box covers the block's pixels.
    from earthx_sdk.ops.rasterize import raster_box

    img = np.zeros((300, 200, 3), np.uint8)
    img[100:140, 50:110] = 255
    x, info = P.preprocess(img, "optical", 112, impl=impl)
    bright = x[0] > 1.0  # [112, 112]
    for grid in ((112, 112), (28, 28)):
        box = raster_box([50, 100, 110, 140], grid, scale=info.grid_scale(grid), impl=impl)
        f = grid[0] / 112
        ys, xs = np.nonzero(box)
        # the box spans the block, mapped: 50 * 112/300 * f ... 110 * 112/300 * f
        k = info.scale[0] * f
        assert xs.min() == round(50 * k) and xs.max() == round(110 * k) - 1
        if grid == (112, 112):
            inside = bright[ys, xs]
            assert inside.mean() > 0.9  # resampling blurs the block's edge by one pixel at most
