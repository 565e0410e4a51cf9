"""region_pool's C++ CPU kernel (earthx_sdk._C.region_pool via earthx_sdk.kernels.region_pool_cpu)
against region_pool_ref: parity over the shared case list, strided maps, batch and grid edges,
auto dispatch, and one test per input rule (from the kernel module and from _C directly)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from earthx_sdk import _ext  # noqa: E402
from earthx_sdk.kernels import region_pool_cpu  # noqa: E402
from earthx_sdk.ops import region_pool as ops  # noqa: E402
from tests.cases import TOL  # noqa: E402
from tests.region_pool_cases import PARITY, PoolCase, make_inputs  # noqa: E402

pytestmark = pytest.mark.skipif(not region_pool_cpu.available()[0],
                                reason=f"region_pool CPU kernel: {region_pool_cpu.available()[1]}")

RTOL, ATOL = TOL[np.float32]


def _ref(feats, boxes, masks, grid, image_size):
    return ops.region_pool_ref(feats, boxes, masks, grid, image_size=image_size)


def _kernel(feats, boxes, masks, grid, image_size):
    return region_pool_cpu.region_pool(feats, boxes, masks, grid, (image_size, image_size))


def _assert_parity(got, want, label):
    err = (got - want).abs().max().item() if want.numel() else 0.0
    print(f"{label}: max |cpu - ref| = {err:.2e}")
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", PARITY, ids=[c.name for c in PARITY])
def test_parity_with_reference(case):
    feats, boxes, masks = make_inputs(case)
    got = _kernel(feats, boxes, masks, case.grid, case.image_size)
    assert got.shape == (case.batch, case.regions, sum(c for c, _, _ in case.scales))
    _assert_parity(got, _ref(feats, boxes, masks, case.grid, case.image_size), case.name)


SMALL = PoolCase("small", 2, 7, ((5, 14, 14), (3, 7, 9)), 56, 4, True, 11)

LAYOUTS = {
    "channels-last": lambda f: f.contiguous(memory_format=torch.channels_last),
    "channel-slice": lambda f: torch.stack([f, -f], 2).flatten(1, 2)[:, ::2],
    "spatial-slice": lambda f: torch.nn.functional.pad(f, (2, 3, 1, 2))[:, :, 1:-2, 2:-3],
    "transposed-hw": lambda f: f.transpose(2, 3).contiguous().transpose(2, 3),
    "channels-last-sliced": lambda f: torch.stack([-f, f], 2).flatten(1, 2).contiguous(
        memory_format=torch.channels_last)[:, 1::2],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_maps_match_contiguous(layout):
    feats, boxes, masks = make_inputs(SMALL, seed=1)
    strided = [LAYOUTS[layout](f) for f in feats]
    assert all(torch.equal(s, f) for s, f in zip(strided, feats, strict=True))
    assert not all(s.is_contiguous() for s in strided)
    got = _kernel(strided, boxes, masks, SMALL.grid, SMALL.image_size)
    _assert_parity(got, _ref(feats, boxes, masks, SMALL.grid, SMALL.image_size), layout)


def test_strided_masks_and_boxes():
    feats, boxes, masks = make_inputs(SMALL, seed=2)
    boxes_t = boxes.transpose(0, 1).contiguous().transpose(0, 1)  # [B, R, 4], R-major
    masks_t = masks.transpose(2, 3).contiguous().transpose(2, 3)
    got = _kernel(feats, boxes_t, masks_t, SMALL.grid, SMALL.image_size)
    _assert_parity(got, _ref(feats, boxes, masks, SMALL.grid, SMALL.image_size), "strided")


@pytest.mark.parametrize("masks_on", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("grid", [1, 7])
@pytest.mark.parametrize("batch", [1, 3])
def test_batch_and_grid(batch, grid, masks_on):
    case = PoolCase("bg", batch, 11, ((9, 28, 28), (4, 8, 8)), 112, grid, masks_on, 13)
    feats, boxes, masks = make_inputs(case, seed=3)
    got = _kernel(feats, boxes, masks, grid, case.image_size)
    _assert_parity(got, _ref(feats, boxes, masks, grid, case.image_size),
                   f"B={batch} K={grid} masks={masks_on}")


def test_non_square_image_and_float64_boxes_and_masks_are_cast_like_the_reference():
    g = torch.Generator().manual_seed(4)
    feats = [torch.randn(2, 6, 9, 15, generator=g), torch.randn(2, 2, 5, 4, generator=g)]
    boxes = (torch.rand(2, 5, 4, generator=g, dtype=torch.float64) * 60 - 10)
    masks = torch.rand(2, 5, 7, 3, generator=g, dtype=torch.float64)
    got = region_pool_cpu.region_pool(feats, boxes, masks, 3, (36, 60))
    want = ops.region_pool_ref(feats, boxes, masks, 3, image_size=(36, 60))
    _assert_parity(got, want, "non-square")


def test_empty_mask_gives_exact_zeros_and_zero_regions_give_an_empty_result():
    feats, boxes, masks = make_inputs(SMALL, seed=5)
    masks[1, 2] = 0
    out = _kernel(feats, boxes, masks, SMALL.grid, SMALL.image_size)
    assert torch.equal(out[1, 2], torch.zeros(8))
    empty = _kernel(feats, boxes[:, :0], masks[:, :0], SMALL.grid, SMALL.image_size)
    assert empty.shape == (2, 0, 8)


def test_numpy_in_numpy_out_torch_in_torch_out():
    feats, boxes, masks = make_inputs(SMALL, seed=6)
    out_t = _kernel(feats, boxes, masks, SMALL.grid, SMALL.image_size)
    out_n = _kernel([f.numpy() for f in feats], boxes.numpy(), masks.numpy(), SMALL.grid,
                    SMALL.image_size)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    assert isinstance(out_n, np.ndarray) and out_n.dtype == np.float32
    np.testing.assert_array_equal(out_n, out_t.numpy())


def test_same_result_for_any_thread_count():
    case = PoolCase("threads", 1, 2, ((300, 16, 16), (70, 4, 4)), 64, 5, True, 9)
    feats, boxes, masks = make_inputs(case, seed=7)
    C = _ext.native()
    previous = C.set_num_threads(1)
    try:
        one = _kernel(feats, boxes, masks, case.grid, case.image_size)
        C.set_num_threads(2)
        two = _kernel(feats, boxes, masks, case.grid, case.image_size)
    finally:
        C.set_num_threads(previous)
    assert torch.equal(one, two)


# --- dispatch ------------------------------------------------------------------------------------

def test_auto_picks_cpu_kernel_for_float32_cpu_inference(monkeypatch):
    feats, boxes, masks = make_inputs(SMALL, seed=8)
    assert "cpu" in ops.available_impls("cpu")
    calls = []
    real = region_pool_cpu.region_pool

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(region_pool_cpu, "region_pool", spy)
    out = ops.region_pool(feats, boxes, masks, SMALL.grid, image_size=SMALL.image_size)
    assert len(calls) == 1
    _assert_parity(out, _ref(feats, boxes, masks, SMALL.grid, SMALL.image_size), "auto")


@pytest.mark.parametrize("why", ["float64", "bfloat16", "requires_grad"])
def test_auto_runs_the_reference_where_the_kernel_cannot(why, monkeypatch):
    feats, boxes, masks = make_inputs(SMALL, seed=9)
    if why == "requires_grad":
        feats = [f.requires_grad_() for f in feats]
    else:
        feats = [f.to(getattr(torch, why)) for f in feats]
    monkeypatch.setattr(region_pool_cpu, "region_pool", lambda *a: pytest.fail("kernel called"))
    out = ops.region_pool(feats, boxes, masks, SMALL.grid, image_size=SMALL.image_size)
    assert out.dtype == feats[0].dtype
    assert out.requires_grad == (why == "requires_grad")


def test_requires_grad_under_no_grad_runs_the_kernel():
    feats, boxes, masks = make_inputs(SMALL, seed=10)
    feats = [f.requires_grad_() for f in feats]
    with torch.no_grad():
        got = _kernel(feats, boxes, masks, SMALL.grid, SMALL.image_size)
        want = _ref(feats, boxes, masks, SMALL.grid, SMALL.image_size)
    _assert_parity(got, want, "no_grad")


# --- bad input: the kernel module ---------------------------------------------------------------

def _ok():
    return make_inputs(SMALL, seed=11)


def _expect(exc, words, feats, boxes, masks, grid=4, image_hw=(56, 56)):
    with pytest.raises(exc, match=words):
        region_pool_cpu.region_pool(feats, boxes, masks, grid, image_hw)


def test_module_float64_features_raise_type_error_naming_ref():
    f, b, m = _ok()
    _expect(TypeError, r"features\[0\] must be float32, got torch.float64; use impl='ref'",
            [f[0].double()], b, m)


def test_module_float16_features_raise_type_error_naming_ref():
    f, b, m = _ok()
    _expect(TypeError, r"features\[1\] must be float32, got torch.float16; use impl='ref'",
            [f[0], f[1].half()], b, m)


def test_module_float64_numpy_features_raise_type_error():
    f, b, m = _ok()
    _expect(TypeError, r"features\[0\] must be float32, got float64", [f[0].double().numpy()],
            b, m)


def test_module_integer_boxes_raise_type_error():
    f, b, m = _ok()
    _expect(TypeError, "boxes must be float32, got torch.int64", f, b.long(), m)


def test_module_device_tensor_raises_value_error():
    f, b, m = _ok()
    _expect(ValueError, "features\\[0\\] must be a CPU tensor, got one on meta",
            [f[0].to("meta")], b, m)


def test_module_requires_grad_raises_runtime_error():
    f, b, m = _ok()
    _expect(RuntimeError, "requires grad.*no backward.*impl='ref'",
            [f[0].requires_grad_()], b, m)


def test_module_features_not_a_list_raise_type_error():
    f, b, m = _ok()
    _expect(TypeError, "features must be a list", f[0], b, m)


def test_module_other_objects_raise_type_error():
    f, b, m = _ok()
    _expect(TypeError, "boxes must be a torch.Tensor or a numpy array, got list", f,
            b.tolist(), m)


def test_module_mismatched_batch_raises_value_error():
    f, b, m = _ok()
    _expect(ValueError, "one batch size B, features\\[0\\] has 2, features\\[1\\] has 1",
            [f[0], f[1][:1]], b, m)


def test_module_unavailable_kernel_raises_runtime_error(monkeypatch):
    f, b, m = _ok()
    monkeypatch.setattr(region_pool_cpu, "available", lambda: (False, "not built"))
    _expect(RuntimeError, "not available here: not built", f, b, m)


# --- bad input: _C directly, one rule each ------------------------------------------------------

def _np_ok():
    f, b, m = _ok()
    return [x.numpy() for x in f], b.numpy(), m.numpy()


def _c_expect(exc, words, feats, boxes, masks, grid=4, image_h=56, image_w=56):
    with pytest.raises(exc, match=words):
        _ext.native().region_pool(feats, boxes, masks, grid, image_h, image_w)


def test_c_empty_features():
    _, b, m = _np_ok()
    _c_expect(ValueError, "region_pool: features must hold at least one map", [], b, m)


def test_c_features_not_float32():
    f, b, m = _np_ok()
    _c_expect(TypeError, r"region_pool: features\[1\] must have dtype float32, got float64",
              [f[0], f[1].astype(np.float64)], b, m)


def test_c_features_not_4d():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"features\[0\] must be \[B, C, H, W\] \(4 dims\), got \[5, 14, 14\]",
              [f[0][0]], b, m)


def test_c_features_empty_plane():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"features\[0\] must have H, W >= 1, got \[2, 5, 0, 14\]",
              [f[0][:, :, :0]], b, m)


def test_c_mismatched_batch():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"one batch size B, features\[0\] has 2, features\[1\] has 1",
              [f[0], f[1][:1]], b, m)


def test_c_boxes_not_float32():
    f, b, m = _np_ok()
    _c_expect(TypeError, "boxes must have dtype float32, got float64", f, b.astype(np.float64), m)


def test_c_boxes_not_b_r_4():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"boxes must be \[B, R, 4\], got \[2, 7, 3\]", f, b[..., :3], m)


def test_c_boxes_of_another_batch():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"boxes must be \[B, R, 4\] with the features' B = 2, got \[1, 7, 4\]",
              f, b[:1], m)


def test_c_boxes_not_finite():
    f, b, m = _np_ok()
    b = b.copy()
    b[1, 3, 2] = np.inf
    _c_expect(ValueError, r"boxes must be finite, got .* at boxes\[1, 3\]", f, b, m)


def test_c_masks_not_float32():
    f, b, m = _np_ok()
    _c_expect(TypeError, "masks must have dtype float32, got bool", f, b, m > 0)


def test_c_masks_of_another_batch():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"masks must be \[B, R, Hm, Wm\] with boxes' B, R = \[2, 7\], "
              r"got \[1, 7, 11, 11\]", f, b, m[:1])


def test_c_masks_of_another_region_count():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"masks must be \[B, R, Hm, Wm\] with boxes' B, R = \[2, 7\], "
              r"got \[2, 6, 11, 11\]", f, b, m[:, :6])


def test_c_masks_empty_plane():
    f, b, m = _np_ok()
    _c_expect(ValueError, r"masks must have Hm, Wm >= 1, got \[2, 7, 11, 0\]", f, b, m[..., :0])


@pytest.mark.parametrize("grid", [0, -3])
def test_c_grid_below_one(grid):
    f, b, m = _np_ok()
    _c_expect(ValueError, f"region_pool: grid must be >= 1, got {grid}", f, b, m, grid=grid)


def test_c_image_size_below_one():
    f, b, m = _np_ok()
    _c_expect(ValueError, "region_pool: image_w must be >= 1, got 0", f, b, m, image_w=0)

