"""Model configuration: frozen dataclasses with named presets (`EarthXConfig.from_name`).

JSON (`config.json` of a saved model) is only the serialized form; unknown keys are rejected.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Sensors the model knows, in the order of their learned embeddings.
SENSORS = ("optical", "multispectral", "sar", "infrared")


@dataclass(frozen=True)
class VisionConfig:
    """Both vision experts, the per-sensor stems and the fusion into LLM-width tokens.

    The ViT (DINOv2 class) sees the image as patches of `vit_patch`; the ConvNet (ConvNeXt class)
    yields four stages at strides 4, 8, 16, 32. `*_path` loads pretrained weights from a local
    directory (`from_pretrained`); otherwise the expert is built from the sizes here.
    """

    image_size: int = 448
    vit_hidden: int = 1024
    vit_layers: int = 24
    vit_heads: int = 16
    vit_mlp: int = 4096
    vit_patch: int = 14
    vit_path: str | None = None
    convnext_dims: tuple[int, ...] = (192, 384, 768, 1536)
    convnext_depths: tuple[int, ...] = (3, 3, 27, 3)
    convnext_v2: bool = False
    convnext_path: str | None = None
    multispectral_bands: int = 13  # N of the multispectral stem (Sentinel-2 has 13 bands)
    token_pool: int = 2  # visual tokens for the LLM: the ViT grid average-pooled by this factor

    @property
    def grid(self) -> int:
        """Side of the ViT token grid (448 / 14 = 32)."""
        return self.image_size // self.vit_patch


@dataclass(frozen=True)
class LLMConfig:
    """A Llama/Qwen2-family causal LM: from these sizes, or from a local directory (`llm_path`)."""

    family: str = "llama"  # "llama" | "qwen2" (ignored when llm_path is set)
    hidden: int = 1536
    layers: int = 28
    heads: int = 12
    kv_heads: int = 2
    intermediate: int = 8960
    vocab_size: int = 151936
    max_positions: int = 4096
    rope_theta: float = 1_000_000.0
    tie_embeddings: bool = True
    llm_path: str | None = None
    tokenizer_path: str | None = None  # a directory with tokenizer.json; None: llm_path's


@dataclass(frozen=True)
class PromptEncoderConfig:
    """Region tokens from visual prompts: region_pool features + Fourier geometry codes, then
    self-attention among prompts and cross-attention to image tokens."""

    dim: int = 512
    layers: int = 2
    heads: int = 8
    mlp: int = 2048
    pool_grid: int = 7  # K of region_pool's K x K sampling grid
    fourier_bands: int = 16
    region_tokens: int = 1  # <region> tokens per prompt
    mask_resolution: int = 112  # side of the rasterized prompt masks (over the padded square)
    # Where the prompt is, handed to the LLM directly: its centre binned on a where_bins x
    # where_bins grid of the padded square, a learned row embedding plus a learned column
    # embedding (LLM width) added to its region tokens. 0: off. Without it the earthx-tiny model
    # named the class of a prompted region but one fixed place for all ("The tree in the top
    # right.": the place right in 6-22 % of captions per prompt kind), and a linear probe read
    # the prompt's ninth from its region tokens no better than chance (16 %, majority 15 %) while
    # the prompt states held it (53 %): the Fourier code reached the decoder's states, not the LLM.
    # With 8 bins (and region captions asked 4x as often; 18000 steps) it named the place in
    # 22-44 % of validation captions per prompt kind, against 3-16 %, but its referring gIoU fell
    # 0.01-0.02 on three sensors. The embedded model gets 9 bins (three per third: no bin
    # straddles two ninths) in two short stages after earthx-tiny, the first on region captions
    # alone (training.recipes: earthx-tiny-place, earthx-tiny-tune).
    where_bins: int = 0


@dataclass(frozen=True)
class MaskDecoderConfig:
    """SAM-style two-way transformer: queries from <seg> (+ prompt tokens), keys from dense
    features; mask logits at 1/4 of the input resolution (1/2 with `refine`) and a predicted
    IoU."""

    dim: int = 256
    depth: int = 2
    heads: int = 8
    mlp: int = 2048
    # The last-layer LLM states of the prompt's text tokens join the queries (projected), so the
    # decoder reads what was asked even where the <seg> state carries little of it. Off in the
    # presets: on tiny-synthetic (2500 steps) it made the masks 25x more sensitive to the
    # question (diagnose: logits move 6.1 % against 0.25 %) but held-out gIoU stayed 0.06-0.15.
    text_tokens: bool = False
    # A fixed quadratic basis of the pixel position (1, u, v, u^2, uv, v^2 over [-1, 1]) joins
    # the per-pixel features the hypernetwork's weights are dotted with, so a query can add a
    # Gaussian-shaped log-prior on where its mask lies ("the tank in the top left"). With
    # text_tokens, each text token also adds its own term to those six weights (summed over the
    # tokens: "top" + "left"). Changes no input or output of the decoder.
    position_prior: bool = False
    # With position_prior: nine more position channels, a Gaussian bump on each ninth of the
    # image (`cell_basis`), so the prior can be high on the ninth a phrase names and low on the
    # others (a quadratic is one broad bump: the earthx-tiny model at 18000 steps painted
    # objects of the class outside the named ninth in 73 % of the excess pixels of its failed
    # single-object masks). Changes no input or output of the decoder.
    position_cells: bool = False
    # With text_tokens: each text token is read as [last-layer state, input embedding] (width
    # 2 x hidden). The tiny LLM's last-layer states at prompt positions carry little of their own
    # token (no loss trains them): " top" and " bottom" after the same words had cosine 0.999
    # (tiny-synthetic, 2000 steps), so no position word reached the decoder.
    text_embeddings: bool = False
    # The union of the image's visual-prompt region masks (the prompt encoder's rasterized masks,
    # [R, M, M], resized to the mask grid) joins the per-pixel features as one more channel, so
    # the weights can say "inside the prompted region" where the question names a region and not
    # a class: without it a polygon around one tree gave a mask on every tree of the scene. The
    # decoder then takes the prompt masks as an input (`prompt_masks`).
    prompt_map: bool = False
    # A refinement head at half the input resolution: the S/4 logits, upsampled, plus the
    # per-query S/4 features and a small convolution of the vision stem's 3-channel image at
    # stride 2, give a residual on the upsampled logits; the decoder's masks are then S/2 on a
    # side and it takes the stem image as a third `hires` map. Its last convolution starts at
    # zero, so a model gains it without changing its masks, and a stage can train it alone. Why:
    # on the 28 x 28 grid of the tiny preset a vehicle is about 4 x 2 cells, and its referring
    # masks came out undersized whatever the training (validation mean IoU .54 for vehicles
    # against .72 for storage tanks, earthx-tiny-tune). With the head (earthx-tiny-refine):
    # vehicles .64, and every validation mask request .79 against .61 (training.recipes).
    refine: bool = False
    # A mask pixel is on where its upsampled logit exceeds this. Not learned: set after training
    # by `python -m training.calibrate` (the threshold with the best mean mask IoU on validation
    # scenes no recipe trains or evaluates on); 0.0 (probability 0.5) until then. The runtime
    # uses it unless `Options.mask_threshold` is given.
    threshold: float = 0.0


@dataclass(frozen=True)
class EarthXConfig:
    name: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    prompt: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> EarthXConfig:
        """A preset ("tiny", "small", "base"), with top-level fields replaced by `overrides`.

        Raises:
            ValueError: unknown preset (the message lists the valid names).
        """
        if name not in PRESETS:
            raise ValueError(f"config preset must be one of {sorted(PRESETS)}, got {name!r}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EarthXConfig:
        """Inverse of to_dict. Raises ValueError on unknown or missing-typed keys."""
        return _from_dict(cls, d, "config")

    def save(self, path: str | Path) -> None:
        """Writes JSON to `path` (via a temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> EarthXConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _from_dict(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid keys are {sorted(fields)}")
    kwargs = {}
    for k, v in d.items():
        sub = _NESTED.get((cls, k))
        if sub is not None:
            kwargs[k] = _from_dict(sub, v, f"{where}.{k}")
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


_NESTED = {(EarthXConfig, "vision"): VisionConfig, (EarthXConfig, "llm"): LLMConfig,
           (EarthXConfig, "prompt"): PromptEncoderConfig, (EarthXConfig, "mask"): MaskDecoderConfig}

PRESETS: dict[str, EarthXConfig] = {
    # A few million parameters: CPU tests and the embedded demo model.
    "tiny": EarthXConfig(
        name="tiny",
        vision=VisionConfig(image_size=112, vit_hidden=64, vit_layers=2, vit_heads=2, vit_mlp=128,
                            convnext_dims=(16, 32, 64, 128), convnext_depths=(1, 1, 1, 1),
                            multispectral_bands=4),
        llm=LLMConfig(family="llama", hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256,
                      vocab_size=2048, max_positions=512, rope_theta=10_000.0),
        prompt=PromptEncoderConfig(dim=64, layers=1, heads=2, mlp=128, pool_grid=4,
                                   fourier_bands=8, mask_resolution=28),
        mask=MaskDecoderConfig(dim=64, depth=1, heads=2, mlp=128),
    ),
    # ViT-S/14 + ConvNeXt-T at 224 px and a SmolLM2-135M-shaped decoder (an edge model).
    "small": EarthXConfig(
        name="small",
        vision=VisionConfig(image_size=224, vit_hidden=384, vit_layers=12, vit_heads=6,
                            vit_mlp=1536, convnext_dims=(96, 192, 384, 768),
                            convnext_depths=(3, 3, 9, 3)),
        llm=LLMConfig(family="llama", hidden=576, layers=30, heads=9, kv_heads=3,
                      intermediate=1536, vocab_size=49152, max_positions=2048,
                      rope_theta=100_000.0),
        prompt=PromptEncoderConfig(dim=256, layers=2, heads=4, mlp=1024, mask_resolution=56),
        mask=MaskDecoderConfig(dim=128, depth=2, heads=4, mlp=512),
    ),
    # EarthGPT-X scale: DINOv2 ViT-L/14 at 448 px, ConvNeXt-L, a Qwen2-1.5B-shaped LLM.
    "base": EarthXConfig(name="base"),
}
