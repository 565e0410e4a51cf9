"""Dense auxiliary supervision of the vision features (training only; nothing of it is exported).

A model trained from scratch learns its vision features only through the answers' tokens and the
masks, a weak and slow signal: on tiny-synthetic (1500 steps) a linear probe on the region
features read a region's class no better than on the random initial features (about 75 %), and
the LLM answered the class prior ("tree", "vehicle"). Where a sample's image comes with a class
map (every pixel's class, as the synthetic scenes' label maps give), `DenseClassHead` -- one 1x1
convolution per feature map that `region_pool` reads -- predicts it, and the soft cross-entropy
of those predictions joins the loss. The features then carry the class linearly, which is what
`region_pool` and the prompt encoder need (600 steps of region classification: 0.70-0.85 correct
against 0.60-0.80 without it). Averaged over pixels, that loss is mostly background, water and
trees: after a full tiny-synthetic run (6500 steps) the head called 99 % of held-out infrared
airplane pixels background, and the LLM named 2 of the 15 held-out airplane prompts of optical,
SAR and infrared (and none of 13 training ones). `balanced=True` averages it per class first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DenseClassHead(nn.Module):
    """Per-pixel class logits from each vision feature map.

    Args:
        feature_dims: channels of the maps (`VisionEncoder.feature_dims`).
        classes: K object classes; the head predicts K + 1 (0 = background).
    """

    def __init__(self, feature_dims: list[int], classes: int):
        super().__init__()
        if classes < 1:
            raise ValueError(f"DenseClassHead: classes must be >= 1, got {classes}")
        self.heads = nn.ModuleList(nn.Conv2d(int(c), classes + 1, 1) for c in feature_dims)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features [B, C_s, H_s, W_s] -> logits [B, K + 1, H_s, W_s], one per map."""
        if len(features) != len(self.heads):
            raise ValueError(f"DenseClassHead: expected {len(self.heads)} feature maps, got "
                             f"{len(features)}")
        return [head(f) for head, f in zip(self.heads, features, strict=True)]


def class_targets(class_map: np.ndarray, info, grid: int, classes: int,
                  where: str = "class_map") -> np.ndarray:
    """Soft per-pixel class targets on the model's S/4 grid.

    Each grid cell holds the fraction of its area covered by each class (0 = background), through
    the same image -> padded-square geometry as the masks (`PreprocessInfo.grid_scale`); cells of
    the padding are all zeros and carry no loss.

    Args:
        class_map: int [H, W] of the image, values in [0, classes].
        info: the image's `PreprocessInfo`.
        grid: side of the target grid (the processor's `mask_grid`, S / 4).
        classes: K.
        where: names the input in errors.

    Returns:
        float16 [K + 1, grid, grid].

    Raises:
        ValueError: class_map not 2-D of the image's shape, not integer, or a value outside
            [0, classes].
    """
    from earthx_sdk.ops.rasterize import resample_mask

    m = np.asarray(class_map)
    if m.shape != tuple(info.orig_hw):
        raise ValueError(f"{where}: must have the image's shape {tuple(info.orig_hw)}, got "
                         f"{m.shape}")
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{where}: must hold integer class ids, got dtype {m.dtype}")
    lo, hi = int(m.min()), int(m.max())
    if lo < 0 or hi > classes:
        raise ValueError(f"{where}: class ids must be in [0, {classes}] (0 = background), got "
                         f"values in [{lo}, {hi}]")
    # Nearest-neighbour at 4x the grid, then the area mean of each 4 x 4 block.
    fine = 4 * grid
    scale = info.grid_scale((fine, fine))
    onehot = np.stack([resample_mask(m == k, (fine, fine), scale) for k in range(classes + 1)])
    soft = onehot.reshape(classes + 1, grid, 4, grid, 4).mean((2, 4))
    return soft.astype(np.float16)


def dense_class_loss(head: DenseClassHead, features: list[list[torch.Tensor]],
                     targets: list[np.ndarray | None],
                     balanced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed soft cross-entropy of the samples that have targets, and their count.

    Args:
        head: the DenseClassHead.
        features: per sample, its feature maps (each [1, C_s, H_s, W_s]).
        targets: per sample, `class_targets` output or None (no dense labels: no loss).
        balanced: average the cross-entropy per class first (each class's pixels weighted by
            their target fraction of it), then over the classes present in the image, so that a
            thin airplane counts as much as the background around it. False: one average over
            the pixels inside the image, where background, water and trees dominate.

    Returns:
        (sum over samples of the mean over maps of the cross-entropy, averaged as `balanced`
        says; number of samples with targets) as tensors.
    """
    dev = next(head.parameters()).device
    total = torch.zeros((), device=dev)
    n = 0
    for feats, tgt in zip(features, targets, strict=True):
        if tgt is None:
            continue
        t = torch.from_numpy(tgt).to(dev, torch.float32)[None]  # [1, K+1, g, g]
        per_map = []
        for logits in head(feats):
            ts = F.interpolate(t, size=logits.shape[-2:], mode="area")  # [1, K+1, h, w]
            ce = -(ts * F.log_softmax(logits.float(), dim=1))  # [1, K+1, h, w]
            if balanced:
                mass = ts.sum((0, 2, 3))  # [K+1]: pixels of each class
                present = mass > 1e-6
                per_class = ce.sum((0, 2, 3))[present] / mass[present]
                per_map.append(per_class.mean() if per_class.numel() else ce.sum() * 0.0)
            else:
                inside = ts.sum(1)  # [1, h, w]: 1 inside the image, 0 in the padding
                per_map.append(ce.sum() / inside.sum().clamp_min(1e-6))
        total = total + torch.stack(per_map).mean()
        n += 1
    return total, torch.tensor(n, device=dev)
