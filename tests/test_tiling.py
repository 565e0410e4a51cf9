"""Tiling: tile_grid, blend_weights, coverage, iter_tiles; stitch, stitch_masks native vs numpy."""

import numpy as np
import pytest

from earthx_sdk import _ext
from earthx_sdk.ops import tiling
from tests.cases import AWKWARD_SHAPES, TOL
from tests.conftest import requires_native

IMPLS = ["ref", pytest.param("native", marks=requires_native)]
RTOL, ATOL = TOL[np.float32]

# (tile, overlap): tiles smaller than every image side, up to tiles larger than every image.
GRID_CONFIGS = [(4, 1), (64, 16), (448, 64), (4096, 100)]
MAX_TILES = 2000  # keeps the per-tile Python loop of the reference quick


def _grid_cases():
    cases = []
    for hw in AWKWARD_SHAPES:
        for tile, overlap in GRID_CONFIGS:
            if len(tiling.tile_grid(*hw, tile, overlap)) <= MAX_TILES:
                case_id = f"{hw[0]}x{hw[1]}-t{tile}-o{overlap}"
                cases.append(pytest.param(hw, tile, overlap, id=case_id))
    return cases


GRID_CASES = _grid_cases()


def _cut(image_chw: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[N, C, th, tw] copies of the tiles of a [C, H, W] image."""
    return np.stack(list(tiling.iter_tiles(image_chw, boxes, layout="chw")))


def _random_boxes(rng, n: int, th: int, tw: int, hw: tuple[int, int]) -> np.ndarray:
    y0 = rng.integers(0, hw[0] - th + 1, n)
    x0 = rng.integers(0, hw[1] - tw + 1, n)
    return np.stack([y0, x0, y0 + th, x0 + tw], axis=1).astype(np.int64)  # [N, 4]


def _stitch_naive(tiles: np.ndarray, boxes: np.ndarray, hw, overlap: int) -> np.ndarray:
    """The spec pixel by pixel in float64, for tiny cases: sum(w * v) / sum(w), 0 if uncovered."""
    th, tw = tiles.shape[-2:]
    ramp = max(1, overlap)
    num = np.zeros(tiles.shape[1:-2] + tuple(hw))
    den = np.zeros(tuple(hw))
    for k, (y0, x0, _, _) in enumerate(boxes):
        for i in range(th):
            for j in range(tw):
                w = min(i + 1, th - i, ramp) / ramp * min(j + 1, tw - j, ramp) / ramp
                num[..., y0 + i, x0 + j] += w * tiles[k, ..., i, j]
                den[y0 + i, x0 + j] += w
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


# ------------------------------------------------------------------------------------------------
# tile_grid
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, tile, overlap, starts", [
    (10, 4, 1, [0, 3, 6]),  # 6 + 4 = 10 ends it
    (7, 4, 1, [0, 3]),  # 3 + 4 = 7: no duplicate last start
    (11, 4, 1, [0, 3, 6, 7]),  # the last start shifted back to 11 - 4
    (4, 4, 0, [0]),
    (3, 8, 2, [0]),  # one span of the whole axis, shorter than the tile
    (2049, 448, 64, [0, 384, 768, 1152, 1536, 1601]),
    (5, 1, 0, [0, 1, 2, 3, 4]),
])
def test_tile_grid_hand_checked(length, tile, overlap, starts):
    side = min(tile, length)
    rows = tiling.tile_grid(length, 1, tile, overlap)  # the height axis
    cols = tiling.tile_grid(1, length, tile, overlap)  # the width axis
    assert rows.dtype == np.int64 and rows.shape == (len(starts), 4)
    assert rows[:, 0].tolist() == starts and (rows[:, 2] - rows[:, 0] == side).all()
    assert rows[:, [1, 3]].tolist() == [[0, 1]] * len(starts)
    assert cols[:, 1].tolist() == starts and (cols[:, 3] - cols[:, 1] == side).all()


def test_tile_grid_row_major():
    boxes = tiling.tile_grid(10, 7, 4, 1)  # ys 0, 3, 6; xs 0, 3
    assert boxes.tolist() == [[0, 0, 4, 4], [0, 3, 4, 7], [3, 0, 7, 4], [3, 3, 7, 7],
                              [6, 0, 10, 4], [6, 3, 10, 7]]


@pytest.mark.parametrize("hw, tile, overlap", [
    pytest.param(hw, tile, overlap, id=f"{hw[0]}x{hw[1]}-t{tile}-o{overlap}")
    for hw in AWKWARD_SHAPES + [(2472, 2299), (5, 1000)]
    for tile, overlap in GRID_CONFIGS + [(1, 0), (7, 6), (448, 0)]
    if hw[0] * hw[1] // tile**2 < 50_000  # tile 1 on a large scene: slow to check, nothing new
])
def test_tile_grid_covers_with_full_tiles(hw, tile, overlap):
    boxes = tiling.tile_grid(*hw, tile, overlap)
    th, tw = min(tile, hw[0]), min(tile, hw[1])
    assert (boxes[:, 2] - boxes[:, 0] == th).all() and (boxes[:, 3] - boxes[:, 1] == tw).all()
    assert boxes[:, :2].min() == 0 and boxes[:, 2].max() == hw[0] and boxes[:, 3].max() == hw[1]
    assert tiling.coverage(boxes, hw).min() >= 1
    for axis, side in ((0, th), (1, tw)):
        starts = np.unique(boxes[:, axis])
        assert len(starts) * len(np.unique(boxes[:, 1 - axis])) == len(boxes)  # a full grid
        gaps = np.diff(starts)
        assert (gaps >= 1).all() and (gaps <= side - min(overlap, side - 1)).all()


def test_tile_grid_accepts_numpy_integers():
    assert tiling.tile_grid(np.int32(10), np.int64(4), np.uint8(4), np.int16(1)).shape == (3, 4)


@pytest.mark.parametrize("args, exc, match", [
    ((0, 5, 4, 1), ValueError, r"height must be >= 1, got 0"),
    ((5, 0, 4, 1), ValueError, r"width must be >= 1, got 0"),
    ((5, 5, 0, 0), ValueError, r"tile must be >= 1, got 0"),
    ((5, 5, 4, -1), ValueError, r"overlap must be >= 0, got -1"),
    ((5, 5, 4, 4), ValueError, r"tile overlap must be smaller than the tile size, got overlap=4"),
    ((5, 5, 4, 9), ValueError, r"tile overlap must be smaller than the tile size"),
    ((5.0, 5, 4, 1), TypeError, r"height must be an integer, got float"),
    ((5, "5", 4, 1), TypeError, r"width must be an integer, got str"),
    ((5, 5, 4.5, 1), TypeError, r"tile must be an integer"),
    ((5, 5, 4, None), TypeError, r"overlap must be an integer"),
    ((True, 5, 4, 1), TypeError, r"height must be an integer, got bool"),
])
def test_tile_grid_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        tiling.tile_grid(*args)


# ------------------------------------------------------------------------------------------------
# blend_weights, coverage, iter_tiles
# ------------------------------------------------------------------------------------------------

def test_blend_weights_hand_checked():
    w = tiling.blend_weights(1, 5, 2)  # wy = [1/2]; wx = [1, 2, 2, 2, 1] / 2
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, np.float32([[0.25, 0.5, 0.5, 0.5, 0.25]]))
    np.testing.assert_array_equal(tiling.blend_weights(3, 4, 0), np.ones((3, 4), np.float32))
    wx = tiling.blend_weights(8, 8, 3)[3] * 3  # wy[3] = 1
    np.testing.assert_allclose(wx, [1, 2, 3, 3, 3, 3, 2, 1], rtol=1e-6)


@pytest.mark.parametrize("args, exc, match", [
    ((0, 4, 1), ValueError, r"height and width must be >= 1, got \(0, 4\)"),
    ((4, 4, -2), ValueError, r"overlap must be >= 0, got -2"),
    ((4, 4.0, 1), TypeError, r"width must be an integer"),
])
def test_blend_weights_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        tiling.blend_weights(*args)


def test_coverage_counts(rng):
    hw = (37, 23)
    boxes = np.concatenate([_random_boxes(rng, 20, 5, 9, hw), _random_boxes(rng, 5, 1, 1, hw)])
    expected = np.zeros(hw, np.int32)
    for y0, x0, y1, x1 in boxes:
        expected[y0:y1, x0:x1] += 1
    got = tiling.coverage(boxes, hw)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("boxes, out_hw, exc, match", [
    (np.zeros((2, 3), np.int64), (4, 4), ValueError, r"coverage: boxes must be \[N, 4\]"),
    (np.array([[0, 0, 2, 5]]), (4, 4), ValueError, r"coverage: boxes must lie inside"),
    (np.array([[2, 0, 2, 3]]), (4, 4), ValueError, r"coverage: boxes must be non-empty"),
    (np.array([[0.0, 0, 2, 2]]), (4, 4), TypeError, r"coverage: boxes must have an integer"),
    (np.array([[0, 0, 2, 2]]), (4, 0), ValueError, r"coverage: out_hw must be >= 1 in both"),
])
def test_coverage_bad_input(boxes, out_hw, exc, match):
    with pytest.raises(exc, match=match):
        tiling.coverage(boxes, out_hw)


@pytest.mark.parametrize("layout, shape", [("hwc", (9, 11, 3)), ("hwc", (9, 11)),
                                           ("chw", (3, 9, 11)), ("chw", (9, 11))])
def test_iter_tiles_yields_views(layout, shape):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape).copy()  # owns its data
    boxes = tiling.tile_grid(9, 11, 4, 1)
    tiles = list(tiling.iter_tiles(image, boxes, layout=layout))
    assert len(tiles) == len(boxes)
    for t, (y0, x0, y1, x1) in zip(tiles, boxes, strict=True):
        expected = image[y0:y1, x0:x1] if layout == "hwc" else image[..., y0:y1, x0:x1]
        assert t.base is image  # a view, no copy
        np.testing.assert_array_equal(t, expected)
    tiles[0][...] = -1  # writes through to the image
    assert image.min() == -1


@pytest.mark.parametrize("image, boxes, layout, exc, match", [
    ([[1.0]], np.array([[0, 0, 1, 1]]), "hwc", TypeError, r"iter_tiles: image must be a numpy"),
    (np.zeros((4, 4)), np.array([[0, 0, 1, 1]]), "nhwc", ValueError,
     r"iter_tiles: layout must be one of"),
    (np.zeros(4), np.array([[0, 0, 1, 1]]), "hwc", ValueError,
     r"iter_tiles: image must be \[H, W, C\] or \[H, W\]"),
    (np.zeros((2, 4, 4, 1)), np.array([[0, 0, 1, 1]]), "chw", ValueError,
     r"iter_tiles: image must be \[C, H, W\] or \[H, W\]"),
    (np.zeros((3, 4, 5)), np.array([[0, 0, 5, 4]]), "chw", ValueError,
     r"iter_tiles: boxes must lie inside the image \(0 <= y0, 0 <= x0, y1 <= 4, x1 <= 5\)"),
    (np.zeros((4, 4)), np.array([[0, 0, 1]]), "hwc", ValueError, r"iter_tiles: boxes must be"),
])
def test_iter_tiles_bad_input(image, boxes, layout, exc, match):
    with pytest.raises(exc, match=match):
        tiling.iter_tiles(image, boxes, layout=layout)  # raises before the first tile


# ------------------------------------------------------------------------------------------------
# stitch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_stitch_hand_checked(impl):
    # Width 5, two tiles of width 3 at x0 = 0 and 2, overlap 2: ramp 2, wx = [1/2, 1, 1/2].
    tiles = np.float32([[[1, 2, 3]], [[10, 20, 30]]])  # [2, 1, 3]
    boxes = np.array([[0, 0, 1, 3], [0, 2, 1, 5]])
    out = tiling.stitch(tiles, boxes, (1, 5), 2, impl=impl)  # [1, 5]
    # x = 2: (3 * 1/4 + 10 * 1/4) / (1/4 + 1/4) with wy = [1/2]
    np.testing.assert_allclose(out, [[1, 2, 6.5, 20, 30]], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out, _stitch_naive(tiles, boxes, (1, 5), 2), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("channels", [None, 1, 3])
@pytest.mark.parametrize("hw, tile, overlap", GRID_CASES)
def test_stitch_reproduces_the_image(hw, tile, overlap, channels, impl, rng):
    c = channels or 1
    image = rng.standard_normal((c,) + hw, dtype=np.float32)  # [C, H, W]
    boxes = tiling.tile_grid(*hw, tile, overlap)
    tiles = _cut(image, boxes)  # [N, C, th, tw]
    if channels is None:
        tiles, image = tiles[:, 0], image[0]
    out = tiling.stitch(tiles, boxes, hw, overlap, impl=impl)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, image, rtol=RTOL, atol=ATOL)


@requires_native
@pytest.mark.parametrize("channels", [None, 1, 3])
@pytest.mark.parametrize("hw, tile, overlap", GRID_CASES)
def test_stitch_native_matches_reference(hw, tile, overlap, channels, rng):
    boxes = tiling.tile_grid(*hw, tile, overlap)
    th, tw = min(tile, hw[0]), min(tile, hw[1])
    shape = (len(boxes), th, tw) if channels is None else (len(boxes), channels, th, tw)
    tiles = rng.standard_normal(shape, dtype=np.float32)  # disagreeing over the overlaps
    ref = tiling.stitch(tiles, boxes, hw, overlap, impl="ref")
    nat = tiling.stitch(tiles, boxes, hw, overlap, impl="native")
    assert nat.dtype == ref.dtype and nat.shape == ref.shape
    np.testing.assert_allclose(nat, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("overlap", [0, 1, 3, 50])
def test_stitch_arbitrary_boxes(overlap, impl, rng):
    # Boxes anywhere, repeated, overlapping in all ways, some pixels uncovered (-> 0.0).
    hw = (23, 31)
    boxes = _random_boxes(rng, 12, 6, 5, hw)
    boxes[3] = boxes[7]
    tiles = rng.standard_normal((12, 2, 6, 5), dtype=np.float32)
    out = tiling.stitch(tiles, boxes, hw, overlap, impl=impl)
    covered = tiling.coverage(boxes, hw) > 0
    assert not covered.all()
    assert (out[:, ~covered] == 0).all()
    np.testing.assert_allclose(out, _stitch_naive(tiles, boxes, hw, overlap), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_stitch_no_tiles_is_zero(impl):
    out = tiling.stitch(np.zeros((0, 2, 3, 3), np.float32), np.zeros((0, 4), np.int64), (4, 5), 1,
                        impl=impl)
    assert out.shape == (2, 4, 5) and not out.any()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("view", ["nhwc_transposed", "every_other_tile", "flipped", "strided"])
def test_stitch_non_contiguous(view, impl, rng):
    hw, tile, overlap = (61, 47), 16, 5
    boxes = tiling.tile_grid(*hw, tile, overlap)
    n = len(boxes)
    if view == "nhwc_transposed":
        tiles = rng.standard_normal((n, 16, 16, 3), dtype=np.float32).transpose(0, 3, 1, 2)
    elif view == "every_other_tile":
        tiles, boxes = rng.standard_normal((2 * n, 3, 16, 16), dtype=np.float32)[::2], boxes
    elif view == "flipped":
        tiles = rng.standard_normal((n, 16, 16), dtype=np.float32)[:, ::-1, ::-1]
    else:
        tiles = rng.standard_normal((n, 2, 32, 48), dtype=np.float32)[:, :, ::2, 1::3]
    assert not tiles.flags.c_contiguous
    out = tiling.stitch(tiles, boxes, hw, overlap, impl=impl)
    expected = tiling.stitch(np.ascontiguousarray(tiles), boxes, hw, overlap, impl="ref")
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------------
# stitch_masks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_stitch_masks_tie_is_foreground(impl):
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [1, 1, 3, 3]])
    masks = np.array([np.ones((2, 2)), np.zeros((2, 2)), np.zeros((2, 2))], np.uint8)
    out = tiling.stitch_masks(masks, boxes, (3, 4), 0, impl=impl)
    # Equal weights: 1 of 2 votes -> 0.5 -> foreground; 1 of 3 at (1, 1) -> background.
    assert out.dtype == np.uint8
    assert out.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("hw, tile, overlap", GRID_CASES)
def test_stitch_masks_reproduces_the_mask(hw, tile, overlap, impl, rng):
    mask = (rng.random(hw) < 0.3).astype(np.uint8)
    boxes = tiling.tile_grid(*hw, tile, overlap)
    masks = np.stack(list(tiling.iter_tiles(mask, boxes)))  # [N, th, tw]
    np.testing.assert_array_equal(tiling.stitch_masks(masks, boxes, hw, overlap, impl=impl), mask)


@requires_native
@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, "uint8_255"])
@pytest.mark.parametrize("hw, tile, overlap", GRID_CASES)
def test_stitch_masks_native_bit_exact(hw, tile, overlap, dtype, rng):
    boxes = tiling.tile_grid(*hw, tile, overlap)
    th, tw = min(tile, hw[0]), min(tile, hw[1])
    masks = rng.random((len(boxes), th, tw)) < 0.5  # disagreeing over the overlaps
    masks = (masks * 255).astype(np.uint8) if dtype == "uint8_255" else masks.astype(dtype)
    ref = tiling.stitch_masks(masks, boxes, hw, overlap, impl="ref")
    nat = tiling.stitch_masks(masks, boxes, hw, overlap, impl="native")
    assert nat.dtype == np.uint8 and nat.shape == hw
    np.testing.assert_array_equal(nat, ref)


@requires_native
@pytest.mark.parametrize("overlap", [0, 2, 7])
def test_stitch_masks_native_bit_exact_arbitrary_boxes(overlap, rng):
    hw = (40, 33)
    boxes = _random_boxes(rng, 30, 9, 7, hw)
    masks = rng.random((30, 9, 7)) < 0.5
    ref = tiling.stitch_masks(masks, boxes, hw, overlap, impl="ref")
    np.testing.assert_array_equal(tiling.stitch_masks(masks, boxes, hw, overlap, impl="native"),
                                  ref)
    # The same vote as stitch of the masks as 0.0 / 1.0, thresholded at 0.5.
    votes = tiling.stitch(masks.astype(np.float32), boxes, hw, overlap, impl="ref")
    np.testing.assert_array_equal(ref, votes >= 0.5)


@pytest.mark.parametrize("impl", IMPLS)
def test_stitch_masks_non_contiguous(impl, rng):
    hw, tile, overlap = (50, 70), 24, 6
    boxes = tiling.tile_grid(*hw, tile, overlap)
    masks = (rng.random((len(boxes), 48, 24)) < 0.5)[:, ::2, ::-1]  # strided and flipped
    assert not masks.flags.c_contiguous
    expected = tiling.stitch_masks(np.ascontiguousarray(masks), boxes, hw, overlap, impl="ref")
    np.testing.assert_array_equal(tiling.stitch_masks(masks, boxes, hw, overlap, impl=impl),
                                  expected)


# ------------------------------------------------------------------------------------------------
# Bad input, shared by both implementations
# ------------------------------------------------------------------------------------------------

def _good_args(op: str) -> dict:
    values = (np.zeros((2, 3, 4, 5), np.float32) if op == "stitch"
              else np.zeros((2, 4, 5), np.uint8))
    return {"values": values, "boxes": np.array([[0, 0, 4, 5], [2, 3, 6, 8]]),
            "out_hw": (6, 8), "overlap": 1}


# name -> (op or None for both, change to the good arguments, exception, message pattern)
BAD_STITCH = {
    "boxes_not_n4": (None, {"boxes": np.zeros((2, 3), np.int64)}, ValueError,
                     r"boxes must be \[N, 4\] rows \(y0, x0, y1, x1\), got \[2, 3\]"),
    "boxes_1d": (None, {"boxes": np.zeros(4, np.int64)}, ValueError, r"boxes must be \[N, 4\]"),
    "boxes_outside": (None, {"boxes": np.array([[0, 0, 4, 5], [3, 3, 7, 8]])}, ValueError,
                      r"boxes must lie inside the image .* got box 1 = \[3, 3, 7, 8\]"),
    "boxes_negative": (None, {"boxes": np.array([[-1, 0, 3, 5], [2, 3, 6, 8]])}, ValueError,
                       r"boxes must lie inside the image"),
    "box_size": (None, {"boxes": np.array([[0, 0, 4, 5], [2, 3, 5, 8]])}, ValueError,
                 r"boxes must have the tiles' size \(y1 - y0, x1 - x0\) = \(4, 5\), got box 1"),
    "n_mismatch": (None, {"boxes": np.array([[0, 0, 4, 5]])}, ValueError,
                   r"and boxes must have the same N, got 2 and 1"),
    "boxes_float": (None, {"boxes": np.array([[0.0, 0, 4, 5], [2, 3, 6, 8]])}, TypeError,
                    r"boxes must have an integer dtype"),
    "out_hw_zero": (None, {"out_hw": (0, 8)}, ValueError,
                    r"out_hw must be >= 1 in both dims, got \(0, 8\)"),
    "out_hw_len": (None, {"out_hw": (6, 8, 1)}, ValueError, r"out_hw must be a pair of ints"),
    "out_hw_float": (None, {"out_hw": (6.0, 8)}, TypeError,
                     r"out_hw must be a pair of ints \(h, w\), got \(6.0, 8\)"),
    "overlap_negative": (None, {"overlap": -1}, ValueError, r"overlap must be >= 0, got -1"),
    "overlap_float": (None, {"overlap": 1.5}, TypeError, r"overlap must be an integer"),
    "impl": (None, {"impl": "cuda"}, ValueError, r"impl must be one of"),
    "tiles_dtype": ("stitch", {"values": np.zeros((2, 3, 4, 5), np.float64)}, TypeError,
                    r"stitch: tiles must have dtype float32, got float64"),
    "tiles_list": ("stitch", {"values": [[[0.0]]]}, TypeError,
                   r"stitch: tiles must be a numpy array, got list"),
    "tiles_ndim": ("stitch", {"values": np.zeros((4, 5), np.float32)}, ValueError,
                   r"stitch: tiles must be \[N, C, th, tw\] or \[N, th, tw\], got \[4, 5\]"),
    "tiles_5d": ("stitch", {"values": np.zeros((2, 1, 3, 4, 5), np.float32)}, ValueError,
                 r"stitch: tiles must be \[N, C, th, tw\]"),
    "tiles_no_channels": ("stitch", {"values": np.zeros((2, 0, 4, 5), np.float32)}, ValueError,
                          r"stitch: tiles must have channels and tile sides >= 1"),
    "masks_dtype": ("stitch_masks", {"values": np.zeros((2, 4, 5), np.float32)}, TypeError,
                    r"stitch_masks: masks must have dtype uint8 or bool, got float32"),
    "masks_ndim": ("stitch_masks", {"values": np.zeros((2, 1, 4, 5), np.uint8)}, ValueError,
                   r"stitch_masks: masks must be \[N, th, tw\], got \[2, 1, 4, 5\]"),
}


def _bad_cases():
    for name, (only, _, _, _) in BAD_STITCH.items():
        for op in ("stitch", "stitch_masks"):
            if only in (None, op):
                yield pytest.param(op, name, id=f"{op}-{name}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op, case", list(_bad_cases()))
def test_stitch_bad_input(op, case, impl):
    _, change, exc, match = BAD_STITCH[case]
    args = {**_good_args(op), "impl": impl, **change}
    with pytest.raises(exc, match=f"{op}: .*{match}" if not match.startswith(op) else match):
        getattr(tiling, op)(args.pop("values"), **args)


def test_stitch_good_args_pass():
    # The base of the bad-input cases is valid, so each case fails for its own reason only.
    for op in ("stitch", "stitch_masks"):
        a = _good_args(op)
        getattr(tiling, op)(a.pop("values"), **a, impl="ref")


# Direct callers of _C: the C++ checks its inputs too and raises, never crashes.
@requires_native
@pytest.mark.parametrize("fn, values, boxes, hw, overlap, exc, match", [
    ("stitch", np.zeros((1, 2, 2), np.float64), [[0, 0, 2, 2]], (2, 2), 0, TypeError,
     r"stitch: tiles must have dtype float32, got float64"),
    ("stitch", np.zeros((2, 2), np.float32), [[0, 0, 2, 2]], (2, 2), 0, ValueError,
     r"stitch: tiles must be \[N, C, th, tw\] or \[N, th, tw\], got \[2, 2\]"),
    ("stitch", np.zeros((1, 0, 2, 2), np.float32), [[0, 0, 2, 2]], (2, 2), 0, ValueError,
     r"stitch: tiles must have channels and tile sides >= 1"),
    ("stitch", np.zeros((1, 2, 2), np.float32), np.int32([[0, 0, 2, 2]]), (2, 2), 0, TypeError,
     r"stitch: boxes must have dtype int64, got int32"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[0, 0, 2]], (2, 2), 0, ValueError,
     r"stitch: boxes must be \[N, 4\]"),
    ("stitch", np.zeros((1, 2, 2), np.float32), np.zeros((4, 2), np.int64).T, (2, 2), 0,
     ValueError, r"stitch: boxes must be C-contiguous"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[0, 0, 2, 2]] * 2, (2, 2), 0, ValueError,
     r"stitch: tiles and boxes must have the same N, got 1 and 2"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[1, 0, 3, 2]], (2, 2), 0, ValueError,
     r"stitch: boxes must lie inside the image"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[0, 0, 1, 2]], (2, 2), 0, ValueError,
     r"stitch: boxes must have the tiles' size"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[0, 0, 2, 2]], (0, 2), 0, ValueError,
     r"stitch: height must be >= 1, got 0"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[0, 0, 2, 2]], (2, -3), 0, ValueError,
     r"stitch: width must be >= 1, got -3"),
    ("stitch", np.zeros((1, 2, 2), np.float32), [[0, 0, 2, 2]], (2, 2), -1, ValueError,
     r"stitch: overlap must be >= 0, got -1"),
    ("stitch_masks", np.zeros((1, 2, 2), np.float32), [[0, 0, 2, 2]], (2, 2), 0, TypeError,
     r"stitch_masks: masks must have dtype uint8 or bool, got float32"),
    ("stitch_masks", np.zeros((1, 1, 2, 2), np.uint8), [[0, 0, 2, 2]], (2, 2), 0, ValueError,
     r"stitch_masks: masks must be \[N, th, tw\], got \[1, 1, 2, 2\]"),
    ("stitch_masks", np.zeros((1, 2, 2), np.bool_), [[0, 2, 2, 4]], (2, 3), 0, ValueError,
     r"stitch_masks: boxes must lie inside the image"),
])
def test_native_checks_inputs(fn, values, boxes, hw, overlap, exc, match):
    boxes = np.asarray(boxes, dtype=np.int64) if isinstance(boxes, list) else boxes
    with pytest.raises(exc, match=match):
        getattr(_ext.native(), fn)(values, boxes, hw[0], hw[1], overlap)


def test_shift_prompt_moves_each_kind_into_the_tile_or_drops_it():
    from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble
    from earthx_sdk.tiled import shift_prompt

    tile = (10, 20, 50, 60)  # y0, x0, y1, x1
    assert shift_prompt(Point(25, 15), tile) == Point(5, 5)
    assert shift_prompt(Box(22, 12, 30, 40), tile) == Box(2, 2, 10, 30)
    assert shift_prompt(Polygon(((21, 11), (30, 11), (30, 20))), tile).vertices == \
        ((1, 1), (10, 1), (10, 10))
    s = shift_prompt(Scribble(((20, 10), (40, 30)), 3), tile)
    assert s.points == ((0, 0), (20, 20)) and s.width == 3
    assert shift_prompt(Point(5, 5), tile) is None  # left of and above the tile
    assert shift_prompt(Box(61, 0, 70, 5), tile) is None
    m = np.zeros((64, 64), bool)
    m[12:14, 22:25] = True
    crop = shift_prompt(Mask(m), tile)
    assert crop.mask.shape == (40, 40) and crop.mask[2:4, 2:5].all() and crop.mask.sum() == 6
    m[:] = False
    m[0:5, 0:5] = True
    assert shift_prompt(Mask(m), tile) is None  # the mask has no pixel in the tile
    with pytest.raises(TypeError, match="prompt must be a Point, Box"):
        shift_prompt("a box", tile)
