"""Benchmark cases of the native ops, built from the test suite's case lists (tests/cases.py)."""

from __future__ import annotations

from benchmarks.harness import Case, register  # noqa: F401

# PREPROCESS-CASES

# RASTERIZE-CASES

# MASKS-CASES

# TILING-CASES
