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
    ms4 = SENSORS["multispectral"].with_stats([1000, 1100, 1200, 1300], [300, 310, 320, 330])
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

# RASTERIZE-CASES

# MASKS-CASES

# TILING-CASES
