"""Benchmark cases of the native ops, built from the test suite's case lists (tests/cases.py)."""

from __future__ import annotations

from benchmarks.harness import Case, register  # noqa: F401


@register
def _preprocess_cases() -> list[Case]:
    import numpy as np

    from earthx_sdk import _ext
    from earthx_sdk.io.sensors import SENSORS
    from earthx_sdk.ops import preprocess as P

    C = _ext.native()
    rng = np.random.default_rng(0)
    ms4 = SENSORS["multispectral"].with_stats([0.10, 0.11, 0.12, 0.13],
                                              [0.030, 0.031, 0.032, 0.033])
    cases = []
    inputs = [
        ("2048x2048x4 uint16 multispectral", rng.integers(0, 4096, (2048, 2048, 4), np.uint16),
         ms4, 3.0),
        ("2048x2048x3 uint8 optical", rng.integers(0, 256, (2048, 2048, 3), np.uint8),
         SENSORS["optical"], None),
        ("2048x2048 uint16 thermal IR", rng.integers(2000, 9000, (2048, 2048, 1), np.uint16),
         SENSORS["infrared"], None),
        ("2049x1537 float32 SAR amplitude",
         rng.random((2049, 1537, 1), dtype=np.float32), SENSORS["sar"], None),
    ]
    for name, img, spec, target in inputs:
        kind, params = P._native_params(spec, img)
        nh, nw = P.resized_hw(img.shape[0], img.shape[1], 448)
        args = (img, kind, params, None, nh, nw, 448, "auto")
        cases.append(Case("preprocess", f"{name} -> 448",
                          ref=lambda a=args: P.preprocess_ref(*a),
                          native=lambda a=args: C.preprocess(*a), target=target))
    return cases

@register
def _rasterize_cases() -> list[Case]:
    import numpy as np

    from earthx_sdk import _ext
    from earthx_sdk.ops import rasterize as R
    from tests.cases import AWKWARD_SHAPES

    C = _ext.native()
    rng = np.random.default_rng(0)

    def star(n: int, size: int) -> np.ndarray:
        # Random star-shaped polygon [n, 2] around the grid center, radii 0.3-0.48 of the size.
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.3, 0.48, n) * size
        return np.stack([size / 2 + rad * np.cos(ang), size / 2 + rad * np.sin(ang)], axis=1)

    cases = []
    # The issue asks polygon rasterization >= 5x the numpy reference.
    for n, size in [(200, 2048), (64, 1024)]:
        v = star(n, size)
        cases.append(Case("raster_polygon", f"star {n} vertices {size}x{size}",
                          ref=lambda v=v, s=size: R.raster_polygon_ref(v, (s, s)),
                          native=lambda v=v, s=size: C.raster_polygon(v, s, s), target=5))
    h, w = AWKWARD_SHAPES[-1]
    v = star(200, min(h, w))
    cases.append(Case("raster_polygon", f"star 200 vertices {h}x{w}",
                      ref=lambda: R.raster_polygon_ref(v, (h, w)),
                      native=lambda: C.raster_polygon(v, h, w)))
    # A scribble: a 50-point random walk, 8 px wide, and a long 400-point one.
    for n, size, width in [(50, 1024, 8.0), (400, 2048, 12.0)]:
        p = np.clip(size / 2 + np.cumsum(rng.normal(0, size / 40, (n, 2)), axis=0), 0, size)
        cases.append(Case("raster_polyline", f"scribble {n} points w{width:g} {size}x{size}",
                          ref=lambda p=p, s=size, wd=width: R.raster_polyline_ref(p, wd, (s, s)),
                          native=lambda p=p, s=size, wd=width: C.raster_polyline(p, wd, s, s)))
    for radius, size in [(8.0, 1024), (300.0, 2048)]:
        c = np.array([size * 0.4, size * 0.55])
        cases.append(Case("raster_disk", f"disk r{radius:g} {size}x{size}",
                          ref=lambda c=c, r=radius, s=size: R.raster_disk_ref(c, r, (s, s)),
                          native=lambda c=c, r=radius, s=size: C.raster_disk(*c, r, s, s)))
    box = np.array([100.3, 200.7, 1700.2, 1500.9])
    cases.append(Case("raster_box", "box 2048x2048",
                      ref=lambda: R.raster_box_ref(box, (2048, 2048)),
                      native=lambda: C.raster_box(*box.tolist(), 2048, 2048)))
    m = rng.random((600, 500)) > 0.5
    cases.append(Case("resample_mask", "600x500 -> 2048x2048 (k=3.41)",
                      ref=lambda: R.resample_mask_ref(m, (2048, 2048), (3.41, 3.41)),
                      native=lambda: C.resample_mask(m, 2048, 2048, 3.41, 3.41)))
    return cases

@register
def _masks_cases() -> list[Case]:
    import numpy as np

    from earthx_sdk import _ext
    from earthx_sdk.ops import masks as M
    from tests.cases import AWKWARD_SHAPES

    C = _ext.native()
    rng = np.random.default_rng(0)

    def blobs(h: int, w: int, count: int) -> np.ndarray:
        """A few random filled ellipses: a mask such as a segmenter outputs."""
        yy, xx = np.mgrid[:h, :w]
        m = np.zeros((h, w), bool)
        for _ in range(count):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.02, 0.2) * h, rng.uniform(0.02, 0.2) * w
            m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        return m

    big = blobs(2048, 2048, 8)
    rle = M.rle_encode_ref(big)  # {"size": [H, W], "counts": bytes}: already the checked form
    orig = AWKWARD_SHAPES[-1]  # (2049, 1537)
    logits = rng.standard_normal((1, 256, 256)).astype(np.float32)
    resized = (1024, round(1024 * orig[1] / orig[0]))
    poly_mask = blobs(1024, 1024, 12)
    noise = rng.random((2048, 2048)) < 0.5
    return [
        Case("rle_encode", "2048x2048 bool, 8 blobs", lambda: M.rle_encode_ref(big),
             lambda: C.rle_encode(big), target=5),
        # worst case for run-length coding: every other pixel starts a run
        Case("rle_encode", "2048x2048 bool, random 50%", lambda: M.rle_encode_ref(noise),
             lambda: C.rle_encode(noise)),
        Case("rle_decode", "2048x2048, 8 blobs", lambda: M.rle_decode_ref(rle),
             lambda: C.rle_decode(rle)),
        Case("postprocess_masks", f"1x256x256 -> {orig[0]}x{orig[1]}",
             lambda: M.postprocess_masks_ref(logits, 1024, resized, orig),
             lambda: C.postprocess_masks(logits, 1024, resized, orig, 0.0)),
        Case("mask_to_polygons", "1024x1024 bool, 12 blobs",
             lambda: M.mask_to_polygons_ref(poly_mask), lambda: C.mask_to_polygons(poly_mask)),
    ]

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
