"""region_pool in Triton: forward and features-gradient kernels behind a torch custom op.

Semantics: `earthx_sdk.ops.region_pool.region_pool_ref` (the spec). One program pools one region
(b, r) over a block of channels of one scale: it walks the K*K sample points in chunks, gathers
the 4 bilinear neighbours of each point for the channel block, weights them by the mask sampled
at the same point, and divides by the weight sum at the end.

Scales: one launch per scale, each writing its channel slice of the output [B, R, sum C]. Scales
differ in shape, strides and channel count; one launch over all of them would need the maps
copied into one buffer or a table of pointers, while per-scale launches take the caller's tensors
as they are (any strides) at the cost of re-sampling the mask weights once per scale (K*K*4 loads
per region, small next to the K*K*4*C feature loads).

Gradient: w.r.t. the features only (the backward kernel scatters weight * grad_out / weight_sum
into the 4 bilinear neighbours with atomic adds, in float32, or float64 for float64 features).
Boxes and masks get no gradient: the bin positions move the samples only through the floor of
the bilinear neighbours' indices, and the masks are region weights given by the prompt, not
learned here. The backward is not itself differentiable (no double backward).

Arithmetic in float32 (float64 for float64 features); the output has the features' dtype.
Needs triton, and a CUDA device or TRITON_INTERPRET=1 (set before triton is imported), under
which it runs on CPU tensors.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl

    _TRITON_ERROR = ""
except ImportError as _exc:  # optional dependency: available() reports it
    triton = None
    tl = None
    _TRITON_ERROR = f"{type(_exc).__name__}: {_exc}"

_OP = "earthx::region_pool_triton"
_FN = "region_pool_triton"


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> tuple[bool, str]:
    """(True, "") when triton imports and a CUDA device is present or TRITON_INTERPRET=1."""
    if triton is None:
        return False, f"triton is not importable: {_TRITON_ERROR}"
    if _interpret():
        return True, ""
    if not torch.cuda.is_available():
        return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU)"
    return True, ""


if triton is not None:
    # ---------------------------------------------------------------------------------------
    # Autotune configs. The channel block is the tuned dimension: the point chunk (BLOCK_P) is
    # set by the wrapper from K. The interpreter measures nothing worth tuning (and would run
    # every config), so it gets one config.
    # ---------------------------------------------------------------------------------------
    def _configs():
        if _interpret():
            return [triton.Config({"BLOCK_C": 64}, num_warps=4)]
        return [
            triton.Config({"BLOCK_C": bc}, num_warps=nw, num_stages=1)
            for bc in (16, 32, 64, 128) for nw in (2, 4, 8)
            if not (bc <= 32 and nw == 8)
        ]

    @triton.jit
    def _bilinear_taps(xs, ys, map_h, map_w, image_h, image_w):
        """Neighbour indices and weights of image points (xs, ys) on a map_h x map_w map."""
        # Half-pixel centers: image x maps to map x * W_s / W - 0.5.
        xf = xs * map_w / image_w - 0.5
        yf = ys * map_h / image_h - 0.5
        # Points far outside (boxes wholly outside the image) would overflow int32 in the floor;
        # clamping to just outside the map keeps every neighbour outside, so the value stays 0.
        xf = tl.minimum(tl.maximum(xf, -2.0), map_w + 1.0)
        yf = tl.minimum(tl.maximum(yf, -2.0), map_h + 1.0)
        x_lo = tl.floor(xf)
        y_lo = tl.floor(yf)
        ax = xf - x_lo  # weight of the right neighbour
        ay = yf - y_lo  # weight of the lower neighbour
        ix = x_lo.to(tl.int32)
        iy = y_lo.to(tl.int32)
        return ix, iy, ax, ay

    @triton.jit
    def _mask_weight(
        masks_ptr, b, r, sm_b, sm_r, sm_h, sm_w, mask_h, mask_w,
        xs, ys, pmask, image_h, image_w, ACC: tl.constexpr,
    ):
        """masks[b, r] sampled bilinearly at the points (zeros outside) -> [BLOCK_P] in ACC."""
        ix, iy, ax, ay = _bilinear_taps(xs, ys, mask_h, mask_w, image_h, image_w)
        base = masks_ptr + b.to(tl.int64) * sm_b + r.to(tl.int64) * sm_r
        wt = tl.zeros_like(xs)
        for dy in tl.static_range(2):
            for dx in tl.static_range(2):
                yy = iy + dy
                xx = ix + dx
                ok = pmask & (yy >= 0) & (yy < mask_h) & (xx >= 0) & (xx < mask_w)
                v = tl.load(base + yy * sm_h + xx * sm_w, mask=ok, other=0.0).to(ACC)
                wy = ay if dy == 1 else 1.0 - ay
                wx = ax if dx == 1 else 1.0 - ax
                wt += wy * wx * v
        return tl.where(pmask, wt, 0.0)

    @triton.jit
    def _sample_points(boxes_ptr, b, r, sb_b, sb_r, sb_k, p, K: tl.constexpr, ACC: tl.constexpr):
        """Bin centers of box (b, r) for flat point indices p = j * K + k -> (xs, ys) [BLOCK_P]."""
        base = boxes_ptr + b.to(tl.int64) * sb_b + r.to(tl.int64) * sb_r
        x0 = tl.load(base).to(ACC)
        y0 = tl.load(base + sb_k).to(ACC)
        x1 = tl.load(base + 2 * sb_k).to(ACC)
        y1 = tl.load(base + 3 * sb_k).to(ACC)
        k = (p % K).to(ACC)
        j = (p // K).to(ACC)
        xs = x0 + (k + 0.5) * (x1 - x0) / K
        ys = y0 + (j + 0.5) * (y1 - y0) / K
        return xs, ys

    # ---------------------------------------------------------------------------------------
    # Forward: out[b, r, c_off + c] = sum_p w_p f(x_p, y_p)[c] / sum_p w_p (0 where the sum is 0).
    # Grid: (B * R, cdiv(C, BLOCK_C)).
    # ---------------------------------------------------------------------------------------
    @triton.autotune(configs=_configs(), key=["C", "K", "HAS_MASK"])
    @triton.jit
    def _region_pool_fwd_kernel(
        # one scale's feature map [B, C, H_s, W_s] (any strides)
        feat_ptr, C, map_h, map_w, sf_b, sf_c, sf_h, sf_w,
        # boxes [B, R, 4] (x0, y0, x1, y1) in image pixels
        boxes_ptr, R, sb_b, sb_r, sb_k,
        # masks [B, R, Hm, Wm] (unused when HAS_MASK is False)
        masks_ptr, mask_h, mask_w, sm_b, sm_r, sm_h, sm_w,
        # output [B, R, sum C]: this scale writes channels [c_off, c_off + C)
        out_ptr, so_b, so_r, so_c, c_off,
        # geometry: an image of image_h x image_w pixels, a K x K grid (compile-time: few values)
        image_h, image_w, K: tl.constexpr,
        # compile-time: mask on/off, float64 arithmetic, block sizes
        HAS_MASK: tl.constexpr, IS_FP64: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        ACC: tl.constexpr = tl.float64 if IS_FP64 else tl.float32
        pid = tl.program_id(0)
        b = pid // R
        r = pid % R
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
        cmask = c < C
        feat_base = feat_ptr + b.to(tl.int64) * sf_b + c.to(tl.int64)[None, :] * sf_c

        num = tl.zeros([BLOCK_C], dtype=ACC)
        den = tl.zeros([BLOCK_P], dtype=ACC)
        for p0 in range(0, K * K, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)  # [BLOCK_P]
            pmask = p < K * K
            xs, ys = _sample_points(boxes_ptr, b, r, sb_b, sb_r, sb_k, p, K, ACC)
            if HAS_MASK:
                wt = _mask_weight(masks_ptr, b, r, sm_b, sm_r, sm_h, sm_w, mask_h, mask_w,
                                  xs, ys, pmask, image_h, image_w, ACC)
            else:
                wt = tl.where(pmask, 1.0, 0.0).to(ACC)
            den += wt
            ix, iy, ax, ay = _bilinear_taps(xs, ys, map_h, map_w, image_h, image_w)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    yy = iy + dy
                    xx = ix + dx
                    ok = pmask & (yy >= 0) & (yy < map_h) & (xx >= 0) & (xx < map_w)
                    wy = ay if dy == 1 else 1.0 - ay
                    wx = ax if dx == 1 else 1.0 - ax
                    tap = wt * wy * wx  # [BLOCK_P]
                    ptrs = feat_base + (yy * sf_h + xx * sf_w)[:, None]  # [BLOCK_P, BLOCK_C]
                    v = tl.load(ptrs, mask=ok[:, None] & cmask[None, :], other=0.0).to(ACC)
                    num += tl.sum(v * tap[:, None], axis=0)
        total = tl.sum(den, axis=0)
        res = tl.where(total == 0.0, 0.0, num / tl.where(total == 0.0, 1.0, total))
        out_ptrs = (out_ptr + b.to(tl.int64) * so_b + r.to(tl.int64) * so_r
                    + (c_off + c).to(tl.int64) * so_c)
        tl.store(out_ptrs, res.to(out_ptr.dtype.element_ty), mask=cmask)

    # ---------------------------------------------------------------------------------------
    # Backward (features only): grad_feat[b, c, y, x] += w_p * bilinear_tap * g[c] / sum_p w_p
    # for the 4 neighbours of every point; atomic because points of one region (and of other
    # regions) share neighbours. grad_feat is a zeroed float32/float64 buffer [B, C, H_s, W_s].
    # Grid: (B * R, cdiv(C, BLOCK_C)).
    # ---------------------------------------------------------------------------------------
    @triton.autotune(configs=_configs(), key=["C", "K", "HAS_MASK"], reset_to_zero=["grad_ptr"])
    @triton.jit
    def _region_pool_bwd_kernel(
        # gradient buffer of one scale [B, C, H_s, W_s] (any strides), accumulated into
        grad_ptr, C, map_h, map_w, sg_b, sg_c, sg_h, sg_w,
        # boxes [B, R, 4] (x0, y0, x1, y1) in image pixels
        boxes_ptr, R, sb_b, sb_r, sb_k,
        # masks [B, R, Hm, Wm] (unused when HAS_MASK is False)
        masks_ptr, mask_h, mask_w, sm_b, sm_r, sm_h, sm_w,
        # incoming gradient [B, R, sum C]: this scale reads channels [c_off, c_off + C)
        gout_ptr, so_b, so_r, so_c, c_off,
        # geometry: an image of image_h x image_w pixels, a K x K grid (compile-time: few values)
        image_h, image_w, K: tl.constexpr,
        # compile-time: mask on/off, float64 arithmetic, block sizes
        HAS_MASK: tl.constexpr, IS_FP64: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        ACC: tl.constexpr = tl.float64 if IS_FP64 else tl.float32
        pid = tl.program_id(0)
        b = pid // R
        r = pid % R
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BLOCK_C]
        cmask = c < C

        # The weight sum first: every point's share needs it.
        if HAS_MASK:
            den = tl.zeros([BLOCK_P], dtype=ACC)
            for p0 in range(0, K * K, BLOCK_P):
                p = p0 + tl.arange(0, BLOCK_P)
                pmask = p < K * K
                xs, ys = _sample_points(boxes_ptr, b, r, sb_b, sb_r, sb_k, p, K, ACC)
                den += _mask_weight(masks_ptr, b, r, sm_b, sm_r, sm_h, sm_w, mask_h, mask_w,
                                    xs, ys, pmask, image_h, image_w, ACC)
            total = tl.sum(den, axis=0)
        else:
            total = tl.full((), K * K, ACC)
        gptrs = (gout_ptr + b.to(tl.int64) * so_b + r.to(tl.int64) * so_r
                 + (c_off + c).to(tl.int64) * so_c)
        g = tl.load(gptrs, mask=cmask, other=0.0).to(ACC)  # [BLOCK_C]
        # An empty mask gave out = 0, a constant: no gradient.
        g = tl.where(total == 0.0, 0.0, g / tl.where(total == 0.0, 1.0, total))

        grad_base = grad_ptr + b.to(tl.int64) * sg_b + c.to(tl.int64)[None, :] * sg_c
        for p0 in range(0, K * K, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)  # [BLOCK_P]
            pmask = p < K * K
            xs, ys = _sample_points(boxes_ptr, b, r, sb_b, sb_r, sb_k, p, K, ACC)
            if HAS_MASK:
                wt = _mask_weight(masks_ptr, b, r, sm_b, sm_r, sm_h, sm_w, mask_h, mask_w,
                                  xs, ys, pmask, image_h, image_w, ACC)
            else:
                wt = tl.where(pmask, 1.0, 0.0).to(ACC)
            ix, iy, ax, ay = _bilinear_taps(xs, ys, map_h, map_w, image_h, image_w)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    yy = iy + dy
                    xx = ix + dx
                    ok = pmask & (yy >= 0) & (yy < map_h) & (xx >= 0) & (xx < map_w)
                    ok = ok & (wt != 0.0)  # masked-out samples add nothing: skip their atomics
                    wy = ay if dy == 1 else 1.0 - ay
                    wx = ax if dx == 1 else 1.0 - ax
                    tap = wt * wy * wx  # [BLOCK_P]
                    ptrs = grad_base + (yy * sg_h + xx * sg_w)[:, None]  # [BLOCK_P, BLOCK_C]
                    tl.atomic_add(ptrs, tap[:, None] * g[None, :],
                                  mask=ok[:, None] & cmask[None, :])


# -------------------------------------------------------------------------------------------
# Wrappers: check, allocate, launch.
# -------------------------------------------------------------------------------------------
def _block_p(grid: int) -> int:
    # One chunk for the usual K <= 8; larger grids loop over chunks of 64 points.
    return min(triton.next_power_of_2(grid * grid), 64)


def _launch_grid(n_regions: int, channels: int):
    """(B * R, channel blocks): the channel block is the autotuned BLOCK_C."""
    def grid(meta):
        return (n_regions, triton.cdiv(channels, meta["BLOCK_C"]))
    return grid


def _launch_args(feat, boxes, masks):
    """The box and mask arguments shared by both kernels (masks: dummy pointer when absent)."""
    if masks is None:
        m_args = (boxes, 1, 1, 0, 0, 0, 0)
    else:
        m_args = (masks, masks.shape[2], masks.shape[3], *masks.stride())
    return (boxes, boxes.shape[1], *boxes.stride()), m_args


def _forward(features, boxes, masks, grid, image_h, image_w):
    bsz, nreg = boxes.shape[:2]
    total_c = sum(f.shape[1] for f in features)
    out = torch.empty(bsz, nreg, total_c, dtype=features[0].dtype, device=features[0].device)
    if bsz * nreg == 0:
        return out
    is_fp64 = features[0].dtype == torch.float64
    c_off = 0
    for feat in features:
        c = feat.shape[1]
        if c > 0:
            b_args, m_args = _launch_args(feat, boxes, masks)
            launch = _launch_grid(bsz * nreg, c)
            _region_pool_fwd_kernel[launch](
                feat, c, feat.shape[2], feat.shape[3], *feat.stride(),
                *b_args, *m_args,
                out, *out.stride(), c_off,
                image_h, image_w, grid,
                HAS_MASK=masks is not None, IS_FP64=is_fp64, BLOCK_P=_block_p(grid),
            )
        c_off += c
    return out


def _backward(grad_out, features, boxes, masks, grid, image_h, image_w):
    bsz, nreg = boxes.shape[:2]
    is_fp64 = features[0].dtype == torch.float64
    acc = torch.float64 if is_fp64 else torch.float32
    grads = []
    c_off = 0
    for feat in features:
        c = feat.shape[1]
        buf = torch.zeros(feat.shape, dtype=acc, device=feat.device)  # [B, C, H_s, W_s]
        if c > 0 and bsz * nreg > 0:
            b_args, m_args = _launch_args(feat, boxes, masks)
            launch = _launch_grid(bsz * nreg, c)
            _region_pool_bwd_kernel[launch](
                buf, c, feat.shape[2], feat.shape[3], *buf.stride(),
                *b_args, *m_args,
                grad_out, *grad_out.stride(), c_off,
                image_h, image_w, grid,
                HAS_MASK=masks is not None, IS_FP64=is_fp64, BLOCK_P=_block_p(grid),
            )
        grads.append(buf.to(feat.dtype))
        c_off += c
    return grads


# -------------------------------------------------------------------------------------------
# The custom op: opaque to torch.compile (no graph break), with a fake kernel for shapes and an
# autograd formula that runs the backward kernel.
# -------------------------------------------------------------------------------------------
@torch.library.custom_op(_OP, mutates_args=())
def _region_pool_op(features: list[torch.Tensor], boxes: torch.Tensor,
                    masks: torch.Tensor | None, grid: int, image_h: int,
                    image_w: int) -> torch.Tensor:
    return _forward(features, boxes, masks, grid, image_h, image_w)


@_region_pool_op.register_fake
def _region_pool_fake(features, boxes, masks, grid, image_h, image_w):
    total_c = sum(f.shape[1] for f in features)
    return features[0].new_empty(boxes.shape[0], boxes.shape[1], total_c)  # [B, R, sum C]


@torch.library.custom_op(_OP + "_backward", mutates_args=())
def _region_pool_backward_op(grad_out: torch.Tensor, features: list[torch.Tensor],
                             boxes: torch.Tensor, masks: torch.Tensor | None, grid: int,
                             image_h: int, image_w: int) -> list[torch.Tensor]:
    return _backward(grad_out, features, boxes, masks, grid, image_h, image_w)


@_region_pool_backward_op.register_fake
def _region_pool_backward_fake(grad_out, features, boxes, masks, grid, image_h, image_w):
    return [torch.empty_like(f) for f in features]


def _setup_context(ctx, inputs, output):
    features, boxes, masks, grid, image_h, image_w = inputs
    ctx.n_features = len(features)
    ctx.has_masks = masks is not None
    ctx.geometry = (grid, image_h, image_w)
    ctx.save_for_backward(*features, boxes, *([masks] if masks is not None else []))


def _autograd_backward(ctx, grad_out):
    saved = ctx.saved_tensors
    features = list(saved[:ctx.n_features])
    boxes = saved[ctx.n_features]
    masks = saved[ctx.n_features + 1] if ctx.has_masks else None
    grads = None
    if ctx.needs_input_grad[0]:
        grads = _region_pool_backward_op(grad_out, features, boxes, masks, *ctx.geometry)
    # boxes, masks, grid, image_h, image_w: no gradient (see the module docstring)
    return grads, None, None, None, None, None


_region_pool_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def _check(features, boxes, masks, grid, image_hw) -> None:
    """Shape, dtype and device rules (no value checks: they would synchronize the GPU;
    `earthx_sdk.ops.region_pool.region_pool` checks that boxes are finite)."""
    if not isinstance(features, (list, tuple)) or len(features) == 0:
        raise ValueError(f"{_FN}: features must be a non-empty list of [B, C, H, W] tensors, "
                         f"got {features!r:.80}")
    f0 = features[0]
    for i, f in enumerate(features):
        if not isinstance(f, torch.Tensor) or f.dim() != 4:
            got = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"{_FN}: features[{i}] must be a [B, C, H, W] tensor, got {got}")
        if f.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise TypeError(f"{_FN}: features[{i}] must be float32, float16, bfloat16 or "
                            f"float64, got {f.dtype}")
        if f.dtype != f0.dtype or f.device != f0.device or f.shape[0] != f0.shape[0]:
            raise ValueError(f"{_FN}: all features must share dtype, device and B; features[0] "
                             f"is {f0.dtype} on {f0.device} with B={f0.shape[0]}, features[{i}] "
                             f"is {f.dtype} on {f.device} with B={f.shape[0]}")
    if f0.device.type != "cuda" and not _interpret():
        raise ValueError(f"{_FN}: features must be CUDA tensors (or run with TRITON_INTERPRET=1 "
                         f"for CPU), got device {f0.device}")
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 3 or boxes.shape[-1] != 4 \
            or boxes.shape[0] != f0.shape[0]:
        got = list(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{_FN}: boxes must be [B, R, 4] with the features' B = "
                         f"{f0.shape[0]}, got {got}")
    if not boxes.is_floating_point() or boxes.device != f0.device:
        raise ValueError(f"{_FN}: boxes must be floating point on {f0.device}, got "
                         f"{boxes.dtype} on {boxes.device}")
    if masks is not None:
        if not isinstance(masks, torch.Tensor) or masks.dim() != 4 \
                or tuple(masks.shape[:2]) != tuple(boxes.shape[:2]) \
                or masks.shape[2] < 1 or masks.shape[3] < 1:
            got = list(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise ValueError(f"{_FN}: masks must be [B, R, Hm, Wm] with boxes' B, R = "
                             f"{list(boxes.shape[:2])} and Hm, Wm >= 1, got {got}")
        if not masks.is_floating_point() or masks.device != f0.device:
            raise ValueError(f"{_FN}: masks must be floating point on {f0.device}, got "
                             f"{masks.dtype} on {masks.device}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"{_FN}: grid must be an int >= 1, got {grid!r}")
    if not isinstance(image_hw, (tuple, list)) or len(image_hw) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in image_hw):
        raise ValueError(f"{_FN}: image_hw must be a pair of ints (H, W) >= 1, got {image_hw!r}")


def region_pool(
    features: list[torch.Tensor],
    boxes: torch.Tensor,
    masks: torch.Tensor | None,
    grid: int,
    image_hw: tuple[int, int],
) -> torch.Tensor:
    """Region pooling with the Triton kernels (semantics: `region_pool_ref`), differentiable
    w.r.t. the features.

    Args:
        features: 1 or more maps [B, C_s, H_s, W_s], one dtype (float32/16, bfloat16, float64)
            and device (CUDA, or CPU under TRITON_INTERPRET=1); any strides.
        boxes: [B, R, 4] (x0, y0, x1, y1) in image pixels, floating, finite (not checked here).
        masks: None or [B, R, Hm, Wm] region weights, floating.
        grid: K >= 1 (K x K samples per region).
        image_hw: (H, W) of the image extent in pixels.

    Returns:
        [B, R, sum C_s] in the features' dtype.

    Raises:
        RuntimeError: the kernel is not available here (the message says why).
        TypeError: features of an unsupported dtype.
        ValueError: wrong ranks, shapes, mismatched B/R, dtypes or devices; grid or image_hw
            out of range.
    """
    ok, why = available()
    if not ok:
        raise RuntimeError(f"{_FN}: not available: {why}")
    _check(features, boxes, masks, grid, image_hw)
    return _region_pool_op(list(features), boxes, masks, grid, int(image_hw[0]),
                           int(image_hw[1]))
