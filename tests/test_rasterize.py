"""Prompt rasterization: native vs reference bit-exact, hand-checked expectations, bad input."""

import math

import numpy as np
import pytest

from earthx_sdk import _ext
from earthx_sdk.ops import rasterize as R
from tests.cases import AWKWARD_SHAPES
from tests.conftest import requires_native

IMPLS = ["ref", pytest.param("native", marks=requires_native)]
SCALES = [(1.0, 1.0), (0.25, 0.3), (1.7, 2.3)]


def star(n_tips: int, cx: float, cy: float, r_in: float, r_out: float, rng=None) -> np.ndarray:
    """Star-shaped polygon [2 * n_tips, 2]: alternating outer/inner radii (jittered with rng)."""
    k = np.arange(2 * n_tips)
    ang = k * np.pi / n_tips
    rad = np.where(k % 2 == 0, r_out, r_in).astype(np.float64)
    if rng is not None:
        rad = rad * rng.uniform(0.7, 1.0, rad.shape)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)


def pentagram(cx: float, cy: float, r: float) -> np.ndarray:
    """The five-point star drawn as one self-intersecting ring (every second tip)."""
    ang = np.arange(5) * 4 * np.pi / 5 - np.pi / 2
    return np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], axis=1)


def both(fn, *args, **kwargs):
    ref = fn(*args, **kwargs, impl="ref")
    nat = fn(*args, **kwargs, impl="native")
    assert ref.dtype == nat.dtype == np.uint8
    assert ref.shape == nat.shape
    bad = np.argwhere(ref != nat)
    assert bad.size == 0, f"{fn.__name__}: {len(bad)} pixels differ, first at {bad[:5].tolist()}"
    assert set(np.unique(ref).tolist()) <= {0, 1}
    return ref


def random_points(rng, n: int, out_hw, scale, half_grid: bool) -> np.ndarray:
    """Points in image coordinates that spill past the grid; on a half-pixel lattice when asked,
    so that pixel centers land exactly on vertices and edges (the ties)."""
    h, w = out_hw
    kx, ky = scale
    p = rng.uniform(-0.3, 1.3, (n, 2)) * [w / kx, h / ky]
    if half_grid:
        p = np.round(p * [2 * kx, 2 * ky]) / [2 * kx, 2 * ky]
    return p


# --- parity: native == reference, bit for bit ----------------------------------------------


@requires_native
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("out_hw", AWKWARD_SHAPES)
def test_parity_polygon(out_hw, scale, rng):
    h, w = out_hw
    kx, ky = scale
    for i in range(6):
        both(R.raster_polygon, random_points(rng, int(rng.integers(3, 40)), out_hw, scale, i % 2),
             out_hw, scale)
    both(R.raster_polygon, star(50, w / 2 / kx, h / 2 / ky, w / 5 / kx, w / 2 / kx, rng), out_hw,
         scale)
    both(R.raster_polygon, pentagram(w / 2 / kx, h / 2 / ky, max(h / ky, w / kx) / 2), out_hw,
         scale)


@requires_native
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("out_hw", AWKWARD_SHAPES)
def test_parity_polyline(out_hw, scale, rng):
    for i in range(4):
        pts = random_points(rng, int(rng.integers(1, 6)), out_hw, scale, i % 2)
        both(R.raster_polyline, pts, float(rng.uniform(0.3, 30)), out_hw, scale)
    both(R.raster_polyline, [[3.0, 4.0]], 5.0, out_hw, scale)  # one point
    both(R.raster_polyline, [[3.0, 4.0], [3.0, 4.0], [9.0, 1.0]], 2.0, out_hw, scale)  # repeated


@requires_native
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("out_hw", AWKWARD_SHAPES)
def test_parity_disk(out_hw, scale, rng):
    for i in range(8):
        c = random_points(rng, 1, out_hw, scale, i % 2)[0]
        radius = float(rng.choice([0.0, 0.2, 0.5, 1.0, 1.5, 7.25, 300.0]))
        both(R.raster_disk, c, radius, out_hw, scale)


@requires_native
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("out_hw", AWKWARD_SHAPES)
def test_parity_box(out_hw, scale, rng):
    for i in range(10):
        p = random_points(rng, 2, out_hw, scale, i % 2)
        box = np.concatenate([p.min(0), p.max(0)])
        if i % 3 == 0:
            box[2] = box[0]  # zero width
        if i % 4 == 0:
            box[3] = box[1]  # zero height
        both(R.raster_box, box, out_hw, scale)


@requires_native
@pytest.mark.parametrize("scale", SCALES + [(1e-3, 50.0)])
@pytest.mark.parametrize("out_hw", AWKWARD_SHAPES)
def test_parity_resample_mask(out_hw, scale, rng):
    for mh, mw in [(1, 1), (5, 9), (300, 211)]:
        m = rng.random((mh, mw)) > 0.5
        both(R.resample_mask, m, out_hw, scale)
        both(R.resample_mask, m.astype(np.uint8) * 7, out_hw, scale)  # nonzero, not 1
    big = (rng.random((64, 90)) > 0.5).astype(np.uint8)
    both(R.resample_mask, big[::2, ::-3], out_hw, scale)  # negative and non-unit strides
    both(R.resample_mask, np.asfortranarray(big.astype(bool)), out_hw, scale)


@requires_native
@pytest.mark.parametrize("lattice", [10, 3, 4])
def test_parity_near_ties(lattice, rng):
    """Coordinates on a 1/10, 1/3 or 1/4 lattice put crossings and distances within an ulp of a
    pixel center or of the radius, where only the same expressions evaluated in the same order
    give the same bits (reordering any of them makes this fail)."""
    for _ in range(40):
        v = rng.integers(-3 * lattice, 35 * lattice, (40, 2)) / lattice
        both(R.raster_polygon, v, (32, 32))
    for _ in range(1000):
        p = rng.integers(0, 32 * lattice, (3, 2)) / lattice
        both(R.raster_polyline, p, float(rng.integers(1, 4 * lattice)) / lattice, (32, 32))
    for _ in range(3000):
        c = rng.integers(0, 32 * lattice, 2) / lattice
        both(R.raster_disk, c, float(rng.integers(1, 8 * lattice)) / lattice, (32, 32))


@requires_native
def test_parity_resample_mask_near_ties(rng):
    """Scales like 0.1 or 1/3 put (c + .5) / k within an ulp of an integer: floor() then picks the
    image pixel on the bit, so the division must be the reference's."""
    m = (rng.random((80, 80)) > 0.5).astype(np.uint8)
    for k in [i / 10 for i in range(1, 30)] + [1 / i for i in range(2, 30)]:
        both(R.resample_mask, m, (97, 89), (k, 1.0 / k))


@requires_native
@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.25, 0.3)])
def test_parity_special_polygons(scale):
    out_hw = (40, 56)
    cases = {
        "bow-tie": [(2, 2), (30, 30), (30, 2), (2, 30)],
        "pentagram": pentagram(20, 20, 18),
        "partly outside": [(-10, -5), (30, 3), (70, 50), (10, 45)],
        "wholly outside": [(-10, -5), (-1, -3), (-4, -20)],
        "sub-pixel": [(10.1, 10.1), (10.4, 10.2), (10.2, 10.3)],
        "degenerate line": [(3, 3), (20, 20), (10, 10)],
        "repeated vertices": [(5, 5), (5, 5), (20, 5), (20, 5), (20, 20), (5, 20)],
        "on centers": [(0.5, 0.5), (10.5, 0.5), (10.5, 10.5), (0.5, 10.5)],
    }
    for name, v in cases.items():
        out = both(R.raster_polygon, v, out_hw, scale)
        assert out.shape == out_hw, name


@requires_native
def test_parity_input_layouts(rng):
    """Lists, integer and float32 dtypes, and non-contiguous views give one and the same mask."""
    base = star(12, 30.0, 25.0, 8.0, 20.0, rng)
    big = np.zeros((base.shape[0] * 3, 5))
    big[::3, 1:3] = base
    view = big[::3, 1:3]  # strided in both dims
    assert not view.flags.c_contiguous
    expected = both(R.raster_polygon, base, (50, 61))
    for v in (view, np.asfortranarray(base), base.tolist(), base[::-1][::-1]):
        assert np.array_equal(both(R.raster_polygon, v, (50, 61)), expected)
        assert np.array_equal(both(R.raster_polyline, v, 2.5, (50, 61)),
                              both(R.raster_polyline, base, 2.5, (50, 61)))
    ints = np.round(base).astype(np.int32)
    for v in (ints, ints.astype(np.uint16), ints.astype(np.float32), ints.T.copy().T):
        assert np.array_equal(both(R.raster_polygon, v, (50, 61)),
                              both(R.raster_polygon, ints.astype(np.float64), (50, 61)))
    assert np.array_equal(both(R.raster_box, np.array([1, 2, 9, 7], np.int64), (12, 12)),
                          both(R.raster_box, [1.0, 2.0, 9.0, 7.0], (12, 12)))


# --- hand-checked expectations (they catch a wrong spec in both impls) ----------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_square_polygon_fills_rows_and_cols_1_to_4(impl):
    out = R.raster_polygon([(1, 1), (5, 1), (5, 5), (1, 5)], (8, 8), impl=impl)
    expected = np.zeros((8, 8), np.uint8)
    expected[1:5, 1:5] = 1
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_polygon_orientation_does_not_matter(impl):
    sq = [(1, 1), (5, 1), (5, 5), (1, 5)]
    assert np.array_equal(R.raster_polygon(sq, (8, 8), impl=impl),
                          R.raster_polygon(sq[::-1], (8, 8), impl=impl))


@pytest.mark.parametrize("impl", IMPLS)
def test_pentagram_center_is_out(impl):
    out = R.raster_polygon(pentagram(20.0, 20.0, 18.0), (40, 40), impl=impl)
    assert out[20, 20] == 0  # the pentagon in the middle is crossed twice: even-odd says out
    assert out[19, 19] == 0 and out[20, 19] == 0
    assert out[4, 20] == 1  # the top arm, (20.5, 4.5)
    assert out[29, 12] == 1 and out[29, 27] == 1  # the two lower arms
    assert out[15, 8] == 1 and out[15, 31] == 1  # the two side arms
    assert out[:, 20].sum() == 10  # column x = 20.5: the top arm only (rows 4-13)


@pytest.mark.parametrize("impl", IMPLS)
def test_bow_tie(impl):
    # (0,0) -> (10,10) -> (10,0) -> (0,10): the left and right triangles are in, top and bottom out.
    out = R.raster_polygon([(0, 0), (10, 10), (10, 0), (0, 10)], (12, 12), impl=impl)
    assert out[5, 1] == 1 and out[5, 8] == 1
    assert out[1, 5] == 0 and out[8, 5] == 0
    # Row 5 (y = 5.5) crosses at x = 0, 4.5, 5.5, 10: [0, 4.5) and [5.5, 10) hold cols 0-3, 5-9.
    assert out[5].tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("impl", IMPLS)
def test_box_is_polygon_plus_its_closed_right_and_bottom_edges(impl):
    # Edges on pixel centers: x, y in {1.5, 4.5}. The polygon is half-open ([1.5, 4.5)), the box
    # closed, so the box holds exactly one more column (4) and one more row (4).
    rect = [1.5, 1.5, 4.5, 4.5]
    box = R.raster_box(rect, (8, 8), impl=impl)
    poly = R.raster_polygon([(1.5, 1.5), (4.5, 1.5), (4.5, 4.5), (1.5, 4.5)], (8, 8), impl=impl)
    expected_poly = np.zeros((8, 8), np.uint8)
    expected_poly[1:4, 1:4] = 1
    expected_box = np.zeros((8, 8), np.uint8)
    expected_box[1:5, 1:5] = 1
    assert np.array_equal(poly, expected_poly)
    assert np.array_equal(box, expected_box)
    extra = np.argwhere(box & (1 - poly))
    assert all(r == 4 or c == 4 for r, c in extra) and len(extra) == 7
    # Off the centers the two agree exactly.
    off = [1.2, 0.7, 6.3, 5.9]
    poly_off = R.raster_polygon([(1.2, 0.7), (6.3, 0.7), (6.3, 5.9), (1.2, 5.9)], (8, 8), impl=impl)
    assert np.array_equal(R.raster_box(off, (8, 8), impl=impl), poly_off)


@pytest.mark.parametrize("impl", IMPLS)
def test_disk_counts(impl):
    # Offsets of centers from (5, 5) are +-0.5, +-1.5: radius 1.5 takes the 2x2 block (0.5 <= 2.25,
    # 2.5 > 2.25); radius 1.6 adds the 8 edge neighbours (2.5 <= 2.56) but not the corners (4.5).
    d15 = R.raster_disk((5, 5), 1.5, (10, 10), impl=impl)
    assert np.argwhere(d15).tolist() == [[4, 4], [4, 5], [5, 4], [5, 5]]
    d16 = R.raster_disk((5, 5), 1.6, (10, 10), impl=impl)
    assert d16.sum() == 12 and d16[3:7, 3:7].sum() == 12 and d16[3, 3] == 0
    # A point with a closed boundary: radius exactly 0.5 from the center (2.5, 2.5) -> a plus.
    plus = R.raster_disk((2.5, 2.5), 1.0, (5, 5), impl=impl)
    assert np.argwhere(plus).tolist() == [[1, 2], [2, 1], [2, 2], [2, 3], [3, 2]]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("radius", [0.0, 0.2])
def test_point_smaller_than_a_pixel_sets_one_pixel(impl, radius):
    out = R.raster_disk((5.2, 3.9), radius, (8, 10), impl=impl)
    assert np.argwhere(out).tolist() == [[3, 5]]
    # On the grid's edge: still the containing pixel; just outside: nothing.
    assert np.argwhere(R.raster_disk((0.0, 7.99), radius, (8, 10), impl=impl)).tolist() == [[7, 0]]
    assert R.raster_disk((10.0, 3.0), radius, (8, 10), impl=impl).sum() == 0
    assert R.raster_disk((-0.01, 3.0), radius, (8, 10), impl=impl).sum() == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_never_vanish_anchors(impl):
    hw = (12, 12)
    # A sub-pixel triangle: its vertex mean (10.2, 10.2) -> pixel (10, 10).
    tri = R.raster_polygon([(10.1, 10.1), (10.4, 10.2), (10.1, 10.3)], hw, impl=impl)
    assert np.argwhere(tri).tolist() == [[10, 10]]
    # A zero-area box between centers: its center (3.2, 7.0) -> pixel (7, 3).
    box = R.raster_box([3.1, 7.0, 3.3, 7.0], hw, impl=impl)
    assert np.argwhere(box).tolist() == [[7, 3]]
    # A thin scribble between center rows, longer than a pixel: only the first point's pixel.
    line = R.raster_polyline([(2.2, 5.0), (8.7, 5.0)], 0.5, hw, impl=impl)
    assert np.argwhere(line).tolist() == [[5, 2]]
    # A zero-area box through a row of centers is a line, no anchor needed.
    row = R.raster_box([2.0, 4.5, 6.0, 4.5], hw, impl=impl)
    assert np.argwhere(row).tolist() == [[4, 2], [4, 3], [4, 4], [4, 5]]


@pytest.mark.parametrize("impl", IMPLS)
def test_shapes_wholly_outside_are_empty(impl):
    hw = (9, 9)
    assert R.raster_polygon([(-5, -5), (-1, -5), (-1, -1)], hw, impl=impl).sum() == 0
    assert R.raster_box([10, 2, 20, 5], hw, impl=impl).sum() == 0
    assert R.raster_disk((-3, 4), 2.0, hw, impl=impl).sum() == 0
    assert R.raster_polyline([(20, 20), (30, 10)], 4, hw, impl=impl).sum() == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_box_partly_outside_is_clipped(impl):
    out = R.raster_box([-4, 5, 100, 100], (8, 6), impl=impl)
    expected = np.zeros((8, 6), np.uint8)
    expected[5:, :] = 1
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_polyline_capsule(impl):
    # Width 2 along y = 5 from x = 2 to 8: rows 4-5 (|dy| = .5 <= 1); the round caps take cols 1
    # and 8 (distance sqrt(.5) to the end points) but not 0 or 9 (sqrt(2.5)).
    out = R.raster_polyline([(2, 5), (8, 5)], 2.0, (10, 10), impl=impl)
    expected = np.zeros((10, 10), np.uint8)
    expected[4:6, 1:9] = 1
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_single_point_polyline_is_a_disk(impl):
    for p, w in [((5.3, 4.1), 3.0), ((2.5, 2.5), 2.0), ((0, 0), 9.0)]:
        assert np.array_equal(R.raster_polyline([p], w, (11, 9), impl=impl),
                              R.raster_disk(p, w / 2, (11, 9), impl=impl))


@pytest.mark.parametrize("impl", IMPLS)
def test_scale_maps_coordinates_and_lengths(impl):
    # (kx, ky) = (0.5, 0.25): image (x, y) -> (x / 2, y / 4); lengths by sqrt(0.125).
    s = (0.5, 0.25)
    assert np.array_equal(R.raster_box([2, 4, 10, 20], (8, 8), s, impl=impl),
                          R.raster_box([1, 1, 5, 5], (8, 8), impl=impl))
    sq = [(2, 4), (10, 4), (10, 20), (2, 20)]
    expected = np.zeros((8, 8), np.uint8)
    expected[1:5, 1:5] = 1
    assert np.array_equal(R.raster_polygon(sq, (8, 8), s, impl=impl), expected)
    r = 1.6 / math.sqrt(0.125)
    assert np.array_equal(R.raster_disk((10, 20), r, (10, 10), s, impl=impl),
                          R.raster_disk((5, 5), 1.6, (10, 10), impl=impl))


@pytest.mark.parametrize("impl", IMPLS)
def test_resample_mask_nearest(impl):
    m = np.array([[1, 0], [0, 1]], np.uint8)
    up = R.resample_mask(m, (4, 4), (2.0, 2.0), impl=impl)
    assert np.array_equal(up, np.kron(m, np.ones((2, 2), np.uint8)))
    # Output beyond the mapped image is 0 (bottom/right padding).
    padded = R.resample_mask(m.astype(bool), (5, 6), (2.0, 2.0), impl=impl)
    assert np.array_equal(padded[:4, :4], up) and padded[4:].sum() == 0 and padded[:, 4:].sum() == 0
    # Downscale by 2: output (r, c) takes image (2r + 1, 2c + 1).
    img = np.arange(36, dtype=np.uint8).reshape(6, 6) % 3
    down = R.resample_mask(img, (3, 3), (0.5, 0.5), impl=impl)
    assert np.array_equal(down, (img[1::2, 1::2] != 0).astype(np.uint8))
    # Unequal axes: kx = 1, ky = 3 repeats rows three times.
    tall = R.resample_mask(m, (6, 2), (1.0, 3.0), impl=impl)
    assert np.array_equal(tall, np.repeat(m, 3, axis=0))


def test_fallback_matches_ref_when_native_missing(monkeypatch):
    monkeypatch.setattr(_ext, "_C", None)
    v = [(1, 1), (5, 1), (5, 5), (1, 5)]
    assert np.array_equal(R.raster_polygon(v, (8, 8)), R.raster_polygon(v, (8, 8), impl="ref"))
    with pytest.raises(RuntimeError, match="raster_polygon"):
        R.raster_polygon(v, (8, 8), impl="native")


# --- bad input: one test per case, through both implementations ----------------------------

_SQ = [(1, 1), (5, 1), (5, 5)]
_M = np.ones((4, 4), bool)

BAD = {
    "polygon-shape": (lambda i: R.raster_polygon(np.zeros((4, 3)), (8, 8), impl=i),
                      ValueError, r"vertices must be \[N, 2\] with N >= 3, got \[4, 3\]"),
    "polygon-1d": (lambda i: R.raster_polygon([1.0, 2.0, 3.0, 4.0], (8, 8), impl=i),
                   ValueError, r"vertices must be \[N, 2\]"),
    "polygon-two-points": (lambda i: R.raster_polygon([(0, 0), (3, 3)], (8, 8), impl=i),
                           ValueError, r"vertices must be \[N, 2\] with N >= 3, got \[2, 2\]"),
    "polygon-nan": (lambda i: R.raster_polygon([(0, 0), (3, np.nan), (3, 0)], (8, 8), impl=i),
                    ValueError, "vertices must be finite"),
    "polygon-inf": (lambda i: R.raster_polygon([(0, 0), (np.inf, 3), (3, 0)], (8, 8), impl=i),
                    ValueError, "vertices must be finite"),
    "polygon-too-far": (lambda i: R.raster_polygon([(0, 0), (3e9, 3), (3, 0)], (8, 8), impl=i),
                        ValueError, "vertices times scale must lie within"),
    "polygon-too-far-after-scale": (
        lambda i: R.raster_polygon([(0, 0), (6e8, 3), (3, 0)], (8, 8), (2.0, 1.0), impl=i),
        ValueError, "vertices times scale"),
    "polygon-complex": (lambda i: R.raster_polygon(np.zeros((3, 2), complex), (8, 8), impl=i),
                        TypeError, "vertices must hold real numbers"),
    "polygon-strings": (lambda i: R.raster_polygon([("a", "b")] * 3, (8, 8), impl=i),
                        TypeError, "vertices must hold real numbers"),
    "polygon-bool": (lambda i: R.raster_polygon(np.ones((3, 2), bool), (8, 8), impl=i),
                     TypeError, "vertices must hold real numbers"),
    "polyline-1d": (lambda i: R.raster_polyline([1.0, 2.0], 2.0, (8, 8), impl=i),
                    ValueError, r"points must be \[N, 2\] with N >= 1, got \[2\]"),
    "polyline-empty": (lambda i: R.raster_polyline(np.zeros((0, 2)), 2.0, (8, 8), impl=i),
                       ValueError, r"points must be \[N, 2\] with N >= 1, got \[0, 2\]"),
    "polyline-nan": (lambda i: R.raster_polyline([(np.nan, 1)], 2.0, (8, 8), impl=i),
                     ValueError, "points must be finite"),
    "polyline-width-zero": (lambda i: R.raster_polyline(_SQ, 0.0, (8, 8), impl=i),
                            ValueError, "width must be finite and > 0"),
    "polyline-width-negative": (lambda i: R.raster_polyline(_SQ, -1.0, (8, 8), impl=i),
                                ValueError, "width must be finite and > 0"),
    "polyline-width-nan": (lambda i: R.raster_polyline(_SQ, np.nan, (8, 8), impl=i),
                           ValueError, "width must be finite and > 0, got nan"),
    "polyline-width-inf": (lambda i: R.raster_polyline(_SQ, np.inf, (8, 8), impl=i),
                           ValueError, "width must be finite"),
    "polyline-width-array": (lambda i: R.raster_polyline(_SQ, [1.0, 2.0], (8, 8), impl=i),
                             ValueError, "width must be a scalar"),
    "box-shape": (lambda i: R.raster_box([0, 0, 3], (8, 8), impl=i),
                  ValueError, r"box must be \[4\] \(x0, y0, x1, y1\), got \[3\]"),
    "box-2d": (lambda i: R.raster_box([[0, 0], [3, 3]], (8, 8), impl=i),
               ValueError, r"box must be \[4\]"),
    "box-x0-gt-x1": (lambda i: R.raster_box([5, 0, 3, 3], (8, 8), impl=i),
                     ValueError, "box must have x0 <= x1 and y0 <= y1"),
    "box-y0-gt-y1": (lambda i: R.raster_box([0, 5, 3, 3], (8, 8), impl=i),
                     ValueError, "box must have x0 <= x1 and y0 <= y1"),
    "box-nan": (lambda i: R.raster_box([0, 0, np.nan, 3], (8, 8), impl=i),
                ValueError, "box must be finite"),
    "disk-center-shape": (lambda i: R.raster_disk([1, 2, 3], 1.0, (8, 8), impl=i),
                          ValueError, r"center must be \[2\] \(x, y\), got \[3\]"),
    "disk-center-nan": (lambda i: R.raster_disk([1, np.nan], 1.0, (8, 8), impl=i),
                        ValueError, "center must be finite"),
    "disk-radius-negative": (lambda i: R.raster_disk([1, 2], -0.5, (8, 8), impl=i),
                             ValueError, "radius must be finite and >= 0"),
    "disk-radius-nan": (lambda i: R.raster_disk([1, 2], np.nan, (8, 8), impl=i),
                        ValueError, "radius must be finite and >= 0, got nan"),
    "disk-radius-string": (lambda i: R.raster_disk([1, 2], "3", (8, 8), impl=i),
                           TypeError, "radius must hold real numbers"),
    "out-hw-zero": (lambda i: R.raster_polygon(_SQ, (0, 8), impl=i),
                    ValueError, r"out_hw must be >= 1 in both dims, got \(0, 8\)"),
    "out-hw-negative": (lambda i: R.raster_box([0, 0, 1, 1], (8, -2), impl=i),
                        ValueError, "out_hw must be >= 1"),
    "out-hw-float": (lambda i: R.raster_disk([1, 2], 1.0, (8.0, 8), impl=i),
                     TypeError, r"out_hw must be a pair of ints \(h, w\), got \(8.0, 8\)"),
    "out-hw-length": (lambda i: R.raster_polyline(_SQ, 1.0, (8, 8, 3), impl=i),
                      ValueError, r"out_hw must be a pair of ints \(h, w\), got 3 values"),
    "out-hw-bool": (lambda i: R.resample_mask(_M, (True, 8), impl=i),
                    TypeError, r"out_hw must be a pair of ints \(h, w\), got \(True, 8\)"),
    "scale-zero": (lambda i: R.raster_polygon(_SQ, (8, 8), (0.0, 1.0), impl=i),
                   ValueError, r"scale must be finite and > 0, got \[0.0, 1.0\]"),
    "scale-negative": (lambda i: R.raster_box([0, 0, 1, 1], (8, 8), (1.0, -1.0), impl=i),
                       ValueError, "scale must be finite and > 0"),
    "scale-nan": (lambda i: R.raster_disk([1, 2], 1.0, (8, 8), (np.nan, 1.0), impl=i),
                  ValueError, "scale must be finite and > 0"),
    "scale-inf": (lambda i: R.resample_mask(_M, (8, 8), (1.0, np.inf), impl=i),
                  ValueError, "scale must be finite and > 0"),
    "scale-shape": (lambda i: R.raster_polyline(_SQ, 1.0, (8, 8), (1.0,), impl=i),
                    ValueError, r"scale must be \[2\] \(kx, ky\), got shape \[1\]"),
    "mask-float": (lambda i: R.resample_mask(_M.astype(np.float32), (8, 8), impl=i),
                   TypeError, "mask must be a numpy array of dtype bool or uint8, got float32"),
    "mask-int64": (lambda i: R.resample_mask(_M.astype(np.int64), (8, 8), impl=i),
                   TypeError, "mask must be .* bool or uint8, got int64"),
    "mask-list": (lambda i: R.resample_mask([[1, 0], [0, 1]], (8, 8), impl=i),
                  TypeError, "mask must be a numpy array"),
    "mask-3d": (lambda i: R.resample_mask(np.ones((2, 4, 4), bool), (8, 8), impl=i),
                ValueError, r"mask must be \[h, w\] \(2 dims\), got \[2, 4, 4\]"),
    "mask-empty": (lambda i: R.resample_mask(np.ones((0, 4), np.uint8), (8, 8), impl=i),
                   ValueError, r"mask must not be empty, got \[0, 4\]"),
    "impl-unknown": (lambda i: R.raster_polygon(_SQ, (8, 8), impl="cuda"),
                     ValueError, "raster_polygon: impl must be one of"),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case, impl):
    call, exc, match = BAD[case]
    with pytest.raises(exc, match=match):
        call(impl)


# --- the _C functions check their inputs too (direct callers), and never crash --------------

_V = np.array([[1.0, 1.0], [5.0, 1.0], [5.0, 5.0]])

BAD_C = {
    "polygon-float32": (lambda C: C.raster_polygon(_V.astype(np.float32), 8, 8),
                        TypeError, "raster_polygon: vertices must have dtype float64"),
    "polygon-shape": (lambda C: C.raster_polygon(_V[:2], 8, 8),
                      ValueError, r"vertices must be \[N, 2\] with N >= 3, got \[2, 2\]"),
    "polygon-1d": (lambda C: C.raster_polygon(_V.ravel(), 8, 8),
                   ValueError, r"vertices must be \[N, 2\] with N >= 3, got \[6\]"),
    "polygon-strided": (lambda C: C.raster_polygon(np.zeros((6, 2))[::2], 8, 8),
                        ValueError, "vertices must be C-contiguous"),
    "polygon-nan": (lambda C: C.raster_polygon(np.where(_V == 5.0, np.nan, _V), 8, 8),
                    ValueError, "vertices must be finite"),
    "polygon-too-far": (lambda C: C.raster_polygon(_V * 1e9, 8, 8),
                        ValueError, "vertices must lie within"),
    "polygon-out-h": (lambda C: C.raster_polygon(_V, 0, 8),
                      ValueError, "raster_polygon: out_hw must be >= 1"),
    "polyline-width": (lambda C: C.raster_polyline(_V, 0.0, 8, 8),
                       ValueError, "raster_polyline: width must be finite, > 0"),
    "polyline-empty": (lambda C: C.raster_polyline(np.zeros((0, 2)), 1.0, 8, 8),
                       ValueError, r"points must be \[N, 2\] with N >= 1, got \[0, 2\]"),
    "disk-radius": (lambda C: C.raster_disk(1.0, 1.0, float("nan"), 8, 8),
                    ValueError, "raster_disk: radius must be finite"),
    "disk-center": (lambda C: C.raster_disk(float("inf"), 1.0, 1.0, 8, 8),
                    ValueError, "raster_disk: center x must be finite"),
    "box-order": (lambda C: C.raster_box(3.0, 0.0, 1.0, 1.0, 8, 8),
                  ValueError, "raster_box: box must have x0 <= x1"),
    "box-out-w": (lambda C: C.raster_box(0.0, 0.0, 1.0, 1.0, 8, -1),
                  ValueError, "raster_box: out_hw must be >= 1"),
    "mask-dtype": (lambda C: C.resample_mask(np.ones((2, 2), np.int8), 8, 8, 1.0, 1.0),
                   TypeError, "resample_mask: mask must have dtype bool or uint8, got int8"),
    "mask-ndim": (lambda C: C.resample_mask(np.ones(4, np.uint8), 8, 8, 1.0, 1.0),
                  ValueError, r"mask must be \[h, w\] \(2 dims\), got \[4\]"),
    "mask-empty": (lambda C: C.resample_mask(np.ones((3, 0), bool), 8, 8, 1.0, 1.0),
                   ValueError, "mask must not be empty"),
    "mask-scale": (lambda C: C.resample_mask(np.ones((3, 3), bool), 8, 8, 0.0, 1.0),
                   ValueError, "resample_mask: scale must be finite and > 0"),
}


@requires_native
@pytest.mark.parametrize("case", sorted(BAD_C))
def test_native_bad_input(case):
    call, exc, match = BAD_C[case]
    with pytest.raises(exc, match=match):
        call(_ext.native())
