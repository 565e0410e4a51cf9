import math
from collections import deque

import numpy as np
import pytest

from earthx_sdk import _ext
from earthx_sdk.ops import masks as M
from tests.cases import AWKWARD_SHAPES, TOL
from tests.conftest import requires_native

IMPLS = ["ref", pytest.param("native", marks=requires_native)]
LOGIT_SHAPES = [(1, 1), (7, 13), (64, 64), (256, 256)]
SIZE = 1024


def _geometry(orig_hw, size=SIZE):
    h, w = orig_hw
    scale = size / max(h, w)
    return max(1, math.floor(h * scale + 0.5)), max(1, math.floor(w * scale + 0.5))


def _assert_close(a, b):
    rtol, atol = TOL[np.float32]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _blobs(rng, h, w, count):
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.02, 0.3) * h + 0.5, rng.uniform(0.02, 0.3) * w + 0.5
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return m


# ------------------------------------------------------------------------------------------------
# upsample_logits / postprocess_masks
# ------------------------------------------------------------------------------------------------

# every combination, except that the large shape runs with N = 3 once
POSTPROCESS_CASES = [(o, lg, n) for o in AWKWARD_SHAPES for lg in LOGIT_SHAPES for n in (1, 3)
                     if not (o == (2049, 1537) and n == 3 and lg != (256, 256))]


@requires_native
@pytest.mark.parametrize("orig_hw,logit_hw,n", POSTPROCESS_CASES)
def test_postprocess_native_matches_ref(rng, orig_hw, logit_hw, n):
    logits = rng.standard_normal((n, *logit_hw)).astype(np.float32)
    resized = _geometry(orig_hw)
    up_ref = M.upsample_logits(logits, SIZE, resized, orig_hw, impl="ref")
    up_nat = M.upsample_logits(logits, SIZE, resized, orig_hw, impl="native")
    assert up_ref.shape == up_nat.shape == (n, *orig_hw) and up_nat.dtype == np.float32
    _assert_close(up_nat, up_ref)
    # A threshold equal to a value that occurs: any difference in the compared float shows.
    thr = float(up_ref.flat[up_ref.size // 2])
    for t in (0.0, thr):
        a = M.postprocess_masks(logits, SIZE, resized, orig_hw, t, impl="native")
        b = M.postprocess_masks(logits, SIZE, resized, orig_hw, t, impl="ref")
        assert a.dtype == b.dtype == np.uint8 and a.shape == (n, *orig_hw)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, up_ref.astype(np.float64) > t)


@requires_native
@pytest.mark.parametrize("view", ["transposed", "strided", "reversed", "2d-column"])
def test_non_contiguous_logits(rng, view):
    base = rng.standard_normal((3, 90, 70)).astype(np.float32)
    logits = {"transposed": base.transpose(0, 2, 1), "strided": base[:, ::2, ::3],
              "reversed": base[::-1, ::-1], "2d-column": base[1, :, 5:37]}[view]
    assert not logits.flags.c_contiguous
    orig = (301, 173)
    resized = _geometry(orig, 256)
    a = M.upsample_logits(logits, 256, resized, orig, impl="native")
    b = M.upsample_logits(np.ascontiguousarray(logits), 256, resized, orig, impl="ref")
    _assert_close(a, b)
    np.testing.assert_array_equal(
        M.postprocess_masks(logits, 256, resized, orig, 0.25, impl="native"),
        M.postprocess_masks(logits, 256, resized, orig, 0.25, impl="ref"))


@pytest.mark.parametrize("impl", IMPLS)
def test_upsample_matches_scalar_formula(rng, impl):
    # An independent per-pixel evaluation of the spec in float64.
    logits = rng.standard_normal((9, 11)).astype(np.float32)
    size, resized, orig = 16, (12, 16), (13, 17)
    out = M.upsample_logits(logits, size, resized, orig, impl=impl)
    assert out.shape == orig and out.dtype == np.float32
    h, w = logits.shape

    def taps(o, n_in, n_res, k):
        x = (k + 0.5) * (n_res / o) * (n_in / size) - 0.5
        x = min(max(x, 0.0), n_in - 1)
        x0 = math.floor(x)
        return x0, min(x0 + 1, n_in - 1), x - x0

    for i in range(orig[0]):
        y0, y1, fy = taps(orig[0], h, resized[0], i)
        for j in range(orig[1]):
            x0, x1, fx = taps(orig[1], w, resized[1], j)
            top = logits[y0, x0] * (1 - fx) + logits[y0, x1] * fx
            bot = logits[y1, x0] * (1 - fx) + logits[y1, x1] * fx
            want = top * (1 - fy) + bot * fy
            assert out[i, j] == pytest.approx(want, rel=1e-5, abs=1e-5), (i, j)


@pytest.mark.parametrize("impl", IMPLS)
def test_upsample_unpads_exactly_on_aligned_grid(rng, impl):
    # logits at input resolution: the output is the unpadded top-left block, bit for bit, and the
    # padding (set to a huge value) never leaks in.
    logits = np.full((2, 64, 64), 1e6, np.float32)
    logits[:, :32, :48] = rng.standard_normal((2, 32, 48))
    out = M.upsample_logits(logits, 64, (32, 48), (32, 48), impl=impl)
    np.testing.assert_array_equal(out, logits[:, :32, :48])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_logits_are_converted(rng, impl, dtype):
    logits = rng.standard_normal((2, 20, 20)).astype(dtype)
    a = M.upsample_logits(logits, 40, (40, 30), (77, 58), impl=impl)
    b = M.upsample_logits(logits.astype(np.float32), 40, (40, 30), (77, 58), impl=impl)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_2d_logits_give_2d_output(rng, impl):
    logits = rng.standard_normal((16, 16)).astype(np.float32)
    out = M.postprocess_masks(logits, 16, (16, 10), (31, 19), impl=impl)
    assert out.shape == (31, 19)
    np.testing.assert_array_equal(out, M.postprocess_masks(logits[None], 16, (16, 10), (31, 19),
                                                           impl=impl)[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_logit_turns_off_the_pixels_that_read_it(impl):
    logits = np.ones((12, 12), np.float32)
    logits[5, 7] = np.nan
    size, resized, orig = 12, (12, 9), (37, 28)
    up = M.upsample_logits(logits, size, resized, orig, impl=impl)
    mask = M.postprocess_masks(logits, size, resized, orig, 0.0, impl=impl)
    y0, y1, _, _ = M._axis_taps(orig[0], 12, resized[0], size)
    x0, x1, _, _ = M._axis_taps(orig[1], 12, resized[1], size)
    reads = ((y0 == 5) | (y1 == 5))[:, None] & ((x0 == 7) | (x1 == 7))[None, :]
    assert reads.sum() > 0
    np.testing.assert_array_equal(np.isnan(up), reads)
    np.testing.assert_array_equal(mask, ~reads)
    # the same as a -inf logit
    logits[5, 7] = -np.inf
    np.testing.assert_array_equal(M.postprocess_masks(logits, size, resized, orig, 0.0, impl=impl),
                                  mask)


@pytest.mark.parametrize("impl", IMPLS)
def test_threshold_compares_exactly_in_float64(rng, impl):
    logits = rng.standard_normal((1, 32, 32)).astype(np.float32)
    logits[0, :4, :4] = np.float32(0.1)  # just above 0.1 in float64
    logits[0, 4, 4] = np.inf
    up = M.upsample_logits(logits, 32, (32, 32), (40, 40), impl="ref").astype(np.float64)
    with np.errstate(over="raise"):
        for t in (0.1, -0.1, 1e-45, 3.4e38, 1e300, -1e300, math.inf, -math.inf, 0):
            got = M.postprocess_masks(logits, 32, (32, 32), (40, 40), t, impl=impl)
            np.testing.assert_array_equal(got, up > t, err_msg=str(t))
    assert M.postprocess_masks(logits, 32, (32, 32), (40, 40), 0.1, impl=impl)[0, 0, 0] == 1


# ------------------------------------------------------------------------------------------------
# COCO RLE
# ------------------------------------------------------------------------------------------------

def _coco():
    return pytest.importorskip("pycocotools.mask")


def _rle_masks(rng):
    first_one = rng.random((9, 5)) < 0.5
    first_one[0, 0] = True
    return {
        "random": rng.random((37, 53)) < 0.5,
        "sparse": rng.random((64, 40)) < 0.02,
        "all-zero": np.zeros((13, 7), bool),
        "all-one": np.ones((13, 7), bool),
        "1x1-zero": np.zeros((1, 1), bool),
        "1x1-one": np.ones((1, 1), bool),
        "1023x1": rng.random((1023, 1)) < 0.5,
        "1x1023": rng.random((1, 1023)) < 0.5,
        "2049x1537": _blobs(rng, 2049, 1537, 6),
        "first-pixel-one": first_one,
        "long-runs": np.repeat(rng.random((3, 70)) < 0.5, 700, axis=0),  # runs > 2**15
    }


@pytest.mark.parametrize("impl", IMPLS)
def test_rle_encode_equals_pycocotools(rng, impl):
    coco = _coco()
    for name, m in _rle_masks(rng).items():
        want = coco.encode(np.asfortranarray(m.astype(np.uint8)))
        got = M.rle_encode(m, impl=impl)
        assert got["size"] == [m.shape[0], m.shape[1]] == list(want["size"]), name
        assert isinstance(got["counts"], bytes), name
        assert got["counts"] == want["counts"], name


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("decode_impl", IMPLS)
def test_rle_round_trip(rng, impl, decode_impl):
    coco = _coco()
    for name, m in _rle_masks(rng).items():
        rle = M.rle_encode(m, impl=impl)
        for counts in (rle["counts"], rle["counts"].decode("ascii")):
            back = M.rle_decode({"size": rle["size"], "counts": counts}, impl=decode_impl)
            assert back.dtype == np.uint8 and back.flags.c_contiguous, name
            np.testing.assert_array_equal(back, m, err_msg=name)
        area = M.rle_area(rle, impl=decode_impl)
        assert area == int(m.sum()) == int(coco.area(coco.encode(np.asfortranarray(
            m.astype(np.uint8))))), name


@pytest.mark.parametrize("impl", IMPLS)
def test_rle_uncompressed_counts(rng, impl):
    coco = _coco()
    m = rng.random((23, 31)) < 0.4
    m[0, 0] = True
    runs = M._runs_ref(m)
    assert runs[0] == 0
    h, w = m.shape
    for counts in (runs.tolist(), tuple(runs.tolist()), runs.astype(np.uint32)):
        rle = {"size": [h, w], "counts": counts}
        np.testing.assert_array_equal(M.rle_decode(rle, impl=impl), m)
        assert M.rle_area(rle, impl=impl) == int(m.sum())
    # pycocotools reads the same uncompressed runs into the same compressed string
    compressed = coco.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
    assert compressed["counts"] == M.rle_encode(m, impl=impl)["counts"]


@pytest.mark.parametrize("impl", IMPLS)
def test_rle_encode_batch_and_layouts(rng, impl):
    coco = _coco()
    batch = rng.random((3, 41, 29)) < 0.3
    got = M.rle_encode(batch, impl=impl)
    assert isinstance(got, list) and len(got) == 3
    want = coco.encode(np.asfortranarray(batch.transpose(1, 2, 0).astype(np.uint8)))
    assert [g["counts"] for g in got] == [w_["counts"] for w_ in want]
    m = batch[0]
    ref = M.rle_encode(m, impl="ref")["counts"]
    big = np.zeros((82, 87), bool)
    big[::2, ::3] = m
    views = {"fortran": np.asfortranarray(m), "strided": big[::2, ::3], "transposed": m.T.copy().T,
             "uint8": m.astype(np.uint8), "uint8-255": m.astype(np.uint8) * 255,
             "batch-strided": batch.transpose(0, 2, 1).copy().transpose(0, 2, 1)[0]}
    for name, v in views.items():
        assert M.rle_encode(v, impl=impl)["counts"] == ref, name


@pytest.mark.parametrize("impl", IMPLS)
def test_rle_decode_of_pycocotools_strings(rng, impl):
    coco = _coco()
    for _ in range(5):
        m = rng.random(tuple(rng.integers(1, 60, 2))) < rng.random()
        enc = coco.encode(np.asfortranarray(m.astype(np.uint8)))
        np.testing.assert_array_equal(M.rle_decode(enc, impl=impl), m)


# ------------------------------------------------------------------------------------------------
# Outer contours
# ------------------------------------------------------------------------------------------------

def _polys(mask, impl):
    return [p.tolist() for p in M.mask_to_polygons(np.asarray(mask, bool), impl=impl)]


@pytest.mark.parametrize("impl", IMPLS)
def test_polygon_single_pixel(impl):
    m = np.zeros((5, 6), bool)
    m[3, 4] = True
    out = M.mask_to_polygons(m, impl=impl)
    assert len(out) == 1 and out[0].dtype == np.float64 and out[0].shape == (4, 2)
    assert out[0].tolist() == [[4, 3], [5, 3], [5, 4], [4, 4]]


@pytest.mark.parametrize("impl", IMPLS)
def test_polygon_l_shape(impl):
    m = [[1, 0],
         [1, 0],
         [1, 1]]
    assert _polys(m, impl) == [[[0, 0], [1, 0], [1, 2], [2, 2], [2, 3], [0, 3]]]


@pytest.mark.parametrize("impl", IMPLS)
def test_polygon_diagonal_pixels_are_one_component(impl):
    assert _polys([[1, 0], [0, 1]], impl) == [
        [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [1, 2], [1, 1], [0, 1]]]
    # the other diagonal: the component's first pixel is (0, 1)
    assert _polys([[0, 1], [1, 0]], impl) == [
        [[1, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2], [0, 1], [1, 1]]]


@pytest.mark.parametrize("impl", IMPLS)
def test_polygon_ring_hole_ignored_island_separate(impl):
    ring = np.ones((3, 4), bool)
    ring[1, 1:3] = False
    assert _polys(ring, impl) == [[[0, 0], [4, 0], [4, 3], [0, 3]]]
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    m[2:5, 2:5] = False
    m[3, 3] = True  # an island in the hole: its own component
    m[0, 6] = True  # touches the ring diagonally: the same component
    assert _polys(m, impl) == [
        [[6, 0], [7, 0], [7, 1], [6, 1], [6, 6], [1, 6], [1, 1], [6, 1]],
        [[3, 3], [4, 3], [4, 4], [3, 4]]]


@pytest.mark.parametrize("impl", IMPLS)
def test_polygon_empty_and_full(impl):
    assert M.mask_to_polygons(np.zeros((4, 9), np.uint8), impl=impl) == []
    assert _polys(np.ones((4, 9)), impl) == [[[0, 0], [9, 0], [9, 4], [0, 4]]]


def _components(fg):
    """8-connected components, each a bool mask, in raster order of their first pixel."""
    h, w = fg.shape
    seen = np.zeros_like(fg)
    out = []
    for r in range(h):
        for c in range(w):
            if not fg[r, c] or seen[r, c]:
                continue
            comp = np.zeros_like(fg)
            todo = deque([(r, c)])
            seen[r, c] = True
            while todo:
                y, x = todo.popleft()
                comp[y, x] = True
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and fg[yy, xx] and not seen[yy, xx]:
                            seen[yy, xx] = True
                            todo.append((yy, xx))
            out.append(comp)
    return out


def _fill_holes(comp):
    """The component plus every pixel that no 4-connected path of non-component pixels joins to
    the outside of the image."""
    h, w = comp.shape
    free = np.ones((h + 2, w + 2), bool)
    free[1:-1, 1:-1] = ~comp
    out = np.zeros_like(free)
    out[0, :] = out[-1, :] = out[:, 0] = out[:, -1] = True
    while True:
        grow = out.copy()
        grow[1:] |= out[:-1]
        grow[:-1] |= out[1:]
        grow[:, 1:] |= out[:, :-1]
        grow[:, :-1] |= out[:, 1:]
        grow &= free
        if np.array_equal(grow, out):
            return ~out[1:-1, 1:-1]
        out = grow


def _even_odd_fill(poly, h, w):
    """Pixel centers inside the polygon by the even-odd rule (a ray to the right)."""
    xy = poly.astype(np.int64)
    assert np.array_equal(xy, poly)  # integer corners
    inside = np.zeros((h, w), bool)
    for (x0, y0), (x1, y1) in zip(xy, np.roll(xy, -1, axis=0), strict=True):
        assert (x0 == x1) != (y0 == y1), "edges are axis-aligned, of nonzero length"
        if x0 == x1:
            lo, hi = sorted((y0, y1))
            inside[lo:hi, :x0] ^= True
    return inside


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("density", [0.15, 0.45, 0.6, 0.85])
def test_polygon_fill_property(rng, impl, density):
    for _ in range(6):
        h, w = rng.integers(1, 22, 2)
        m = rng.random((h, w)) < density
        polys = M.mask_to_polygons(m, impl=impl)
        comps = _components(m)
        assert len(polys) == len(comps)
        for poly, comp in zip(polys, comps, strict=True):
            r, c = np.argwhere(comp)[0]
            assert poly[0].tolist() == [c, r] and poly[1][1] == r and poly[1][0] > c
            turns = np.diff(np.concatenate([poly, poly[:1]]), axis=0)
            dirs = np.sign(turns[:, 0]) + 2 * np.sign(turns[:, 1])
            assert np.all(dirs != np.roll(dirs, 1)), "a vertex only where the direction changes"
            np.testing.assert_array_equal(_even_odd_fill(poly, h, w), _fill_holes(comp))


@requires_native
@pytest.mark.parametrize("shape", AWKWARD_SHAPES + [(64, 80)])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_polygons_native_matches_ref(rng, shape, density):
    if shape == (2049, 1537):
        m = _blobs(rng, *shape, 10)
        m[rng.random(shape) < 0.001 * density] ^= True  # specks and pinholes
    else:
        m = rng.random(shape) < density
    a = M.mask_to_polygons(m, impl="native")
    b = M.mask_to_polygons(m, impl="ref")
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@requires_native
def test_polygons_non_contiguous_mask(rng):
    base = (rng.random((50, 60)) < 0.5).astype(np.uint8) * 3
    for view in (base.T, base[::2, ::-3], np.asfortranarray(base)):
        a = M.mask_to_polygons(view, impl="native")
        b = M.mask_to_polygons(np.ascontiguousarray(view != 0), impl="ref")
        assert len(a) == len(b) > 0
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------------------
# Bad input: one test per case, both implementations
# ------------------------------------------------------------------------------------------------

LOGITS = np.zeros((1, 8, 8), np.float32)
GOOD = dict(size=8, resized_hw=(8, 6), orig_hw=(16, 12))
BAD_GEOMETRY = [
    ("logits-int", dict(logits=np.zeros((1, 8, 8), np.int32)), TypeError, "logits"),
    ("logits-str", dict(logits=np.full((8, 8), "a")), TypeError, "logits"),
    ("logits-complex", dict(logits=np.zeros((8, 8), np.complex64)), TypeError, "logits"),
    ("logits-bool", dict(logits=np.zeros((8, 8), bool)), TypeError, "logits"),
    ("logits-not-array", dict(logits="logits"), TypeError, "logits"),
    ("logits-1d", dict(logits=np.zeros(8, np.float32)), ValueError, "logits"),
    ("logits-4d", dict(logits=np.zeros((1, 1, 8, 8), np.float32)), ValueError, "logits"),
    ("logits-empty", dict(logits=np.zeros((0, 8, 8), np.float32)), ValueError, "logits"),
    ("logits-empty-2d", dict(logits=np.zeros((8, 0), np.float32)), ValueError, "logits"),
    ("size-zero", dict(size=0), ValueError, "size"),
    ("size-float", dict(size=8.0), TypeError, "size"),
    ("resized-zero", dict(resized_hw=(0, 6)), ValueError, "resized_hw"),
    ("resized-len", dict(resized_hw=(8,)), ValueError, "resized_hw"),
    ("resized-str", dict(resized_hw="86"), TypeError, "resized_hw"),
    ("resized-float", dict(resized_hw=(8.0, 6)), TypeError, "resized_hw"),
    ("resized-too-big", dict(resized_hw=(9, 6)), ValueError, "resized_hw"),
    ("orig-zero", dict(orig_hw=(16, 0)), ValueError, "orig_hw"),
    ("orig-negative", dict(orig_hw=(-1, 12)), ValueError, "orig_hw"),
    ("orig-none", dict(orig_hw=None), TypeError, "orig_hw"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn", [M.upsample_logits, M.postprocess_masks])
@pytest.mark.parametrize("case,kwargs,exc,match", BAD_GEOMETRY, ids=[c[0] for c in BAD_GEOMETRY])
def test_bad_logits_input(impl, fn, case, kwargs, exc, match):
    args = {"logits": LOGITS, **GOOD, **kwargs}
    with pytest.raises(exc, match=match):
        fn(args.pop("logits"), **args, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threshold,exc", [(math.nan, ValueError), (np.float32("nan"), ValueError),
                                           ("0.5", TypeError), (None, TypeError)])
def test_bad_threshold(impl, threshold, exc):
    with pytest.raises(exc, match="threshold"):
        M.postprocess_masks(LOGITS, **GOOD, threshold=threshold, impl=impl)


BAD_MASKS = [
    ("int64", np.zeros((4, 4), np.int64), TypeError),
    ("float", np.zeros((4, 4), np.float32), TypeError),
    ("str", np.full((4, 4), "x"), TypeError),
    ("not-array", 7, TypeError),
    ("1d", np.zeros(4, bool), ValueError),
    ("4d", np.zeros((1, 1, 4, 4), bool), ValueError),
    ("empty", np.zeros((0, 4), bool), ValueError),
    ("empty-cols", np.zeros((4, 0), np.uint8), ValueError),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn", [M.rle_encode, M.mask_to_polygons])
@pytest.mark.parametrize("case,mask,exc", BAD_MASKS, ids=[c[0] for c in BAD_MASKS])
def test_bad_mask(impl, fn, case, mask, exc):
    with pytest.raises(exc, match="mask"):
        fn(mask, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_polygons_reject_3d_mask(impl):
    with pytest.raises(ValueError, match=r"mask must be \[H, W\]"):
        M.mask_to_polygons(np.zeros((2, 4, 4), bool), impl=impl)


BAD_RLES = [
    ("not-dict", [1, 2], TypeError, "rle must be a dict"),
    ("no-counts", {"size": [1, 1]}, ValueError, "keys 'size' and 'counts'"),
    ("no-size", {"counts": b"01"}, ValueError, "keys 'size' and 'counts'"),
    ("size-len", {"size": [1], "counts": b"01"}, ValueError, r"rle\['size'\]"),
    ("size-negative", {"size": [-1, 2], "counts": b""}, ValueError, r"rle\['size'\]"),
    ("size-float", {"size": [2.0, 2], "counts": b"4"}, ValueError, r"rle\['size'\]"),
    ("size-bool", {"size": [True, 1], "counts": b"01"}, ValueError, r"rle\['size'\]"),
    ("size-str", {"size": "22", "counts": b"4"}, ValueError, r"rle\['size'\]"),
    ("size-huge", {"size": [2**31, 1], "counts": b"4"}, ValueError, r"rle\['size'\]"),
    ("counts-float", {"size": [1, 1], "counts": 1.0}, TypeError, r"rle\['counts'\]"),
    ("counts-float-list", {"size": [1, 1], "counts": [0.0, 1.0]}, TypeError, r"rle\['counts'\]"),
    ("counts-2d-list", {"size": [1, 1], "counts": [[0, 1]]}, ValueError, r"rle\['counts'\]"),
    ("bad-char", {"size": [2, 2], "counts": b"1!1"}, ValueError, "bad character 0x21 at index 1"),
    ("bad-char-high", {"size": [2, 2], "counts": b"1p"}, ValueError, "bad character"),
    ("bad-char-unicode", {"size": [2, 2], "counts": "1é"}, ValueError, "bad character"),
    ("truncated", {"size": [2, 2], "counts": b"1P"}, ValueError, "ends inside a value"),
    ("too-long", {"size": [2, 2], "counts": b"P" * 12 + b"0"}, ValueError, "longer than 12"),
    ("negative-run", {"size": [1, 1], "counts": b"O"}, ValueError, "non-negative"),
    ("negative-delta-run", {"size": [2, 2], "counts": b"012N"}, ValueError, "non-negative"),
    ("negative-list", {"size": [1, 1], "counts": [-1, 2]}, ValueError, "non-negative"),
    ("sum-short", {"size": [2, 2], "counts": b"12"}, ValueError, "must sum to H.W = 4, got 3"),
    ("sum-long", {"size": [1, 1], "counts": b"11"}, ValueError, "first 2 runs already sum to 2"),
    ("run-too-big", {"size": [1, 1], "counts": b"2"}, ValueError, "got a run of 2 at index 0"),
    ("sum-list", {"size": [2, 2], "counts": [1, 1]}, ValueError, "must sum to"),
    ("empty-counts", {"size": [2, 2], "counts": b""}, ValueError, "must sum to H.W = 4, got 0"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn", [M.rle_decode, M.rle_area])
@pytest.mark.parametrize("case,rle,exc,match", BAD_RLES, ids=[c[0] for c in BAD_RLES])
def test_bad_rle(impl, fn, case, rle, exc, match):
    with pytest.raises(exc, match=match):
        fn(rle, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_rle_size_is_valid(impl):
    for counts in (b"", [], b"0"):
        out = M.rle_decode({"size": [0, 3], "counts": counts}, impl=impl)
        assert out.shape == (0, 3)
        assert M.rle_area({"size": [0, 3], "counts": counts}, impl=impl) == 0


@requires_native
def test_native_module_checks_its_inputs():
    C = _ext.native()
    cases = [
        (lambda: C.upsample_logits(np.zeros((8, 8)), 8, (8, 8), (8, 8)), TypeError, "float32"),
        (lambda: C.upsample_logits(LOGITS, 8, 8, (8, 8)), TypeError, "resized_hw"),
        (lambda: C.upsample_logits(LOGITS, 8, (8, 8, 8), (8, 8)), ValueError, "resized_hw"),
        (lambda: C.upsample_logits(LOGITS, 0, (8, 8), (8, 8)), ValueError, "size"),
        (lambda: C.upsample_logits(LOGITS, 8, (9, 8), (8, 8)), ValueError, "resized_hw"),
        (lambda: C.upsample_logits(LOGITS, 8, (8, 8), (True, 8)), TypeError, "orig_hw"),
        (lambda: C.postprocess_masks(LOGITS, 8, (8, 8), (8, 8), math.nan), ValueError,
         "threshold"),
        (lambda: C.rle_encode(np.zeros((2, 2), np.int32)), TypeError, "mask"),
        (lambda: C.rle_encode(np.zeros((2, 2, 2, 2), bool)), ValueError, "mask"),
        (lambda: C.rle_decode({"size": [1, 1], "counts": [1]}), TypeError, "counts"),
        (lambda: C.rle_decode({"size": [1, 1], "counts": np.array([0, 1], np.int32)}),
         TypeError, "int64"),
        (lambda: C.rle_decode("rle"), TypeError, "dict"),
        (lambda: C.rle_area({"size": [-1, 1], "counts": b""}), ValueError, "size"),
        (lambda: C.mask_to_polygons(np.zeros((2, 2, 2), bool)), ValueError, "mask"),
        (lambda: C.mask_to_polygons(np.zeros((0, 2), bool)), ValueError, "mask"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()
    # direct callers may pass str counts and int64 runs
    assert C.rle_area({"size": [2, 2], "counts": "13"}) == 3
    assert C.rle_area({"size": [2, 2], "counts": np.array([1, 3])}) == 3
