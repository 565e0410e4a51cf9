"""The `torch` backend: the reference `EarthXModel` (CPU or CUDA) behind the session interface.

Needs torch and transformers. The prompt stage is split as the exported graphs split it: fusion is
`region_pool` (the torch op, which dispatches to the `_C` / Triton / CUDA kernels), the prompt
encoder runs from the pooled features on (the same submodules in the order of
`PromptEncoder.forward` for prompts that are all valid: `tests/runtime` checks it equals the
module). The LLM is `EarthXModel.llm` with a transformers cache as its state.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from earthx_sdk.runtime.sessions import Engine, ImageFeatures, ModelSpec


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _precision(module: torch.nn.Module) -> str:
    dtype = next(module.parameters()).dtype
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
        dtype, str(dtype).removeprefix("torch."))


class TorchVision:
    def __init__(self, model, device: torch.device) -> None:
        self.model, self.device = model, device
        self.backend = f"torch:{device.type}"
        self._precision = _precision(model.vision)

    def precision(self, sensor: str, channels: int) -> str:
        return self._precision

    @torch.no_grad()
    def run(self, pixels: np.ndarray, sensor: str) -> ImageFeatures:
        px = torch.from_numpy(np.ascontiguousarray(pixels))[None].to(self.device)  # [1, C, S, S]
        v = self.model.vision(px, sensor)
        native = {"image_tokens": v.image_tokens, "dense": v.dense, "feature_s4": v.hires[0],
                  "feature_s8": v.hires[1], "stem": v.stem}
        return ImageFeatures(_np(v.tokens[0]), native)  # tokens [T, hidden]


class TorchFusion:
    def __init__(self, model, device: torch.device) -> None:
        from earthx_sdk.ops.region_pool import available_impls

        self.model, self.device = model, device
        impls = available_impls(device)  # what region_pool(impl="auto") dispatches to
        self.backend = f"torch:{device.type} (region_pool {impls[-1]})"
        self.precision = "fp32"

    @torch.no_grad()
    def run(self, feats: ImageFeatures, boxes: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        from earthx_sdk.ops.region_pool import region_pool

        pe = self.model.prompt_encoder
        n = feats.native
        maps = [n["feature_s4"], n["feature_s8"], n["dense"]]
        b = torch.from_numpy(boxes)[None].to(self.device)  # [1, R, 4]
        m = torch.from_numpy(masks)[None].to(self.device)  # [1, R, M, M]
        return region_pool(maps, b, m, grid=pe.cfg.pool_grid, image_size=pe.image_size)[0]


class TorchPrompt:
    def __init__(self, model, device: torch.device) -> None:
        self.model, self.device = model, device
        self.backend = f"torch:{device.type}"
        self.precision = _precision(model.prompt_encoder)

    @torch.no_grad()
    def run(self, feats: ImageFeatures, pooled: torch.Tensor, boxes: np.ndarray,
            types: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        enc = self.model.prompt_encoder
        b = torch.from_numpy(boxes)[None].to(self.device)  # [1, R, 4]
        t = torch.from_numpy(types)[None].to(self.device)  # [1, R]
        x = enc.pool_proj(pooled[None])  # [1, R, D]
        x = x + enc.geom_proj(enc.fourier(b.to(x.dtype)))
        x = x + enc.type_embed(t)
        image = enc.image_proj(feats.native["image_tokens"])  # [1, T, D]
        for block in enc.blocks:  # all prompts valid: attention among all of them
            x = block(x, image, None)
        states = enc.norm(x)  # [1, R, D]
        region = enc.region_tokens(states, b)  # [1, R, n, hidden], with where_bins' term
        return _np(region[0]), states[0]


class TorchMask:
    def __init__(self, model, device: torch.device) -> None:
        self.model, self.device = model, device
        self.backend = f"torch:{device.type}"
        self.precision = _precision(model.mask_decoder)

    @property
    def reads_text(self) -> bool:
        return bool(self.model.mask_decoder.text_tokens)

    @property
    def reads_embeddings(self) -> bool:
        return bool(self.model.mask_decoder.text_embeddings)

    @torch.no_grad()
    def run(self, feats: ImageFeatures, seg_hidden: np.ndarray, states,
            text_hidden: np.ndarray | None = None,
            prompt_masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = feats.native
        q = torch.from_numpy(seg_hidden)[None].to(self.device)  # [1, Q, hidden]
        st = None if states is None or states.shape[0] == 0 else states[None]
        text = (None if text_hidden is None or not self.reads_text
                else torch.from_numpy(np.ascontiguousarray(text_hidden, np.float32))[None]
                .to(self.device, q.dtype))  # [1, T, hidden or 2 x hidden]
        pm = None
        if st is not None and prompt_masks is not None and self.model.mask_decoder.prompt_map:
            pm = torch.from_numpy(np.ascontiguousarray(prompt_masks, np.float32))[None].to(
                self.device, q.dtype)  # [1, R, M, M]
        maps = [n["feature_s4"], n["feature_s8"]]
        if self.model.mask_decoder.refine:
            maps.append(n["stem"])
        logits, iou = self.model.mask_decoder(q, n["dense"], maps, st, None, text, pm)
        return _np(logits[0]), _np(iou[0])  # [Q, G, G] (G = S/4, or S/2 with refine), [Q]


class TorchLLMState:
    """The transformers cache of one sequence (None before the first forward)."""

    def __init__(self) -> None:
        self.cache = None
        self.length = 0


class TorchLLM:
    """`EarthXModel.llm` behind the OrtLLM methods (embed / new_state / forward)."""

    def __init__(self, model, device: torch.device) -> None:
        self.llm, self.device = model.llm, device
        self.table = self.llm.get_input_embeddings()
        cfg = self.llm.config
        self.hidden_size = int(cfg.hidden_size)
        self.vocab_size = int(self.table.weight.shape[0])
        self.num_layers = int(cfg.num_hidden_layers)
        self.backend = f"torch:{device.type}"
        self.precision = _precision(self.llm)
        # transformers >= 5.2x names the cache argument `cache`; older ones `past_key_values`
        params = inspect.signature(self.llm.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @torch.no_grad()
    def embed(self, ids: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.asarray(ids, np.int64)).to(self.device)
        return _np(self.table(t))  # [n, hidden]

    def new_state(self) -> TorchLLMState:
        return TorchLLMState()

    @torch.no_grad()
    def forward(self, embeds: np.ndarray, state: TorchLLMState) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(embeds, np.float32))[None]
        x = x.to(self.device, self.table.weight.dtype)  # [1, S, hidden]
        out = self.llm(inputs_embeds=x, use_cache=True, output_hidden_states=True,
                       **{self._cache_kw: state.cache})
        state.cache = out["cache"] if "cache" in out.keys() else out["past_key_values"]
        state.length += x.shape[1]
        return _np(out.logits[0, -1]), _np(out.hidden_states[-1][0])  # [V], [S, hidden]


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cpu" / "cuda" / "cuda:N" as given.

    Raises:
        RuntimeError: cuda asked for but not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r}: CUDA is not available to torch here")
    return dev


def engine_from_model(model, source: str = "") -> Engine:
    """An Engine over an in-memory EarthXModel (on the device it is on)."""
    from earthx_sdk.io.sensors import SENSORS

    model.eval()
    device = model.device
    channels = {k: tuple(v) for k, v in model.vision.allowed_channels.items()}
    spec = ModelSpec.from_config(model.cfg.to_dict(), channels,
                                 {k: SENSORS[k] for k in channels})
    return Engine(spec, model.tokenizer, TorchVision(model, device), TorchFusion(model, device),
                  TorchPrompt(model, device), TorchLLM(model, device), TorchMask(model, device),
                  source, "torch")


def load_torch(checkpoint: str | Path, device: str = "auto") -> Engine:
    """The torch backend from a checkpoint directory (EarthXModel.save)."""
    from earthx_sdk.modeling.model import EarthXModel

    model = EarthXModel.load(checkpoint, device=resolve_device(device))
    return engine_from_model(model, str(checkpoint))
