import os

# Triton's interpreter runs its kernels on CPU tensors: switch it on where no NVIDIA GPU exists.
# It must be set before anything imports triton (triton.jit reads it when a kernel is defined),
# hence here, at conftest import time. A GPU machine compiles the kernels for real.
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest

from earthx_sdk import _ext

requires_native = pytest.mark.skipif(
    not _ext.native_available(), reason=f"earthx_sdk._C not available: {_ext.NATIVE_ERROR}"
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def realdata(fn, *args):
    """Path from a `training.realdata` lookup, or a skip naming what is missing."""
    try:
        return fn(*args)
    except FileNotFoundError as e:
        pytest.skip(f"real data not installed: {e}")
