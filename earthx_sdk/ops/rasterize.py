"""Prompt rasterization: points, boxes, polygons, scribbles and mask prompts -> binary masks.

Visual prompts arrive in image pixel coordinates: pixel (row r, col c) covers [c, c+1) x [r, r+1)
and its center is (c + 0.5, r + 0.5); x is the column axis, y the row axis. They are drawn on an
output grid (out_h, out_w) through a per-axis scale (kx, ky): x_out = x * kx, y_out = y * ky (the
resize and bottom/right padding that the image went through). Lengths (disk radius, scribble width)
map by sqrt(kx * ky).

Output pixel (r, c) is 1 iff its center lies inside the mapped shape (rules in each `*_ref`). When
a disk, box, polygon or scribble covers no center but its anchor (disk center, box center, polygon
vertex mean, first scribble point) lies on the grid, the pixel containing the anchor is set, so a
prompt smaller than a pixel still shows.

The public functions validate their input, map the coordinates once in float64 here, and hand the
mapped coordinates to either `earthx_sdk._C` or the `*_ref` numpy reference; the two are bit-exact.
The `*_ref` functions take output-grid coordinates and assume validated input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from earthx_sdk import _ext
from earthx_sdk.ops._checks import check_hw

# Largest |coordinate| (and radius, width) accepted after scaling, in output pixels. It keeps
# every intermediate (crossing abscissae, squared distances) finite and far from overflow; any
# real image is far smaller.
COORD_LIMIT = 1e9

_Scale = tuple[float, float]


# --- references (the spec) ------------------------------------------------------------------


def _span(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Index range [a, b) within [0, n) that surely holds every pixel whose center lies in
    [lo, hi]; one pixel of margin each side so rounding can never cut a pixel off."""
    a = min(max(math.floor(lo) - 1, 0), n)
    b = min(max(math.ceil(hi) + 1, 0), n)
    return a, max(a, b)


def _never_vanish(out: np.ndarray, ax: float, ay: float) -> np.ndarray:
    """Sets the pixel containing the anchor (ax, ay) when `out` is empty and the anchor is on it."""
    h, w = out.shape
    if not out.any() and 0.0 <= ax < w and 0.0 <= ay < h:
        out[math.floor(ay), math.floor(ax)] = 1
    return out


def raster_disk_ref(center: np.ndarray, radius: float, out_hw: tuple[int, int]) -> np.ndarray:
    """Disk: (c + .5 - cx)^2 + (r + .5 - cy)^2 <= radius^2.

    Args:
        center: float64 [2], (cx, cy) in output pixels.
        radius: in output pixels, >= 0.
        out_hw: (out_h, out_w).

    Returns:
        uint8 [out_h, out_w] of 0/1.
    """
    h, w = out_hw
    cx, cy = float(center[0]), float(center[1])
    out = np.zeros((h, w), np.uint8)
    r0, r1 = _span(cy - radius, cy + radius, h)
    c0, c1 = _span(cx - radius, cx + radius, w)
    dx = np.arange(c0, c1, dtype=np.float64) + 0.5 - cx  # [W']
    dy = np.arange(r0, r1, dtype=np.float64) + 0.5 - cy  # [H']
    d2 = dx[None, :] * dx[None, :] + dy[:, None] * dy[:, None]  # [H', W']
    out[r0:r1, c0:c1] = d2 <= radius * radius
    return _never_vanish(out, cx, cy)


def raster_box_ref(box: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Closed box: x0 <= c + .5 <= x1 and y0 <= r + .5 <= y1.

    Args:
        box: float64 [4], (x0, y0, x1, y1) in output pixels, x0 <= x1, y0 <= y1.
        out_hw: (out_h, out_w).

    Returns:
        uint8 [out_h, out_w] of 0/1.
    """
    h, w = out_hw
    x0, y0, x1, y1 = (float(v) for v in box)
    xs = np.arange(w, dtype=np.float64) + 0.5  # [W]
    ys = np.arange(h, dtype=np.float64) + 0.5  # [H]
    in_x = (x0 <= xs) & (xs <= x1)
    in_y = (y0 <= ys) & (ys <= y1)
    out = (in_y[:, None] & in_x[None, :]).astype(np.uint8)  # [H, W]
    return _never_vanish(out, 0.5 * (x0 + x1), 0.5 * (y0 + y1))


def _vertex_mean(v: np.ndarray) -> tuple[float, float]:
    # Summed in order (cumsum is sequential, sum() is pairwise) so that C++ can match it bit-exact.
    n = v.shape[0]
    return float(np.cumsum(v[:, 0])[-1]) / n, float(np.cumsum(v[:, 1])[-1]) / n


def raster_polygon_ref(vertices: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Polygon, implicitly closed, even-odd rule (self-intersections allowed).

    Scanline y = r + .5: edge a -> b crosses iff (ya <= y) != (yb <= y), at
    x = xa + (y - ya) * (xb - xa) / (yb - ya). With the crossings sorted, centers with
    x_{2k} <= c + .5 < x_{2k+1} are in; equivalently, a center is in iff an odd number of
    crossings x satisfies x <= c + .5, which is what is computed here.

    Args:
        vertices: float64 [N, 2], N >= 3, (x, y) in output pixels.
        out_hw: (out_h, out_w).

    Returns:
        uint8 [out_h, out_w] of 0/1.
    """
    h, w = out_hw
    v = np.asarray(vertices, dtype=np.float64)
    xa, ya = v[:, 0], v[:, 1]  # [E]
    nxt = np.roll(v, -1, axis=0)
    xb, yb = nxt[:, 0], nxt[:, 1]  # [E]
    ys = np.arange(h, dtype=np.float64) + 0.5  # [H]
    crosses = (ya[None, :] <= ys[:, None]) != (yb[None, :] <= ys[:, None])  # [H, E]
    rows, e = np.nonzero(crosses)  # [K] each
    y = ys[rows]
    x = xa[e] + (y - ya[e]) * (xb[e] - xa[e]) / (yb[e] - ya[e])  # [K]
    # First column whose center is >= x: the parity of the row flips there.
    col = np.searchsorted(np.arange(w, dtype=np.float64) + 0.5, x, side="left")  # [K] in [0, W]
    flips = np.zeros((h, w + 1), np.uint8)
    np.add.at(flips, (rows, col), 1)  # wraps mod 256, which keeps the parity
    out = np.cumsum(flips[:, :w], axis=1, dtype=np.uint8) & 1  # [H, W]
    return _never_vanish(out, *_vertex_mean(v))


def _segment_d2(px: np.ndarray, py: np.ndarray, ax: float, ay: float, bx: float,
                by: float) -> np.ndarray:
    """Squared distance of points (px [1, W'], py [H', 1]) to segment a-b: [H', W'].

    The one definition shared with C++ (csrc/cpu/rasterize.cpp, segment_d2): same operations, same
    order. A zero-length segment uses t = 0.
    """
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    if length2 == 0.0:
        t = np.zeros((py.shape[0], px.shape[1]))
    else:
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / length2, 0.0, 1.0)
    ex = px - (ax + t * dx)
    ey = py - (ay + t * dy)
    return ex * ex + ey * ey


def raster_polyline_ref(points: np.ndarray, width: float, out_hw: tuple[int, int]) -> np.ndarray:
    """Scribble: centers within width / 2 of any segment (closed capsules); one point is a disk.

    Args:
        points: float64 [N, 2], N >= 1, (x, y) in output pixels.
        width: in output pixels, > 0.
        out_hw: (out_h, out_w).

    Returns:
        uint8 [out_h, out_w] of 0/1.
    """
    h, w = out_hw
    p = np.asarray(points, dtype=np.float64)
    half = width * 0.5
    half2 = half * half
    out = np.zeros((h, w), np.uint8)
    segments = [(0, 0)] if p.shape[0] == 1 else [(i, i + 1) for i in range(p.shape[0] - 1)]
    for i, j in segments:
        ax, ay, bx, by = float(p[i, 0]), float(p[i, 1]), float(p[j, 0]), float(p[j, 1])
        r0, r1 = _span(min(ay, by) - half, max(ay, by) + half, h)
        c0, c1 = _span(min(ax, bx) - half, max(ax, bx) + half, w)
        if r0 == r1 or c0 == c1:
            continue
        px = (np.arange(c0, c1, dtype=np.float64) + 0.5)[None, :]  # [1, W']
        py = (np.arange(r0, r1, dtype=np.float64) + 0.5)[:, None]  # [H', 1]
        out[r0:r1, c0:c1] |= _segment_d2(px, py, ax, ay, bx, by) <= half2
    return _never_vanish(out, float(p[0, 0]), float(p[0, 1]))


def resample_mask_ref(mask: np.ndarray, out_hw: tuple[int, int], scale: _Scale) -> np.ndarray:
    """Nearest-neighbour resampling of a mask prompt through the image -> output mapping.

    Output pixel (r, c) takes image pixel (floor((r + .5) / ky), floor((c + .5) / kx)); outside
    the image it is 0.

    Args:
        mask: bool or uint8 [h, w], nonzero = in.
        out_hw: (out_h, out_w).
        scale: (kx, ky), finite and > 0.

    Returns:
        uint8 [out_h, out_w] of 0/1.
    """
    h, w = out_hw
    kx, ky = scale
    mh, mw = mask.shape
    fx = np.floor((np.arange(w, dtype=np.float64) + 0.5) / kx)  # [W] image column (float)
    fy = np.floor((np.arange(h, dtype=np.float64) + 0.5) / ky)  # [H] image row
    cols = np.nonzero((fx >= 0) & (fx < mw))[0]
    rows = np.nonzero((fy >= 0) & (fy < mh))[0]
    out = np.zeros((h, w), np.uint8)
    src = mask[np.ix_(fy[rows].astype(np.int64), fx[cols].astype(np.int64))]
    out[np.ix_(rows, cols)] = src != 0
    return out


# --- input checks and coordinate mapping, shared by both implementations ---------------------


def _scale(fn: str, scale: Sequence[float]) -> _Scale:
    s = _real_array(fn, "scale", scale)
    if s.shape != (2,):
        raise ValueError(f"{fn}: scale must be [2] (kx, ky), got shape {list(s.shape)}")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"{fn}: scale must be finite and > 0, got {s.tolist()}")
    return float(s[0]), float(s[1])


def _real_array(fn: str, name: str, x: object) -> np.ndarray:
    """Any real numbers (lists or arrays of any int/float dtype) -> float64 array."""
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: {name} must hold real numbers (int or float), got dtype {a.dtype}")
    return a.astype(np.float64)


def _length(fn: str, name: str, x: object, k: float, allow_zero: bool) -> float:
    a = _real_array(fn, name, x)
    if a.shape != ():
        raise ValueError(f"{fn}: {name} must be a scalar, got shape {list(a.shape)}")
    v = float(a)
    rule = ">= 0" if allow_zero else "> 0"
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{fn}: {name} must be finite and {rule}, got {v}")
    mapped = v * k
    if mapped > COORD_LIMIT:
        raise ValueError(f"{fn}: {name} * sqrt(kx * ky) must be <= {COORD_LIMIT:g}, got {mapped}")
    return mapped


def _map_coords(fn: str, name: str, x: object, rule: str, shape_ok: Callable[[tuple], bool],
                kx: float, ky: float) -> np.ndarray:
    """Checks coordinates (x, y pairs, flattened or [N, 2]) and maps them to the output grid:
    x * kx, y * ky in float64. Returns a C-contiguous float64 array of the input's shape."""
    a = _real_array(fn, name, x)
    if not shape_ok(a.shape):
        raise ValueError(f"{fn}: {name} must be {rule}, got {list(a.shape)}")
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise ValueError(f"{fn}: {name} must be finite (no NaN or Inf), got {a[at]} at index "
                         f"{at if len(at) > 1 else at[0]}")
    k = np.array([kx, ky], np.float64)
    mapped = np.ascontiguousarray((a.reshape(-1, 2) * k).reshape(a.shape))  # x * kx, y * ky
    big = float(np.max(np.abs(mapped)))
    if big > COORD_LIMIT:
        raise ValueError(f"{fn}: {name} times scale must lie within +-{COORD_LIMIT:g}, got a "
                         f"coordinate of magnitude {big:g}")
    return mapped


def _points_ok(min_n: int) -> Callable[[tuple], bool]:
    return lambda shape: len(shape) == 2 and shape[1] == 2 and shape[0] >= min_n


# --- public API ------------------------------------------------------------------------------


def raster_disk(center: Sequence[float], radius: float, out_hw: Sequence[int],
                scale: Sequence[float] = (1.0, 1.0), impl: str = "auto") -> np.ndarray:
    """Rasterizes a point prompt as a disk.

    Args:
        center: (x, y) in image pixels, [2] (list or array of any real dtype).
        radius: in image pixels, finite and >= 0; 0 marks just the pixel that holds the point.
        out_hw: (out_h, out_w), both >= 1.
        scale: (kx, ky) image -> output, finite and > 0; the radius scales by sqrt(kx * ky).
        impl: "auto", "native" or "ref".

    Returns:
        uint8 [out_h, out_w], 1 where the pixel center is within the disk.

    Raises:
        ValueError: center not [2] or not finite; radius negative or not finite; out_hw dim < 1;
            scale not finite or <= 0; a mapped coordinate beyond COORD_LIMIT.
        TypeError: non-real input; out_hw not two ints.
    """
    fn = "raster_disk"
    native = _ext.use_native(impl, fn)
    h, w = check_hw(fn, "out_hw", out_hw)
    kx, ky = _scale(fn, scale)
    c = _map_coords(fn, "center", center, "[2] (x, y)", lambda s: s == (2,), kx, ky)
    r = _length(fn, "radius", radius, math.sqrt(kx * ky), allow_zero=True)
    if native:
        return _ext.native().raster_disk(float(c[0]), float(c[1]), r, h, w)
    return raster_disk_ref(c, r, (h, w))


def raster_box(box: Sequence[float], out_hw: Sequence[int], scale: Sequence[float] = (1.0, 1.0),
               impl: str = "auto") -> np.ndarray:
    """Rasterizes a box prompt; the box is closed on all four sides.

    Args:
        box: (x0, y0, x1, y1) in image pixels, [4], x0 <= x1 and y0 <= y1 (zero area allowed).
        out_hw: (out_h, out_w), both >= 1.
        scale: (kx, ky) image -> output, finite and > 0.
        impl: "auto", "native" or "ref".

    Returns:
        uint8 [out_h, out_w], 1 where the pixel center is within the box.

    Raises:
        ValueError: box not [4], not finite or with x0 > x1 or y0 > y1; out_hw dim < 1; scale not
            finite or <= 0; a mapped coordinate beyond COORD_LIMIT.
        TypeError: non-real input; out_hw not two ints.
    """
    fn = "raster_box"
    native = _ext.use_native(impl, fn)
    h, w = check_hw(fn, "out_hw", out_hw)
    kx, ky = _scale(fn, scale)
    b = _map_coords(fn, "box", box, "[4] (x0, y0, x1, y1)", lambda s: s == (4,), kx, ky)
    if not (b[0] <= b[2] and b[1] <= b[3]):
        raise ValueError(f"{fn}: box must have x0 <= x1 and y0 <= y1, got "
                         f"{_real_array(fn, 'box', box).tolist()}")
    if native:
        return _ext.native().raster_box(*(float(v) for v in b), h, w)
    return raster_box_ref(b, (h, w))


def raster_polygon(vertices: Sequence[Sequence[float]] | np.ndarray, out_hw: Sequence[int],
                   scale: Sequence[float] = (1.0, 1.0), impl: str = "auto") -> np.ndarray:
    """Rasterizes a free-form polygon prompt (implicitly closed, even-odd rule).

    Args:
        vertices: [N, 2] (x, y) in image pixels, N >= 3; self-intersecting allowed.
        out_hw: (out_h, out_w), both >= 1.
        scale: (kx, ky) image -> output, finite and > 0.
        impl: "auto", "native" or "ref".

    Returns:
        uint8 [out_h, out_w], 1 where the pixel center is inside.

    Raises:
        ValueError: vertices not [N, 2] with N >= 3 or not finite; out_hw dim < 1; scale not
            finite or <= 0; a mapped coordinate beyond COORD_LIMIT.
        TypeError: non-real input; out_hw not two ints.
    """
    fn = "raster_polygon"
    native = _ext.use_native(impl, fn)
    h, w = check_hw(fn, "out_hw", out_hw)
    kx, ky = _scale(fn, scale)
    v = _map_coords(fn, "vertices", vertices, "[N, 2] with N >= 3", _points_ok(3), kx, ky)
    if native:
        return _ext.native().raster_polygon(v, h, w)
    return raster_polygon_ref(v, (h, w))


def raster_polyline(points: Sequence[Sequence[float]] | np.ndarray, width: float,
                    out_hw: Sequence[int], scale: Sequence[float] = (1.0, 1.0),
                    impl: str = "auto") -> np.ndarray:
    """Rasterizes a scribble: a polyline of the given width with round caps and joins.

    Args:
        points: [N, 2] (x, y) in image pixels, N >= 1 (one point draws a disk of diameter width).
        width: in image pixels, finite and > 0; it scales by sqrt(kx * ky).
        out_hw: (out_h, out_w), both >= 1.
        scale: (kx, ky) image -> output, finite and > 0.
        impl: "auto", "native" or "ref".

    Returns:
        uint8 [out_h, out_w], 1 where the pixel center is within width / 2 of the polyline.

    Raises:
        ValueError: points not [N, 2] with N >= 1 or not finite; width <= 0 or not finite;
            out_hw dim < 1; scale not finite or <= 0; a mapped value beyond COORD_LIMIT.
        TypeError: non-real input; out_hw not two ints.
    """
    fn = "raster_polyline"
    native = _ext.use_native(impl, fn)
    h, w = check_hw(fn, "out_hw", out_hw)
    kx, ky = _scale(fn, scale)
    p = _map_coords(fn, "points", points, "[N, 2] with N >= 1", _points_ok(1), kx, ky)
    wd = _length(fn, "width", width, math.sqrt(kx * ky), allow_zero=False)
    if native:
        return _ext.native().raster_polyline(p, wd, h, w)
    return raster_polyline_ref(p, wd, (h, w))


def resample_mask(mask: np.ndarray, out_hw: Sequence[int], scale: Sequence[float] = (1.0, 1.0),
                  impl: str = "auto") -> np.ndarray:
    """Resamples a mask prompt (image resolution) onto the output grid, nearest neighbour.

    Args:
        mask: bool or uint8 [h, w] at image resolution, nonzero = in; may be non-contiguous.
        out_hw: (out_h, out_w), both >= 1.
        scale: (kx, ky) image -> output, finite and > 0.
        impl: "auto", "native" or "ref".

    Returns:
        uint8 [out_h, out_w] of 0/1; 0 where the output pixel maps outside the image.

    Raises:
        ValueError: mask not 2-D or empty; out_hw dim < 1; scale not finite or <= 0.
        TypeError: mask not a bool or uint8 array; out_hw not two ints.
    """
    fn = "resample_mask"
    native = _ext.use_native(impl, fn)
    h, w = check_hw(fn, "out_hw", out_hw)
    kx, ky = _scale(fn, scale)
    if not isinstance(mask, np.ndarray) or mask.dtype not in (np.bool_, np.uint8):
        got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"{fn}: mask must be a numpy array of dtype bool or uint8, got {got}")
    if mask.ndim != 2:
        raise ValueError(f"{fn}: mask must be [h, w] (2 dims), got {list(mask.shape)}")
    if mask.size == 0:
        raise ValueError(f"{fn}: mask must not be empty, got {list(mask.shape)}")
    if native:
        return _ext.native().resample_mask(mask, h, w, kx, ky)
    return resample_mask_ref(mask, (h, w), (kx, ky))
