"""ONNX export of the vision, prompt-encoder and mask-decoder components (torch.onnx, dynamo).

`onnx` and `onnxscript` are needed by the dynamo exporter (the `export` extra of pyproject.toml);
without them `require_onnx` raises naming them.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from export.wrappers import (
    MASK_INPUTS,
    MASK_OUTPUTS,
    MASK_PROMPT_INPUT,
    MASK_STEM_INPUT,
    MASK_TEXT_INPUT,
    PROMPT_INPUTS,
    PROMPT_OUTPUTS,
    VISION_OUTPUTS,
    VISION_STEM_OUTPUT,
    MaskDecoderOnnx,
    PromptEncoderOnnx,
    VisionOnnx,
)

OPSET = 18
MAX_PROMPTS = 256  # upper bound of the dynamic R the export declares
MAX_QUERIES = 64  # upper bound of the dynamic Q
MAX_TEXT_TOKENS = 2048  # upper bound of the dynamic T: prompt text tokens the mask decoder reads
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Div",
            "Erf", "Range", "Sin", "Cos", "Resize")
"""ONNX operators kept in fp32 by every fp16 path (`to_fp16`, the TensorRT fp16/int8 engines):
LayerNorm, softmax and normalization reductions, and the ops around them that need fp32 range."""


def require_onnx() -> None:
    """Raises ImportError naming the missing packages the dynamo exporter needs."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)} (pip install 'onnx>=1.17' "
                          f"'onnxscript>=0.2', the `export` extra), not installed")


@dataclass(frozen=True)
class Exported:
    """One exported component: wrapper, example inputs (a dict by input name), output names."""

    name: str
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]


def component_specs(model, sensor: str, channels: int, prompts: int = 3,
                    queries: int = 2, seed: int = 0) -> list[Exported]:
    """The three components of `model` (an EarthXModel) for one sensor, with example inputs.

    Args:
        model: the reference model (put in eval mode).
        sensor, channels: which vision stem the vision graph carries.
        prompts, queries: R and Q of the example inputs.
        seed: seed of the example inputs.

    Returns:
        [vision, prompt_encoder, mask_decoder] specs.
    """
    model.eval()
    g = torch.Generator().manual_seed(seed)
    size = model.cfg.vision.image_size
    refine = model.mask_decoder.refine
    vision = VisionOnnx(model.vision, sensor, channels, stem=refine)
    pixels = torch.randn(1, channels, size, size, generator=g)
    with torch.no_grad():
        tokens, image_tokens, dense, s4, s8, *stem = vision(pixels)
    pe = model.prompt_encoder
    pooled = torch.randn(1, prompts, sum(pe.feature_dims), generator=g)
    boxes = torch.sort(torch.rand(1, prompts, 4, generator=g) * size, dim=-1).values
    types = torch.randint(0, 5, (1, prompts), generator=g)
    hidden = model.mask_decoder.llm_hidden
    seg = torch.randn(1, queries, hidden, generator=g)
    states = torch.randn(1, prompts, pe.cfg.dim, generator=g)
    mask_inputs = dict(zip(MASK_INPUTS, (seg, dense, s4, s8, states), strict=True))
    mask_dynamic = {"seg_hidden": {1: "Q"}, "prompt_states": {1: "R"}}
    if model.mask_decoder.text_tokens:
        width = model.mask_decoder.text_width  # hidden, or 2 x hidden with the embeddings
        mask_inputs[MASK_TEXT_INPUT] = torch.randn(1, 12, width, generator=g)
        mask_dynamic[MASK_TEXT_INPUT] = {1: "T"}
    if model.mask_decoder.prompt_map:
        m = pe.cfg.mask_resolution
        mask_inputs[MASK_PROMPT_INPUT] = (torch.rand(1, prompts, m, m, generator=g) > 0.7).float()
        mask_dynamic[MASK_PROMPT_INPUT] = {1: "R"}
    if refine:
        mask_inputs[MASK_STEM_INPUT] = stem[0]
    vision_outputs = VISION_OUTPUTS + ((VISION_STEM_OUTPUT,) if refine else ())
    return [
        Exported(f"vision_{sensor}_{channels}", vision, {"pixels": pixels}, vision_outputs, {}),
        Exported("prompt_encoder", PromptEncoderOnnx(pe),
                 dict(zip(PROMPT_INPUTS, (pooled, boxes, types, image_tokens), strict=True)),
                 PROMPT_OUTPUTS, {"pooled": {1: "R"}, "boxes": {1: "R"}, "types": {1: "R"}}),
        Exported("mask_decoder", MaskDecoderOnnx(model.mask_decoder), mask_inputs,
                 MASK_OUTPUTS, mask_dynamic),
    ]


def export_onnx(spec: Exported, path: str | Path) -> Path:
    """Exports one component to `path` (written to a temporary name, then renamed).

    Raises:
        ImportError: onnx/onnxscript missing.
        RuntimeError: the exporter failed (the message names the component).
    """
    require_onnx()
    path = Path(path)
    # The exporter writes graphs over 1.5 GB of weights with external data named after its
    # destination ("<file>.data"): export under the final name inside a temporary directory,
    # so the data file is named after the final graph, then move data file and graph into place.
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmpdir / path.name
    dims = {"R": torch.export.Dim("R", min=1, max=MAX_PROMPTS),
            "Q": torch.export.Dim("Q", min=1, max=MAX_QUERIES),
            "T": torch.export.Dim("T", min=1, max=MAX_TEXT_TOKENS)}
    dynamic = {k: ({a: dims[n] for a, n in spec.dynamic[k].items()} if k in spec.dynamic else None)
               for k in spec.inputs}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # by keyword: the mask decoder's optional inputs (text, prompt masks, stem) may come
            # without the ones before them
            torch.onnx.export(spec.module.eval(), (), str(tmp), kwargs=dict(spec.inputs),
                              dynamo=True, opset_version=OPSET, input_names=list(spec.inputs),
                              output_names=list(spec.outputs),
                              dynamic_shapes=dynamic if spec.dynamic else None,
                              external_data=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the component's name
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise RuntimeError(f"ONNX export of {spec.name} failed: {type(e).__name__}: {e}") from e
    data = tmp.with_name(tmp.name + ".data")
    if data.exists():
        data.replace(external_data_file(path))
    else:  # a data file left by an earlier, larger export of the same name is not this graph's
        external_data_file(path).unlink(missing_ok=True)
    tmp.replace(path)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def external_data_file(path: str | Path) -> Path:
    """Where `export_onnx` puts the weights of a graph too large to hold them inline."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def to_fp16(src: str | Path, dst: str | Path) -> Path:
    """An fp16 copy of an fp32 graph with LayerNorm, softmax and normalization reductions (and
    the ops around them that need fp32 range) kept in fp32; inputs and outputs stay fp32.

    Raises:
        ImportError: onnx or onnxruntime.transformers missing.
    """
    require_onnx()
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS))
    _dedupe_nodes(half.graph)
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(half, str(tmp))
    tmp.replace(dst)
    return dst


def _dedupe_nodes(graph) -> None:
    """Drops repeated identical nodes (same name, inputs and outputs), keeping the first.

    The converter inserts one fp32 Cast of a shared initializer per blocked consumer, all with
    the same name and output: the graph is then invalid ("two nodes with same node name").
    """
    seen, keep = set(), []
    for node in graph.node:
        key = (node.name, tuple(node.input), tuple(node.output), node.op_type)
        if node.name and key in seen:
            continue
        seen.add(key)
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
