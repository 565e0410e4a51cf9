"""Trace-friendly wrappers of the exported components (in the manner of SAM's SamOnnxModel).

They hold references to the modules of an `EarthXModel` and add no parameters. Each takes plain
tensors and returns a tuple of tensors, so `torch.onnx.export` sees fixed input/output names:

- `VisionOnnx`: sensor stem + ViT + ConvNeXt + fusion + projector for ONE (sensor, channel count)
  at the model's fixed resolution.
- `PromptEncoderOnnx`: the prompt encoder AFTER `region_pool` (which the runtime runs: its kernel
  is ours, in `_C`). It replays `PromptEncoder.forward` from the pooled features on, for prompts
  that are all valid (the runtime never pads), with the same submodules in the same order, so the
  math is that of the reference.
- `MaskDecoderOnnx`: the mask decoder with prompt states (R may be 0 or more).
"""

from __future__ import annotations

from torch import Tensor, nn

from earthx_sdk.modeling.config import SENSORS

VISION_OUTPUTS = ("tokens", "image_tokens", "dense", "feature_s4", "feature_s8")
"""Output names of `VisionOnnx`: `feature_s4`/`feature_s8` are ConvNeXt stages 1 and 2, which are
both the first two `region_pool` maps and the mask decoder's hires maps; the third region_pool map
is `dense`."""
VISION_STEM_OUTPUT = "stem"
"""The vision graph's sixth output, for a model whose mask decoder has cfg.refine: the sensor
stem's image [1, 3, S, S] (`VisionOutput.stem`)."""
PROMPT_INPUTS = ("pooled", "boxes", "types", "image_tokens")
PROMPT_OUTPUTS = ("region_embeds", "prompt_states")
MASK_INPUTS = ("seg_hidden", "dense", "hires_s4", "hires_s8", "prompt_states")
MASK_TEXT_INPUT = "text_hidden"
"""The mask decoder's sixth input, for a decoder with cfg.text_tokens: the LLM's last-layer
states at the prompt's text tokens [1, T, hidden] (`earthx_sdk.processor.text_positions`); with
cfg.text_embeddings each token's input embedding follows its state: [1, T, 2 x hidden]."""
MASK_PROMPT_INPUT = "prompt_masks"
"""The mask decoder's input for a decoder with cfg.prompt_map, after text_hidden where both are:
the region masks of the prompts whose states are prompt_states [1, R, M, M] (M =
PromptEncoderConfig.mask_resolution), the ones the runtime pooled the prompts with."""
MASK_STEM_INPUT = "stem"
"""The mask decoder's last input, for a decoder with cfg.refine: the vision graph's `stem`
output [1, 3, S, S]."""
MASK_OUTPUTS = ("mask_logits", "iou_pred")


class VisionOnnx(nn.Module):
    """The vision encoder for one sensor and channel count.

    Args:
        vision: the model's `VisionEncoder`.
        sensor: one of `SENSORS`.
        channels: a channel count the sensor accepts.
        stem: also return the stem's image (a model whose mask decoder has cfg.refine).

    Raises:
        ValueError: unknown sensor, or a channel count the sensor does not accept.
    """

    def __init__(self, vision: nn.Module, sensor: str, channels: int, stem: bool = False) -> None:
        super().__init__()
        allowed = vision.allowed_channels.get(sensor)
        if allowed is None:
            raise ValueError(f"VisionOnnx: sensor must be one of {list(SENSORS)}, got {sensor!r}")
        if channels not in allowed:
            raise ValueError(f"VisionOnnx: sensor {sensor!r} accepts channels {allowed}, "
                             f"got {channels}")
        self.vision, self.sensor, self.channels = vision, sensor, channels
        self.image_size = vision.cfg.image_size
        self.stem = bool(stem)

    def forward(self, pixels: Tensor) -> tuple[Tensor, ...]:
        """pixels [1, C, S, S] -> (tokens, image_tokens, dense, feature_s4, feature_s8) and, with
        `stem`, the stem's image [1, 3, S, S]."""
        v = self.vision(pixels, self.sensor)
        out = (v.tokens, v.image_tokens, v.dense, v.hires[0], v.hires[1])
        return out + (v.stem,) if self.stem else out


class PromptEncoderOnnx(nn.Module):
    """The prompt encoder from pooled region features on.

    Args:
        encoder: the model's `PromptEncoder`.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pooled: Tensor, boxes: Tensor, types: Tensor,
                image_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Encodes R valid prompts of one image.

        Args:
            pooled: [1, R, sum C_s] `region_pool` output for the prompts.
            boxes: [1, R, 4] float boxes in model-input pixels.
            types: [1, R] int64 prompt type ids.
            image_tokens: [1, T, Dv] the vision encoder's image_tokens.

        Returns:
            region_embeds [1, R, n, llm_hidden] and prompt_states [1, R, dim].
        """
        enc = self.encoder
        x = enc.pool_proj(pooled)  # [1, R, D]
        x = x + enc.geom_proj(enc.fourier(boxes.to(x.dtype)))
        x = x + enc.type_embed(types)
        image = enc.image_proj(image_tokens)  # [1, T, D]
        # All prompts are valid: the reference's allow mask is all True, i.e. no mask at all.
        for block in enc.blocks:
            x = block(x, image, None)
        states = enc.norm(x)  # [1, R, D]
        return enc.region_tokens(states, boxes), states  # [1, R, n, hidden], [1, R, D]


class MaskDecoderOnnx(nn.Module):
    """The mask decoder for one image, with its prompt states.

    Args:
        decoder: the model's `MaskDecoder`.
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, seg_hidden: Tensor, dense: Tensor, hires_s4: Tensor, hires_s8: Tensor,
                prompt_states: Tensor, text_hidden: Tensor | None = None,
                prompt_masks: Tensor | None = None,
                stem: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """seg_hidden [1, Q, hidden], dense [1, Dv, g, g], hires maps, prompt_states [1, R, dim]
        (and text_hidden [1, T, hidden] for a decoder that reads the prompt's text; [1, T,
        2 x hidden], state then input embedding, for one with cfg.text_embeddings;
        prompt_masks [1, R, M, M] for one with cfg.prompt_map; the stem image [1, 3, S, S] for
        one with cfg.refine)
        -> mask_logits [1, Q, G, G] (G = S/4, or S/2 with cfg.refine), iou_pred [1, Q]."""
        maps = [hires_s4, hires_s8] + ([stem] if stem is not None else [])
        return self.decoder(seg_hidden, dense, maps, prompt_states, None, text_hidden,
                            prompt_masks)
