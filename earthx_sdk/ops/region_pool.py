"""Region pooling: the prompt-feature fusion op (multi-scale, mask-weighted ROI-Align means).

`region_pool_ref` is the spec; the C++ CPU, Triton and CUDA kernels must match it. `region_pool`
validates its input and dispatches. Needs torch: this module is imported only where torch is
installed (`earthx_sdk.ops` itself does not import it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Implementations `region_pool` knows. Each kernel lives in earthx_sdk/kernels/ and is imported
# only when asked for (Triton and the CUDA runtime are optional).
IMPLS = ("auto", "ref", "cpu", "triton", "cuda")
_KERNELS = {
    "cpu": "earthx_sdk.kernels.region_pool_cpu",
    "triton": "earthx_sdk.kernels.triton.region_pool",
    "cuda": "earthx_sdk.kernels.region_pool_cuda",
}
# What "auto" tries, fastest first, per device type.
_AUTO_ORDER = {"cpu": ("cpu",), "cuda": ("triton", "cuda")}


def kernel_status(impl: str) -> tuple[bool, str]:
    """(available, reason) of a kernel implementation ("cpu", "triton", "cuda") on this machine."""
    import importlib

    try:
        mod = importlib.import_module(_KERNELS[impl])
    except ImportError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return mod.available()


def available_impls(device: str | torch.device | None = None) -> list[str]:
    """Implementations that run here ("ref" always), for one device type or for any."""
    kinds = ("cpu", "triton", "cuda")
    if device is not None:
        kinds = _AUTO_ORDER.get(torch.device(device).type, ())
    return ["ref"] + [k for k in kinds if kernel_status(k)[0]]


def _supports(impl: str, features, boxes, masks) -> bool:
    """Whether kernel `impl` takes these inputs: a kernel module may define `supports(features,
    boxes, masks) -> (bool, reason)` (e.g. float32 only, no autograd); "auto" skips it if not."""
    import importlib

    check = getattr(importlib.import_module(_KERNELS[impl]), "supports", None)
    return check is None or check(features, boxes, masks)[0]


def _resolve(impl: str, device: torch.device, features=None, boxes=None, masks=None) -> str:
    if impl != "auto":
        ok, why = kernel_status(impl) if impl != "ref" else (True, "")
        if not ok:
            raise RuntimeError(f"region_pool: impl={impl!r} is not available here: {why}")
        return impl
    for k in _AUTO_ORDER.get(device.type, ()):
        if kernel_status(k)[0] and (features is None or _supports(k, features, boxes, masks)):
            return k
    return "ref"


def _image_hw(fn: str, image_size) -> tuple[int, int]:
    """(H, W) from an int (square) or a pair of ints, all >= 1."""
    if isinstance(image_size, bool):
        raise TypeError(f"{fn}: image_size must be an int or a pair of ints (H, W), got a bool")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise TypeError(f"{fn}: image_size must be an int or a pair of ints (H, W), "
                        f"got {image_size!r}")
    for v in image_size:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{fn}: image_size must be an int or a pair of ints (H, W), "
                            f"got {tuple(image_size)!r}")
    h, w = image_size
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: image_size must be >= 1 in both dims, got ({h}, {w})")
    return h, w


def region_pool_ref(
    features: list[torch.Tensor],
    boxes: torch.Tensor,
    masks: torch.Tensor | None = None,
    grid: int = 7,
    *,
    image_size: int | tuple[int, int],
) -> torch.Tensor:
    """Mask-weighted mean of each region's features over a K x K grid, concatenated over scales.

    Coordinates: image pixel (row r, col c) covers [c, c+1) x [r, r+1); x is the column axis, y
    the row axis; the image is image_size = (H, W) pixels. Every feature map and the masks cover
    exactly that extent, whatever their own size.

    For region (b, r) with box (x0, y0, x1, y1) and K = grid:

    1. Sample points, at the bin centers inside the box, in image pixels, for k, j in [0, K):
       x_k = x0 + (k + 0.5) * (x1 - x0) / K and y_j = y0 + (j + 0.5) * (y1 - y0) / K.
       Points (x0 == x1, y0 == y1) give K*K copies of one point. The formula applies as written
       to boxes partly or wholly outside the image and to flipped boxes (x1 < x0).
    2. For each scale s with a map of H_s x W_s, the point maps to map pixel coordinates with
       half-pixel centers: x_f = x_k * W_s / W - 0.5, y_f = y_j * H_s / H - 0.5, and the feature
       f_s(x_k, y_j) [C_s] is the bilinear interpolation of the four neighbouring map pixels,
       a neighbour outside the map counting as 0 (`grid_sample(mode="bilinear",
       padding_mode="zeros", align_corners=False)`).
    3. The weight w(x_k, y_j) is masks[b, r] sampled the same way at the same point (its own
       Hm x Wm grid mapped onto the image extent, zeros outside); 1 everywhere without masks.
    4. out_s = sum_kj w * f_s / sum_kj w per channel, and exactly 0 where sum_kj w == 0 (a mask
       that is empty under the samples).
    5. out = concat_s out_s over the scales in list order -> [sum C_s].

    Arithmetic is in float32 (float64 when the features are float64); the result is cast back
    to the features' dtype.

    Args:
        features: 1 or more maps [B, C_s, H_s, W_s], same dtype (floating) and device.
        boxes: [B, R, 4] (x0, y0, x1, y1) in image pixels, floating, finite.
        masks: optional [B, R, Hm, Wm] region weights in [0, 1], floating.
        grid: K >= 1.
        image_size: H = W (int) or (H, W) of the image extent in pixels.

    Returns:
        [B, R, sum C_s] in the features' dtype. R = 0 gives [B, 0, sum C_s].

    Assumes validated input (see `region_pool`).
    """
    h, w = _image_hw("region_pool_ref", image_size)
    ct = torch.float64 if features[0].dtype == torch.float64 else torch.float32
    b, r = boxes.shape[:2]
    bx = boxes.to(ct)  # [B, R, 4]
    kk = torch.arange(grid, device=bx.device, dtype=ct) + 0.5  # [K]
    x0, y0, x1, y1 = bx.unbind(-1)  # each [B, R]
    xs = x0[..., None] + kk * (x1 - x0)[..., None] / grid  # [B, R, K]
    ys = y0[..., None] + kk * (y1 - y0)[..., None] / grid  # [B, R, K]
    # grid_sample's normalized coordinates with align_corners=False: u = 2 x / W - 1 is the
    # same point on every map, and unnormalizes to x * W_s / W - 0.5 on a map of width W_s.
    gx = (2.0 * xs / w - 1.0)[:, :, None, :].expand(b, r, grid, grid)  # [B, R, K(y), K(x)]
    gy = (2.0 * ys / h - 1.0)[:, :, :, None].expand(b, r, grid, grid)  # [B, R, K(y), K(x)]
    pts = torch.stack([gx, gy], dim=-1).reshape(b, r, grid * grid, 2)  # [B, R, K*K, 2]

    if masks is not None:
        m = masks.to(ct).reshape(b * r, 1, *masks.shape[-2:])  # [B*R, 1, Hm, Wm]
        wt = F.grid_sample(m, pts.reshape(b * r, 1, grid * grid, 2), mode="bilinear",
                           padding_mode="zeros", align_corners=False)  # [B*R, 1, 1, K*K]
        wt = wt.reshape(b, r, grid * grid)  # [B, R, K*K]
        den = wt.sum(-1, keepdim=True)  # [B, R, 1]
        empty = den == 0
        den = torch.where(empty, torch.ones_like(den), den)  # keeps the gradient finite

    outs = []
    for feat in features:
        f = F.grid_sample(feat.to(ct), pts, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # [B, C_s, R, K*K]
        if masks is None:
            outs.append(f.mean(-1).transpose(1, 2))  # [B, R, C_s]
        else:
            num = torch.einsum("bcrk,brk->brc", f, wt)  # [B, R, C_s]
            outs.append(torch.where(empty, torch.zeros_like(num), num / den))  # [B, R, C_s]
    return torch.cat(outs, dim=-1).to(features[0].dtype)  # [B, R, sum C_s]


def _check(features, boxes, masks, grid, image_size) -> None:
    fn = "region_pool"
    if not isinstance(features, (list, tuple)):
        raise TypeError(f"{fn}: features must be a list of [B, C, H, W] tensors, "
                        f"got {type(features).__name__}")
    if len(features) == 0:
        raise ValueError(f"{fn}: features must hold at least one map, got an empty list")
    for i, f in enumerate(features):
        if not isinstance(f, torch.Tensor):
            raise TypeError(f"{fn}: features[{i}] must be a torch.Tensor, got {type(f).__name__}")
        if f.dim() != 4:
            raise ValueError(f"{fn}: features[{i}] must be [B, C, H, W], got {list(f.shape)}")
        if not f.is_floating_point():
            raise TypeError(f"{fn}: features[{i}] must be floating point, got {f.dtype}")
    f0 = features[0]
    for i, f in enumerate(features[1:], start=1):
        if f.device != f0.device:
            raise ValueError(f"{fn}: all features must be on one device, features[0] is on "
                             f"{f0.device}, features[{i}] on {f.device}")
        if f.dtype != f0.dtype:
            raise TypeError(f"{fn}: all features must have one dtype, features[0] is "
                            f"{f0.dtype}, features[{i}] is {f.dtype}")
        if f.shape[0] != f0.shape[0]:
            raise ValueError(f"{fn}: all features must have one batch size B, features[0] has "
                             f"{f0.shape[0]}, features[{i}] has {f.shape[0]}")
    bsz = f0.shape[0]
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{fn}: boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"{fn}: boxes must be [B, R, 4], got {list(boxes.shape)}")
    if boxes.shape[0] != bsz:
        raise ValueError(f"{fn}: boxes must be [B, R, 4] with the features' B = {bsz}, "
                         f"got {list(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{fn}: boxes must be floating point, got {boxes.dtype}")
    if boxes.device != f0.device:
        raise ValueError(f"{fn}: boxes must be on the features' device {f0.device}, "
                         f"got {boxes.device}")
    # A value check needs the data: skipped while tracing/exporting, where it cannot run.
    if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        bad = ~torch.isfinite(boxes)
        if bool(bad.any()):
            idx = tuple(int(v) for v in bad.nonzero()[0].tolist())
            raise ValueError(f"{fn}: boxes must be finite, got {boxes[idx[:2]].tolist()} at "
                             f"boxes[{idx[0]}, {idx[1]}]")
    if masks is not None:
        if not isinstance(masks, torch.Tensor):
            raise TypeError(f"{fn}: masks must be a torch.Tensor or None, "
                            f"got {type(masks).__name__}")
        if masks.dim() != 4 or tuple(masks.shape[:2]) != tuple(boxes.shape[:2]):
            raise ValueError(f"{fn}: masks must be [B, R, Hm, Wm] with boxes' B, R = "
                             f"{list(boxes.shape[:2])}, got {list(masks.shape)}")
        if masks.shape[2] < 1 or masks.shape[3] < 1:
            raise ValueError(f"{fn}: masks must have Hm, Wm >= 1, got {list(masks.shape)}")
        if not masks.is_floating_point():
            raise TypeError(f"{fn}: masks must be floating point weights in [0, 1], "
                            f"got {masks.dtype}")
        if masks.device != f0.device:
            raise ValueError(f"{fn}: masks must be on the features' device {f0.device}, "
                             f"got {masks.device}")
    if isinstance(grid, bool) or not isinstance(grid, int):
        raise TypeError(f"{fn}: grid must be an int >= 1, got {grid!r}")
    if grid < 1:
        raise ValueError(f"{fn}: grid must be >= 1, got {grid}")
    _image_hw(fn, image_size)


def region_pool(
    features: list[torch.Tensor],
    boxes: torch.Tensor,
    masks: torch.Tensor | None = None,
    grid: int = 7,
    *,
    image_size: int | tuple[int, int],
    impl: str = "auto",
) -> torch.Tensor:
    """Validates the input and runs region pooling (semantics: `region_pool_ref`).

    Args:
        features: 1 or more maps [B, C_s, H_s, W_s] covering the image, same dtype and device.
        boxes: [B, R, 4] (x0, y0, x1, y1) in image pixels.
        masks: optional [B, R, Hm, Wm] region weights in [0, 1] covering the image.
        grid: K of the K x K sampling grid, >= 1.
        image_size: H = W (int) or (H, W) in pixels.
        impl: "auto" (the fastest available for the tensors' device) | "ref" | "cpu" | "triton" |
            "cuda".

    Returns:
        [B, R, sum C_s] in the features' dtype.

    Raises:
        TypeError: a non-tensor, a non-floating dtype, features of mixed dtypes, a bad grid or
            image_size type.
        ValueError: an empty features list, wrong ranks or shapes, mismatched B (or R for masks),
            tensors on different devices, non-finite boxes, grid < 1, an unknown impl.
        RuntimeError: the asked-for kernel is not available here (the message says why).
    """
    if impl not in IMPLS:
        raise ValueError(f"region_pool: impl must be one of {list(IMPLS)}, got {impl!r}")
    _check(features, boxes, masks, grid, image_size)
    impl = _resolve(impl, boxes.device, features, boxes, masks)
    if impl == "ref":
        return region_pool_ref(list(features), boxes, masks, grid, image_size=image_size)
    import importlib

    kernel = importlib.import_module(_KERNELS[impl]).region_pool
    return kernel(list(features), boxes, masks, grid, _image_hw("region_pool", image_size))
