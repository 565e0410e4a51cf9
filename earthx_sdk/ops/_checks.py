"""Argument checks shared by the ops' public functions (one rule, one message)."""

from __future__ import annotations

import numpy as np


def check_hw(fn: str, name: str, value) -> tuple[int, int]:
    """A (height, width) pair of ints, both >= 1.

    Raises:
        TypeError: not a sequence, or an element that is not an int (bools and floats included).
        ValueError: not exactly two values, or a value < 1.
    """
    if not isinstance(value, (tuple, list, np.ndarray)):
        raise TypeError(f"{fn}: {name} must be a pair of ints (h, w), got {type(value).__name__}")
    if len(value) != 2:
        raise ValueError(f"{fn}: {name} must be a pair of ints (h, w), got {len(value)} values: "
                         f"{tuple(value)!r}")
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{fn}: {name} must be a pair of ints (h, w), got {tuple(value)!r}")
    h, w = int(value[0]), int(value[1])
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: {name} must be >= 1 in both dims, got ({h}, {w})")
    return h, w
