"""region_pool cases shared by the kernel tests and `python -m benchmarks.kernels`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolCase:
    name: str
    batch: int
    regions: int
    scales: tuple[tuple[int, int, int], ...]  # (C_s, H_s, W_s) per feature map
    image_size: int
    grid: int
    masks: bool
    mask_size: int = 28


def _scales(c: int, n: int, size: int) -> tuple[tuple[int, int, int], ...]:
    # different strides per scale: size/4, size/8, size/14 (as ConvNeXt stages and the ViT grid)
    sides = (size // 4, size // 8, size // 14)
    return tuple((c, s, s) for s in sides[:n])


# Parity: R in {1, 7, 83} x C in {1, 96, 257} x 1-3 scales, masks on and off (CPU-sized: 112 px).
PARITY = [
    PoolCase(f"R{r}-C{c}-S{n}-{'mask' if m else 'nomask'}", 2, r, _scales(c, n, 112), 112, 7, m)
    for r in (1, 7, 83) for c in (1, 96, 257) for n in (1, 2, 3) for m in (False, True)
    if (r, c) in ((1, 1), (7, 96), (83, 257), (83, 1), (1, 257), (7, 1))
]

# Base scale (EarthGPT-X at 448 px): the ViT grid and the stride-4 ConvNeXt map, R = 16, grid 7.
BENCH = [
    PoolCase("base 1024@32x32 + 384@128x128, R=16", 1, 16, ((1024, 32, 32), (384, 128, 128)),
             448, 7, False),
    PoolCase("base 1024@32x32 + 384@128x128, R=16, masks", 1, 16,
             ((1024, 32, 32), (384, 128, 128)), 448, 7, True, 112),
    PoolCase("tiny 64@8 + 32@14 + 16@28, R=8, masks", 2, 8, ((64, 8, 8), (32, 14, 14),
                                                           (16, 28, 28)), 112, 4, True),
]


def make_inputs(case: PoolCase, seed: int = 0, dtype=None, device="cpu"):
    """(features, boxes, masks) for a case. Boxes cycle through the awkward kinds: inside,
    partly outside, wholly outside, zero-area, a point (zero width and height), flipped-free."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(case.batch, c, h, w, generator=g).to(dtype=dtype, device=device)
             for c, h, w in case.scales]
    s = float(case.image_size)
    boxes = torch.empty(case.batch, case.regions, 4)
    for r in range(case.regions):
        kind = r % 5
        xy = torch.rand(case.batch, 2, generator=g) * s
        wh = torch.rand(case.batch, 2, generator=g) * s / 2 + 1
        if kind == 1:  # partly outside (left/top)
            xy = xy - s / 2
        elif kind == 2:  # wholly outside (right/bottom)
            xy = xy + s * 1.5
        elif kind == 3:  # zero-area: zero height
            wh[:, 1] = 0
        elif kind == 4:  # a point
            wh[:] = 0
        boxes[:, r, :2] = xy
        boxes[:, r, 2:] = xy + wh
    masks = None
    if case.masks:
        m = case.mask_size
        masks = (torch.rand(case.batch, case.regions, m, m, generator=g) > 0.3).float()
        masks = masks.to(dtype=dtype, device=device)
    return feats, boxes.to(dtype=dtype, device=device), masks
