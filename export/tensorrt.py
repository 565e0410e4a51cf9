"""TensorRT engines from a bundle's ONNX graphs (TensorRT 10 Python API).

`build_engines(bundle)` builds one engine per vision graph, the prompt encoder and the mask
decoder (the LLM stays on onnxruntime: its GroupQueryAttention/MatMulNBits are onnxruntime
operators, see `export.trt_ops`) into the bundle's engine cache (`earthx_sdk.runtime.
engine_cache`: keyed by GPU, compute capability, TensorRT version, ONNX sha256 and precision):

- fp16: `BuilderFlag.FP16` with every layer that comes from an `FP32_OPS` node (LayerNorm,
  softmax, normalization reductions; the ONNX fp16 pass keeps the same ones) pinned to fp32
  (`ILayer.precision`, `set_output_type`) under `BuilderFlag.OBEY_PRECISION_CONSTRAINTS`;
- int8: the same, plus `BuilderFlag.INT8` with an `IInt8EntropyCalibrator2` fed by sample images
  (synthetic scenes of `training.synthetic`, preprocessed as the runtime does) for the vision
  graphs (implicit calibration is deprecated since TensorRT 10.1 but still built); the graphs
  fed by features rather than images are built fp16;
- one optimization profile per graph from the manifest's named dynamic dims (`DIMS`);
- a timing cache file shared by the builds (`create_timing_cache` / `set_timing_cache`).

TensorRT cannot be installed where this project is built and tested: `require_tensorrt` raises
ImportError saying so, and everything that does not need TensorRT itself (profiles, the choice
of fp32 layers, calibration samples, the cache keys) is tested without it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from export.onnx_export import FP32_OPS, MAX_PROMPTS, MAX_QUERIES, MAX_TEXT_TOKENS

PRECISIONS = ("fp32", "fp16", "int8")
TIMING_CACHE = "timing.cache"
ENGINES_DIR = "engines"

DIMS: dict[str, tuple[int, int, int] | Callable[[dict, object], tuple[int, int, int]]] = {
    "R": (1, 4, MAX_PROMPTS),  # visual prompts of one image
    "Q": (1, 1, MAX_QUERIES),  # <seg> queries of one answer
    # text tokens of one prompt the mask decoder reads (bounded by the LLM's context)
    "T": lambda mc, c: (1, 32, min(MAX_TEXT_TOKENS, mc["llm"]["max_positions"])),
    # The LLM graph of onnxruntime-genai's builder (not built by TensorRT here, but covered).
    "batch_size": (1, 1, 1),
    "sequence_length": lambda mc, c: (1, 64, mc["llm"]["max_positions"]),
    "past_sequence_length": lambda mc, c: (0, 256, mc["llm"]["max_positions"]),
    "total_sequence_length": lambda mc, c: (1, 320, mc["llm"]["max_positions"]),
    "kv_cache_dim": lambda mc, c: (c.extra["head_dim"],) * 3,  # named, but always head_dim
}
"""(min, opt, max) of each named dynamic dim; a callable takes the manifest's model_config and
the component."""

OVERRIDES = {("mask_decoder", "R"): (0, 4, MAX_PROMPTS)}
"""Per-component ranges: the runtime runs the mask decoder with no prompts (R = 0)."""

TRT_COMPONENTS = ("vision_*", "prompt_encoder", "mask_decoder")
"""The components built as engines (fnmatch patterns); the LLM stays on onnxruntime."""


def require_tensorrt():
    """The `tensorrt` module (TensorRT 10).

    Raises:
        ImportError: TensorRT is not installed, or is not version 10.
    """
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ImportError("TensorRT is not installed: the `tensorrt` Python package (TensorRT 10, "
                          "from NVIDIA's index or a JetPack/TensorRT container) is needed to "
                          "build engines, so this machine cannot build engines; the ONNX bundle "
                          "runs on onnxruntime without them") from e
    if not str(trt.__version__).startswith("10."):
        raise ImportError(f"TensorRT 10 is needed to build engines, found {trt.__version__}")
    return trt


# --- shape profiles ------------------------------------------------------------------------------

def dim_range(name: str, dim: str, model_config: dict, component=None) -> tuple[int, int, int]:
    """(min, opt, max) of a named dynamic dim of a component.

    Raises:
        ValueError: a dim name `DIMS` does not know (or an unnamed "?" dim), or one whose range
            needs metadata the component does not carry.
    """
    r = OVERRIDES.get((name, dim), DIMS.get(dim))
    if r is None:
        raise ValueError(f"{name}: dynamic dim {dim!r} has no TensorRT profile range; "
                         f"known dims: {sorted(DIMS)} (add it to export.tensorrt.DIMS)")
    if not callable(r):
        return r
    try:
        return tuple(int(v) for v in r(model_config, component))
    except (KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{name}: the range of dim {dim!r} needs {e} from the manifest's "
                         f"model_config or the component's extra") from e


def profile_shapes(name: str, component, model_config: dict) -> dict[str, tuple[tuple, ...]]:
    """The optimization profile of a component: {input: (min shape, opt shape, max shape)} for
    every input with a named dynamic dim (inputs of fixed shape need no profile).

    Args:
        name: the component's manifest name ("mask_decoder").
        component: its `earthx_sdk.bundle.Component` (the dims are read from its inputs).
        model_config: the manifest's model_config.

    Raises:
        ValueError: a dim without a range.
    """
    out = {}
    for spec in component.inputs:
        if all(isinstance(d, int) for d in spec.shape):
            continue
        lo, opt, hi = [], [], []
        for d in spec.shape:
            a, b, c = ((d, d, d) if isinstance(d, int)
                       else dim_range(name, d, model_config, component))
            lo.append(a)
            opt.append(b)
            hi.append(c)
        out[spec.name] = (tuple(lo), tuple(opt), tuple(hi))
    return out


# --- precision pinning ---------------------------------------------------------------------------

_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def onnx_nodes_of(metadata: str) -> list[str]:
    """The ONNX node names a TensorRT layer came from: the ONNX parser writes
    "[ONNX Layer: <node>]" into `ILayer.metadata` (fused layers list several, \\x1f-separated)."""
    return _ONNX_LAYER.findall(metadata or "")


def fp32_nodes(onnx_path: str | Path) -> set[str]:
    """Names of the graph's nodes whose operator is in `FP32_OPS`."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {n.name for n in model.graph.node if n.op_type in FP32_OPS and n.name}


def keep_fp32(metadata: str, layer_name: str, pinned: set[str]) -> bool:
    """Whether a TensorRT layer comes from one of the `pinned` ONNX nodes (by its metadata, or
    by its name, which the parser derives from the node name, when no metadata is set)."""
    nodes = onnx_nodes_of(metadata)
    if nodes:
        return any(n in pinned for n in nodes)
    return layer_name in pinned


def pin_fp32(network, trt, pinned: set[str]) -> int:
    """Sets precision and float output types of the layers from `pinned` nodes to fp32.

    Returns:
        the number of layers pinned.
    """
    floats = (trt.float32, trt.float16)
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not keep_fp32(getattr(layer, "metadata", ""), layer.name, pinned):
            continue
        outs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
        if not outs:  # shape arithmetic (int64) keeps its type
            continue
        layer.precision = trt.float32
        for j in outs:
            layer.set_output_type(j, trt.float32)
        count += 1
    return count


# --- int8 calibration ----------------------------------------------------------------------------

def calibration_samples(sensor: str, channels: int, size: int, count: int = 16,
                        seed: int = 10_000) -> list[np.ndarray]:
    """Sample model inputs for int8 calibration: synthetic scenes (`training.synthetic`) of a
    sensor, preprocessed as the runtime preprocesses images (`earthx_sdk.ops.preprocess`).

    Returns:
        `count` float32 arrays [1, channels, size, size].

    Raises:
        ValueError: the synthetic sensor does not have `channels` bands (pass other samples).
    """
    from earthx_sdk.ops.preprocess import preprocess
    from training.synthetic import render_scene

    out = []
    for i in range(count):
        image = render_scene(seed + i, (224, 224), split="calibration")[sensor].image
        image = image[..., None] if image.ndim == 2 else image
        if image.shape[-1] != channels:
            raise ValueError(f"calibration_samples: synthetic {sensor} images have "
                             f"{image.shape[-1]} band(s), the graph takes {channels}; give "
                             f"calibration images of {channels} bands")
        pixels, _ = preprocess(image, sensor, size)
        out.append(np.ascontiguousarray(pixels[None], np.float32))
    return out


def entropy_calibrator(trt, samples: list[np.ndarray], input_name: str, cache_file: Path):
    """An `IInt8EntropyCalibrator2` that feeds `samples` (batch 1) to `input_name` from one
    CUDA buffer, and keeps its calibration table in `cache_file`."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.next = 0
            self.buffer = torch.empty(samples[0].shape, dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if list(names) != [input_name]:
                raise ValueError(f"calibrator: inputs {list(names)}, expected [{input_name!r}]")
            if self.next >= len(samples):
                return None
            self.buffer.copy_(torch.from_numpy(samples[self.next]))
            self.next += 1
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            tmp = cache_file.with_name(cache_file.name + ".tmp")
            tmp.write_bytes(bytes(cache))
            tmp.replace(cache_file)

    return EntropyCalibrator()


# --- building ------------------------------------------------------------------------------------

def build_engine(onnx_path: str | Path, name: str, component, model_config: dict,
                 precision: str, timing_cache: Path, calibrator=None,
                 workspace_gib: float = 4.0) -> bytes:
    """Builds one serialized engine.

    Raises:
        ImportError: TensorRT missing.
        ValueError: unknown precision, int8 without a calibrator, a dim without a range.
        RuntimeError: the parser or the builder failed (their errors listed).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator is None:
        raise ValueError(f"{name}: int8 needs a calibrator")
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{name}: TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    profile = builder.create_optimization_profile()
    for input_name, (lo, opt, hi) in profile_shapes(name, component, model_config).items():
        profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = pin_fp32(network, trt, fp32_nodes(onnx_path))
        print(f"{name}: {pinned} layers pinned to fp32", file=sys.stderr)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file()
                                       else b"")
    config.set_timing_cache(cache, False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"{name}: TensorRT could not build a {precision} engine from "
                           f"{onnx_path} (see the TensorRT log above)")
    tmp = timing_cache.with_name(timing_cache.name + ".tmp")
    tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    tmp.replace(timing_cache)
    return bytes(engine)


def build_engines(bundle_dir: str | Path, precision: str = "fp16",
                  cache_dir: str | Path | None = None, calibration_count: int = 16,
                  tensorrt_min: str = "10.0") -> dict[str, Path]:
    """Builds (or finds in the cache) the engines of a bundle's vision graphs, prompt encoder and
    mask decoder for this GPU.

    Args:
        bundle_dir: a bundle (verified with `load_bundle` first).
        precision: "fp16", "int8" (vision graphs calibrated on sample images; the others fp16)
            or "fp32".
        cache_dir: the engine cache (default `<bundle>/engines`), also home of the timing cache
            and the int8 calibration tables.
        calibration_count: sample images for int8.
        tensorrt_min: the TensorRT 10 version the graphs' operators are checked against.

    Returns:
        {component: engine file}.

    Raises:
        ImportError: TensorRT missing (raised before any work).
        ValueError: a graph uses operators TensorRT does not support (all listed).
        BundleError: the bundle fails verification.
    """
    from earthx_sdk.bundle import load_bundle
    from earthx_sdk.runtime.engine_cache import EngineCache, current_key
    from export.trt_ops import check_trt_ops

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    trt = require_tensorrt()
    bundle_dir = Path(bundle_dir)
    manifest = load_bundle(bundle_dir)
    cache = EngineCache(cache_dir if cache_dir is not None else bundle_dir / ENGINES_DIR)
    cache.root.mkdir(parents=True, exist_ok=True)
    names = [n for n in sorted(manifest.components)
             if any(fnmatchcase(n, pattern) for pattern in TRT_COMPONENTS)]
    bad = {n: check_trt_ops(bundle_dir / manifest.components[n].file, tensorrt_min)
           for n in names}
    bad = {n: ops for n, ops in bad.items() if ops}
    if bad:
        raise ValueError("operators TensorRT does not support: " + "; ".join(
            f"{n}: {ops}" for n, ops in bad.items()))
    engines = {}
    for n in names:
        comp = manifest.components[n]
        prec = precision if precision != "int8" or n.startswith("vision_") else "fp16"
        key = current_key(comp.sha256, prec)

        def build(n=n, comp=comp, prec=prec) -> bytes:
            calibrator = None
            if prec == "int8":
                _, sensor, channels = n.split("_")
                size = manifest.model_config["vision"]["image_size"]
                samples = calibration_samples(sensor, int(channels), size, calibration_count)
                calibrator = entropy_calibrator(trt, samples, comp.inputs[0].name,
                                                cache.root / f"{n}.{comp.sha256[:16]}.calib")
            return build_engine(bundle_dir / comp.file, n, comp, manifest.model_config, prec,
                                cache.root / TIMING_CACHE, calibrator)

        engines[n] = cache.get_or_build(n, key, build)
    return engines
