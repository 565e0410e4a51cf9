"""Case lists shared by the tests and `benchmarks/` (one list for correctness and for speed)."""

import numpy as np

# Awkward image shapes (H, W): a single pixel, odd primes, a column, and larger than 2048.
AWKWARD_SHAPES = [(1, 1), (7, 13), (1023, 1), (2049, 1537)]

# Float comparison tolerances keyed by dtype: (rtol, atol).
TOL = {
    np.float32: (1e-5, 1e-5),
    np.float64: (1e-12, 1e-12),
}
