# Type stub of the native core earthx_sdk._C (csrc/bindings.cpp). tests/test_stub.py checks that it
# lists exactly the module's functions, with the same argument names.
from typing import Any

import numpy as np
import numpy.typing as npt

def build_info() -> dict[str, Any]: ...
def set_num_threads(n: int) -> int: ...
def cuda_device_count() -> int: ...

# PREPROCESS-STUB

# RASTERIZE-STUB

# MASKS-STUB

# TILING-STUB
