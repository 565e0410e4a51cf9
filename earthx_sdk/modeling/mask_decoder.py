"""The pixel perception module: a SAM-style mask decoder driven by the LLM's <seg> tokens.

Each <seg> token becomes one query set [iou token, mask token, projected <seg> state, projected
prompt tokens of its image, and with `cfg.text_tokens` the projected last-layer LLM states of the
prompt's text tokens (with `cfg.text_embeddings`, plus their projected input embeddings)]; a
two-way transformer lets it talk with the fused dense features; the image side is then upsampled
to 1/4 of the input resolution, fused with the ConvNeXt stride-8 and stride-4 maps, and dotted
with per-query weights that a hypernetwork reads off the mask token. With `cfg.position_prior`
six fixed position channels (`position_basis`) join that map, so the weights can also say where
the mask lies; with `cfg.prompt_map` one more channel holds the union of the visual prompts' region
masks, so they can say "inside the prompted region". With `cfg.refine` a small convolutional
head takes the result to 1/2 of the input resolution: the upsampled logits, the
per-query features and the vision stem's image at stride 2 give a residual on the logits
(`MaskRefiner`).

Sizes are fixed at construction (`grid`, `image_size`), so forward has no size-dependent branches
and upsamples to constant sizes (bilinear only: bicubic does not export).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MaskDecoderConfig
from .transformer import TwoWayTransformer, sincos_pe_2d

# The prompt-map channel holds 0 outside the prompts and this inside. The other channels the
# hypernetwork's weights are dotted with are O(1) (after LayerNorm and GELU), and the decoder
# trains at a quarter of the base rate; a larger step of the map's own term lets a weight of ~1
# already move a logit by several units, as a polygon prompt needs to outweigh the class evidence.
PROMPT_MAP_GAIN = 4.0

# Width of the refinement head (cfg.refine); it runs at S/2 once per query, so it stays narrow.
REFINE_CHANNELS = 16


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a [B, C, H, W] map (per pixel), with affine parameters."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, H, W] -> [B, C, H, W]."""
        mean = x.mean(1, keepdim=True)  # [B, 1, H, W]
        var = (x - mean).pow(2).mean(1, keepdim=True)  # [B, 1, H, W]
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class MLP(nn.Module):
    """`layers` Linear layers with GELU between them: in_dim -> hidden ... -> out_dim."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., in_dim] -> [..., out_dim]."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.gelu(x)
        return x


def _conv_block(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), LayerNorm2d(cout),
                         nn.GELU())


def hires_sizes(image_size: int) -> tuple[int, int]:
    """Sides of ConvNeXt's stride-4 and stride-8 maps for a square input of `image_size`.

    ConvNeXt's stem is a 4x4 convolution with stride 4 and no padding, and each downsampling
    layer a 2x2 convolution with stride 2, so both sizes round down:
    floor(S / 4) and floor(floor(S / 4) / 2).
    """
    s4 = image_size // 4
    return s4, s4 // 2


class MaskRefiner(nn.Module):
    """The refinement head of a decoder with cfg.refine: S/4 logits -> S/2 logits.

    The stem image goes through a stride-2 convolution and one more 3 x 3 block; with the
    upsampled mask probability and the upsampled per-query features it gives a residual that is
    added to the upsampled logits. The last convolution starts at zero (the head then only
    upsamples).

    Args:
        feat_dim: channels of the per-query features (the decoder's c4).
        size: side of the output, S / 2.
    """

    def __init__(self, feat_dim: int, size: int) -> None:
        super().__init__()
        r = REFINE_CHANNELS
        self.size = size
        self.image = nn.Sequential(nn.Conv2d(3, r, 3, stride=2, padding=1), LayerNorm2d(r),
                                   nn.GELU(), _conv_block(r, r, 3))
        self.fuse = _conv_block(1 + feat_dim + r, r, 3)
        self.out = nn.Conv2d(r, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, logits: Tensor, feats: Tensor, stem: Tensor) -> Tensor:
        """logits [B, Q, s4, s4], per-query features [B*Q, feat_dim, s4, s4], stem image
        [B, 3, S, S] -> logits [B, Q, S/2, S/2]."""
        b, q = logits.shape[:2]
        s2 = self.size
        up = F.interpolate(logits.reshape(b * q, 1, *logits.shape[2:]), size=(s2, s2),
                           mode="bilinear", align_corners=False)  # [B*Q, 1, s2, s2]
        feats = F.interpolate(feats, size=(s2, s2), mode="bilinear",
                              align_corners=False)  # [B*Q, feat_dim, s2, s2]
        image = _per_query(self.image(stem.to(up.dtype)), q)  # [B*Q, r, s2, s2]
        # the probability, not the logit: the block's LayerNorm mixes it with O(1) features
        h = self.fuse(torch.cat([torch.sigmoid(up), feats, image], 1))
        return (up + self.out(h)).reshape(b, q, s2, s2)


class MaskDecoder(nn.Module):
    """Mask logits at 1/4 resolution (1/2 with cfg.refine) and a predicted IoU for every <seg>
    query.

    Args:
        cfg: width (`dim`), two-way blocks (`depth`), `heads` and token-MLP width (`mlp`).
        llm_hidden: width of the LLM hidden states at the <seg> tokens.
        dense_dim: channels of the fused dense feature map (the keys).
        prompt_dim: width of the prompt encoder's tokens.
        hires_dims: channels (C4, C8) of the ConvNeXt stride-4 and stride-8 maps.
        grid: side g of the dense feature map.
        image_size: side S of the (square, padded) model input; the masks are
            hires_sizes(S)[0] = floor(S / 4) pixels on a side, or S / 2 with cfg.refine
            (`out_size`).

    Raises:
        ValueError: a size is not positive, cfg.dim is not a multiple of 8, or cfg.heads does not
            divide the attention widths.
    """

    def __init__(self, cfg: MaskDecoderConfig, llm_hidden: int, dense_dim: int, prompt_dim: int,
                 hires_dims: tuple[int, int], grid: int, image_size: int) -> None:
        super().__init__()
        dim = cfg.dim
        if dim < 8 or dim % 8:
            raise ValueError(f"MaskDecoder: cfg.dim must be a positive multiple of 8, got {dim}")
        if len(hires_dims) != 2:
            raise ValueError(f"MaskDecoder: hires_dims must be (C4, C8), got {hires_dims!r}")
        for name, v in [("llm_hidden", llm_hidden), ("dense_dim", dense_dim),
                        ("prompt_dim", prompt_dim), ("hires_dims[0]", hires_dims[0]),
                        ("hires_dims[1]", hires_dims[1]), ("grid", grid)]:
            if v < 1:
                raise ValueError(f"MaskDecoder: {name} must be >= 1, got {v}")
        if image_size < 8:
            raise ValueError(f"MaskDecoder: image_size must be >= 8, got {image_size}")
        self.llm_hidden, self.dense_dim, self.prompt_dim = llm_hidden, dense_dim, prompt_dim
        self.hires_dims = (int(hires_dims[0]), int(hires_dims[1]))
        self.grid, self.image_size = grid, image_size
        self.size4, self.size8 = hires_sizes(image_size)
        c8, c4 = dim // 2, dim // 4  # channels of the upscaled embedding at strides 8 and 4

        # Queries: two learned tokens, then the <seg> state and the prompt tokens in the same width.
        self.iou_token = nn.Parameter(torch.randn(1, dim) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(1, dim) * 0.02)
        self.seg_proj = MLP(llm_hidden, llm_hidden, dim, layers=2)
        self.prompt_proj = nn.Linear(prompt_dim, dim)
        self.text_tokens = bool(cfg.text_tokens)
        if self.text_tokens:
            # The question read directly: a tiny LLM trained from scratch routes little of the
            # question into its <seg> state (tiny, 2500 steps: mask logits moved 0.25 % between
            # questions on one image), so its text-token states join the queries.
            self.text_proj = nn.Sequential(nn.LayerNorm(llm_hidden), nn.Linear(llm_hidden, dim))
        self.text_embeddings = bool(cfg.text_embeddings)
        if self.text_embeddings:
            if not self.text_tokens:
                raise ValueError("MaskDecoder: cfg.text_embeddings needs cfg.text_tokens (the "
                                 "embeddings join the text tokens' states)")
            self.embed_proj = nn.Sequential(nn.LayerNorm(llm_hidden), nn.Linear(llm_hidden, dim))
        # width of text_states: the last-layer state, and with text_embeddings the embedding
        self.text_width = llm_hidden * (2 if self.text_embeddings else 1)

        # Keys: the dense map in the decoder width, plus a fixed positional code (not saved).
        self.dense_proj = nn.Sequential(nn.Conv2d(dense_dim, dim, 1), LayerNorm2d(dim))
        self.register_buffer("image_pe", sincos_pe_2d(dim, grid), persistent=False)  # [dim, g, g]
        self.transformer = TwoWayTransformer(dim, cfg.depth, cfg.heads, cfg.mlp)

        # Upscaling: laterals from the ConvNeXt maps, added before each fusing convolution.
        self.lateral8 = nn.Sequential(nn.Conv2d(self.hires_dims[1], dim, 1), LayerNorm2d(dim))
        self.fuse8 = _conv_block(dim, c8, 3)
        self.lateral4 = nn.Sequential(nn.Conv2d(self.hires_dims[0], c8, 1), LayerNorm2d(c8))
        self.fuse4 = _conv_block(c8, c4, 3)

        self.position_prior = bool(cfg.position_prior)
        extra = 0
        self.position_cells = bool(cfg.position_cells)
        if self.position_cells and not self.position_prior:
            raise ValueError("MaskDecoder: cfg.position_cells needs cfg.position_prior (the cells "
                             "extend its basis)")
        if self.position_prior:
            basis = position_basis(self.size4)  # [6, s4, s4]
            if self.position_cells:
                basis = torch.cat([basis, cell_basis(self.size4)])  # [15, s4, s4]
            self.register_buffer("position_basis", basis, persistent=False)
            extra = basis.shape[0]
            if self.text_tokens:
                # Each text token adds its own term to the prior's weights, summed over the
                # tokens (a bag of words, no attention): " top" and " left" add up to a bump in
                # the top left. Through the mask token alone, whose attention spreads evenly over
                # ~20 text tokens, the prior stayed the same for "top left" and "bottom right"
                # (tiny-synthetic, 2000 steps, and 600 more on single-object phrases only).
                # It reads the token's input embedding where the decoder gets it (the word
                # itself), else its state.
                self.text_prior = nn.Sequential(nn.LayerNorm(llm_hidden),
                                                nn.Linear(llm_hidden, extra))
                nn.init.zeros_(self.text_prior[1].weight)
                nn.init.zeros_(self.text_prior[1].bias)
        self.n_basis = extra  # position channels (0, 6 or 15); the word prior adds to their weights
        self.prompt_map = bool(cfg.prompt_map)
        if self.prompt_map:
            extra += 1
        self.hyper_mlp = MLP(dim, dim, c4 + extra, layers=3)
        self.iou_head = MLP(dim, dim, 1, layers=3)

        self.refine = bool(cfg.refine)
        self.out_size = self.size4
        if self.refine:
            if image_size % 2:
                raise ValueError(f"MaskDecoder: cfg.refine needs an even image_size, got "
                                 f"{image_size}")
            self.out_size = image_size // 2
            self.refiner = MaskRefiner(c4, self.out_size)

    def forward(self, seg_hidden: Tensor, dense: Tensor, hires: Sequence[Tensor],
                prompt_states: Tensor | None = None,
                prompt_valid: Tensor | None = None,
                text_states: Tensor | None = None,
                prompt_masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Decodes one mask per <seg> query; each query is decoded independently of the others.

        Args:
            seg_hidden: [B, Q, llm_hidden] the LLM's last hidden state at each <seg> token;
                Q may be 0.
            dense: [B, dense_dim, g, g] fused image features.
            hires: [stride-4 map [B, C4, S4, S4], stride-8 map [B, C8, S8, S8]] from ConvNeXt, with
                (S4, S8) = hires_sizes(image_size); with cfg.refine a third entry, the vision
                stem's image [B, 3, S, S] (`VisionOutput.stem`).
            prompt_states: [B, R, prompt_dim] prompt tokens of each image, or None (no prompts);
                R may be 0.
            prompt_valid: [B, R] bool, False marks padding prompt tokens (ignored by attention), or
                None (all valid). Needs prompt_states.
            text_states: [B, T, text_width] the LLM's last hidden states at the prompt's text
                tokens (`text_positions`), T >= 1, and with cfg.text_embeddings their input
                embeddings after them (text_width = 2 x llm_hidden: [state, embedding]);
                required when cfg.text_tokens, refused
                otherwise.
            prompt_masks: [B, R, M, M] float region masks in [0, 1] of the prompts whose states
                are prompt_states (the prompt encoder's `masks`, over the padded square, any M),
                for a decoder with cfg.prompt_map (refused otherwise); None there means no
                visual prompt (an all-zero map). Padding prompts (prompt_valid False) are
                ignored.

        Returns:
            mask_logits [B, Q, out_size, out_size] (S4, or S / 2 with cfg.refine) and iou_pred
            [B, Q] (an unbounded regression of the mask's IoU; clamp to [0, 1] to read it as
            one).

        Raises:
            TypeError: an input is not a tensor, or prompt_valid is not bool.
            ValueError: an input's shape does not match the sizes given at construction, or
                prompt_valid or prompt_masks comes without prompt_states.
        """
        b, q = self._check(seg_hidden, dense, hires, prompt_states, prompt_valid, text_states,
                           prompt_masks)
        dim = self.iou_token.shape[1]

        # Query tokens of every (image, <seg>) pair; Q is folded into the batch.
        seg = self.seg_proj(seg_hidden)  # [B, Q, dim]
        fixed = torch.cat([self.iou_token, self.mask_token], 0)  # [2, dim]
        fixed = fixed[None, None].expand(b, q, 2, dim)  # [B, Q, 2, dim]
        parts = [fixed, seg[:, :, None, :]]
        valid = None
        if prompt_states is not None:
            r = prompt_states.shape[1]
            prompts = self.prompt_proj(prompt_states)  # [B, R, dim]
            parts.append(prompts[:, None].expand(b, q, r, dim))  # [B, Q, R, dim]
            if prompt_valid is not None:
                always = prompt_valid.new_ones(b, q, 3)  # [B, Q, 3]: iou, mask, <seg>
                valid = torch.cat([always, prompt_valid[:, None].expand(b, q, r)], 2)  # [B, Q, T]
                valid = valid.flatten(0, 1)  # [B*Q, T]
        if text_states is not None:
            t = text_states.shape[1]
            h = self.llm_hidden
            text = self.text_proj(text_states[..., :h])  # [B, T, dim]
            if self.text_embeddings:
                text = text + self.embed_proj(text_states[..., h:])  # [B, T, dim]
            parts.append(text[:, None].expand(b, q, t, dim))  # [B, Q, T, dim]
            if valid is not None:
                valid = torch.cat([valid, valid.new_ones(b * q, t)], 1)
        tokens = torch.cat(parts, 2).flatten(0, 1)  # [B*Q, T, dim]
        word_prior = None
        if self.position_prior and text_states is not None:
            words = text_states[..., self.llm_hidden:] if self.text_embeddings else text_states
            word_prior = self.text_prior(words).sum(1)  # [B, 6]: each text token's term, summed

        # Keys: one copy of the image per query (the transformer updates it per query).
        g = self.grid
        image = self.dense_proj(dense)  # [B, dim, g, g]
        image = image.flatten(2).transpose(1, 2)  # [B, g*g, dim]
        image = image[:, None].expand(b, q, g * g, dim).flatten(0, 1)  # [B*Q, g*g, dim]
        image_pe = self.image_pe.flatten(1).transpose(0, 1)[None]  # [1, g*g, dim]
        tokens, image = self.transformer(tokens, image, image_pe.to(image.dtype), valid)
        iou_out, mask_out = tokens[:, 0], tokens[:, 1]  # [B*Q, dim] each
        # The <seg> state also reaches the hypernetwork directly: through the transformer alone a
        # small decoder learns to ignore its query and paints one mask per image (seen on tiny:
        # three questions gave logits equal within 2e-4).
        mask_out = mask_out + seg.flatten(0, 1)  # [B*Q, dim]

        # Upscale the per-query image embedding, fusing the per-image high-resolution maps.
        s4, s8 = self.size4, self.size8
        x = image.transpose(1, 2).reshape(b * q, dim, g, g)  # [B*Q, dim, g, g]
        x = F.interpolate(x, size=(s8, s8), mode="bilinear", align_corners=False)  # [BQ, C, s8, s8]
        lat8 = self.lateral8(hires[1])  # [B, dim, s8, s8]
        x = x + _per_query(lat8, q)
        x = self.fuse8(x)  # [B*Q, c8, s8, s8]
        x = F.interpolate(x, size=(s4, s4), mode="bilinear", align_corners=False)  # [BQ, C, s4, s4]
        lat4 = self.lateral4(hires[0])  # [B, c8, s4, s4]
        x = x + _per_query(lat4, q)
        x = self.fuse4(x)  # [B*Q, c4, s4, s4]
        feats = x

        if self.position_prior:
            basis = self.position_basis.to(x.dtype)[None]  # [1, 6, s4, s4]
            x = torch.cat([x, basis.expand(b * q, *basis.shape[1:])], 1)  # [B*Q, c4 + 6, s4, s4]
        if self.prompt_map:
            x = torch.cat([x, _per_query(self._prompt_map(prompt_masks, prompt_valid, b, x), q)],
                          1)  # [B*Q, c4 (+ 6) + 1, s4, s4]
        weights = self.hyper_mlp(mask_out)  # [B*Q, c4 (+ 6) (+ 1)]
        if word_prior is not None:
            c, n = weights.shape[1] - self.n_basis - int(self.prompt_map), self.n_basis
            per_query = _per_query(word_prior, q)  # [B*Q, 6]
            weights = torch.cat([weights[:, :c], weights[:, c:c + n] + per_query,
                                 weights[:, c + n:]], 1)
        logits = (weights[:, None, :] @ x.flatten(2)).reshape(b, q, s4, s4)  # [B, Q, s4, s4]
        iou = self.iou_head(iou_out).reshape(b, q)  # [B, Q]
        if self.refine:
            logits = self.refiner(logits, feats, hires[2])
        return logits, iou

    def _prompt_map(self, prompt_masks: Tensor | None, prompt_valid: Tensor | None, b: int,
                    like: Tensor) -> Tensor:
        """[B, 1, s4, s4]: the union of each image's valid prompt masks on the mask grid (a sum
        clamped to 1, so that R = 0 gives zeros in the exported graph too)."""
        s4 = self.size4
        if prompt_masks is None:
            return like.new_zeros(b, 1, s4, s4)
        m = prompt_masks.to(like.dtype)  # [B, R, M, M]
        if prompt_valid is not None:
            m = m * prompt_valid[..., None, None].to(m.dtype)
        m = m.sum(1, keepdim=True).clamp(0.0, 1.0)  # [B, 1, M, M]
        if m.shape[-1] != s4:
            m = F.interpolate(m, size=(s4, s4), mode="bilinear", align_corners=False)
        return m * PROMPT_MAP_GAIN

    def _check(self, seg_hidden, dense, hires, prompt_states, prompt_valid,
               text_states=None, prompt_masks=None) -> tuple[int, int]:
        named = [("seg_hidden", seg_hidden), ("dense", dense)]
        if prompt_masks is not None and not self.prompt_map:
            raise ValueError("MaskDecoder: prompt_masks given to a decoder built without "
                             "cfg.prompt_map")
        if self.text_tokens and text_states is None:
            raise ValueError("MaskDecoder: this decoder reads the prompt's text tokens "
                             f"(cfg.text_tokens): text_states [B, T, {self.text_width}] is "
                             "required")
        if not self.text_tokens and text_states is not None:
            raise ValueError("MaskDecoder: text_states given to a decoder built without "
                             "cfg.text_tokens")
        n_maps = 3 if self.refine else 2
        if not isinstance(hires, (list, tuple)) or len(hires) != n_maps:
            rule = ("[stride-4 map, stride-8 map, stem image] (cfg.refine)" if self.refine
                    else "[stride-4 map, stride-8 map]")
            raise TypeError(
                f"MaskDecoder: hires must be a list {rule}, got "
                f"{type(hires).__name__}" + (f" of length {len(hires)}"
                                             if isinstance(hires, (list, tuple)) else "")
            )
        named += [(f"hires[{i}]", h) for i, h in enumerate(hires)]
        if prompt_states is not None:
            named.append(("prompt_states", prompt_states))
        if prompt_valid is not None:
            named.append(("prompt_valid", prompt_valid))
        if text_states is not None:
            named.append(("text_states", text_states))
        if prompt_masks is not None:
            named.append(("prompt_masks", prompt_masks))
        for name, t in named:
            if not isinstance(t, torch.Tensor):
                raise TypeError(
                    f"MaskDecoder: {name} must be a torch.Tensor, got {type(t).__name__}")
        if seg_hidden.dim() != 3 or seg_hidden.shape[2] != self.llm_hidden:
            raise ValueError(f"MaskDecoder: seg_hidden must be [B, Q, {self.llm_hidden}], got "
                             f"{list(seg_hidden.shape)}")
        b, q = seg_hidden.shape[:2]
        g, s4, s8 = self.grid, self.size4, self.size8
        c4, c8 = self.hires_dims
        expected = [("dense", dense, [b, self.dense_dim, g, g], "[B, dense_dim, g, g]"),
                    ("hires[0]", hires[0], [b, c4, s4, s4], "[B, C4, S/4, S/4] (stride 4)"),
                    ("hires[1]", hires[1], [b, c8, s8, s8], "[B, C8, S/8, S/8] (stride 8)")]
        if self.refine:
            size = self.image_size
            expected.append(("hires[2]", hires[2], [b, 3, size, size], "[B, 3, S, S] (stem)"))
        if prompt_states is not None:
            if prompt_states.dim() != 3:
                raise ValueError(f"MaskDecoder: prompt_states must be [B, R, {self.prompt_dim}], "
                                 f"got {list(prompt_states.shape)}")
            r = prompt_states.shape[1]
            expected.append(("prompt_states", prompt_states, [b, r, self.prompt_dim],
                             "[B, R, prompt_dim]"))
            if prompt_valid is not None:
                expected.append(("prompt_valid", prompt_valid, [b, r], "[B, R]"))
            if prompt_masks is not None:
                if prompt_masks.dim() != 4 or prompt_masks.shape[-1] != prompt_masks.shape[-2]:
                    raise ValueError(f"MaskDecoder: prompt_masks must be [B, R, M, M], got "
                                     f"{list(prompt_masks.shape)}")
                m = prompt_masks.shape[-1]
                expected.append(("prompt_masks", prompt_masks, [b, r, m, m], "[B, R, M, M]"))
        elif prompt_valid is not None or prompt_masks is not None:
            name = "prompt_valid" if prompt_valid is not None else "prompt_masks"
            raise ValueError(
                f"MaskDecoder: {name} needs prompt_states, got prompt_states=None")
        if text_states is not None:
            if text_states.dim() != 3 or text_states.shape[1] < 1:
                raise ValueError(f"MaskDecoder: text_states must be [B, T >= 1, "
                                 f"{self.text_width}], got {list(text_states.shape)}")
            expected.append(("text_states", text_states,
                             [b, text_states.shape[1], self.text_width], "[B, T, text_width]"))
        for name, t, shape, rule in expected:
            if list(t.shape) != shape:
                raise ValueError(
                    f"MaskDecoder: {name} must be {rule} = {shape}, got {list(t.shape)}")
        if prompt_masks is not None and not prompt_masks.is_floating_point():
            raise TypeError(f"MaskDecoder: prompt_masks must be floating, got {prompt_masks.dtype}")
        if prompt_valid is not None and prompt_valid.dtype != torch.bool:
            raise TypeError(f"MaskDecoder: prompt_valid must be bool, got {prompt_valid.dtype}")
        return b, q


def position_basis(size: int) -> Tensor:
    """[6, size, size] float32: 1, u, v, u^2, u*v, v^2 at the pixel centres of a size x size map,
    with u (column) and v (row) running over [-1, 1]. A weighted sum of these channels is any
    quadratic of the position: with a negative-definite quadratic part, the log of a Gaussian
    bump placed anywhere, which is what a mask logit needs to say "in the top left"."""
    if size < 1:
        raise ValueError(f"position_basis: size must be >= 1, got {size}")
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # [size]
    v, u = torch.meshgrid(t, t, indexing="ij")  # [size, size] each: row, column
    return torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v])


# The cells' bumps peak at this value (the other position channels are O(1)): as with the prompt
# map, a weight of ~1 then already moves a logit by several units.
CELL_GAIN = 4.0


def cell_basis(size: int) -> Tensor:
    """[9, size, size] float32: one Gaussian bump per ninth of the image (row-major, top left
    first), centred on the ninth's centre, with a standard deviation of a sixth of the side, times
    CELL_GAIN. Referring phrases name the ninth an object's centre lies in ("the tank in the top
    left"); a quadratic prior is one broad bump, which a logit cannot make high on one ninth and
    low on its neighbours, while a weighted sum of these bumps can (and still spills over the
    ninth's border, where a large object's mask does)."""
    if size < 1:
        raise ValueError(f"cell_basis: size must be >= 1, got {size}")
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # [size] in (0, 1)
    centres = torch.tensor([1 / 6, 1 / 2, 5 / 6])
    g = torch.exp(-0.5 * ((t[None] - centres[:, None]) * 6) ** 2)  # [3, size]: a 1-D bump each
    return (g[:, None, :, None] * g[None, :, None, :]).reshape(9, size, size) * CELL_GAIN


def _per_query(x: Tensor, q: int) -> Tensor:
    """[B, ...] -> [B*Q, ...]: each image's tensor repeated for its Q queries."""
    return x[:, None].expand(x.shape[0], q, *x.shape[1:]).flatten(0, 1)
