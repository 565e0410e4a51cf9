"""Which ONNX operators TensorRT 10 parses, and a static check of an exported graph against them.

Source of the list: the operator support matrix of onnx-tensorrt, `docs/operators.md` at the
TensorRT 10.15 GA release ("TensorRT 10.15 supports operators in the inclusive range of opset 9
to opset 24"), https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md — every operator
marked "Y" there. Operators that the onnx-tensorrt CHANGELOG.md says were added after TensorRT
10.0 carry the version that added them (`ADDED_IN`), so a check for an older TensorRT 10 (Jetson's
JetPack 6 ships 10.3) reports them; TensorRT 10.0 reads opsets 9 to 20. Restrictions of that
table that our exporter can run into are checked too (`RESTRICTIONS`): Resize's modes and
LayerNormalization's single output.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

SOURCE = ("onnx/onnx-tensorrt docs/operators.md (TensorRT 10.15 GA), "
          "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md")

SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If
ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
"""ONNX operators (default domain) the TensorRT 10.15 ONNX parser supports."""

ADDED_IN = {
    "DeformConv": (10, 1), "BlackmanWindow": (10, 4), "HammingWindow": (10, 4),
    "HannWindow": (10, 4), "STFT": (10, 5), "Attention": (10, 14), "RotaryEmbedding": (10, 15),
    "RMSNormalization": (10, 15), "TensorScatter": (10, 15),
}
"""Operators added to the parser after TensorRT 10.0 (onnx-tensorrt CHANGELOG.md)."""

MAX_OPSET = {(10, 0): 20, (10, 15): 24}
"""Highest default-domain opset a TensorRT version reads (the header of operators.md)."""

RESIZE_MODES = ("nearest", "linear")
RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                      "align_corners")


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in text.split(".")[:2])
    except ValueError as e:
        raise ValueError(f"tensorrt version must be 'MAJOR.MINOR' (e.g. '10.3'), got "
                         f"{text!r}") from e
    if major != 10:
        raise ValueError(f"tensorrt version: this list describes TensorRT 10, got {text!r}")
    return major, minor


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _restriction(node) -> str | None:
    """The restriction of operators.md a node breaks, or None."""
    if node.op_type == "Resize":
        mode = _attr(node, "mode", "nearest")
        coords = _attr(node, "coordinate_transformation_mode", "half_pixel")
        if mode not in RESIZE_MODES:
            return f"Resize mode {mode!r} (TensorRT: {list(RESIZE_MODES)})"
        if coords not in RESIZE_COORDINATES:
            return f"Resize coordinate_transformation_mode {coords!r}"
        if _attr(node, "antialias", 0):
            return "Resize antialias=1"
    if node.op_type == "LayerNormalization" and sum(1 for o in node.output if o) > 1:
        return "LayerNormalization with Mean/InvStdDev outputs (TensorRT: only Y)"
    return None


def _walk(graph, functions: dict, version: tuple[int, int], out: Counter) -> None:
    """Counts the nodes of `graph` (and of its functions and subgraphs) TensorRT cannot parse."""
    import onnx

    for node in graph.node:
        key = (node.domain, node.op_type)
        if key in functions:  # a model-local function: TensorRT inlines it, check its body
            _walk(functions[key], functions, version, out)
            continue
        added = ADDED_IN.get(node.op_type, (10, 0))
        if node.domain not in ("", "ai.onnx"):
            out[f"{node.domain}::{node.op_type}"] += 1
        elif node.op_type not in SUPPORTED:
            out[node.op_type] += 1
        elif added > version:
            out[f"{node.op_type} (TensorRT >= {added[0]}.{added[1]})"] += 1
        elif (why := _restriction(node)) is not None:
            out[why] += 1
        for a in node.attribute:  # If / Loop / Scan bodies
            if a.type == onnx.AttributeProto.GRAPH:
                _walk(a.g, functions, version, out)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _walk(g, functions, version, out)


def check_trt_ops(onnx_path: str | Path, tensorrt: str = "10.0") -> list[tuple[str, int]]:
    """The operators of a graph that TensorRT `tensorrt` (10.x) cannot parse.

    Args:
        onnx_path: the ONNX file (external data is not loaded: only the graph is read).
        tensorrt: the oldest TensorRT 10 version the graph must build with ("10.0": any).

    Returns:
        [(operator, count)] sorted by operator: operators missing from `SUPPORTED` (or added
        after `tensorrt`, e.g. "Attention (TensorRT >= 10.14)"), operators of other domains
        ("com.microsoft::MatMulNBits"), broken restrictions ("Resize mode 'cubic' ..."), and
        "opset N ..." when the graph's opset is newer than that TensorRT reads. Empty when the
        graph passes.

    Raises:
        ImportError: onnx missing.
        ValueError: a version that is not TensorRT 10.
    """
    import onnx

    version = _version(tensorrt)
    model = onnx.load(str(onnx_path), load_external_data=False)
    functions = {(f.domain, f.name): f for f in model.functions}
    found: Counter = Counter()
    _walk(model.graph, functions, version, found)
    max_opset = max(v for k, v in MAX_OPSET.items() if k <= version)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > max_opset:
            found[f"opset {imp.version} (TensorRT {tensorrt} reads up to {max_opset})"] += 1
    return sorted(found.items())
