"""The `onnxruntime` backend: a bundle's ONNX graphs behind the session interface, torch-free.

onnxruntime is imported inside the functions; region_pool (fusion) runs in the native core
(`earthx_sdk._C.region_pool` on numpy arrays), the LLM in `earthx_sdk.runtime.ort_llm.OrtLLM`
(KV cache bound as I/O). Execution providers: `device="auto"` takes TensorRT, then CUDA, then the
CPU provider, as far as this onnxruntime build has them; "cpu" takes only the CPU provider;
"cuda" needs the CUDA provider and refuses to run without it.

Nothing here may import torch: this is how a Jetson or a small server without PyTorch runs
(`tests/runtime/test_notorch.py` runs it with torch blocked).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np

from earthx_sdk.runtime.sessions import Engine, ImageFeatures, ModelSpec

REQUIRED = ("llm", "llm_embed")  # besides earthx_sdk.bundle.RUNTIME_COMPONENTS
_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_TRT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "earthx", "ort_trt")


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("the onnxruntime backend needs onnxruntime (pip install "
                          "'earthx-sdk[cpu]', or [gpu] for CUDA), not installed") from e
    return ort


def resolve_providers(device: str = "auto") -> list:
    """The execution providers for a device ("auto", "cpu", "cuda"), fastest first.

    Raises:
        ValueError: an unknown device.
        RuntimeError: device="cuda" without the CUDA provider in this onnxruntime build.
    """
    available = _ort().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto") or device.startswith("cuda:"):
        chosen = [p for p in _PROVIDER_ORDER if p in available]
        if device != "auto" and "CUDAExecutionProvider" not in chosen:
            raise RuntimeError(f"device={device!r}: this onnxruntime has no "
                               f"CUDAExecutionProvider (it has {available}); install "
                               f"onnxruntime-gpu, or use device='cpu'")
        out: list = []
        for p in chosen:
            if p == "TensorrtExecutionProvider":
                out.append((p, {"trt_engine_cache_enable": True,
                                "trt_engine_cache_path": _TRT_CACHE}))
            else:
                out.append(p)
        return out
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


class _Graphs:
    """ONNX sessions of a bundle, opened on first use (one lock; each opened once)."""

    def __init__(self, bundle: Path, manifest, providers: list, threads: int | None) -> None:
        self.bundle, self.manifest, self.providers, self.threads = bundle, manifest, providers, \
            threads
        self._sessions: dict = {}
        self._lock = threading.Lock()

    def session(self, name: str):
        with self._lock:
            sess = self._sessions.get(name)
            if sess is None:
                from earthx_sdk.runtime.ort_llm import no_spin

                ort = _ort()
                opts = no_spin(ort.SessionOptions())
                if self.threads:
                    opts.intra_op_num_threads = int(self.threads)
                comp = self.manifest.components[name]
                sess = ort.InferenceSession(str(self.bundle / comp.file), sess_options=opts,
                                            providers=self.providers)
                self._sessions[name] = sess
            return sess

    def backend(self, name: str | None = None) -> str:
        if name is not None and name in self._sessions:
            return f"onnxruntime:{self._sessions[name].get_providers()[0]}"
        first = self.providers[0]
        return f"onnxruntime:{first[0] if isinstance(first, tuple) else first}"

    def precision(self, name: str) -> str:
        return self.manifest.components[name].precision


class OrtVision:
    def __init__(self, graphs: _Graphs, spec: ModelSpec) -> None:
        self.graphs, self.spec = graphs, spec
        self.backend = graphs.backend()

    def precision(self, sensor: str, channels: int) -> str:
        return self.graphs.precision(f"vision_{sensor}_{channels}")

    def run(self, pixels: np.ndarray, sensor: str) -> ImageFeatures:
        c = pixels.shape[0]
        name = f"vision_{sensor}_{c}"
        if name not in self.graphs.manifest.components:
            have = sorted(k for k in self.graphs.manifest.components if k.startswith("vision_"))
            raise ValueError(f"bundle {self.graphs.bundle}: no vision graph for sensor {sensor!r} "
                             f"with {c} band(s) ({name}); the bundle has {have}")
        out = self.graphs.session(name).run(
            None, {"pixels": np.ascontiguousarray(pixels, np.float32)[None]})
        tokens, image_tokens, dense, s4, s8, *stem = out
        native = {"image_tokens": image_tokens, "dense": dense, "feature_s4": s4,
                  "feature_s8": s8}
        if stem:  # a model whose mask decoder refines at S/2 (MaskDecoderConfig.refine)
            native["stem"] = stem[0]
        return ImageFeatures(tokens[0], native)


class OrtFusion:
    """region_pool in the native core, on the vision graph's numpy maps."""

    def __init__(self, spec: ModelSpec) -> None:
        from earthx_sdk import _ext

        if not _ext.native_available():
            raise RuntimeError(f"the onnxruntime backend runs region_pool in the native core "
                               f"earthx_sdk._C, which is not available ({_ext.NATIVE_ERROR}); "
                               f"reinstall the package so that it builds")
        self._C = _ext.native()
        self.spec = spec
        self.backend = "native:_C"
        self.precision = "fp32"

    def run(self, feats: ImageFeatures, boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
        n = feats.native
        maps = [n["feature_s4"], n["feature_s8"], n["dense"]]  # each [1, C_s, H_s, W_s]
        s = self.spec.image_size
        out = self._C.region_pool(maps, np.ascontiguousarray(boxes, np.float32)[None],
                                  np.ascontiguousarray(masks, np.float32)[None],
                                  self.spec.pool_grid, s, s)
        return out[0]  # [R, sum C_s]


class OrtPrompt:
    def __init__(self, graphs: _Graphs) -> None:
        self.graphs = graphs
        self.backend = graphs.backend()
        self.precision = graphs.precision("prompt_encoder")

    def run(self, feats: ImageFeatures, pooled: np.ndarray, boxes: np.ndarray,
            types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        region, states = self.graphs.session("prompt_encoder").run(None, {
            "pooled": np.ascontiguousarray(pooled, np.float32)[None],
            "boxes": np.ascontiguousarray(boxes, np.float32)[None],
            "types": np.ascontiguousarray(types, np.int64)[None],
            "image_tokens": feats.native["image_tokens"]})
        return region[0], states[0]  # [R, n, hidden], [R, D]


class OrtMask:
    def __init__(self, graphs: _Graphs, state_dim: int, reads_embeddings: bool = False) -> None:
        self.graphs, self.state_dim = graphs, state_dim
        self.reads_embeddings = reads_embeddings  # text_hidden is [T, 2 x hidden]
        self.backend = graphs.backend()
        self.precision = graphs.precision("mask_decoder")

    @property
    def reads_text(self) -> bool:
        sess = self.graphs.session("mask_decoder")
        return any(i.name == "text_hidden" for i in sess.get_inputs())

    @property
    def _reads_stem(self) -> bool:
        """The decoder refines its masks at S/2 from the vision stem's image (cfg.refine)."""
        return any(i.name == "stem" for i in self.graphs.session("mask_decoder").get_inputs())

    @property
    def _prompt_masks_side(self) -> int | None:
        """M of the decoder's prompt_masks input [1, R, M, M] (cfg.prompt_map), or None for a
        decoder without it."""
        for i in self.graphs.session("mask_decoder").get_inputs():
            if i.name == "prompt_masks":
                return int(i.shape[-1])
        return None

    def run(self, feats: ImageFeatures, seg_hidden: np.ndarray, states,
            text_hidden: np.ndarray | None = None,
            prompt_masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = feats.native
        if states is None:
            states = np.zeros((0, self.state_dim), np.float32)
        feed = {"seg_hidden": np.ascontiguousarray(seg_hidden, np.float32)[None],
                "dense": n["dense"], "hires_s4": n["feature_s4"], "hires_s8": n["feature_s8"],
                "prompt_states": np.ascontiguousarray(states, np.float32)[None]}
        if self.reads_text:
            if text_hidden is None:
                raise ValueError("this bundle's mask decoder reads the prompt's text-token "
                                 "states: text_hidden [T, hidden] ([T, 2 x hidden] with their "
                                 "embeddings) is required")
            feed["text_hidden"] = np.ascontiguousarray(text_hidden, np.float32)[None]
        side = self._prompt_masks_side
        if side is not None:
            r = feed["prompt_states"].shape[1]
            if prompt_masks is None:
                if r:
                    raise ValueError("this bundle's mask decoder reads the prompts' region masks: "
                                     f"prompt_masks [R, {side}, {side}] is required with {r} "
                                     "prompt states")
                prompt_masks = np.zeros((0, side, side), np.float32)
            if np.shape(prompt_masks) != (r, side, side):
                raise ValueError(f"prompt_masks must be [R, M, M] = [{r}, {side}, {side}] (one "
                                 f"mask per prompt state), got {list(np.shape(prompt_masks))}")
            feed["prompt_masks"] = np.ascontiguousarray(prompt_masks, np.float32)[None]
        if self._reads_stem:
            if "stem" not in n:
                raise ValueError(f"bundle {self.graphs.bundle}: the mask decoder reads the vision "
                                 "graph's stem image (MaskDecoderConfig.refine), but the vision "
                                 "graph gave none; re-export the bundle")
            feed["stem"] = n["stem"]
        logits, iou = self.graphs.session("mask_decoder").run(None, feed)
        return logits[0], iou[0]  # [Q, G, G] (G = S/4, or S/2 with refine), [Q]


def read_bundle(bundle: str | Path):
    """The verified manifest of a bundle directory (`earthx_sdk.bundle.load_bundle` refuses a
    missing, damaged or incomplete bundle, naming the part)."""
    from earthx_sdk.bundle import load_bundle

    return load_bundle(bundle)


def _sensor_specs(manifest) -> dict:
    from earthx_sdk.io.sensors import SENSORS

    specs = {}
    for name, entry in manifest.sensors.items():
        if name not in SENSORS:
            raise ValueError(f"bundle: sensor {name!r} is unknown to this runtime (it knows "
                             f"{sorted(SENSORS)})")
        base = SENSORS[name]
        if entry.get("kind", base.kind) != base.kind:
            raise ValueError(f"bundle: sensor {name!r} has kind {entry['kind']!r}, this runtime "
                             f"normalizes it as {base.kind!r}")
        specs[name] = dataclasses.replace(base, mean=tuple(entry.get("mean", base.mean)),
                                          std=tuple(entry.get("std", base.std)))
    return specs


def ort_components(bundle: str | Path, device: str = "auto", threads: int | None = None):
    """The vision, fusion, prompt-encoder and mask-decoder sessions of a bundle (no LLM).

    Returns:
        (manifest, spec, tokenizer, vision, fusion, prompt, mask).

    Raises:
        earthx_sdk.bundle.BundleError (a ValueError; BundleFileMissing is also a
            FileNotFoundError): a missing, damaged or incomplete bundle (the part named).
    """
    from earthx_sdk.tokenizer import EarthXTokenizer

    bundle = Path(bundle)
    manifest = read_bundle(bundle)
    comps = manifest.components
    channels: dict[str, list[int]] = {}
    for name in comps:
        if name.startswith("vision_"):
            sensor, _, c = name.removeprefix("vision_").rpartition("_")
            channels.setdefault(sensor, []).append(int(c))
    spec = ModelSpec.from_config(manifest.model_config, channels, _sensor_specs(manifest))
    providers = resolve_providers(device)
    graphs = _Graphs(bundle, manifest, providers, threads)
    tokenizer = EarthXTokenizer.from_file(bundle / manifest.tokenizer_file)
    state_dim = int(manifest.model_config["prompt"]["dim"])
    return (manifest, spec, tokenizer, OrtVision(graphs, spec), OrtFusion(spec), OrtPrompt(graphs),
            OrtMask(graphs, state_dim,
                    bool(manifest.model_config["mask"].get("text_embeddings", False))))


def load_onnxruntime(bundle: str | Path, device: str = "auto",
                     threads: int | None = None) -> Engine:
    """The onnxruntime backend over a bundle.

    Raises:
        ValueError: a component the backend needs is missing (named), see `ort_components`.
        ImportError: onnxruntime is not installed.
    """
    manifest, spec, tok, vision, fusion, prompt, mask = ort_components(bundle, device, threads)
    missing = [n for n in REQUIRED if n not in manifest.components]
    if missing:
        from earthx_sdk.bundle import BundleError

        raise BundleError(f"bundle {bundle}: missing component(s) {missing} (it has "
                          f"{sorted(manifest.components)}); the onnxruntime backend needs the "
                          f"LLM graph to answer: re-export the bundle with python -m export")
    from earthx_sdk.runtime.ort_llm import OrtLLM

    # OrtLLM binds its KV cache in CPU memory: the decoder runs on the CPU provider
    llm = OrtLLM.from_bundle(bundle, manifest, providers=["CPUExecutionProvider"],
                             threads=threads)
    llm.backend = "onnxruntime:CPUExecutionProvider"
    llm.precision = manifest.components["llm"].precision
    return Engine(spec, tok, vision, fusion, prompt, llm, mask, str(bundle), "onnxruntime")
