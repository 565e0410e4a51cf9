"""CUDA region_pool (csrc/cuda/region_pool.cu, bound as `_C.region_pool_cuda`) on torch CUDA
tensors: the maps are read in place (any strides), forward only.

Semantics: `earthx_sdk.ops.region_pool.region_pool_ref`. Inference path for datacenter GPUs and
Jetson (where Triton is unreliable); training uses the Triton kernel or the reference, which
autograd differentiates.
"""

from __future__ import annotations

import torch

from earthx_sdk import _ext

_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_MAX_SCALES = 8  # kPoolMaxScales of csrc/cuda/region_pool.h: more maps run in groups


def available() -> tuple[bool, str]:
    """(True, "") when _C was built with CUDA, sees a device and torch has CUDA; else why not."""
    if not _ext.native_available():
        return False, f"earthx_sdk._C is not available ({_ext.NATIVE_ERROR})"
    C = _ext.native()
    if not C.build_info()["cuda_compiled"]:
        return False, "earthx_sdk._C was built without CUDA (EARTHX_CUDA=OFF or no nvcc)"
    if C.cuda_device_count() <= 0:
        return False, "no CUDA device visible to earthx_sdk._C (cuda_device_count() == 0)"
    if not torch.cuda.is_available():
        return False, "torch has no CUDA (torch.cuda.is_available() is False)"
    return True, ""


def supports(features, boxes, masks) -> tuple[bool, str]:
    """Whether "auto" may pick this kernel: float32/16/bf16 maps, and no autograd."""
    tensors = [*features, boxes] + ([masks] if masks is not None else [])
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False, "forward only: an input requires grad"
    if features[0].dtype not in _DTYPES:
        return False, f"maps of dtype {features[0].dtype}"
    return True, ""


def region_pool(
    features: list[torch.Tensor],
    boxes: torch.Tensor,
    masks: torch.Tensor | None,
    grid: int,
    image_hw: tuple[int, int],
) -> torch.Tensor:
    """`region_pool_ref` on CUDA tensors (validated by `region_pool`) -> [B, R, sum C_s].

    Maps are float32, float16 or bfloat16 with any strides (fp32 accumulation); boxes and masks
    are read as float32 (converted, and made contiguous, when they are not).

    Raises:
        RuntimeError: a tensor requires grad while autograd is on (forward only).
        ValueError: a tensor is not on CUDA, or not on the maps' device.
        TypeError: the maps' dtype is not float32, float16 or bfloat16.
    """
    tensors = [*features, boxes] + ([masks] if masks is not None else [])
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError("region_pool (cuda): forward only, but an input requires grad: use "
                           "impl='triton' or impl='ref' for training, or torch.no_grad()")
    device = features[0].device
    if device.type != "cuda":
        raise ValueError(f"region_pool (cuda): features must be CUDA tensors, got {device}")
    for name, t in (("boxes", boxes), ("masks", masks)):
        if t is not None and t.device != device:
            raise ValueError(f"region_pool (cuda): {name} must be on the features' device "
                             f"{device}, got {t.device}")
    dtype = features[0].dtype
    if dtype not in _DTYPES:
        raise TypeError(f"region_pool (cuda): features must be float32, float16 or bfloat16, "
                        f"got {dtype} (use impl='ref' for float64)")

    bsz, regions = boxes.shape[:2]
    channels = sum(int(f.shape[1]) for f in features)
    maps = [f for f in features if f.shape[1] > 0]  # a map with no channels adds none
    if bsz == 0 or regions == 0 or not maps:
        return torch.zeros(bsz, regions, channels, dtype=dtype, device=device)
    boxes = boxes.to(torch.float32).contiguous()
    if masks is not None:
        masks = masks.to(torch.float32).contiguous()
    with torch.cuda.device(device):
        stream = torch.cuda.current_stream(device).cuda_stream
        outs = [_launch(maps[i:i + _MAX_SCALES], boxes, masks, grid, image_hw, stream)
                for i in range(0, len(maps), _MAX_SCALES)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


def _launch(maps, boxes, masks, grid, image_hw, stream) -> torch.Tensor:
    """One kernel launch over up to _MAX_SCALES maps -> a new [B, R, sum C] tensor."""
    bsz, regions = boxes.shape[:2]
    out = torch.empty(bsz, regions, sum(int(f.shape[1]) for f in maps), dtype=maps[0].dtype,
                      device=maps[0].device)
    _ext.native().region_pool_cuda(
        [(f.data_ptr(), list(f.shape), list(f.stride())) for f in maps],
        _DTYPES[maps[0].dtype],
        boxes.data_ptr(),
        masks.data_ptr() if masks is not None else 0,
        list(masks.shape[-2:]) if masks is not None else [0, 0],
        bsz, regions, grid, list(image_hw), out.data_ptr(), int(stream))
    return out
