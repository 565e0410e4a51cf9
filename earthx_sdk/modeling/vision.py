"""Vision encoder: per-sensor stems, ViT and ConvNeXt experts, their fusion, the LLM projector.

    images [B, C, S, S] -stem[C]-> [B, 3, S, S] -+-> ViT (DINOv2) -> patch tokens [B, g*g, Dv]
                                                 +-> ConvNeXt     -> stages at strides 4, 8, 16
    concat(patch tokens, stage 3 resized to g x g) -> MLP -> + sensor embedding
        -> dense [B, Dv, g, g]
    dense -> avg-pool by token_pool -> MLP -> tokens [B, (g/p)^2, llm_hidden] (the <image> tokens)

Both experts come from `transformers`, so pretrained weights load with `from_pretrained` from a
local directory. All sizes are fixed by the config: the ViT position table is resampled once at
build time to the deployment grid, so nothing bicubic runs in `forward`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import SENSORS, VisionConfig

# Parameters the experts own but `forward` never reaches: ConvNeXt's stride-32 stage and its pooled
# head norm, DINOv2's masked-image-modeling token. They stay (pretrained checkpoints load without
# unexpected keys, and the parameter counts are those of the published models) but are frozen so
# that optimizers and DDP do not wait for their gradients.
UNUSED_PREFIXES = ("convnext.encoder.stages.3.", "convnext.layernorm.", "vit.embeddings.mask_token")


@dataclass
class VisionOutput:
    """What the vision encoder hands to the rest of the model.

    Attributes:
        tokens: [B, T, llm_hidden] visual tokens for the LLM (T = (g / token_pool)^2).
        image_tokens: [B, g*g, Dv] fused tokens (keys for the prompt encoder's cross-attention).
        dense: [B, Dv, g, g] the same fused features as a map (stride S / g).
        features: [stage 1 [B, C1, S/4, S/4], stage 2 [B, C2, S/8, S/8], dense] for region_pool.
        hires: [stage 1, stage 2] ConvNeXt maps for the mask decoder.
        stem: [B, 3, S, S] the sensor stem's output (what both experts read); the mask
            decoder's refinement head (MaskDecoderConfig.refine) reads it.
    """

    tokens: torch.Tensor
    image_tokens: torch.Tensor
    dense: torch.Tensor
    features: list[torch.Tensor]
    hires: list[torch.Tensor]
    stem: torch.Tensor


def sensor_channels(cfg: VisionConfig) -> dict[str, tuple[int, ...]]:
    """The channel counts each sensor accepts: optical RGB, SAR amplitude (single or dual
    polarization), thermal infrared, multispectral with `cfg.multispectral_bands` bands."""
    return {"optical": (3,), "multispectral": (cfg.multispectral_bands,), "sar": (1, 2),
            "infrared": (1,)}


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


def _stem(channels: int) -> nn.Conv2d:
    """A 1x1 conv from `channels` to the experts' 3 input channels, initialized so that a
    pretrained expert sees a natural image: 3 -> identity (RGB passes through bit-exactly),
    1 -> the band replicated into R, G and B, any other count -> the mean of the bands in each."""
    conv = nn.Conv2d(channels, 3, kernel_size=1)
    with torch.no_grad():
        if channels == 3:
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        else:
            conv.weight.fill_(1.0 / channels)
        conv.bias.zero_()
    return conv


def resample_position_table(vit: nn.Module, grid: int) -> None:
    """Resizes a Dinov2Model's position table in place to a `grid` x `grid` patch grid (bicubic,
    once, at build time), so that transformers' Dinov2 adds the table as is at run time.

    Args:
        vit: a `transformers.Dinov2Model`; its table is [1, 1 + n*n, D] (CLS entry first).
        grid: the patch grid side of the deployment resolution.
    """
    emb = vit.embeddings
    table = emb.position_embeddings  # [1, 1 + n*n, D]
    n_old = table.shape[1] - 1
    side = math.isqrt(n_old)
    if side * side != n_old:
        raise ValueError(f"ViT position table must cover a square grid, got {n_old} positions")
    if side != grid:
        cls_pos, patch_pos = table[:, :1], table[:, 1:]  # [1, 1, D], [1, n*n, D]
        dim = table.shape[-1]
        patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, n, n]
        patch_pos = F.interpolate(patch_pos.float(), size=(grid, grid), mode="bicubic",
                                  align_corners=False).to(table.dtype)  # [1, D, g, g]
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)  # [1, g*g, D]
        emb.position_embeddings = nn.Parameter(torch.cat([cls_pos, patch_pos], dim=1).detach())
    # Keep the bookkeeping consistent with the table (save_pretrained, num_patches users).
    patch = emb.patch_embeddings.patch_size[0]
    emb.patch_embeddings.num_patches = grid * grid
    emb.patch_embeddings.image_size = (grid * patch, grid * patch)
    vit.config.image_size = grid * patch


def _build_vit(cfg: VisionConfig) -> nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    if cfg.vit_path is not None:
        vit = Dinov2Model.from_pretrained(cfg.vit_path)
        c = vit.config
        got = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
               c.hidden_size * c.mlp_ratio, c.patch_size, c.num_channels)
        want = (cfg.vit_hidden, cfg.vit_layers, cfg.vit_heads, cfg.vit_mlp, cfg.vit_patch, 3)
        if got != want:
            raise ValueError(f"vit_path {cfg.vit_path!r}: (hidden, layers, heads, mlp, patch, "
                             f"channels) must match the config {want}, got {got}")
        return vit
    if cfg.vit_mlp % cfg.vit_hidden:
        raise ValueError(f"vit_mlp must be a multiple of vit_hidden (DINOv2 has an integer MLP "
                         f"ratio), got vit_mlp={cfg.vit_mlp}, vit_hidden={cfg.vit_hidden}")
    return Dinov2Model(Dinov2Config(
        hidden_size=cfg.vit_hidden, num_hidden_layers=cfg.vit_layers,
        num_attention_heads=cfg.vit_heads, mlp_ratio=cfg.vit_mlp // cfg.vit_hidden,
        image_size=cfg.image_size, patch_size=cfg.vit_patch, num_channels=3))


def _build_convnext(cfg: VisionConfig) -> nn.Module:
    if cfg.convnext_v2:
        from transformers import ConvNextV2Config as Config
        from transformers import ConvNextV2Model as Model
    else:
        from transformers import ConvNextConfig as Config
        from transformers import ConvNextModel as Model

    if len(cfg.convnext_dims) != 4 or len(cfg.convnext_depths) != 4:
        raise ValueError(f"convnext_dims and convnext_depths must have 4 stages, got "
                         f"{cfg.convnext_dims} and {cfg.convnext_depths}")
    if cfg.convnext_path is not None:
        model = Model.from_pretrained(cfg.convnext_path)
        c = model.config
        got = (tuple(c.hidden_sizes), tuple(c.depths), c.num_channels)
        want = (tuple(cfg.convnext_dims), tuple(cfg.convnext_depths), 3)
        if got != want:
            raise ValueError(f"convnext_path {cfg.convnext_path!r}: (dims, depths, channels) must "
                             f"match the config {want}, got {got}")
        return model
    return Model(Config(hidden_sizes=list(cfg.convnext_dims), depths=list(cfg.convnext_depths),
                        num_channels=3, image_size=cfg.image_size))


class VisionEncoder(nn.Module):
    """Per-sensor stems, the two experts, their fusion into `dense` and the projector to the LLM.

    Args:
        cfg: the vision config (sizes, image_size, token_pool, optional pretrained paths).
        llm_hidden: width of the LLM's token embeddings (the projector's output).

    Raises:
        ValueError: image_size not divisible by vit_patch and by 16 (the ConvNeXt stage-3 stride),
            the ViT grid not divisible by token_pool, or a pretrained expert whose sizes differ
            from the config.

    Attributes:
        dense_dim: Dv, channels of `dense` and `image_tokens` (the ViT width).
        feature_dims: channels of the three `features` maps [C1, C2, Dv].
        feature_strides: their strides in input pixels [4, 8, S / g].
        hires_dims: channels of the two `hires` maps [C1, C2].
        num_tokens: T, visual tokens per image for the LLM.
    """

    def __init__(self, cfg: VisionConfig, llm_hidden: int):
        super().__init__()
        size, patch, pool = cfg.image_size, cfg.vit_patch, cfg.token_pool
        if size % patch or size % 16:
            raise ValueError(f"image_size must be divisible by vit_patch ({patch}) and by 16, "
                             f"got {size}")
        grid = cfg.grid
        if pool < 1 or grid % pool:
            raise ValueError(f"token_pool must divide the ViT grid {grid} "
                             f"(image_size {size} / vit_patch {patch}), got {pool}")
        self.cfg = cfg
        self.grid = grid
        self.allowed_channels = sensor_channels(cfg)

        self.vit = _build_vit(cfg)
        resample_position_table(self.vit, grid)
        self.convnext = _build_convnext(cfg)
        for name, p in self.named_parameters():
            if name.startswith(UNUSED_PREFIXES):
                p.requires_grad_(False)

        dv = self.vit.config.hidden_size
        c1, c2, c3 = cfg.convnext_dims[:3]
        # Keyed by channel count: sensors with the same band count share a stem.
        counts = sorted({c for cs in self.allowed_channels.values() for c in cs})
        self.stems = nn.ModuleDict({str(c): _stem(c) for c in counts})
        # ConvNeXt stage outputs are the un-normalized residual stream, unlike the ViT's
        # layer-normed tokens; normalize before mixing so neither side dominates the MLP.
        self.conv_norm = nn.LayerNorm(c3)
        self.fuse = _mlp(dv + c3, dv, dv)
        self.sensor_embed = nn.Embedding(len(SENSORS), dv)
        nn.init.normal_(self.sensor_embed.weight, std=0.02)
        self.projector = _mlp(dv, llm_hidden, llm_hidden)

        self.dense_dim = dv
        self.feature_dims = [c1, c2, dv]
        self.feature_strides = [4, 8, patch]
        self.hires_dims = [c1, c2]
        self.num_tokens = (grid // pool) ** 2

    def expert_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Runs both experts on a 3-channel image.

        Args:
            x: [B, 3, S, S] float.

        Returns:
            (patch tokens [B, g*g, Dv] (CLS dropped), [stage 1 [B, C1, S/4, S/4],
            stage 2 [B, C2, S/8, S/8], stage 3 [B, C3, S/16, S/16]]).
        """
        g = self.grid
        vit_out = self.vit(pixel_values=x).last_hidden_state  # [B, 1 + g*g, Dv]
        patch_tokens = vit_out[:, -g * g:]  # [B, g*g, Dv]; drops CLS (and any register tokens)
        h = self.convnext.embeddings(x)  # [B, C1, S/4, S/4]
        stages = []
        for stage in self.convnext.encoder.stages[:3]:  # stage 4 (stride 32) is not used
            h = stage(h)
            stages.append(h)
        return patch_tokens, stages

    def forward(self, images: torch.Tensor, sensor: str) -> VisionOutput:
        """Encodes one batch of images from one sensor.

        Args:
            images: [B, C, S, S] float, S = cfg.image_size, C one of the sensor's channel counts;
                cast to the model's dtype.
            sensor: one of `earthx_sdk.modeling.config.SENSORS`.

        Returns:
            VisionOutput (see its attributes for shapes).

        Raises:
            TypeError: images is not a floating-point tensor.
            ValueError: unknown sensor, images not 4-D, a channel count the sensor does not
                accept, or a spatial size other than cfg.image_size.
        """
        self._check(images, sensor)
        b, c = images.shape[:2]
        g = self.grid
        stem = self.stems[str(c)]
        x = stem(images.to(stem.weight.dtype))  # [B, 3, S, S]
        patch_tokens, (s1, s2, s3) = self.expert_features(x)

        s3 = F.interpolate(s3, size=(g, g), mode="bilinear", align_corners=False)  # [B, C3, g, g]
        conv_tokens = self.conv_norm(s3.flatten(2).transpose(1, 2))  # [B, g*g, C3]
        fused = self.fuse(torch.cat([patch_tokens, conv_tokens], dim=-1))  # [B, g*g, Dv]
        fused = fused + self.sensor_embed.weight[SENSORS.index(sensor)]  # [B, g*g, Dv]
        dense = fused.transpose(1, 2).reshape(b, -1, g, g)  # [B, Dv, g, g]

        pooled = F.avg_pool2d(dense, self.cfg.token_pool)  # [B, Dv, g/p, g/p]
        tokens = self.projector(pooled.flatten(2).transpose(1, 2))  # [B, T, llm_hidden]
        return VisionOutput(tokens=tokens, image_tokens=fused, dense=dense,
                            features=[s1, s2, dense], hires=[s1, s2], stem=x)

    def _check(self, images: torch.Tensor, sensor: str) -> None:
        if sensor not in self.allowed_channels:
            raise ValueError(f"sensor must be one of {list(SENSORS)}, got {sensor!r}")
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            what = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(f"images must be a floating-point tensor, got {what}")
        if images.dim() != 4:
            raise ValueError(f"images must be [B, C, S, S], got {list(images.shape)}")
        allowed = self.allowed_channels[sensor]
        if images.shape[1] not in allowed:
            raise ValueError(f"images from sensor {sensor!r} must have channels in "
                             f"{list(allowed)}, got {images.shape[1]}")
        size = self.cfg.image_size
        if tuple(images.shape[2:]) != (size, size):
            raise ValueError(f"images must be {size} x {size} (cfg.image_size), got "
                             f"{images.shape[2]} x {images.shape[3]}")

    def parameter_counts(self) -> dict[str, int]:
        """Parameter counts by part: {"vit", "convnext", "stems+fusion+projector"} (frozen,
        unused expert parameters included: they are part of the published experts)."""
        vit = sum(p.numel() for p in self.vit.parameters())
        conv = sum(p.numel() for p in self.convnext.parameters())
        total = sum(p.numel() for p in self.parameters())
        return {"vit": vit, "convnext": conv, "stems+fusion+projector": total - vit - conv}
