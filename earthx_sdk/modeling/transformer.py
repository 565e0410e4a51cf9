"""The two-way transformer of the mask decoder: query tokens and image keys attend to each other.

Each block lets the tokens attend to themselves, then to the image, then lets the image attend back
to the tokens, so both sides are updated (SAM's design). Positional information is added to queries
and keys at every attention, never to the values, so the outputs carry content only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPBlock(nn.Module):
    """Linear -> GELU -> Linear, applied per token.

    Args:
        dim: input and output width.
        hidden: width of the hidden layer.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., dim] -> [..., dim]."""
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head attention whose projections may narrow the width (`downsample`), as SAM's
    cross-attention does to halve the cost of attending to thousands of image keys.

    Args:
        dim: width of queries, keys, values and the output.
        heads: attention heads; must divide dim // downsample.
        downsample: the internal width is dim // downsample.

    Raises:
        ValueError: heads does not divide the internal width.
    """

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if downsample < 1 or inner < 1 or dim % downsample:
            raise ValueError(f"Attention: downsample must divide dim={dim}, got {downsample}")
        if heads < 1 or inner % heads:
            raise ValueError(
                f"Attention: heads must divide the internal width {inner} (dim {dim} / downsample "
                f"{downsample}), got heads={heads}"
            )
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # [B, h, N, c/h]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None = None,
                allow: Tensor | None = None) -> Tensor:
        """Attends from q to (k, v).

        Args:
            q: [B, Nq, dim] queries.
            k: [B, Nk, dim] keys.
            v: [B, Nk, dim] values.
            key_valid: [B, Nk] bool, False for keys no query may attend to (padding), or None.
                Every query needs at least one valid key.
            allow: [B, 1, Nq, Nk] bool, a per-query mask (True: may attend), instead of key_valid.

        Returns:
            [B, Nq, dim].
        """
        q = self._split(self.q_proj(q))  # [B, h, Nq, c/h]
        k = self._split(self.k_proj(k))  # [B, h, Nk, c/h]
        v = self._split(self.v_proj(v))  # [B, h, Nk, c/h]
        mask = allow if key_valid is None else key_valid[:, None, None, :]  # [B, 1, 1|Nq, Nk]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, h, Nq, c/h]
        out = out.transpose(1, 2).flatten(2)  # [B, Nq, inner]
        return self.out_proj(out)


class TwoWayBlock(nn.Module):
    """Token self-attention, token -> image cross-attention, token MLP, image -> token attention.

    Args:
        dim: token and image width.
        heads: attention heads.
        mlp: hidden width of the token MLP.
        cross_downsample: internal width divisor of both cross-attentions.
        skip_first_pe: the first block replaces the tokens by their self-attention output rather
            than adding it, because there the tokens *are* their positional code (see forward).
    """

    def __init__(self, dim: int, heads: int, mlp: int, cross_downsample: int = 2,
                 skip_first_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.token_to_image = Attention(dim, heads, cross_downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp)
        self.norm3 = nn.LayerNorm(dim)
        self.image_to_token = Attention(dim, heads, cross_downsample)
        self.norm4 = nn.LayerNorm(dim)
        self.skip_first_pe = skip_first_pe

    def forward(self, tokens: Tensor, image: Tensor, token_pe: Tensor, image_pe: Tensor,
                token_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One round of two-way attention.

        Args:
            tokens: [B, T, dim] query tokens.
            image: [B, N, dim] image keys (flattened grid).
            token_pe: [B, T, dim] the tokens' positional/identity code (the initial tokens).
            image_pe: [1 or B, N, dim] positional encoding of the image keys.
            token_valid: [B, T] bool, False for padding tokens, or None (all valid).

        Returns:
            (tokens [B, T, dim], image [B, N, dim]).
        """
        if self.skip_first_pe:
            tokens = self.self_attn(tokens, tokens, tokens, token_valid)  # [B, T, dim]
        else:
            q = tokens + token_pe  # [B, T, dim]
            tokens = tokens + self.self_attn(q, q, tokens, token_valid)  # [B, T, dim]
        tokens = self.norm1(tokens)

        q = tokens + token_pe  # [B, T, dim]
        k = image + image_pe  # [B, N, dim]
        tokens = self.norm2(tokens + self.token_to_image(q, k, image))  # [B, T, dim]
        tokens = self.norm3(tokens + self.mlp(tokens))  # [B, T, dim]

        q = tokens + token_pe  # [B, T, dim]
        image = self.norm4(image + self.image_to_token(k, q, tokens, token_valid))  # [B, N, dim]
        return tokens, image


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks, then a last token -> image attention.

    Args:
        dim: token and image width.
        depth: number of two-way blocks.
        heads: attention heads.
        mlp: hidden width of the token MLPs.
        cross_downsample: internal width divisor of the cross-attentions (SAM uses 2).

    Raises:
        ValueError: depth < 1, or heads does not divide an attention's internal width.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp: int,
                 cross_downsample: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"TwoWayTransformer: depth must be >= 1, got {depth}")
        self.blocks = nn.ModuleList(
            TwoWayBlock(dim, heads, mlp, cross_downsample, skip_first_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn = Attention(dim, heads, cross_downsample)
        self.norm_final = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, image: Tensor, image_pe: Tensor,
                token_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Runs the blocks; the initial tokens serve as the tokens' positional code throughout.

        Args:
            tokens: [B, T, dim] query tokens.
            image: [B, N, dim] image keys (a flattened grid).
            image_pe: [1 or B, N, dim] positional encoding of the image keys.
            token_valid: [B, T] bool, False for padding tokens, or None (all valid). Padding tokens
                are never attended to; their own outputs are meaningless.

        Returns:
            (tokens [B, T, dim], image [B, N, dim]).
        """
        token_pe = tokens  # [B, T, dim]
        for block in self.blocks:
            tokens, image = block(tokens, image, token_pe, image_pe, token_valid)
        q = tokens + token_pe  # [B, T, dim]
        k = image + image_pe  # [B, N, dim]
        tokens = self.norm_final(tokens + self.final_attn(q, k, image))  # [B, T, dim]
        return tokens, image


def sincos_pe_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sinusoidal positional encoding of a grid x grid map (no learned parameters, so
    nothing to interpolate when exporting: the grid is fixed by the config).

    A quarter of the channels each hold sin(y w), cos(y w), sin(x w), cos(x w) over dim / 4
    geometric frequencies w, with y, x the integer row and column.

    Args:
        dim: channels; a multiple of 4.
        grid: side of the map.

    Returns:
        [dim, grid, grid] float32.

    Raises:
        ValueError: dim is not a positive multiple of 4, or grid < 1.
    """
    if dim < 4 or dim % 4:
        raise ValueError(f"sincos_pe_2d: dim must be a positive multiple of 4, got {dim}")
    if grid < 1:
        raise ValueError(f"sincos_pe_2d: grid must be >= 1, got {grid}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [d/4]
    pos = torch.arange(grid, dtype=torch.float64)  # [g]
    ang = pos[:, None] * omega[None, :]  # [g, d/4]
    y = torch.cat([ang.sin(), ang.cos()], dim=1)  # [g, d/2], indexed by row
    pe = torch.cat([
        y[:, None, :].expand(grid, grid, dim // 2),  # rows
        y[None, :, :].expand(grid, grid, dim // 2),  # columns
    ], dim=2)  # [g, g, dim]
    return pe.permute(2, 0, 1).contiguous().float()  # [dim, g, g]
