# Type stub of the native core earthx_sdk._C (csrc/bindings.cpp). tests/test_stub.py checks that it
# lists exactly the module's functions, with the same argument names.
from typing import Any

import numpy as np
import numpy.typing as npt

def build_info() -> dict[str, Any]: ...
def set_num_threads(n: int) -> int: ...
def cuda_device_count() -> int: ...

# PREPROCESS-STUB

def raster_disk(
    cx: float, cy: float, radius: float, out_h: int, out_w: int
) -> npt.NDArray[np.uint8]: ...
def raster_box(
    x0: float, y0: float, x1: float, y1: float, out_h: int, out_w: int
) -> npt.NDArray[np.uint8]: ...
def raster_polygon(
    vertices: npt.NDArray[np.float64], out_h: int, out_w: int
) -> npt.NDArray[np.uint8]: ...
def raster_polyline(
    points: npt.NDArray[np.float64], width: float, out_h: int, out_w: int
) -> npt.NDArray[np.uint8]: ...
def resample_mask(
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8],
    out_h: int,
    out_w: int,
    kx: float,
    ky: float,
) -> npt.NDArray[np.uint8]: ...

# MASKS-STUB

# TILING-STUB
