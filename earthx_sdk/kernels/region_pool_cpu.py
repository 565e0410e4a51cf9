"""region_pool on the CPU: the multithreaded C++ kernel `earthx_sdk._C.region_pool`.

Semantics: `earthx_sdk.ops.region_pool.region_pool_ref`. Float32 features only, and inference
only: the kernel has no backward, so training on the CPU runs the reference (impl="ref"), and a
tensor that requires grad while grad is enabled is refused. Torch tensors are handed to the kernel
as numpy views (no copy, strides kept); the result is a torch tensor sharing the kernel's output
buffer. Does not need torch itself: numpy arrays in give a numpy array out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from earthx_sdk import _ext

try:
    import torch
except ImportError:  # the runtime without torch: numpy arrays only
    torch = None

_FN = "region_pool(impl='cpu')"


def available() -> tuple[bool, str]:
    """(True, "") when `_C` is built and has region_pool, else (False, why)."""
    if not _ext.native_available():
        return False, f"earthx_sdk._C is not available ({_ext.NATIVE_ERROR})"
    if not hasattr(_ext.native(), "region_pool"):
        return False, "earthx_sdk._C has no region_pool (built from older sources; rebuild it)"
    return True, ""


def _is_tensor(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def supports(features, boxes, masks) -> tuple[bool, str]:
    """(True, "") when this kernel takes these (validated) inputs: float32 features on the CPU,
    and no input that needs a gradient. impl="auto" runs the reference otherwise."""
    tensors = [*features, boxes] + ([] if masks is None else [masks])
    if any(_is_tensor(t) and t.device.type != "cpu" for t in tensors):
        return False, "inputs are not on the CPU"
    if any(f.dtype not in (np.float32, *(() if torch is None else (torch.float32,)))
           for f in features):
        return False, f"features are {features[0].dtype}, the kernel takes float32 only"
    if torch is not None and torch.is_grad_enabled() and any(
            _is_tensor(t) and t.requires_grad for t in tensors):
        return False, "an input requires grad and the kernel has no backward"
    return True, ""


def _as_array(x: Any, name: str, *, cast: bool) -> np.ndarray:
    """A float32 numpy view of a CPU tensor or array. `cast`: other floating dtypes are converted
    to float32 (what the reference does with boxes and masks); otherwise they are refused."""
    if _is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{_FN}: {name} must be a CPU tensor, got one on {x.device}; "
                             f"use impl='auto' to pick a kernel for the tensors' device")
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{_FN}: {name} requires grad, and this kernel has no backward; "
                               f"training on the CPU uses the reference (impl='ref'), or run "
                               f"under torch.no_grad()")
        if x.dtype != torch.float32:
            if not (cast and x.is_floating_point()):
                raise TypeError(f"{_FN}: {name} must be float32, got {x.dtype}; use "
                                f"impl='ref' for other dtypes")
            x = x.to(torch.float32)
        return x.detach().numpy()  # a view: same memory, same strides
    if isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            if not (cast and np.issubdtype(x.dtype, np.floating)):
                raise TypeError(f"{_FN}: {name} must be float32, got {x.dtype}; use "
                                f"impl='ref' for other dtypes")
            x = x.astype(np.float32)
        return x
    raise TypeError(f"{_FN}: {name} must be a torch.Tensor or a numpy array, "
                    f"got {type(x).__name__}")


def region_pool(features, boxes, masks, grid: int, image_hw: tuple[int, int]):
    """Mask-weighted K x K region means, concatenated over scales (see `region_pool_ref`).

    Args:
        features: 1 or more float32 maps [B, C_s, H_s, W_s] (CPU tensors or numpy arrays, any
            strides: channels-last and sliced maps are read in place).
        boxes: [B, R, 4] (x0, y0, x1, y1) in image pixels, finite; floating (cast to float32, as
            the reference does).
        masks: None or [B, R, Hm, Wm] weights in [0, 1]; floating (cast to float32).
        grid: K >= 1.
        image_hw: (H, W) of the image in pixels.

    Returns:
        float32 [B, R, sum C_s]: a torch tensor when features[0] is one, else a numpy array.

    Raises:
        TypeError: features not float32 (use impl="ref"), non-floating boxes or masks, inputs
            that are neither tensors nor arrays.
        ValueError: a tensor on another device than the CPU; bad shapes, grid or image size and
            non-finite boxes (checked by the kernel).
        RuntimeError: `_C` or its region_pool is missing; an input requires grad while grad is
            enabled (the kernel has no backward).
    """
    ok, why = available()
    if not ok:
        raise RuntimeError(f"{_FN}: not available here: {why}")
    if not isinstance(features, (list, tuple)):
        raise TypeError(f"{_FN}: features must be a list of [B, C, H, W] maps, "
                        f"got {type(features).__name__}")
    as_torch = len(features) > 0 and _is_tensor(features[0])
    maps = [_as_array(f, f"features[{i}]", cast=False) for i, f in enumerate(features)]
    box = _as_array(boxes, "boxes", cast=True)
    mask = None if masks is None else _as_array(masks, "masks", cast=True)
    h, w = image_hw
    out = _ext.native().region_pool(maps, box, mask, grid, h, w)  # [B, R, sum C_s]
    return torch.from_numpy(out) if as_torch else out
