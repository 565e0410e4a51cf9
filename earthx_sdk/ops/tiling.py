"""Tiling of large scenes: a grid of overlapping fixed-size tiles, and the stitching of per-tile
outputs back into one image with weights that cross-fade over the overlaps.

A scene of any size is cut with `tile_grid` (and `iter_tiles`), each tile runs through the model,
and `stitch` (values, e.g. logits) or `stitch_masks` (binary masks) blends the results.

Grid, per axis of length L: t = min(tile, L); if L <= tile, one span [0, L); else starts 0,
stride, 2 * stride, ... (stride = tile - overlap) while start + tile < L, then a last start L - t,
so every tile is full-size and the last one ends at L. Boxes are rows (y0, x0, y1, x1), half-open.

Blend weights of a tile of size (th, tw): w[i, j] = wy[i] * wx[j] with the 1-D ramp
w[i] = min(i + 1, n - i, ramp) / ramp, ramp = max(1, overlap), in float32. The stitched value of a
pixel is sum(w * v) / sum(w) over the tiles that cover it, accumulated in float32 in tile order; a
pixel that no tile covers is 0.0 (see `coverage`). `stitch_masks` is `stitch` of the masks as
0.0 / 1.0 followed by `>= 0.5`: ties (a vote of exactly 0.5) go to the foreground.

The numpy functions `*_ref` are the spec; `earthx_sdk._C` does the same float32 arithmetic in the
same order, row-parallel and without a weight image per tile (its masks are bit-exact with the
reference, its floats agree to rounding at most).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from earthx_sdk import _ext
from earthx_sdk.ops._checks import check_hw

LAYOUTS = ("hwc", "chw")


# ------------------------------------------------------------------------------------------------
# Input checks, shared by both implementations
# ------------------------------------------------------------------------------------------------

def _as_int(value, fn: str, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def _check_overlap(overlap, fn: str) -> int:
    overlap = _as_int(overlap, fn, "overlap")
    if overlap < 0:
        raise ValueError(f"{fn}: overlap must be >= 0, got {overlap}")
    return overlap


def _as_boxes(boxes, fn: str) -> np.ndarray:
    """boxes as a C-contiguous int64 [N, 4] (dtype and shape checked, values not)."""
    boxes = np.asarray(boxes)
    if not np.issubdtype(boxes.dtype, np.integer):
        raise TypeError(f"{fn}: boxes must have an integer dtype (int64 from tile_grid), "
                        f"got {boxes.dtype}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{fn}: boxes must be [N, 4] rows (y0, x0, y1, x1), "
                         f"got {list(boxes.shape)}")
    return np.ascontiguousarray(boxes, dtype=np.int64)


def _check_boxes(boxes, fn: str, out_hw: tuple[int, int],
                 size: tuple[int, int] | None = None) -> np.ndarray:
    """boxes as a C-contiguous int64 [N, 4], inside the image, of `size` (th, tw) when given."""
    boxes = _as_boxes(boxes, fn)
    h, w = out_hw
    y0, x0, y1, x1 = boxes.T  # [N] each
    outside = (y0 < 0) | (x0 < 0) | (y1 > h) | (x1 > w)
    if outside.any():
        k = int(np.argmax(outside))
        raise ValueError(f"{fn}: boxes must lie inside the image (0 <= y0, 0 <= x0, y1 <= {h}, "
                         f"x1 <= {w}), got box {k} = {boxes[k].tolist()}")
    if size is not None:
        bad = (y1 - y0 != size[0]) | (x1 - x0 != size[1])
        rule = f"have the tiles' size (y1 - y0, x1 - x0) = ({size[0]}, {size[1]})"
    else:
        bad = (y1 <= y0) | (x1 <= x0)
        rule = "be non-empty (y0 < y1, x0 < x1)"
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{fn}: boxes must {rule}, got box {k} = {boxes[k].tolist()}")
    return boxes


def _check_stitch(values, boxes, out_hw, overlap, fn: str, name: str, dtypes: tuple,
                  dtype_rule: str, layouts: tuple[int, ...], layout_rule: str):
    if not isinstance(values, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy array, got {type(values).__name__}")
    if values.dtype not in dtypes:
        raise TypeError(f"{fn}: {name} must have dtype {dtype_rule}, got {values.dtype}")
    if values.ndim not in layouts:
        raise ValueError(f"{fn}: {name} must be {layout_rule}, got {list(values.shape)}")
    if min(values.shape[1:]) < 1:
        raise ValueError(f"{fn}: {name} must have channels and tile sides >= 1, "
                         f"got {list(values.shape)}")
    overlap = _check_overlap(overlap, fn)
    out_hw = check_hw(fn, "out_hw", out_hw)
    boxes = _as_boxes(boxes, fn)
    if len(boxes) != len(values):
        raise ValueError(f"{fn}: {name} and boxes must have the same N, got {len(values)} "
                         f"and {len(boxes)}")
    return _check_boxes(boxes, fn, out_hw, size=values.shape[-2:]), out_hw, overlap


# ------------------------------------------------------------------------------------------------
# Grid, weights, coverage, views (numpy only: small or free)
# ------------------------------------------------------------------------------------------------

def _axis_starts(length: int, tile: int, overlap: int) -> np.ndarray:
    if length <= tile:
        return np.zeros(1, np.int64)
    starts = np.arange(0, length - tile, tile - overlap, dtype=np.int64)  # start + tile < length
    return np.append(starts, np.int64(length - tile))


def tile_grid(height: int, width: int, tile: int, overlap: int) -> np.ndarray:
    """The tiles that cover a (height, width) scene, each full-size, overlapping by >= overlap.

    Args:
        height, width: scene size, >= 1.
        tile: tile side, >= 1 (a side of the scene smaller than it gives tiles of that side).
        overlap: pixels shared by neighbouring tiles at least, 0 <= overlap < tile.

    Returns:
        int64 [N, 4] rows (y0, x0, y1, x1), row-major (all tiles of the first tile-row first).

    Raises:
        TypeError: an argument is not an integer.
        ValueError: height, width or tile < 1, overlap < 0, or overlap >= tile.
    """
    fn = "tile_grid"
    height, width = _as_int(height, fn, "height"), _as_int(width, fn, "width")
    tile, overlap = _as_int(tile, fn, "tile"), _as_int(overlap, fn, "overlap")
    for name, v in (("height", height), ("width", width), ("tile", tile)):
        if v < 1:
            raise ValueError(f"{fn}: {name} must be >= 1, got {v}")
    if overlap < 0:
        raise ValueError(f"{fn}: overlap must be >= 0, got {overlap}")
    if overlap >= tile:
        raise ValueError(f"{fn}: tile overlap must be smaller than the tile size, got "
                         f"overlap={overlap} and tile={tile}")
    ys, xs = _axis_starts(height, tile, overlap), _axis_starts(width, tile, overlap)
    y0, x0 = np.repeat(ys, len(xs)), np.tile(xs, len(ys))  # [N] each, row-major
    return np.stack([y0, x0, y0 + min(tile, height), x0 + min(tile, width)], axis=1)  # [N, 4]


def _blend_ramp(n: int, overlap: int) -> np.ndarray:
    ramp = max(1, overlap)
    i = np.arange(n, dtype=np.int64)
    return np.minimum(np.minimum(i + 1, n - i), ramp).astype(np.float32) / np.float32(ramp)  # [n]


def _blend_weights(height: int, width: int, overlap: int) -> np.ndarray:
    return _blend_ramp(height, overlap)[:, None] * _blend_ramp(width, overlap)[None, :]  # [h, w]


def blend_weights(height: int, width: int, overlap: int) -> np.ndarray:
    """The blend weights of one (height, width) tile: float32 [height, width], in (0, 1].

    w[i, j] = wy[i] * wx[j], w[i] = min(i + 1, n - i, ramp) / ramp, ramp = max(1, overlap).

    Raises:
        TypeError: an argument is not an integer.
        ValueError: height or width < 1, or overlap < 0.
    """
    fn = "blend_weights"
    height, width = _as_int(height, fn, "height"), _as_int(width, fn, "width")
    if height < 1 or width < 1:
        raise ValueError(f"{fn}: height and width must be >= 1, got ({height}, {width})")
    return _blend_weights(height, width, _check_overlap(overlap, fn))


def coverage(boxes, out_hw: tuple[int, int]) -> np.ndarray:
    """How many boxes cover each pixel: int32 [H, W]; `stitch` returns 0.0 where this is 0.

    Args:
        boxes: integer [N, 4] rows (y0, x0, y1, x1), non-empty, inside the image.
        out_hw: (H, W) of the image.

    Raises:
        TypeError: boxes not integer, out_hw not integers.
        ValueError: boxes not [N, 4], empty or outside the image; out_hw not a pair of ints >= 1.
    """
    fn = "coverage"
    h, w = check_hw(fn, "out_hw", out_hw)
    boxes = _check_boxes(boxes, fn, (h, w))
    y0, x0, y1, x1 = boxes.T  # [N] each
    diff = np.zeros((h + 1, w + 1), np.int64)  # 2-D difference image of the box indicators
    np.add.at(diff, (y0, x0), 1)
    np.add.at(diff, (y0, x1), -1)
    np.add.at(diff, (y1, x0), -1)
    np.add.at(diff, (y1, x1), 1)
    return diff.cumsum(axis=0).cumsum(axis=1)[:h, :w].astype(np.int32)  # [H, W]


def iter_tiles(image: np.ndarray, boxes, layout: str = "hwc") -> Iterator[np.ndarray]:
    """The tiles of `image` at `boxes`, as views into it (no copies), in box order.

    Args:
        image: [H, W, C] or [H, W] (layout="hwc"), [C, H, W] or [H, W] (layout="chw").
        boxes: integer [N, 4] rows (y0, x0, y1, x1), non-empty, inside the image (e.g. tile_grid).
        layout: "hwc" or "chw".

    Returns:
        An iterator of [y1 - y0, x1 - x0(, C)] (hwc) or [(C,) y1 - y0, x1 - x0] (chw) views.
        `np.stack(list(iter_tiles(...)))` gives the tiles array for a model or for `stitch`.

    Raises:
        TypeError: image not a numpy array, boxes not integer.
        ValueError: unknown layout, image not 2-D or 3-D, boxes not [N, 4], empty or outside.
    """
    fn = "iter_tiles"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{fn}: image must be a numpy array, got {type(image).__name__}")
    if layout not in LAYOUTS:
        raise ValueError(f"{fn}: layout must be one of {LAYOUTS}, got {layout!r}")
    if image.ndim not in (2, 3):
        expected = "[H, W, C] or [H, W]" if layout == "hwc" else "[C, H, W] or [H, W]"
        raise ValueError(f"{fn}: image must be {expected} for layout={layout!r}, "
                         f"got {list(image.shape)}")
    hw = image.shape[:2] if layout == "hwc" else image.shape[-2:]
    boxes = _check_boxes(boxes, fn, hw)
    return _views(image, boxes, layout)


def _views(image: np.ndarray, boxes: np.ndarray, layout: str) -> Iterator[np.ndarray]:
    for y0, x0, y1, x1 in boxes.tolist():
        yield image[y0:y1, x0:x1] if layout == "hwc" else image[..., y0:y1, x0:x1]


# ------------------------------------------------------------------------------------------------
# stitch / stitch_masks
# ------------------------------------------------------------------------------------------------

def stitch_ref(tiles: np.ndarray, boxes: np.ndarray, out_hw: tuple[int, int],
               overlap: int) -> np.ndarray:
    """Reference of `stitch` (the spec); inputs as `stitch` validates them."""
    squeeze = tiles.ndim == 3
    t = tiles[:, None] if squeeze else tiles  # [N, C, th, tw]
    c, th, tw = t.shape[1:]
    h, w = out_hw
    weight = _blend_weights(th, tw, overlap)  # [th, tw]
    num = np.zeros((c, h, w), np.float32)
    den = np.zeros((h, w), np.float32)
    for k, (y0, x0, y1, x1) in enumerate(boxes.tolist()):
        num[:, y0:y1, x0:x1] += weight * t[k]  # [C, th, tw]
        den[y0:y1, x0:x1] += weight
    out = np.zeros((c, h, w), np.float32)
    np.divide(num, den, out=out, where=den > 0)  # den [H, W] broadcast over C
    return out[0] if squeeze else out


def stitch(tiles: np.ndarray, boxes, out_hw: tuple[int, int], overlap: int,
           impl: str = "auto") -> np.ndarray:
    """Blends per-tile outputs into one image, cross-fading the overlaps.

    Args:
        tiles: float32 [N, C, th, tw] or [N, th, tw], any strides (e.g. a transposed NHWC batch).
        boxes: integer [N, 4] rows (y0, x0, y1, x1), each of size (th, tw) and inside the image;
            usually `tile_grid(H, W, tile, overlap)` (any such boxes are allowed).
        out_hw: (H, W) of the image.
        overlap: the grid's overlap; sets the ramp of the blend weights (>= 0).
        impl: "auto" | "native" | "ref".

    Returns:
        float32 [C, H, W] (or [H, W] for 3-D tiles): sum(w * v) / sum(w) over the tiles covering
        each pixel; 0.0 where no tile covers a pixel (`coverage(boxes, out_hw) == 0`).

    Raises:
        TypeError: tiles not a float32 array, boxes not integer, out_hw or overlap not integers.
        ValueError: tiles not 3-D / 4-D or with a side 0, boxes not [N, 4], N of tiles != N of
            boxes, a box outside the image or not of the tiles' size, out_hw dims < 1,
            overlap < 0.
        RuntimeError: impl="native" without the native core.
    """
    boxes, out_hw, overlap = _check_stitch(
        tiles, boxes, out_hw, overlap, "stitch", "tiles", (np.dtype(np.float32),), "float32",
        (3, 4), "[N, C, th, tw] or [N, th, tw]")
    if _ext.use_native(impl, "stitch"):
        return _ext.native().stitch(tiles, boxes, out_hw[0], out_hw[1], overlap)
    return stitch_ref(tiles, boxes, out_hw, overlap)


def stitch_masks_ref(masks: np.ndarray, boxes: np.ndarray, out_hw: tuple[int, int],
                     overlap: int) -> np.ndarray:
    """Reference of `stitch_masks` (the spec); inputs as `stitch_masks` validates them."""
    votes = stitch_ref((masks != 0).astype(np.float32), boxes, out_hw, overlap)  # [H, W]
    return (votes >= 0.5).astype(np.uint8)


def stitch_masks(masks: np.ndarray, boxes, out_hw: tuple[int, int], overlap: int,
                 impl: str = "auto") -> np.ndarray:
    """Blends per-tile binary masks into one mask by a weighted vote.

    Args:
        masks: uint8 or bool [N, th, tw], any strides; nonzero is foreground.
        boxes: integer [N, 4] rows (y0, x0, y1, x1) of size (th, tw) inside the image.
        out_hw: (H, W) of the image.
        overlap: the grid's overlap (>= 0).
        impl: "auto" | "native" | "ref" (bit-exact with each other).

    Returns:
        uint8 [H, W]: 1 where `stitch` of the masks as 0.0 / 1.0 is >= 0.5 (a tie is
        foreground), else 0; 0 where no tile covers a pixel.

    Raises:
        TypeError: masks not a uint8 / bool array, boxes not integer, out_hw or overlap not
            integers.
        ValueError: masks not 3-D or with a side 0, boxes not [N, 4], N of masks != N of boxes,
            a box outside the image or not of the masks' size, out_hw dims < 1, overlap < 0.
        RuntimeError: impl="native" without the native core.
    """
    boxes, out_hw, overlap = _check_stitch(
        masks, boxes, out_hw, overlap, "stitch_masks", "masks",
        (np.dtype(np.uint8), np.dtype(np.bool_)), "uint8 or bool", (3,), "[N, th, tw]")
    if _ext.use_native(impl, "stitch_masks"):
        return _ext.native().stitch_masks(masks, boxes, out_hw[0], out_hw[1], overlap)
    return stitch_masks_ref(masks, boxes, out_hw, overlap)
