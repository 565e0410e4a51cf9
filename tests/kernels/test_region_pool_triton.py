"""The Triton region_pool kernels against region_pool_ref (the spec).

`interpreter` tests run the kernels on CPU under TRITON_INTERPRET=1 (tests/conftest.py sets it
where no GPU exists), or compiled on CUDA where a GPU is present; shapes stay tiny because the
interpreter runs each program in numpy. `gpu` tests need CUDA: larger cases, fp16/bf16.
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from earthx_sdk.kernels.triton import region_pool as rpt  # noqa: E402
from earthx_sdk.ops.region_pool import region_pool, region_pool_ref  # noqa: E402
from tests.region_pool_cases import PARITY, PoolCase, make_inputs  # noqa: E402

# max abs error of the kernel vs the reference, by dtype (fp16/bf16: the flash-attention rule)
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
LOW_PRECISION_FLOOR = 1e-3

_OK, _WHY = rpt.available()
_INTERPRET = rpt._interpret()
# Where the interpreter tests run: CPU tensors under the interpreter, else a CUDA device.
DEV = "cpu" if _INTERPRET else "cuda"

needs_kernel = pytest.mark.skipif(not _OK, reason=f"Triton region_pool unavailable: {_WHY}")
needs_gpu = pytest.mark.skipif(not (torch.cuda.is_available() and _OK),
                               reason=f"needs an NVIDIA GPU and Triton ({_WHY or 'no CUDA'})")


def _tiny(r, c, n, masks, grid=3, batch=1):
    # 28 px image: scales of 7x7, 3x3, 2x2 (strides 4, 8, 14, as the shared case list's)
    sides = (7, 3, 2)
    return PoolCase(f"R{r}-C{c}-S{n}-{'mask' if masks else 'nomask'}-K{grid}", batch, r,
                    tuple((c, s, s) for s in sides[:n]), 28, grid, masks, 5)


# R in {1, 7} x C in {1, 5} x 1-3 scales x masks on/off; R = 7 cycles through every box kind
# of make_inputs (inside, partly outside, wholly outside, zero-area, point).
TINY = [
    _tiny(1, 1, 1, False), _tiny(1, 5, 2, True), _tiny(7, 1, 3, True),
    _tiny(7, 5, 1, False, grid=7), _tiny(7, 5, 3, True, grid=2, batch=2), _tiny(7, 1, 2, False, 1),
]
# Two of the shared cases with C = 1 (112 px image, B = 2).
SHARED = [c for c in PARITY if c.name in ("R1-C1-S2-nomask", "R7-C1-S3-mask")]


def _run(case, dtype=torch.float32, device=DEV, seed=0):
    feats, boxes, masks = make_inputs(case, seed=seed, dtype=dtype, device=device)
    hw = (case.image_size, case.image_size)
    out = rpt.region_pool(feats, boxes, masks, case.grid, hw)
    ref = region_pool_ref(feats, boxes, masks, case.grid, image_size=hw)
    return out, ref


def _ref_fp32(feats, boxes, masks, grid, hw):
    return region_pool_ref([f.float() for f in feats], boxes.float(),
                           None if masks is None else masks.float(), grid, image_size=hw)


# ------------------------------------------------------------------------- availability, API
@pytest.mark.interpreter
def test_available_says_why():
    ok, why = rpt.available()
    assert isinstance(ok, bool) and isinstance(why, str)
    assert ok == (why == "")
    if _INTERPRET:
        assert ok, why


# ------------------------------------------------------------------------- forward parity
@pytest.mark.interpreter
@needs_kernel
@pytest.mark.parametrize("case", TINY + SHARED, ids=lambda c: c.name)
def test_forward_matches_reference_fp32(case):
    out, ref = _run(case)
    assert out.shape == ref.shape == (case.batch, case.regions, sum(s[0] for s in case.scales))
    assert out.dtype == torch.float32
    err = (out - ref).abs().max().item()
    assert err <= TOL[torch.float32], f"{case.name}: max error {err:.3g}"



@pytest.mark.interpreter
@needs_kernel
def test_forward_non_contiguous_inputs():
    case = _tiny(7, 5, 2, True)
    feats, boxes, masks = make_inputs(case, device=DEV)
    hw = (28, 28)
    # channels-last; every other channel of a wider map (the same values as feats[1]);
    # boxes with a last stride of 2; masks stored column-major
    nc = [feats[0].contiguous(memory_format=torch.channels_last),
          torch.stack([feats[1], -feats[1]], 2).flatten(1, 2)[:, ::2]]
    assert not nc[0].is_contiguous() and not nc[1].is_contiguous()
    assert torch.equal(nc[1], feats[1])
    boxes_nc = torch.stack([boxes, boxes], -1)[..., 0]  # [B, R, 4]
    masks_nc = masks.transpose(2, 3).contiguous().transpose(2, 3)
    assert not boxes_nc.is_contiguous() and not masks_nc.is_contiguous()
    out = rpt.region_pool(nc, boxes_nc, masks_nc, case.grid, hw)
    ref = region_pool_ref(feats, boxes, masks, case.grid, image_size=hw)
    assert (out - ref).abs().max().item() <= TOL[torch.float32]


@pytest.mark.interpreter
@needs_kernel
def test_forward_float64_and_dispatch():
    case = _tiny(7, 5, 2, True)
    out, ref = _run(case, dtype=torch.float64)
    assert out.dtype == torch.float64
    assert (out - ref).abs().max().item() <= TOL[torch.float64]
    # the op's dispatcher reaches this kernel with impl="triton"
    feats, boxes, masks = make_inputs(case, dtype=torch.float64, device=DEV)
    got = region_pool(feats, boxes, masks, case.grid, image_size=28, impl="triton")
    torch.testing.assert_close(got, out, rtol=0, atol=0)


@pytest.mark.interpreter
@needs_kernel
def test_empty_mask_gives_zero_and_no_regions_gives_empty():
    feats = [torch.randn(1, 3, 4, 4, device=DEV) + 5.0]
    boxes = torch.tensor([[[2.0, 2.0, 10.0, 12.0]]], device=DEV)
    masks = torch.zeros(1, 1, 4, 4, device=DEV)
    masks[0, 0, 3, 3] = 1.0  # nonzero only far from the box: its samples all weigh 0
    out = rpt.region_pool(feats, boxes, masks, 2, (16, 16))
    assert out.shape == (1, 1, 3)
    assert (out == 0).all()
    empty = rpt.region_pool(feats, boxes[:, :0], None, 2, (16, 16))
    assert empty.shape == (1, 0, 3)


@pytest.mark.interpreter
@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_forward_low_precision_interpreter(dtype):
    _check_low_precision(_tiny(7, 5, 3, True), dtype, DEV)



def _check_low_precision(case, dtype, device):
    """Flash-attention rule: the kernel's error against the fp32 reference is at most twice the
    reference's own error at `dtype`, plus a floor."""
    feats, boxes, masks = make_inputs(case, dtype=dtype, device=device)
    hw = (case.image_size, case.image_size)
    exact = _ref_fp32(feats, boxes, masks, case.grid, hw)
    out = rpt.region_pool(feats, boxes, masks, case.grid, hw)
    ref_lp = region_pool_ref(feats, boxes, masks, case.grid, image_size=hw)
    assert out.dtype == dtype
    err = (out.float() - exact).abs().max().item()
    ref_err = (ref_lp.float() - exact).abs().max().item()
    print(f"{case.name} {dtype}: kernel error {err:.3g}, reference's own error {ref_err:.3g}")
    assert err <= 2 * ref_err + LOW_PRECISION_FLOOR


# ------------------------------------------------------------------------- backward
BWD = [_tiny(7, 2, 2, False), _tiny(7, 1, 3, True), _tiny(5, 3, 1, True, grid=4)]


@pytest.mark.interpreter
@needs_kernel
@pytest.mark.parametrize("case", BWD, ids=lambda c: c.name)
def test_features_gradient_matches_reference_fp32(case):
    feats, boxes, masks = make_inputs(case, device=DEV)
    hw = (case.image_size, case.image_size)
    feats = [f.requires_grad_() for f in feats]
    out = rpt.region_pool(feats, boxes, masks, case.grid, hw)
    ref = region_pool_ref(feats, boxes, masks, case.grid, image_size=hw)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(DEV)
    got = torch.autograd.grad(out, feats, g)
    want = torch.autograd.grad(ref, feats, g)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype
        err = (a - b).abs().max().item()
        assert err <= TOL[torch.float32], f"{case.name}: features[{i}] grad error {err:.3g}"



@pytest.mark.interpreter
@needs_kernel
def test_gradcheck_float64():
    # fast mode: a random projection of the Jacobian (full mode evaluates the interpreted
    # forward once per input element)
    case = PoolCase("gc", 1, 5, ((2, 3, 3), (1, 2, 4)), 12, 2, True, 4)
    feats, boxes, masks = make_inputs(case, dtype=torch.float64, device=DEV)
    feats = tuple(f.requires_grad_() for f in feats)

    def fn(*fs):
        return rpt.region_pool(list(fs), boxes, masks, case.grid, (12, 12))

    assert torch.autograd.gradcheck(fn, feats, fast_mode=True)


@pytest.mark.interpreter
@needs_kernel
def test_boxes_and_masks_get_no_gradient():
    case = _tiny(2, 1, 1, True)
    feats, boxes, masks = make_inputs(case, device=DEV)
    feats[0].requires_grad_()
    boxes.requires_grad_()
    masks.requires_grad_()
    out = rpt.region_pool(feats, boxes, masks, case.grid, (28, 28))
    gf, gb, gm = torch.autograd.grad(out.sum(), [feats[0], boxes, masks], allow_unused=True,
                                     materialize_grads=False)
    assert gf is not None and gf.abs().sum() > 0
    assert gb is None and gm is None


# ------------------------------------------------------------------------- torch integration
@pytest.mark.interpreter
@needs_kernel
def test_opcheck_forward_and_backward_ops():
    case = PoolCase("op", 1, 2, ((2, 4, 4), (1, 3, 3)), 16, 2, True, 4)
    feats, boxes, masks = make_inputs(case, device=DEV)
    feats = [f.requires_grad_() for f in feats]
    res = torch.library.opcheck(torch.ops.earthx.region_pool_triton.default,
                                (feats, boxes, masks, 2, 16, 16))
    assert all(v == "SUCCESS" for v in res.values()), res
    g = torch.randn(1, 2, 3, device=DEV)
    res = torch.library.opcheck(torch.ops.earthx.region_pool_triton_backward.default,
                                (g, [f.detach() for f in feats], boxes, masks, 2, 16, 16))
    assert all(v == "SUCCESS" for v in res.values()), res


@pytest.mark.interpreter
@needs_kernel
def test_fake_kernel_gives_the_output_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        feats = [torch.empty(2, 3, 8, 8, dtype=torch.float16), torch.empty(2, 5, 4, 6,
                                                                          dtype=torch.float16)]
        out = torch.ops.earthx.region_pool_triton(feats, torch.empty(2, 7, 4),
                                                  torch.empty(2, 7, 5, 5), 3, 32, 32)
        grads = torch.ops.earthx.region_pool_triton_backward(
            torch.empty(2, 7, 8), feats, torch.empty(2, 7, 4), None, 3, 32, 32)
    assert out.shape == (2, 7, 8) and out.dtype == torch.float16
    assert [g.shape for g in grads] == [f.shape for f in feats]


@pytest.mark.interpreter
@needs_kernel
def test_torch_compile_sees_through_without_graph_breaks():
    case = _tiny(2, 2, 2, True)
    feats, boxes, masks = make_inputs(case, device=DEV)
    feats = [f.requires_grad_() for f in feats]

    def loss(fs, b, m):
        return (rpt.region_pool(fs, b, m, case.grid, (28, 28)) ** 2).sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = compiled(feats, boxes, masks)
    want = loss(feats, boxes, masks)
    torch.testing.assert_close(got, want)
    got_g = torch.autograd.grad(got, feats)
    want_g = torch.autograd.grad(want, feats)
    for a, b in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------- bad input
def _good():
    return [torch.zeros(1, 2, 4, 4, device=DEV)], torch.zeros(1, 3, 4, device=DEV), None


@pytest.mark.interpreter
@needs_kernel
@pytest.mark.parametrize("change, exc, words", [
    (lambda f, b, m: ([], b, m, 2, (8, 8)), ValueError, "non-empty list"),
    (lambda f, b, m: ([f[0][0]], b, m, 2, (8, 8)), ValueError, "features[0] must be"),
    (lambda f, b, m: ([f[0].int()], b, m, 2, (8, 8)), TypeError, "float32"),
    (lambda f, b, m: (f + [f[0].double()], b, m, 2, (8, 8)), ValueError, "share dtype"),
    (lambda f, b, m: (f, b[..., :3], m, 2, (8, 8)), ValueError, "boxes must be [B, R, 4]"),
    (lambda f, b, m: (f, b.int(), m, 2, (8, 8)), ValueError, "boxes must be floating"),
    (lambda f, b, m: (f, b, torch.ones(1, 2, 4, 4, device=DEV), 2, (8, 8)), ValueError,
     "masks must be [B, R, Hm, Wm]"),
    (lambda f, b, m: (f, b, torch.ones(1, 3, 4, 4, dtype=torch.int64, device=DEV), 2, (8, 8)),
     ValueError, "masks must be floating"),
    (lambda f, b, m: (f, b, m, 0, (8, 8)), ValueError, "grid must be an int >= 1"),
    (lambda f, b, m: (f, b, m, True, (8, 8)), ValueError, "grid must be an int >= 1"),
    (lambda f, b, m: (f, b, m, 2, (8, 0)), ValueError, "image_hw must be"),
    (lambda f, b, m: (f, b, m, 2, 8), ValueError, "image_hw must be"),
])
def test_bad_input_is_refused_with_the_rule(change, exc, words):
    with pytest.raises(exc, match="region_pool_triton") as info:
        rpt.region_pool(*change(*_good()))
    assert words in str(info.value)


@pytest.mark.interpreter
@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without a GPU")
def test_unavailable_without_gpu_or_interpreter_says_why(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    ok, why = rpt.available()
    assert not ok and "no CUDA device" in why
    with pytest.raises(RuntimeError, match="region_pool_triton: not available: no CUDA device"):
        rpt.region_pool([torch.zeros(1, 2, 4, 4)], torch.zeros(1, 3, 4), None, 2, (8, 8))


# ------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("case", PARITY, ids=lambda c: c.name)
def test_gpu_forward_matches_reference_fp32(case):
    out, ref = _run(case, device="cuda")
    err = (out - ref).abs().max().item()
    assert err <= TOL[torch.float32], f"{case.name}: max error {err:.3g}"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [c for c in PARITY if c.regions == 83], ids=lambda c: c.name)
def test_gpu_forward_low_precision(case, dtype):
    _check_low_precision(case, dtype, "cuda")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("case", [c for c in PARITY if c.regions == 83 and c.masks],
                         ids=lambda c: c.name)
def test_gpu_features_gradient_matches_reference_fp32(case):
    feats, boxes, masks = make_inputs(case, device="cuda")
    hw = (case.image_size, case.image_size)
    feats = [f.requires_grad_() for f in feats]
    out = rpt.region_pool(feats, boxes, masks, case.grid, hw)
    ref = region_pool_ref(feats, boxes, masks, case.grid, image_size=hw)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, feats, g), torch.autograd.grad(ref, feats, g),
                    strict=True):
        assert (a - b).abs().max().item() <= TOL[torch.float32]

