"""Benchmark cases of the native ops, built from the test suite's case lists (tests/cases.py)."""

from __future__ import annotations

from benchmarks.harness import Case, register  # noqa: F401

# PREPROCESS-CASES

# RASTERIZE-CASES

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
    return [
        Case("rle_encode", "2048x2048 bool, 8 blobs", lambda: M.rle_encode_ref(big),
             lambda: C.rle_encode(big), target=5),
        Case("rle_decode", "2048x2048, 8 blobs", lambda: M.rle_decode_ref(rle),
             lambda: C.rle_decode(rle)),
        Case("postprocess_masks", f"1x256x256 -> {orig[0]}x{orig[1]}",
             lambda: M.postprocess_masks_ref(logits, 1024, resized, orig),
             lambda: C.postprocess_masks(logits, 1024, resized, orig, 0.0)),
        Case("mask_to_polygons", "1024x1024 bool, 12 blobs",
             lambda: M.mask_to_polygons_ref(poly_mask), lambda: C.mask_to_polygons(poly_mask)),
    ]

# TILING-CASES
