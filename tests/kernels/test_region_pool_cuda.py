"""CUDA region_pool (csrc/cuda/region_pool.cu via _C.region_pool_cuda): parity with
region_pool_ref on a GPU (skipped without one), and, everywhere, the glue's argument checks, the
availability reason and the architectures the build compiled."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from earthx_sdk import _ext  # noqa: E402
from earthx_sdk.kernels import region_pool_cuda as K  # noqa: E402
from earthx_sdk.ops.region_pool import region_pool, region_pool_ref  # noqa: E402
from tests.conftest import requires_native  # noqa: E402
from tests.region_pool_cases import PARITY, PoolCase, make_inputs  # noqa: E402

# fp32: (rtol, atol) against the reference. Low precision: the flash-attention rule, the kernel's
# error against the fp32 reference at most twice the low-precision reference's own, plus a floor.
TOL = {torch.float32: (1e-5, 1e-5)}
LOW_PRECISION_FLOOR = 1e-3
LAYOUTS = ("contiguous", "channels_last", "strided")


def _cuda_compiled() -> bool:
    return _ext.native_available() and bool(_ext.build_info()["cuda_compiled"])


requires_cuda_build = pytest.mark.skipif(
    not _cuda_compiled(), reason="earthx_sdk._C was built without CUDA (or is not built)")


def _require_gpu():
    ok, why = K.available()
    if not ok:
        pytest.skip(f"CUDA region_pool not available: {why}")


def _layout(f: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout (non-contiguous for all but "contiguous")."""
    if layout == "channels_last":
        return f.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # every other column of a wider, taller buffer
        b, c, h, w = f.shape
        big = torch.zeros(b, c, h + 1, 2 * w, dtype=f.dtype, device=f.device)
        big[:, :, :h, ::2] = f
        return big[:, :, :h, ::2]
    return f


def _run(case: PoolCase, dtype, layout="contiguous"):
    """(kernel output on the CPU, fp32 reference, reference in `dtype`) for a case."""
    feats, boxes, masks = make_inputs(case, seed=len(case.name), dtype=dtype)
    dev = [_layout(f.cuda(), layout) for f in feats]
    out = region_pool(dev, boxes.cuda(), None if masks is None else masks.cuda(), case.grid,
                      image_size=case.image_size, impl="cuda")
    torch.cuda.synchronize()
    ref32 = region_pool_ref([f.float() for f in feats], boxes.float(),
                            None if masks is None else masks.float(), case.grid,
                            image_size=case.image_size)
    ref = region_pool_ref(feats, boxes, masks, case.grid, image_size=case.image_size)
    return out.cpu(), ref32, ref


# --- parity on a GPU -----------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", PARITY, ids=lambda c: c.name)
def test_matches_ref_fp32(case, layout):
    _require_gpu()
    out, ref32, _ = _run(case, torch.float32, layout)
    assert out.dtype == torch.float32 and out.shape == ref32.shape
    rtol, atol = TOL[torch.float32]
    torch.testing.assert_close(out, ref32, rtol=rtol, atol=atol)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", PARITY, ids=lambda c: c.name)
def test_low_precision_within_twice_the_reference_error(case, dtype):
    _require_gpu()
    out, ref32, ref = _run(case, dtype, "channels_last" if len(case.scales) == 2 else "contiguous")
    assert out.dtype == dtype
    err = (out.float() - ref32).abs().max().item()
    ref_err = (ref.float() - ref32).abs().max().item()
    print(f"{case.name} {dtype}: kernel error {err:.3e}, reference error {ref_err:.3e}")
    assert err <= 2 * ref_err + LOW_PRECISION_FLOOR


@pytest.mark.gpu
def test_awkward_grids_channels_and_scales():
    # K = 12: 144 samples, more than one shared-memory chunk (128); C = 129: a second, partial
    # channel tile; 9 maps: two launches (at most 8 maps each); a map with no channels.
    _require_gpu()
    g = torch.Generator().manual_seed(5)
    shapes = [(129, 9, 11), (1, 3, 2), (0, 4, 4)] + [(2, 5 + i, 4) for i in range(7)]
    feats = [torch.randn(2, c, h, w, generator=g) for c, h, w in shapes]
    boxes = torch.tensor([[[-3.0, 2.0, 40.0, 25.0], [10.0, 10.0, 10.0, 10.0]],
                          [[30.0, 5.0, 2.0, 28.0], [0.0, 0.0, 44.0, 30.0]]])  # flipped, point
    masks = (torch.rand(2, 2, 7, 9, generator=g) > 0.5).float()
    masks[1, 1] = 0  # an empty mask: exactly 0
    for m in (None, masks):
        out = region_pool([f.cuda() for f in feats], boxes.cuda(), None if m is None else m.cuda(),
                          12, image_size=(30, 44), impl="cuda").cpu()
        want = region_pool_ref(feats, boxes, m, 12, image_size=(30, 44))
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[1, 1], torch.zeros(out.shape[-1]))


@pytest.mark.gpu
def test_no_regions_and_float64():
    _require_gpu()
    feats = [torch.randn(2, 3, 8, 8, device="cuda")]
    out = K.region_pool(feats, torch.zeros(2, 0, 4, device="cuda"), None, 3, (32, 32))
    assert out.shape == (2, 0, 3)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16, got torch.float64"):
        K.region_pool([feats[0].double()], torch.zeros(2, 1, 4, device="cuda"), None, 3, (32, 32))


# --- the Python wrapper, before any device work --------------------------------------------------

def test_requires_grad_is_refused_forward_only():
    feat = torch.randn(1, 2, 4, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="forward only, but an input requires grad"):
        K.region_pool([feat], torch.zeros(1, 1, 4), None, 2, (8, 8))


def test_cpu_tensors_are_refused():
    with pytest.raises(ValueError, match="features must be CUDA tensors, got cpu"):
        K.region_pool([torch.randn(1, 2, 4, 4)], torch.zeros(1, 1, 4), None, 2, (8, 8))


def test_available_says_why_not():
    ok, why = K.available()
    if not _ext.native_available():
        assert not ok and "earthx_sdk._C is not available" in why
    elif not _cuda_compiled():
        assert not ok and "built without CUDA" in why
    elif _ext.native().cuda_device_count() <= 0:
        assert not ok and "no CUDA device visible" in why
    elif not torch.cuda.is_available():
        assert not ok and "torch has no CUDA" in why
    else:
        assert ok and why == ""
    if not ok:
        with pytest.raises(RuntimeError, match="impl='cuda' is not available here"):
            region_pool([torch.randn(1, 2, 4, 4)], torch.zeros(1, 1, 4), grid=2, image_size=8,
                        impl="cuda")


# --- the glue (_C.region_pool_cuda): checks before any device work -------------------------------

def _args(**kw):
    """Valid arguments with fake (never dereferenced) pointers; `kw` replaces some."""
    a = dict(features=[(0x1000, [2, 3, 8, 8], [192, 64, 8, 1]), (0x2000, [2, 5, 4, 4],
                                                                  [80, 16, 4, 1])],
             dtype="float32", boxes=0x3000, masks=0x4000, mask_hw=[6, 6], batch=2, regions=3,
             grid=7, image_hw=[32, 32], out=0x5000, stream=0)
    a.update(kw)
    return a


BAD = [
    ("null map", dict(features=[(0, [2, 3, 8, 8], [192, 64, 8, 1])]), ValueError,
     r"features\[0\] must be a device pointer, got 0"),
    ("null boxes", dict(boxes=0), ValueError, "boxes and out must be device pointers, got 0"),
    ("null out", dict(out=0), ValueError, "boxes and out must be device pointers, got 12288 and 0"),
    ("dtype", dict(dtype="float64"), TypeError,
     "dtype must be 'float32', 'float16' or 'bfloat16', got 'float64'"),
    ("batch mismatch", dict(batch=3), ValueError,
     r"features\[0\] must be \[B, C, H, W\] with B = batch = 3, got \[2, 3, 8, 8\]"),
    ("rank", dict(features=[(0x1000, [2, 3, 8], [24, 8, 1])]), ValueError,
     r"features\[0\] must have a shape \[B, C, H, W\] and 4 strides, got \[2, 3, 8\]"),
    ("empty map", dict(features=[(0x1000, [2, 3, 0, 8], [0, 0, 8, 1])]), ValueError,
     r"features\[0\] must have C, H, W >= 1, got \[2, 3, 0, 8\]"),
    ("entry form", dict(features=[(0x1000, [2, 3, 8, 8])]), ValueError,
     r"features\[0\] must be \(pointer, \[B, C, H, W\], strides in elements\)"),
    ("no maps", dict(features=[]), ValueError, "features must hold 1 to 8 maps, got 0"),
    ("9 maps", dict(features=[(0x1000, [2, 1, 2, 2], [4, 4, 2, 1])] * 9), ValueError,
     "features must hold 1 to 8 maps, got 9"),
    ("grid 0", dict(grid=0), ValueError, "grid must be >= 1, got 0"),
    ("regions 0", dict(regions=0), ValueError, "regions must be >= 1, got 0"),
    ("blocks", dict(features=[(0x1000, [2**40, 1, 1, 1], [1, 1, 1, 1])], batch=2**40,
                    regions=2**40), ValueError, r"batch \* regions must be <= 2147483647"),
    ("image_hw", dict(image_hw=[32, 0]), ValueError,
     r"image_hw must be \(H, W\) >= 1, got \[32, 0\]"),
    ("mask_hw", dict(mask_hw=[6]), ValueError, r"mask_hw must be \(Hm, Wm\) >= 1 with masks"),
    ("channels", dict(features=[(0x1000, [2, 128 * 65535 + 1, 1, 1], [1, 1, 1, 1])]), ValueError,
     "at most 8388480 channels in all"),
]


@requires_cuda_build
@pytest.mark.parametrize("kw,exc,msg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_glue_refuses_bad_arguments_before_device_work(kw, exc, msg):
    # On a machine without a GPU a launch would fail with RuntimeError: the named errors prove
    # that the checks come first (and on a GPU the fake pointers are never dereferenced).
    with pytest.raises(exc, match=f"region_pool_cuda: {msg}"):
        _ext.native().region_pool_cuda(**_args(**kw))


@requires_cuda_build
def test_glue_without_a_device_fails_cleanly_at_launch():
    if _ext.native().cuda_device_count() > 0:
        pytest.skip("a GPU is visible: the fake pointers of this test must not reach a kernel")
    with pytest.raises(RuntimeError, match="region_pool_cuda: kernel launch failed: "):
        _ext.native().region_pool_cuda(**_args(masks=0, mask_hw=[]))


@requires_native
def test_glue_without_cuda_build_says_so():
    if _cuda_compiled():
        pytest.skip("this build has CUDA (see the argument-check tests)")
    with pytest.raises(RuntimeError, match="built without CUDA"):
        _ext.native().region_pool_cuda(**_args())


# --- the build -----------------------------------------------------------------------------------

def _so() -> Path:
    return Path(_ext.native().__file__)


@requires_cuda_build
def test_build_embeds_sm_87_and_sm_90():
    data = _so().read_bytes()
    for arch in ("sm_87", "sm_90"):
        assert f".target {arch}".encode() in data, f"no {arch} code in {_so().name}"
    assert b"region_pool_kernel" in data


def _cuobjdump() -> str | None:
    tool = shutil.which("cuobjdump")
    spec = importlib.util.find_spec("triton")
    if tool is None and spec is not None and spec.origin:  # Triton ships one
        bundled = Path(spec.origin).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        tool = str(bundled) if bundled.exists() else None
    return tool


@requires_cuda_build
def test_region_pool_kernel_has_sass_for_sm_87_and_sm_90():
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (CUDA toolkit bin or Triton's bundled copy)")
    dump = subprocess.run([tool, "--dump-elf-symbols", str(_so())], capture_output=True,
                          text=True, check=True).stdout
    archs = set()
    for section in dump.split("Fatbin elf code:")[1:]:
        arch = re.search(r"arch = (sm_\d+)", section)
        if arch and re.search(r"region_pool_kernelI(f|6__half|13__nv_bfloat16)E", section):
            archs.add(arch.group(1))
    assert {"sm_87", "sm_90"} <= archs, f"region_pool_kernel compiled for {sorted(archs)}"


def test_supports_refuses_training_and_float64():
    from earthx_sdk.kernels import region_pool_cuda as K

    f = [torch.zeros(1, 2, 4, 4, requires_grad=True)]
    b = torch.zeros(1, 1, 4)
    ok, why = K.supports(f, b, None)
    assert not ok and "requires grad" in why
    with torch.no_grad():
        assert K.supports(f, b, None) == (True, "")
    ok, why = K.supports([torch.zeros(1, 2, 4, 4, dtype=torch.float64)], b, None)
    assert not ok and "float64" in why
