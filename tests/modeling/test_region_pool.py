import pytest

torch = pytest.importorskip("torch")

from earthx_sdk.ops.region_pool import region_pool, region_pool_ref  # noqa: E402

TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}


def _maps(b, dims, sides, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, s, s, generator=g, dtype=dtype)
            for c, s in zip(dims, sides, strict=True)]


def _loop_ref(features, boxes, masks, grid, image_size):
    """An independent, per-point reading of the spec: explicit bilinear weights, no grid_sample."""
    h, w = image_size
    b, r = boxes.shape[:2]
    outs = []
    for feat in features:
        feat = feat.double()
        out = torch.zeros(b, r, feat.shape[1], dtype=torch.float64)
        for bi in range(b):
            for ri in range(r):
                x0, y0, x1, y1 = boxes[bi, ri].double().tolist()
                num = torch.zeros(feat.shape[1], dtype=torch.float64)
                den = 0.0
                for j in range(grid):
                    for k in range(grid):
                        x = x0 + (k + 0.5) * (x1 - x0) / grid
                        y = y0 + (j + 0.5) * (y1 - y0) / grid
                        wt = 1.0
                        if masks is not None:
                            m = masks[bi, ri].double()
                            wt = float(_bilinear(m[None], x, y, h, w)[0])
                        num += wt * _bilinear(feat[bi], x, y, h, w)
                        den += wt
                out[bi, ri] = 0.0 if den == 0 else num / den
        outs.append(out)
    return torch.cat(outs, -1)


def _bilinear(m, x, y, h, w):
    """m [C, Hs, Ws] at image point (x, y), half-pixel centers, zeros outside."""
    hs, ws = m.shape[1:]
    xf, yf = x * ws / w - 0.5, y * hs / h - 0.5
    xa, ya = int(torch.floor(torch.tensor(xf))), int(torch.floor(torch.tensor(yf)))
    ax, ay = xf - xa, yf - ya
    val = torch.zeros(m.shape[0], dtype=torch.float64)
    for yy, wy in ((ya, 1 - ay), (ya + 1, ay)):
        for xx, wx in ((xa, 1 - ax), (xa + 1, ax)):
            if 0 <= yy < hs and 0 <= xx < ws:
                val += wy * wx * m[:, yy, xx]
    return val


def test_constant_map_gives_the_constant():
    feats = [torch.full((2, 3, 8, 8), 2.5)]
    boxes = torch.tensor([[[10.0, 10.0, 40.0, 50.0]], [[0.0, 0.0, 64.0, 64.0]]])
    out = region_pool(feats, boxes, grid=5, image_size=64)
    torch.testing.assert_close(out, torch.full((2, 1, 3), 2.5))


@pytest.mark.parametrize("grid", [1, 4, 7])
def test_linear_ramp_gives_its_value_at_the_box_center(grid):
    # Map value at map pixel column c is c (a ramp in x); a point at image x sits at map
    # coordinate x * W_s / W - 0.5, where the ramp (inside the map) has that value.
    ws, w = 16, 64
    ramp = torch.arange(ws, dtype=torch.float64).expand(1, 1, 8, ws).clone()  # [1, 1, 8, 16]
    boxes = torch.tensor([[[12.0, 8.0, 36.0, 24.0]]], dtype=torch.float64)
    out = region_pool([ramp], boxes, grid=grid, image_size=(32, w))
    cx = (12.0 + 36.0) / 2
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(cx * ws / w - 0.5, abs=1e-12)


def test_box_fully_outside_gives_zero():
    feats = [torch.randn(1, 4, 8, 8) + 5.0, torch.randn(1, 2, 4, 4) + 5.0]
    boxes = torch.tensor([[[100.0, 100.0, 140.0, 130.0], [-50.0, 0.0, -20.0, 30.0]]])
    out = region_pool(feats, boxes, grid=3, image_size=32)
    assert out.shape == (1, 2, 6)
    assert torch.equal(out, torch.zeros(1, 2, 6))


def test_box_partly_outside_counts_zeros_outside():
    # Constant 1 map of 4x4 over a 4-px image; box spans x in [2, 6]: grid 2 samples x = 3, 5;
    # x = 3 is map pixel center 2.5 -> 1, x = 5 lies past the last center (3.5) by 1 -> weight 0.
    feats = [torch.ones(1, 1, 4, 4, dtype=torch.float64)]
    boxes = torch.tensor([[[2.0, 1.0, 6.0, 3.0]]], dtype=torch.float64)
    out = region_pool(feats, boxes, grid=2, image_size=4)
    assert out.item() == pytest.approx(0.5)


def test_mask_on_the_left_half_gives_the_mean_over_left_samples():
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(1, 3, 16, 16, generator=g, dtype=torch.float64)
    # Box covering the whole 16-px image; grid 4 samples x at 2, 6, 10, 14 (map pixels 1.5,
    # 5.5, ...). The mask is 1 on columns 0..7 of a 16-wide mask: bilinear at x = 2, 6 is 1,
    # at x = 10, 14 is 0.
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    mask[..., :8] = 1.0
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0]]], dtype=torch.float64)
    out = region_pool([feat], boxes, mask, grid=4, image_size=16)
    # The left samples: x in {2, 6}, y in {2, 6, 10, 14}, i.e. map pixels (1.5|5.5, ...).
    left = feat[0]  # [3, 16, 16]
    ys = [1, 5, 9, 13]
    xs = [1, 5]
    want = torch.stack([(left[:, y, x] + left[:, y + 1, x] + left[:, y, x + 1]
                         + left[:, y + 1, x + 1]) / 4 for y in ys for x in xs]).mean(0)
    torch.testing.assert_close(out[0, 0], want, rtol=1e-12, atol=1e-12)


def test_empty_mask_gives_zero_and_finite_gradient():
    feat = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]]], dtype=torch.float64)
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    masks[0, 1] = 1.0
    out = region_pool([feat], boxes, masks, grid=3, image_size=8)
    assert torch.equal(out[0, 0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(out[0, 1], region_pool([feat], boxes[:, 1:], grid=3,
                                                      image_size=8)[0, 0])
    out.sum().backward()
    assert torch.isfinite(feat.grad).all()


def test_point_is_a_zero_area_box():
    feat = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    pt = torch.tensor([[[13.0, 21.0, 13.0, 21.0]]], dtype=torch.float64)
    want = _bilinear(feat[0], 13.0, 21.0, 32, 32)
    for grid in (1, 5):
        torch.testing.assert_close(region_pool([feat], pt, grid=grid, image_size=32)[0, 0], want)


@pytest.mark.parametrize("r", [1, 7])
@pytest.mark.parametrize("c", [1, 5])
@pytest.mark.parametrize("scales", [1, 2, 3])
@pytest.mark.parametrize("with_mask", [False, True])
def test_matches_a_per_point_reading_of_the_spec(r, c, scales, with_mask):
    g = torch.Generator().manual_seed(r * 100 + c * 10 + scales)
    dims = [c, c + 1, 2 * c][:scales]
    sides = [(13, 17), (7, 9), (4, 5)][:scales]
    feats = [torch.randn(2, d, hs, ws, generator=g)
             for d, (hs, ws) in zip(dims, sides, strict=True)]
    image = (52, 68)
    xy0 = torch.rand(2, r, 2, generator=g) * torch.tensor([80.0, 64.0]) - 8.0
    wh = torch.rand(2, r, 2, generator=g) * 40.0
    boxes = torch.cat([xy0, xy0 + wh], -1)  # [2, R, 4]
    masks = torch.rand(2, r, 11, 6, generator=g) if with_mask else None
    out = region_pool(feats, boxes, masks, grid=3, image_size=image)
    want = _loop_ref(feats, boxes, masks, 3, image).float()
    assert out.shape == (2, r, sum(dims))
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_features_give_the_same_result(dtype):
    base = torch.randn(2, 9, 12, 3, dtype=dtype)
    feat = base.permute(0, 3, 1, 2)[:, :, :, ::2]  # [2, 3, 9, 6], non-contiguous
    assert not feat.is_contiguous()
    boxes = torch.tensor([[[1.0, 2.0, 20.0, 30.0]], [[5.0, 0.0, 9.0, 4.0]]], dtype=dtype)
    masks = torch.rand(2, 1, 8, 8, dtype=dtype).transpose(2, 3)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(
        region_pool([feat], boxes, masks, grid=4, image_size=(36, 24)),
        region_pool([feat.contiguous()], boxes, masks.contiguous(), grid=4, image_size=(36, 24)),
        rtol=rtol, atol=atol)


def test_zero_regions():
    out = region_pool(_maps(2, [3, 4], [8, 4]), torch.zeros(2, 0, 4), torch.zeros(2, 0, 5, 5),
                      grid=3, image_size=32)
    assert out.shape == (2, 0, 7)


def test_low_precision_returns_the_feature_dtype():
    feats = _maps(1, [3], [8], dtype=torch.bfloat16)
    out = region_pool(feats, torch.tensor([[[0.0, 0.0, 16.0, 16.0]]]), grid=2, image_size=16)
    assert out.dtype == torch.bfloat16
    want = region_pool([feats[0].float()], torch.tensor([[[0.0, 0.0, 16.0, 16.0]]]), grid=2,
                       image_size=16)
    torch.testing.assert_close(out.float(), want, rtol=1e-2, atol=1e-2)


def test_gradcheck_wrt_features():
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(1, 1, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)]
    boxes = torch.tensor([[[1.0, 2.0, 9.0, 14.0], [-3.0, 4.0, 2.0, 4.0]]], dtype=torch.float64)
    masks = torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64)

    def fn(a, b):
        return region_pool_ref([a, b], boxes, masks, grid=2, image_size=(15, 12))

    assert torch.autograd.gradcheck(fn, tuple(feats))


def _ok():
    return _maps(2, [3], [8]), torch.zeros(2, 3, 4), torch.ones(2, 3, 6, 6)


@pytest.mark.parametrize("mutate, exc, words", [
    (lambda f, b, m: ([], b, m), ValueError, "at least one map"),
    (lambda f, b, m: (f + [torch.zeros(3, 2, 4, 4)], b, m), ValueError, "batch size"),
    (lambda f, b, m: (f + [torch.zeros(2, 2, 4, 4, dtype=torch.float64)], b, m), TypeError,
     "one dtype"),
    (lambda f, b, m: (f + [torch.zeros(2, 2, 4, 4, device="meta")], b, m), ValueError,
     "one device"),
    (lambda f, b, m: ([f[0].long()], b, m), TypeError, "floating point"),
    (lambda f, b, m: ([f[0][0]], b, m), ValueError, "[B, C, H, W]"),
    (lambda f, b, m: (f, b[..., :3], m), ValueError, "boxes must be [B, R, 4]"),
    (lambda f, b, m: (f, b[0], m), ValueError, "boxes must be [B, R, 4]"),
    (lambda f, b, m: (f, b[:1], m), ValueError, "B = 2"),
    (lambda f, b, m: (f, torch.full((2, 3, 4), float("nan")), m), ValueError, "finite"),
    (lambda f, b, m: (f, b, m[:1]), ValueError, "masks must be [B, R, Hm, Wm]"),
    (lambda f, b, m: (f, b, m[:, :2]), ValueError, "masks must be [B, R, Hm, Wm]"),
    (lambda f, b, m: (f, b, m.bool()), TypeError, "masks must be floating"),
])
def test_bad_input_raises(mutate, exc, words):
    f, b, m = mutate(*_ok())
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        region_pool(f, b, m, grid=2, image_size=16)


@pytest.mark.parametrize("grid, image_size, exc", [
    (0, 16, ValueError), (2.0, 16, TypeError), (True, 16, TypeError),
    (2, 0, ValueError), (2, (16, 0), ValueError), (2, 16.0, TypeError), (2, (1, 2, 3), TypeError),
])
def test_bad_grid_or_image_size_raises(grid, image_size, exc):
    f, b, m = _ok()
    with pytest.raises(exc):
        region_pool(f, b, m, grid=grid, image_size=image_size)


@pytest.mark.parametrize("impl", ["cpu", "triton", "cuda"])
def test_unavailable_kernel_says_why(impl, monkeypatch):
    from earthx_sdk.ops import region_pool as module

    monkeypatch.setattr(module, "kernel_status", lambda k: (False, "no GPU here"))
    f, b, m = _ok()
    with pytest.raises(RuntimeError, match=f"impl='{impl}' is not available here: no GPU here"):
        region_pool(f, b, m, grid=2, image_size=16, impl=impl)
    # and auto falls back to the reference
    torch.testing.assert_close(region_pool(f, b, m, grid=2, image_size=16),
                               region_pool(f, b, m, grid=2, image_size=16, impl="ref"))


def test_unknown_impl_raises():
    f, b, m = _ok()
    with pytest.raises(ValueError, match="impl must be one of"):
        region_pool(f, b, m, grid=2, image_size=16, impl="fast")


def test_ref_and_auto_agree():
    f, b, m = _ok()
    b = torch.rand(2, 3, 4) * 16
    # auto may pick a kernel (another summation order): equal within the fp32 tolerance
    torch.testing.assert_close(region_pool(f, b, m, grid=2, image_size=16, impl="auto"),
                               region_pool(f, b, m, grid=2, image_size=16, impl="ref"),
                               rtol=TOL[torch.float32][0], atol=TOL[torch.float32][1])
