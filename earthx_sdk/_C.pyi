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

def stitch(
    tiles: npt.NDArray[np.float32], boxes: npt.NDArray[np.int64], height: int, width: int,
    overlap: int,
) -> npt.NDArray[np.float32]: ...
def stitch_masks(
    masks: npt.NDArray[np.uint8] | npt.NDArray[np.bool_], boxes: npt.NDArray[np.int64], height: int,
    width: int, overlap: int,
) -> npt.NDArray[np.uint8]: ...
