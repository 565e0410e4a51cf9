"""Prompt encoder: visual prompts -> <region> tokens for the LLM and prompt states for the decoder.

Each prompt (point, box, polygon, scribble or mask, already rasterized to a region mask over the
padded square input) becomes one vector: its `region_pool` features from the multi-scale dense
maps, plus a Fourier code of its box, plus a learned embedding of its type. A few pre-norm
transformer blocks let the prompts of one image see each other (self-attention) and the image
(cross-attention to the image tokens). Each prompt then expands to `region_tokens` tokens in the
LLM width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from earthx_sdk.modeling.config import PromptEncoderConfig
from earthx_sdk.modeling.transformer import Attention
from earthx_sdk.ops.region_pool import region_pool

# Prompt type ids, in the order of the learned type embeddings.
PROMPT_TYPES = ("point", "box", "polygon", "scribble", "mask")


class PromptBlock(nn.Module):
    """Pre-norm residual block: self-attention among prompts, cross-attention to the image, MLP."""

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor, image: torch.Tensor, allow: torch.Tensor) -> torch.Tensor:
        """x [B, R, D] prompts, image [B, T, D] tokens, allow [B, 1, R, R] -> [B, R, D]."""
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, allow=allow)  # [B, R, D]
        h = self.norm_cross(x)
        x = x + self.cross_attn(h, image, image)  # [B, R, D]
        return x + self.mlp(self.norm_mlp(x))  # [B, R, D]


class PromptEncoder(nn.Module):
    """Region tokens from visual prompts (the "hybrid signal mutual understanding" part).

    Args:
        cfg: sizes (dim, layers, heads, mlp, pool_grid, fourier_bands, region_tokens,
            mask_resolution).
        feature_dims: channels C_s of the dense maps handed to `region_pool`, in order.
        image_token_dim: width of the image tokens the prompts cross-attend to.
        llm_hidden: width of the LLM (the <region> tokens' width).
        image_size: side of the padded square model input, in pixels (boxes are in these pixels).

    Raises:
        ValueError: a size < 1, dim not divisible by heads, an empty feature_dims.
    """

    def __init__(self, cfg: PromptEncoderConfig, feature_dims: list[int], image_token_dim: int,
                 llm_hidden: int, image_size: int):
        super().__init__()
        feature_dims = [int(c) for c in feature_dims]
        if not feature_dims or min(feature_dims) < 1:
            raise ValueError(f"PromptEncoder: feature_dims must be a non-empty list of ints >= 1, "
                             f"got {feature_dims}")
        sizes = {"image_token_dim": image_token_dim, "llm_hidden": llm_hidden,
                 "image_size": image_size, "cfg.dim": cfg.dim, "cfg.layers": cfg.layers,
                 "cfg.heads": cfg.heads, "cfg.mlp": cfg.mlp, "cfg.pool_grid": cfg.pool_grid,
                 "cfg.fourier_bands": cfg.fourier_bands, "cfg.region_tokens": cfg.region_tokens,
                 "cfg.mask_resolution": cfg.mask_resolution}
        for name, v in sizes.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PromptEncoder: {name} must be an int >= 1, got {v!r}")
        if cfg.dim % cfg.heads:
            raise ValueError(f"PromptEncoder: cfg.dim must be divisible by cfg.heads, "
                             f"got dim={cfg.dim}, heads={cfg.heads}")
        self.cfg = cfg
        self.feature_dims = feature_dims
        self.image_token_dim = image_token_dim
        self.llm_hidden = llm_hidden
        self.image_size = image_size
        dim, bands = cfg.dim, cfg.fourier_bands

        # Pooled means have whatever scale each expert's maps have: normalize before mixing.
        self.pool_proj = nn.Sequential(nn.LayerNorm(sum(feature_dims)),
                                       nn.Linear(sum(feature_dims), dim))
        # Geometric frequencies from pi (half a period across the image) to pi * S / 2 (a
        # period of 4 pixels): coarse position to pixel detail, none beyond what pixels resolve.
        top = max(image_size / 2.0, 1.0)
        freqs = math.pi * top ** (torch.arange(bands, dtype=torch.float32) / max(bands - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)  # [F]
        self.geom_proj = nn.Linear(4 * 2 * bands, dim)
        self.type_embed = nn.Embedding(len(PROMPT_TYPES), dim)
        self.image_proj = nn.Sequential(nn.LayerNorm(image_token_dim),
                                        nn.Linear(image_token_dim, dim))
        self.blocks = nn.ModuleList(PromptBlock(dim, cfg.heads, cfg.mlp)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(dim)
        self.token_offsets = nn.Parameter(torch.empty(cfg.region_tokens, dim))
        # Two layers, not one: after a single Linear the offsets would only shift every token of
        # a prompt by the same constant, so its n tokens would carry one vector between them.
        self.out_proj = nn.Sequential(nn.Linear(dim, llm_hidden), nn.GELU(),
                                      nn.Linear(llm_hidden, llm_hidden))
        nn.init.normal_(self.token_offsets, std=0.02)
        nn.init.normal_(self.type_embed.weight, std=0.02)
        self.where_bins = int(cfg.where_bins)
        if self.where_bins < 0:
            raise ValueError(f"PromptEncoder: cfg.where_bins must be >= 0, got {cfg.where_bins}")
        if self.where_bins:
            self.where_row = nn.Embedding(self.where_bins, llm_hidden)
            self.where_col = nn.Embedding(self.where_bins, llm_hidden)
            nn.init.normal_(self.where_row.weight, std=0.02)
            nn.init.normal_(self.where_col.weight, std=0.02)

    def region_tokens(self, states: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The LLM's tokens of each prompt: states [B, R, D], boxes [B, R, 4] ->
        [B, R, n, llm_hidden] (n = cfg.region_tokens; with cfg.where_bins, plus `where`)."""
        region = self.out_proj(states[:, :, None, :] + self.token_offsets)  # [B, R, n, hidden]
        if self.where_bins:
            region = region + self.where(boxes)[:, :, None, :]
        return region

    def where(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes [B, R, 4] in pixels -> [B, R, llm_hidden]: the row and column embeddings of the
        bin holding each box's centre (cfg.where_bins bins across the padded square)."""
        n = self.where_bins
        centre = (boxes[..., :2] + boxes[..., 2:]) * (0.5 * n / self.image_size)  # [B, R, 2]
        cell = centre.floor().clamp(0, n - 1).long()  # [B, R, 2]: column, row
        return self.where_col(cell[..., 0]) + self.where_row(cell[..., 1])

    def fourier(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes [B, R, 4] in pixels -> [B, R, 8 F]: sin and cos of (x0, y0, x1, y1) / S."""
        u = boxes / self.image_size  # [B, R, 4]
        ang = u[..., None] * self.freqs.to(u.dtype)  # [B, R, 4, F]
        return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)  # [B, R, 8 F]

    def forward(self, features: list[torch.Tensor], image_tokens: torch.Tensor,
                boxes: torch.Tensor, masks: torch.Tensor, types: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes the R prompts of each of B images.

        Args:
            features: maps [B, C_s, H_s, W_s] with C_s = feature_dims[s], each covering the
                padded square input.
            image_tokens: [B, T, image_token_dim].
            boxes: [B, R, 4] (x0, y0, x1, y1) in model-input pixels; a point is a zero-area box.
            masks: [B, R, M, M] float region weights in [0, 1] over the padded square,
                M = cfg.mask_resolution.
            types: [B, R] integer prompt type ids (0 point, 1 box, 2 polygon, 3 scribble, 4 mask).
            valid: [B, R] bool; False marks a padding prompt, whose boxes, masks and type are
                ignored and which no valid prompt sees.

        Returns:
            region_embeds: [B, R, cfg.region_tokens, llm_hidden] (zeros for padding prompts).
            prompt_states: [B, R, cfg.dim] (zeros for padding prompts).

        Raises:
            TypeError: a wrong dtype (masks not floating, types not integer, valid not bool).
            ValueError: a wrong shape, or a valid prompt with a type id outside [0, 5).
        """
        self._check(features, image_tokens, boxes, masks, types, valid)
        b, r = boxes.shape[:2]
        keep = valid[..., None]  # [B, R, 1]
        # Padding prompts may hold anything (NaN included): replace it before it is computed with.
        boxes = torch.where(keep, boxes, torch.zeros_like(boxes))  # [B, R, 4]
        masks = torch.where(keep[..., None], masks, torch.zeros_like(masks))  # [B, R, M, M]
        types = torch.where(valid, types, torch.zeros_like(types))  # [B, R]

        pooled = region_pool(features, boxes, masks, grid=self.cfg.pool_grid,
                             image_size=self.image_size)  # [B, R, sum C_s]
        x = self.pool_proj(pooled)  # [B, R, D]
        x = x + self.geom_proj(self.fourier(boxes.to(x.dtype)))  # [B, R, D]
        x = x + self.type_embed(types)  # [B, R, D]

        image = self.image_proj(image_tokens)  # [B, T, D]
        # Each prompt may see the valid prompts and itself; the diagonal keeps a padding
        # prompt's softmax defined (finite) when its image has no valid prompt at all.
        eye = torch.eye(r, dtype=torch.bool, device=valid.device)  # [R, R]
        allow = (valid[:, None, :] | eye)[:, None]  # [B, 1, R, R]
        for block in self.blocks:
            x = block(x, image, allow)  # [B, R, D]
        states = self.norm(x)  # [B, R, D]

        region = self.region_tokens(states, boxes)  # [B, R, n, llm_hidden]
        keep = keep.to(states.dtype)
        return region * keep[..., None], states * keep

    def _check(self, features, image_tokens, boxes, masks, types, valid) -> None:
        fn = "PromptEncoder"
        if not isinstance(features, (list, tuple)) or len(features) != len(self.feature_dims):
            got = len(features) if isinstance(features, (list, tuple)) else type(features).__name__
            raise ValueError(f"{fn}: features must be a list of {len(self.feature_dims)} maps "
                             f"(channels {self.feature_dims}), got {got}")
        for i, (f, c) in enumerate(zip(features, self.feature_dims, strict=True)):
            if not isinstance(f, torch.Tensor) or f.dim() != 4 or f.shape[1] != c:
                got = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"{fn}: features[{i}] must be [B, {c}, H, W], got {got}")
        for name, t in (("image_tokens", image_tokens), ("boxes", boxes), ("masks", masks),
                        ("types", types), ("valid", valid)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
        bsz = features[0].shape[0]
        if image_tokens.dim() != 3 or image_tokens.shape[0] != bsz \
                or image_tokens.shape[2] != self.image_token_dim:
            raise ValueError(f"{fn}: image_tokens must be [B={bsz}, T, {self.image_token_dim}], "
                             f"got {list(image_tokens.shape)}")
        if boxes.dim() != 3 or boxes.shape[0] != bsz or boxes.shape[2] != 4:
            raise ValueError(f"{fn}: boxes must be [B={bsz}, R, 4], got {list(boxes.shape)}")
        r, m = boxes.shape[1], self.cfg.mask_resolution
        if tuple(masks.shape) != (bsz, r, m, m):
            raise ValueError(f"{fn}: masks must be [B, R, M, M] = {[bsz, r, m, m]} "
                             f"(M = cfg.mask_resolution), got {list(masks.shape)}")
        if not masks.is_floating_point():
            raise TypeError(f"{fn}: masks must be floating point, got {masks.dtype}")
        for name, t in (("types", types), ("valid", valid)):
            if tuple(t.shape) != (bsz, r):
                raise ValueError(f"{fn}: {name} must be [B, R] = {[bsz, r]}, got {list(t.shape)}")
        if types.is_floating_point() or types.is_complex() or types.dtype == torch.bool:
            raise TypeError(f"{fn}: types must be an integer tensor, got {types.dtype}")
        if valid.dtype != torch.bool:
            raise TypeError(f"{fn}: valid must be a bool tensor, got {valid.dtype}")
        # A value check needs the data: skipped while tracing/exporting, where it cannot run.
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            bad = valid & ((types < 0) | (types >= len(PROMPT_TYPES)))
            if bool(bad.any()):
                i, j = (int(v) for v in bad.nonzero()[0].tolist())
                raise ValueError(f"{fn}: types of valid prompts must be in [0, "
                                 f"{len(PROMPT_TYPES)}) {PROMPT_TYPES}, got "
                                 f"{int(types[i, j])} at types[{i}, {j}]")
