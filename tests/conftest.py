import numpy as np
import pytest

from earthx_sdk import _ext

requires_native = pytest.mark.skipif(
    not _ext.native_available(), reason=f"earthx_sdk._C not available: {_ext.NATIVE_ERROR}"
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
