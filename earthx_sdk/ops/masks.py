"""Mask postprocess: logit upsampling + threshold, COCO RLE, outer contours.

The numpy functions `*_ref` are the spec; `earthx_sdk._C` implements the same arithmetic
(upsampling and threshold fused in one pass, multithreaded).

Geometry: the model saw the image resized from (H, W) to (nh, nw), aspect kept, and padded at the
bottom/right to a `size` x `size` square (see earthx_sdk/ops/preprocess.py). The mask decoder's
logits [N, h, w] cover that padded square. `upsample_logits` undoes the pad and the resize in one
bilinear step; output pixel (i, j) samples the logits at
    x = (j + 0.5) * (nw / W) * (w / size) - 0.5,  y = (i + 0.5) * (nh / H) * (h / size) - 0.5
(float64, in this order), clamped to [0, w - 1] / [0, h - 1], with taps x0 = floor(x),
x1 = min(x0 + 1, w - 1), weights 1 - fx and fx rounded to float32. The interpolation runs in
float32: first along the height (row(y0) * wy0 + row(y1) * wy1), then along the width.

Logits are float32; other real floating dtypes (float16, float64) are converted to float32 by the
public functions (integer, bool, complex or string arrays are a TypeError). A NaN logit makes every
output value that reads it NaN (even with a zero weight), so the thresholded pixel is off: exactly
what a -inf logit would give.

COCO RLE is pycocotools' format: column-major runs starting with a run of zeros; the compressed
"counts" string codes each run minus the run two before (for i > 2) in 5-bit groups + 48, low group
first, 0x20 marking "more groups follow". Masks are foreground where nonzero.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from earthx_sdk import _ext
from earthx_sdk.ops._checks import check_hw

_F32_MAX = float(np.finfo(np.float32).max)
_MAX_SIDE = 2**31 - 1  # RLE sizes: H * W and every run fit in int64
_RIGHT, _DOWN, _LEFT, _UP = range(4)  # contour directions, clockwise on screen (y down)


# ------------------------------------------------------------------------------------------------
# Input checks, shared by both implementations
# ------------------------------------------------------------------------------------------------

def _as_array(x, fn: str, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)) or hasattr(x, "__array__"):
        return np.asarray(x)
    raise TypeError(f"{fn}: {name} must be a numpy array, got {type(x).__name__}")


def _check_logits(fn: str, logits) -> np.ndarray:
    """float32 [N, h, w] or [h, w] view (converted from other real floats, never copied else)."""
    logits = _as_array(logits, fn, "logits")
    if logits.dtype.kind != "f":
        raise TypeError(f"{fn}: logits must have a real floating dtype (float32; float16 and "
                        f"float64 are converted), got {logits.dtype}")
    if logits.ndim not in (2, 3):
        raise ValueError(f"{fn}: logits must be [N, h, w] or [h, w] (ndim 3 or 2), got shape "
                         f"{list(logits.shape)}")
    if logits.size == 0:
        raise ValueError(f"{fn}: logits must not be empty, got shape {list(logits.shape)}")
    return np.asarray(logits, np.float32)


def _check_int(fn: str, name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{fn}: {name} must be >= 1, got {v}")
    return int(v)


def _check_geometry(fn: str, size, resized_hw, orig_hw):
    size = _check_int(fn, "size", size)
    resized_hw = check_hw(fn, "resized_hw", resized_hw)
    orig_hw = check_hw(fn, "orig_hw", orig_hw)
    if max(resized_hw) > size:
        raise ValueError(f"{fn}: resized_hw must fit in the size x size input (each <= {size}), "
                         f"got {resized_hw}")
    return size, resized_hw, orig_hw


def check_threshold(fn: str, threshold) -> float:
    """`threshold` as a float; TypeError / ValueError naming `fn` for a non-real or NaN one."""
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"{fn}: threshold must be a real number, got {type(threshold).__name__}")
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError(f"{fn}: threshold must not be NaN")
    return threshold


def _check_mask(fn: str, mask, ndims: tuple[int, ...]) -> np.ndarray:
    mask = _as_array(mask, fn, "mask")
    if mask.dtype not in (np.bool_, np.uint8):
        raise TypeError(f"{fn}: mask must have dtype bool or uint8, got {mask.dtype}")
    if mask.ndim not in ndims:
        layout = "[H, W]" if ndims == (2,) else "[H, W] or [N, H, W]"
        raise ValueError(f"{fn}: mask must be {layout} (ndim {' or '.join(map(str, ndims))}), "
                         f"got shape {list(mask.shape)}")
    if mask.size == 0:
        raise ValueError(f"{fn}: mask must not be empty, got shape {list(mask.shape)}")
    return mask


def _check_rle(fn: str, rle) -> dict:
    """{"size": [H, W] ints, "counts": bytes or int64 [K]}; the runs themselves are checked by
    each implementation while parsing (they need the parse to be checked)."""
    if not isinstance(rle, dict):
        raise TypeError(f"{fn}: rle must be a dict {{'size': [H, W], 'counts': ...}}, got "
                        f"{type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise ValueError(f"{fn}: rle must have the keys 'size' and 'counts', got {list(rle)}")
    size = rle["size"]
    ok = isinstance(size, (list, tuple, np.ndarray)) and len(size) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        and 0 <= v <= _MAX_SIDE for v in size)
    if not ok:
        raise ValueError(f"{fn}: rle['size'] must be two non-negative ints [H, W] (each < 2**31), "
                         f"got {size!r}")
    counts = rle["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{fn}: rle['counts'] has a bad character {counts[exc.start]!r} at "
                             f"index {exc.start} (COCO counts use '0'..'o')") from None
    elif isinstance(counts, (list, tuple, np.ndarray)):
        arr = np.asarray(counts)
        if arr.size == 0:
            arr = np.zeros(0, np.int64)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{fn}: rle['counts'] as a list must hold ints (fitting int64), got "
                            f"dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"{fn}: rle['counts'] as a list must be flat [K], got shape "
                             f"{list(arr.shape)}")
        if arr.dtype == np.uint64:  # beyond int64: clip, still reported as a run > H*W
            arr = np.minimum(arr, np.uint64(2**63 - 1))
        counts = np.ascontiguousarray(arr, np.int64)
    elif not isinstance(counts, bytes):
        raise TypeError(f"{fn}: rle['counts'] must be bytes, str or a list of ints, got "
                        f"{type(counts).__name__}")
    return {"size": [int(size[0]), int(size[1])], "counts": counts}


def _f32_cutoff(t: float) -> np.float32:
    """The float32 c with (v > c) == (v > t) for every float32 v: the threshold compares the exact
    upsampled value with the exact float64 threshold, without a float64 image."""
    if t >= _F32_MAX:  # only +inf exceeds it, and nothing exceeds +inf
        return np.float32(np.inf) if t == math.inf else np.float32(_F32_MAX)
    if t < -_F32_MAX:  # everything but -inf (and NaN) exceeds it
        return np.float32(-np.inf)
    c = np.float32(t)
    if float(c) > t:
        c = np.nextafter(c, np.float32(-np.inf))
    return c


# ------------------------------------------------------------------------------------------------
# Numpy reference: logits
# ------------------------------------------------------------------------------------------------

def _axis_taps(out: int, n_in: int, resized: int, size: int):
    """Taps i0, i1 [out] int64 and weights w0, w1 [out] float32 of one axis (see module doc)."""
    x = (np.arange(out, dtype=np.float64) + 0.5) * (resized / out) * (n_in / size) - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    f = x - i0
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (1.0 - f).astype(np.float32), f.astype(np.float32)


def upsample_logits_ref(logits: np.ndarray, size: int, resized_hw: tuple[int, int],
                        orig_hw: tuple[int, int]) -> np.ndarray:
    """Checked float32 logits [N, h, w] / [h, w] -> float32 [N, H, W] / [H, W] (see module doc)."""
    batched = logits.ndim == 3
    lg = logits if batched else logits[None]  # [N, h, w]
    h, w = lg.shape[1:]
    y0, y1, wy0, wy1 = _axis_taps(orig_hw[0], h, resized_hw[0], size)
    x0, x1, wx0, wx1 = _axis_taps(orig_hw[1], w, resized_hw[1], size)
    rows = lg[:, y0, :] * wy0[:, None] + lg[:, y1, :] * wy1[:, None]  # [N, H, w] float32
    out = rows[:, :, x0] * wx0 + rows[:, :, x1] * wx1  # [N, H, W] float32
    return out if batched else out[0]


def postprocess_masks_ref(logits: np.ndarray, size: int, resized_hw: tuple[int, int],
                          orig_hw: tuple[int, int], threshold: float = 0.0) -> np.ndarray:
    """upsample_logits_ref(...) > threshold (exact float64 comparison) -> uint8 0/1."""
    up = upsample_logits_ref(logits, size, resized_hw, orig_hw)
    return (up > _f32_cutoff(threshold)).view(np.uint8)


# ------------------------------------------------------------------------------------------------
# Numpy reference: COCO RLE
# ------------------------------------------------------------------------------------------------

def _runs_ref(mask: np.ndarray) -> np.ndarray:
    """[H, W] mask -> int64 column-major run lengths, the first counting zeros."""
    flat = (mask != 0).T.ravel()  # column-major
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64)


def _runs_to_bytes(cnts: np.ndarray) -> bytes:
    """pycocotools' rleToString, vectorized: every value takes ceil((bits + 1) / 5) groups."""
    x = cnts.copy()
    x[3:] -= cnts[1:-2]  # x[i] -= cnts[i - 2] for i > 2
    mag = np.where(x < 0, ~x, x)  # value bits without the sign
    groups = np.ones(x.size, np.int64)
    k = 1
    top = int(mag.max()) if mag.size else 0
    while (1 << (5 * k - 1)) <= top:  # a k+1-th group is needed iff mag >= 2**(5k - 1)
        groups += mag >= (1 << (5 * k - 1))
        k += 1
    starts = np.cumsum(groups) - groups
    val = np.repeat(x, groups)
    g = np.arange(val.size) - np.repeat(starts, groups)  # group index within its value
    chunk = (val >> (5 * g)) & 0x1F
    more = g < np.repeat(groups, groups) - 1
    return (chunk + (more.astype(np.int64) << 5) + 48).astype(np.uint8).tobytes()


def rle_encode_ref(mask: np.ndarray) -> dict | list[dict]:
    """Checked mask [H, W] or [N, H, W] -> {"size": [H, W], "counts": bytes} (or a list)."""
    if mask.ndim == 3:
        return [rle_encode_ref(m) for m in mask]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])],
            "counts": _runs_to_bytes(_runs_ref(mask))}


def _bad_runs(fn: str, cnts: np.ndarray, hw: int) -> None:
    """Raises on the first run outside [0, H*W], then on a total other than H*W."""
    bad = np.flatnonzero((cnts < 0) | (cnts > hw))
    if bad.size:
        i = int(bad[0])
        v = int(cnts[i])
        if v < 0:
            raise ValueError(f"{fn}: rle['counts'] must be non-negative run lengths, got {v} at "
                             f"index {i}")
        raise ValueError(f"{fn}: rle['counts'] must sum to H*W = {hw}, got a run of {v} at index "
                         f"{i}")
    total = np.cumsum(cnts)  # runs in [0, hw]: exact up to the first partial sum above hw
    over = np.flatnonzero(total > hw)
    if over.size:
        i = int(over[0])
        raise ValueError(f"{fn}: rle['counts'] must sum to H*W = {hw}, the first {i + 1} runs "
                         f"already sum to {int(total[i])}")
    got = int(total[-1]) if total.size else 0
    if got != hw:
        raise ValueError(f"{fn}: rle['counts'] must sum to H*W = {hw}, got {got}")


def _parse_counts_ref(fn: str, s: bytes, hw: int) -> np.ndarray:
    """pycocotools' rleFrString, vectorized, with every malformation reported."""
    c = np.frombuffer(s, np.uint8).astype(np.int64)
    bad = np.flatnonzero((c < 48) | (c > 111))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{fn}: rle['counts'] has a bad character 0x{int(c[i]):02x} at index {i} "
                         f"(COCO counts use '0'..'o')")
    c -= 48
    if c.size == 0:
        cnts = np.zeros(0, np.int64)
        _bad_runs(fn, cnts, hw)
        return cnts
    last = (c & 0x20) == 0  # the last group of a value
    if not last[-1]:
        raise ValueError(f"{fn}: rle['counts'] ends inside a value (its last character has the "
                         f"continuation bit)")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    groups = ends - starts + 1
    long = np.flatnonzero(groups > 12)
    if long.size:
        raise ValueError(f"{fn}: rle['counts'] value {int(long[0])} is longer than 12 characters")
    k = np.arange(c.size) - np.repeat(starts, groups)
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * groups[neg])  # sign extension
    cnts = x.copy()
    cnts[1::2] = np.cumsum(x[1::2])  # cnts[i] = x[i] + cnts[i - 2] for i > 2
    cnts[2::2] = np.cumsum(x[2::2])
    _bad_runs(fn, cnts, hw)  # |x| < 2**59: exact up to the first bad run, which is reported
    return cnts


def _runs_of(fn: str, rle: dict) -> tuple[int, int, np.ndarray]:
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, bytes):
        return h, w, _parse_counts_ref(fn, counts, h * w)
    _bad_runs(fn, counts, h * w)
    return h, w, counts


def rle_decode_ref(rle: dict) -> np.ndarray:
    """Checked RLE (see _check_rle) -> uint8 [H, W], C-contiguous."""
    h, w, cnts = _runs_of("rle_decode", rle)
    vals = np.zeros(cnts.size, np.uint8)
    vals[1::2] = 1
    flat = np.repeat(vals, cnts)  # column-major
    return np.ascontiguousarray(flat.reshape(w, h).T)


def rle_area_ref(rle: dict) -> int:
    """Checked RLE -> foreground pixel count."""
    _, _, cnts = _runs_of("rle_area", rle)
    return int(cnts[1::2].sum())


# ------------------------------------------------------------------------------------------------
# Numpy reference: outer contours
# ------------------------------------------------------------------------------------------------

def mask_to_polygons_ref(mask: np.ndarray) -> list[np.ndarray]:
    """Checked mask [H, W] -> outer contours, float64 [K, 2] (x, y) each.

    All pixel edges between foreground and background, directed with the foreground on the right,
    are linked into cycles: at a vertex the next edge turns left if it can, else goes straight,
    else turns right (turning left at a corner shared by two diagonal foreground pixels keeps them
    in one component: 8-connectivity). Each cycle is the boundary between one foreground
    component and one background region; the outer ones are those whose first vertex in raster
    order (the top-left corner of their component's first pixel) leaves to the right. Vertices are
    kept where the direction changes, from that first vertex on.
    """
    fg = mask != 0
    h, w = fg.shape
    p = np.zeros((h + 2, w + 2), bool)
    p[1:-1, 1:-1] = fg
    above, below = p[:-1, 1:-1], p[1:, 1:-1]  # [h + 1, w]: pixels on both sides of y = i
    left, right = p[1:-1, :-1], p[1:-1, 1:]  # [h, w + 1]: pixels on both sides of x = j
    parts = []
    for sel, dx, dy, d in (
        (~above & below, 0, 0, _RIGHT),  # top edges: (j, i) -> (j + 1, i)
        (above & ~below, 1, 0, _LEFT),  # bottom edges: (j + 1, i) -> (j, i)
    ):
        i, j = np.nonzero(sel)
        parts.append((j + dx, i + dy, np.full(i.size, d)))
    for sel, dx, dy, d in (
        (left & ~right, 0, 0, _DOWN),  # right side of a pixel: (j, i) -> (j, i + 1)
        (~left & right, 0, 1, _UP),  # left side of a pixel: (j, i + 1) -> (j, i)
    ):
        i, j = np.nonzero(sel)
        parts.append((j + dx, i + dy, np.full(i.size, d)))
    sx = np.concatenate([q[0] for q in parts]).astype(np.int64)
    sy = np.concatenate([q[1] for q in parts]).astype(np.int64)
    d = np.concatenate([q[2] for q in parts]).astype(np.int64)
    n = sx.size
    if n == 0:
        return []
    step_x = np.array([1, 0, -1, 0])
    step_y = np.array([0, 1, 0, -1])
    vkey = sy * (w + 1) + sx  # start vertex in raster order
    key = vkey * 4 + d
    order = np.argsort(key)
    skey = key[order]
    end = (sy + step_y[d]) * (w + 1) + (sx + step_x[d])

    def lookup(q):
        pos = np.minimum(np.searchsorted(skey, q), n - 1)
        return np.where(skey[pos] == q, order[pos], -1)

    nxt = lookup(end * 4 + (d + 3) % 4)  # left turn first,
    nxt = np.where(nxt >= 0, nxt, lookup(end * 4 + d))  # then straight,
    nxt = np.where(nxt >= 0, nxt, lookup(end * 4 + (d + 1) % 4))  # else right
    prv = np.empty(n, np.int64)
    prv[nxt] = np.arange(n)

    # Cycle label: the smallest edge id of the cycle (pointer doubling: after k rounds, the
    # minimum over 2**k successors).
    lab, jump = np.arange(n), nxt.copy()
    for _ in range(n.bit_length()):
        lab = np.minimum(lab, lab[jump])
        jump = jump[jump]
    # The edge leaving each cycle's first vertex in raster order; outer cycles leave it rightwards.
    by = np.lexsort((vkey, lab))
    heads = by[np.concatenate(([True], lab[by][1:] != lab[by][:-1]))]  # one per cycle
    first = heads[d[heads] == _RIGHT]
    first = first[np.argsort(vkey[first])]  # components in raster order of their first pixel
    if first.size == 0:
        return []
    rank_of_label = np.full(n, -1)
    rank_of_label[lab[first]] = np.arange(first.size)
    cyc = rank_of_label[lab]  # outer cycle index per edge, -1 for hole cycles

    # Steps from each edge to the last edge of its cycle (list ranking by pointer doubling).
    tail = prv[heads]
    link = nxt.copy()
    link[tail] = tail
    dist = (link != np.arange(n)).astype(np.int64)
    for _ in range(n.bit_length()):
        dist = dist + dist[link]
        link = link[link]
    corner = d != d[prv]
    keep = np.flatnonzero((cyc >= 0) & corner)
    keep = keep[np.lexsort((-dist[keep], cyc[keep]))]
    xy = np.stack([sx[keep], sy[keep]], axis=1).astype(np.float64)  # [K_total, 2]
    sizes = np.bincount(cyc[keep], minlength=first.size)
    return np.split(xy, np.cumsum(sizes)[:-1])


# ------------------------------------------------------------------------------------------------
# Public functions
# ------------------------------------------------------------------------------------------------

def upsample_logits(logits, size: int, resized_hw: tuple[int, int], orig_hw: tuple[int, int],
                    impl: str = "auto") -> np.ndarray:
    """Mask logits over the padded model input -> logits over the original image.

    Args:
        logits: [N, h, w] or [h, w] float32 (float16/float64 are converted), any strides; they
            cover the padded `size` x `size` model input.
        size: side of the square model input.
        resized_hw: (nh, nw), the image's size inside the square (each <= size).
        orig_hw: (H, W) of the original image.
        impl: "auto" | "native" | "ref".

    Returns:
        float32 [N, H, W] (or [H, W]): bilinear, half-pixel centers (see the module doc). NaN
        logits give NaN wherever they are read.

    Raises:
        TypeError: logits not a real float array; size / resized_hw / orig_hw not ints.
        ValueError: wrong ndim, empty logits, dims < 1, resized_hw larger than size.
    """
    fn = "upsample_logits"
    logits = _check_logits(fn, logits)
    size, resized_hw, orig_hw = _check_geometry(fn, size, resized_hw, orig_hw)
    if _ext.use_native(impl, fn):
        return _ext.native().upsample_logits(logits, size, resized_hw, orig_hw)
    return upsample_logits_ref(logits, size, resized_hw, orig_hw)


def postprocess_masks(logits, size: int, resized_hw: tuple[int, int], orig_hw: tuple[int, int],
                      threshold: float = 0.0, impl: str = "auto") -> np.ndarray:
    """Mask logits over the padded model input -> binary masks over the original image.

    Args:
        logits, size, resized_hw, orig_hw, impl: as in `upsample_logits`.
        threshold: a pixel is on where its upsampled logit (float32) > threshold (compared
            exactly, as float64); not NaN.

    Returns:
        uint8 0/1 [N, H, W] (or [H, W]): `upsample_logits(...) > threshold`, bit for bit; the
        native path never materializes the float image. Pixels reading a NaN logit are off.

    Raises:
        TypeError / ValueError: as `upsample_logits`; threshold not a real number or NaN.
    """
    fn = "postprocess_masks"
    logits = _check_logits(fn, logits)
    size, resized_hw, orig_hw = _check_geometry(fn, size, resized_hw, orig_hw)
    threshold = check_threshold(fn, threshold)
    if _ext.use_native(impl, fn):
        return _ext.native().postprocess_masks(logits, size, resized_hw, orig_hw, threshold)
    return postprocess_masks_ref(logits, size, resized_hw, orig_hw, threshold)


def rle_encode(mask, impl: str = "auto") -> dict | list[dict]:
    """Binary mask(s) -> COCO compressed RLE, byte-identical to pycocotools.mask.encode.

    Args:
        mask: bool or uint8 [H, W] or [N, H, W], any strides (C- or Fortran-ordered are read in
            place); nonzero is foreground. For 0/1 masks the counts equal
            `pycocotools.mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]`.
        impl: "auto" | "native" | "ref".

    Returns:
        {"size": [H, W], "counts": bytes} for [H, W]; a list of N of them for [N, H, W].

    Raises:
        TypeError: mask dtype not bool / uint8.
        ValueError: mask not 2-D / 3-D, or empty.
    """
    fn = "rle_encode"
    mask = _check_mask(fn, mask, (2, 3))
    if _ext.use_native(impl, fn):
        return _ext.native().rle_encode(mask)
    return rle_encode_ref(mask)


def rle_decode(rle: dict, impl: str = "auto") -> np.ndarray:
    """COCO RLE -> binary mask.

    Args:
        rle: {"size": [H, W], "counts": c}: c is the compressed string (bytes or ASCII str) or the
            uncompressed run lengths (a list / 1-D array of ints, column-major, zeros first).
        impl: "auto" | "native" | "ref".

    Returns:
        uint8 0/1 [H, W], C-contiguous.

    Raises:
        TypeError: rle not a dict; counts of another type, or a list of non-ints.
        ValueError: missing keys; size not two non-negative ints; a bad character, a truncated or
            over-long value in the string; a negative run; runs not summing to H * W.
    """
    fn = "rle_decode"
    rle = _check_rle(fn, rle)
    if _ext.use_native(impl, fn):
        return _ext.native().rle_decode(rle)
    return rle_decode_ref(rle)


def rle_area(rle: dict, impl: str = "auto") -> int:
    """Foreground pixel count of a COCO RLE (same input and errors as `rle_decode`)."""
    fn = "rle_area"
    rle = _check_rle(fn, rle)
    if _ext.use_native(impl, fn):
        return int(_ext.native().rle_area(rle))
    return rle_area_ref(rle)


def mask_to_polygons(mask, impl: str = "auto") -> list[np.ndarray]:
    """Outer contours of the 8-connected foreground components of a mask.

    Each contour runs along pixel edges (vertices at integer pixel corners), clockwise on screen
    (y down), from the top-left corner of the component's first pixel in raster order, first to the
    right; only vertices where the direction changes, no repeated closing vertex. Holes are ignored;
    a corner shared by two diagonal pixels of the component appears twice. Filling a contour with
    the even-odd rule at pixel centers gives its component with its holes filled.

    Args:
        mask: bool or uint8 [H, W], any strides; nonzero is foreground.
        impl: "auto" | "native" | "ref".

    Returns:
        list of float64 [K, 2] (x, y), ordered by the components' first pixel in raster order.

    Raises:
        TypeError: mask dtype not bool / uint8.
        ValueError: mask not 2-D, or empty.
    """
    fn = "mask_to_polygons"
    mask = _check_mask(fn, mask, (2,))
    if _ext.use_native(impl, fn):
        return _ext.native().mask_to_polygons(mask)
    return mask_to_polygons_ref(mask)
