"""The session interface every backend implements, one session per model component.

A request runs these stages (DESIGN.md, "Data flow of one request"):

    vision          pixels float32 [C, S, S] -> ImageFeatures (cached per image)
    fusion          region_pool of the prompts over the feature maps -> pooled [R, sum C_s]
    prompt encoder  pooled + boxes + types + image tokens -> region embeds [R, n, hidden],
                    prompt states [R, D]
    llm             embed(ids) / new_state() / forward(embeds, state) (see OrtLLM in
                    earthx_sdk/runtime/ort_llm.py: the same three methods for every backend)
    mask decoder    <seg> hidden states [Q, hidden] + features + prompt states -> mask logits
                    [Q, G, G] (G = S/4, or S/2 with MaskDecoderConfig.refine), predicted IoU [Q]

Tensors cross the interface as float32 numpy arrays, except the feature maps and prompt states,
which stay in the backend's own type (torch tensors on the GPU stay there) inside
`ImageFeatures` / the `states` a prompt session returns. Every session names its `backend` (e.g.
"torch:cpu", "onnxruntime:CPUExecutionProvider") and `precision` for `Result.timings`.

Sessions are stateless after construction (the LLM's state lives in the object `new_state`
returns), so one `Engine` serves many threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """The geometry a runtime needs, read from a checkpoint's config or a bundle's manifest.

    Attributes:
        image_size: S, side of the square model input.
        num_image_tokens: visual tokens that replace `<image>`.
        region_tokens: tokens per `<region>`.
        mask_resolution: M, side of the rasterized prompt masks.
        pool_grid: K of region_pool.
        max_positions: the LLM's context length.
        channels: {sensor: channel counts this runtime can encode}.
        sensors: {sensor: earthx_sdk.io.sensors.SensorSpec} normalization per sensor.
        mask_threshold: the model's calibrated mask-logit threshold (config mask.threshold).
    """

    image_size: int
    num_image_tokens: int
    region_tokens: int
    mask_resolution: int
    pool_grid: int
    max_positions: int
    channels: dict[str, tuple[int, ...]]
    sensors: dict[str, Any] = field(default_factory=dict)
    mask_threshold: float = 0.0

    @property
    def mask_grid(self) -> int:
        return self.image_size // 4

    @classmethod
    def from_config(cls, config: dict, channels: dict, sensors: dict) -> ModelSpec:
        """From `EarthXConfig.to_dict()` (a manifest's model_config)."""
        v, p, llm = config["vision"], config["prompt"], config["llm"]
        grid = v["image_size"] // v["vit_patch"]
        return cls(image_size=int(v["image_size"]),
                   num_image_tokens=(grid // v["token_pool"]) ** 2,
                   region_tokens=int(p["region_tokens"]), mask_resolution=int(p["mask_resolution"]),
                   pool_grid=int(p["pool_grid"]), max_positions=int(llm["max_positions"]),
                   channels={k: tuple(int(c) for c in cs) for k, cs in channels.items()},
                   sensors=dict(sensors),
                   mask_threshold=float(config.get("mask", {}).get("threshold", 0.0)))


@dataclass
class ImageFeatures:
    """What the vision stage gives for one image.

    Attributes:
        tokens: float32 numpy [T, hidden], the `<image>` embeddings for the LLM.
        native: the backend's own maps (image_tokens, dense, feature_s4, feature_s8, and stem
            where the mask decoder refines at S/2).
    """

    tokens: np.ndarray
    native: dict[str, Any]


class VisionSession(Protocol):
    backend: str

    def precision(self, sensor: str, channels: int) -> str: ...

    def run(self, pixels: np.ndarray, sensor: str) -> ImageFeatures: ...


class FusionSession(Protocol):
    backend: str
    precision: str

    def run(self, feats: ImageFeatures, boxes: np.ndarray, masks: np.ndarray) -> Any: ...


class PromptSession(Protocol):
    backend: str
    precision: str

    def run(self, feats: ImageFeatures, pooled: Any, boxes: np.ndarray,
            types: np.ndarray) -> tuple[np.ndarray, Any]: ...


class MaskSession(Protocol):
    backend: str
    precision: str

    reads_text: bool  # the decoder takes the prompt's text-token states (cfg.text_tokens)
    # and their input embeddings after them, [T, 2 x hidden] (cfg.text_embeddings)
    reads_embeddings: bool

    def run(self, feats: ImageFeatures, seg_hidden: np.ndarray, states: Any,
            text_hidden: np.ndarray | None = None,
            prompt_masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    # prompt_masks: float32 [R, M, M], the region masks of the prompts whose states are `states`
    # (Encoded.prompt_masks); a decoder built with cfg.prompt_map reads them, others ignore them.


class LLMSession(Protocol):
    hidden_size: int
    vocab_size: int
    num_layers: int
    backend: str
    precision: str

    def embed(self, ids: np.ndarray) -> np.ndarray: ...

    def new_state(self) -> Any: ...

    def forward(self, embeds: np.ndarray, state: Any) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Engine:
    """One session per component, and what they were loaded from.

    Attributes:
        spec: the model geometry.
        tokenizer: an earthx_sdk.tokenizer.EarthXTokenizer.
        vision, fusion, prompt, llm, mask: the sessions.
        source: the checkpoint or bundle directory.
        name: "torch", "onnxruntime", or a mix the caller composed (then "mixed").
    """

    spec: ModelSpec
    tokenizer: Any
    vision: VisionSession
    fusion: FusionSession
    prompt: PromptSession
    llm: LLMSession
    mask: MaskSession
    source: str = ""
    name: str = ""

    def describe(self) -> dict[str, str]:
        """{stage: "backend (precision)"} of the loaded sessions."""
        return {"vision": self.vision.backend, "fusion": self.fusion.backend,
                "prompt_encoder": self.prompt.backend, "llm": self.llm.backend,
                "mask_decoder": self.mask.backend}
