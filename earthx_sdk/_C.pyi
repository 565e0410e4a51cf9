# Type stub of the native core earthx_sdk._C (csrc/bindings.cpp). tests/test_stub.py checks that it
# lists exactly the module's functions, with the same argument names.
from typing import Any

import numpy as np
import numpy.typing as npt

def build_info() -> dict[str, Any]: ...
def set_num_threads(n: int) -> int: ...
def cuda_device_count() -> int: ...

# preprocess (csrc/cpu/preprocess.cpp)
def normalize(
    image: npt.NDArray[Any], kind: int, params: npt.NDArray[np.float64], nodata: float | None = None
) -> tuple[npt.NDArray[np.float32], int]: ...
def resize(
    image: npt.NDArray[np.float32], out_h: int, out_w: int, mode: str
) -> npt.NDArray[np.float32]: ...
def preprocess(
    image: npt.NDArray[Any],
    kind: int,
    params: npt.NDArray[np.float64],
    nodata: float | None,
    out_h: int,
    out_w: int,
    size: int,
    mode: str,
) -> tuple[npt.NDArray[np.float32], int]: ...

def preprocess_cuda(
    src: int,
    shape: list[int],
    strides: list[int],
    typestr: str,
    kind: int,
    params: npt.NDArray[np.float64],
    bounds: npt.NDArray[np.float64] | None,
    nodata: float | None,
    dst: int,
    out_h: int,
    out_w: int,
    size: int,
    mode: str,
    stream: int,
) -> None: ...

# region_pool (csrc/region_pool_cuda.cpp, csrc/cuda/region_pool.cu)
def region_pool_cuda(
    features: list[tuple[int, list[int], list[int]]],
    dtype: str,
    boxes: int,
    masks: int,
    mask_hw: list[int],
    batch: int,
    regions: int,
    grid: int,
    image_hw: list[int],
    out: int,
    stream: int,
) -> None: ...

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

def upsample_logits(
    logits: npt.NDArray[np.float32], size: int, resized_hw: tuple[int, int],
    orig_hw: tuple[int, int],
) -> npt.NDArray[np.float32]: ...
def postprocess_masks(
    logits: npt.NDArray[np.float32], size: int, resized_hw: tuple[int, int],
    orig_hw: tuple[int, int], threshold: float,
) -> npt.NDArray[np.uint8]: ...
def rle_encode(mask: npt.NDArray[Any]) -> dict[str, Any] | list[dict[str, Any]]: ...
def rle_decode(rle: dict[str, Any]) -> npt.NDArray[np.uint8]: ...
def rle_area(rle: dict[str, Any]) -> int: ...
def mask_to_polygons(mask: npt.NDArray[Any]) -> list[npt.NDArray[np.float64]]: ...

def stitch(
    tiles: npt.NDArray[np.float32], boxes: npt.NDArray[np.int64], height: int, width: int,
    overlap: int,
) -> npt.NDArray[np.float32]: ...
def stitch_masks(
    masks: npt.NDArray[np.uint8] | npt.NDArray[np.bool_], boxes: npt.NDArray[np.int64], height: int,
    width: int, overlap: int,
) -> npt.NDArray[np.uint8]: ...

def region_pool(
    features: list[npt.NDArray[np.float32]],
    boxes: npt.NDArray[np.float32],
    masks: npt.NDArray[np.float32] | None,
    grid: int,
    image_h: int,
    image_w: int,
) -> npt.NDArray[np.float32]: ...
