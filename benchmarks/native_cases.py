"""Benchmark cases of the native ops, built from the test suite's case lists (tests/cases.py)."""

from __future__ import annotations

from benchmarks.harness import Case, register  # noqa: F401

# PREPROCESS-CASES

# RASTERIZE-CASES

# MASKS-CASES

# Scene of the tiling cases: a 2472 x 2299 image cut into 448 px tiles overlapping by 64 (42 tiles).
TILING_SCENE_HW = (2472, 2299)
TILING_TILE, TILING_OVERLAP = 448, 64


@register
def tiling_cases() -> list[Case]:
    import numpy as np

    from earthx_sdk import _ext
    from earthx_sdk.ops import tiling

    hw, overlap = TILING_SCENE_HW, TILING_OVERLAP
    boxes = tiling.tile_grid(*hw, TILING_TILE, overlap)  # [N, 4]
    side = (TILING_TILE, TILING_TILE)
    rng = np.random.default_rng(0)
    cases = []
    for c in (1, 3):
        # Independent random tiles: they disagree over the overlaps, as model outputs do.
        tiles = rng.standard_normal((len(boxes), c, *side), dtype=np.float32)  # [N, C, th, tw]
        cases.append(Case(
            "stitch", f"{hw[0]}x{hw[1]} t{TILING_TILE} o{overlap} C={c} N={len(boxes)}",
            ref=lambda t=tiles: tiling.stitch_ref(t, boxes, hw, overlap),
            native=lambda t=tiles: _ext.native().stitch(t, boxes, hw[0], hw[1], overlap)))
    masks = rng.random((len(boxes), *side)) < 0.5  # [N, th, tw] bool
    cases.append(Case(
        "stitch_masks", f"{hw[0]}x{hw[1]} t{TILING_TILE} o{overlap} bool N={len(boxes)}",
        ref=lambda: tiling.stitch_masks_ref(masks, boxes, hw, overlap),
        native=lambda: _ext.native().stitch_masks(masks, boxes, hw[0], hw[1], overlap)))
    return cases
