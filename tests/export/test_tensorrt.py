"""TensorRT: what is testable without it (operator support of our graphs, shape profiles, the
fp32-pinned layers, calibration samples, the engine cache and its refusals), and the engine
builds themselves (`trt` marker: skipped where TensorRT is not installed, i.e. everywhere here).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from earthx_sdk.bundle import Component, TensorSpec
from earthx_sdk.runtime.engine_cache import (
    EngineCache,
    EngineCacheError,
    EngineKey,
    gpu_identity,
    tensorrt_version,
)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed (it cannot be "
                                                    "installed on our build/test machines)")

onnx = pytest.importorskip("onnx", reason="the operator check reads graphs with onnx")


# --- operators -----------------------------------------------------------------------------------

def test_tiny_graphs_use_only_tensorrt10_operators(tiny_bundle, tmp_path):
    from export.onnx_export import to_fp16
    from export.trt_ops import check_trt_ops

    root, manifest = tiny_bundle
    names = [n for n in manifest.components if n != "llm_embed"]
    assert {"vision_optical_3", "prompt_encoder", "mask_decoder"} <= set(names)
    for name in names:
        if name == "llm":
            continue  # onnxruntime-only operators by design (see test below)
        path = root / manifest.components[name].file
        assert check_trt_ops(path) == [], name  # any TensorRT 10
        assert check_trt_ops(to_fp16(path, tmp_path / f"{name}.fp16.onnx")) == [], name


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """The fp32 llm component of a seeded tiny model (onnxruntime-genai's builder):
    (directory, Component, model_config)."""
    pytest.importorskip("onnxruntime_genai", reason="the LLM graph needs onnxruntime-genai "
                                                    "(the `export` extra)")
    import torch

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel
    from export.llm import export_llm

    torch.manual_seed(0)
    model = EarthXModel(EarthXConfig.from_name("tiny")).eval()
    out = tmp_path_factory.mktemp("tiny_llm")
    comps = export_llm(model.llm, model.tokenizer, out, "fp32").components
    return out, comps["llm"], model.cfg.to_dict()


@pytest.mark.slow
def test_llm_graph_is_reported_as_onnxruntime_only(tiny_llm):
    """The LLM stays on onnxruntime: its fused operators are onnxruntime's, not TensorRT's."""
    from export.trt_ops import check_trt_ops

    out, comp, _ = tiny_llm
    bad = dict(check_trt_ops(out / comp.file))
    assert bad.get("com.microsoft::GroupQueryAttention", 0) >= 1, bad


def _graph(nodes, opset=18, extra_opsets=()):
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = h.make_graph(nodes, "g", [x], [y])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset),
                                              *[h.make_opsetid(d, v) for d, v in extra_opsets]])


def test_unsupported_operators_are_listed(tmp_path):
    from export.trt_ops import check_trt_ops

    h = onnx.helper
    nodes = [h.make_node("Relu", ["x"], ["a"], name="ok"),
             h.make_node("Unique", ["a"], ["b"], name="u1"),
             h.make_node("Unique", ["b"], ["c"], name="u2"),
             h.make_node("MatMulNBits", ["c"], ["d"], domain="com.microsoft", name="q"),
             h.make_node("Resize", ["d", "", "s"], ["e"], mode="cubic", name="r"),
             h.make_node("LayerNormalization", ["e", "w"], ["y", "mean"], name="ln")]
    path = tmp_path / "bad.onnx"
    onnx.save(_graph(nodes, extra_opsets=[("com.microsoft", 1)]), str(path))
    assert check_trt_ops(path) == [
        ("LayerNormalization with Mean/InvStdDev outputs (TensorRT: only Y)", 1),
        ("Resize mode 'cubic' (TensorRT: ['nearest', 'linear'])", 1),
        ("Unique", 2),
        ("com.microsoft::MatMulNBits", 1),
    ]


def test_operators_added_after_10_0_and_opsets(tmp_path):
    from export.trt_ops import check_trt_ops

    h = onnx.helper
    path = tmp_path / "new.onnx"
    onnx.save(_graph([h.make_node("Attention", ["x", "x", "x"], ["y"], name="a")], opset=23),
              str(path))
    assert check_trt_ops(path, "10.0") == [("Attention (TensorRT >= 10.14)", 1),
                                           ("opset 23 (TensorRT 10.0 reads up to 20)", 1)]
    assert check_trt_ops(path, "10.15") == []
    with pytest.raises(ValueError, match="TensorRT 10"):
        check_trt_ops(path, "8.6")


def test_subgraphs_are_checked(tmp_path):
    from export.trt_ops import check_trt_ops

    h = onnx.helper
    out = h.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)
    body = h.make_graph([h.make_node("Unique", ["x"], ["z"])], "then", [], [out])
    node = h.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=body)
    path = tmp_path / "if.onnx"
    onnx.save(_graph([node]), str(path))
    assert check_trt_ops(path) == [("Unique", 2)]


# --- shape profiles ------------------------------------------------------------------------------

def test_profiles_cover_the_runtime_dims(tiny_bundle):
    from export.onnx_export import MAX_PROMPTS, MAX_QUERIES
    from export.tensorrt import profile_shapes

    _, manifest = tiny_bundle
    mc = manifest.model_config
    comps = manifest.components
    assert profile_shapes("vision_optical_3", comps["vision_optical_3"], mc) == {}  # all fixed
    pe = profile_shapes("prompt_encoder", comps["prompt_encoder"], mc)
    assert set(pe) == {"pooled", "boxes", "types"}  # every input with R; image_tokens is fixed
    for name, (lo, opt, hi) in pe.items():
        shape = next(s.shape for s in comps["prompt_encoder"].inputs if s.name == name)
        r = shape.index("R")
        assert (lo[r], hi[r]) == (1, MAX_PROMPTS) and lo[r] <= opt[r] <= hi[r]
        fixed = [i for i, d in enumerate(shape) if d != "R"]
        assert all(lo[i] == opt[i] == hi[i] == shape[i] for i in fixed)
    md = profile_shapes("mask_decoder", comps["mask_decoder"], mc)
    assert set(md) == {"seg_hidden", "prompt_states"}
    assert (md["seg_hidden"][0][1], md["seg_hidden"][2][1]) == (1, MAX_QUERIES)
    # The runtime runs the mask decoder without prompts: R = 0 must be in the profile.
    assert (md["prompt_states"][0][1], md["prompt_states"][2][1]) == (0, MAX_PROMPTS)


@pytest.mark.slow
def test_profiles_cover_the_llm_dims(tiny_llm):
    """Every dynamic dim of the real LLM graph gets the range the runtime uses."""
    from export.tensorrt import profile_shapes

    _, comp, mc = tiny_llm
    prof = profile_shapes("llm", comp, mc)
    most = mc["llm"]["max_positions"]
    dynamic = {s.name for s in comp.inputs if not all(isinstance(d, int) for d in s.shape)}
    assert dynamic and set(prof) == dynamic
    seen = set()
    for spec in comp.inputs:
        if spec.name not in prof:
            continue
        lo, opt, hi = prof[spec.name]
        for i, d in enumerate(spec.shape):
            seen.add(d)
            assert lo[i] <= opt[i] <= hi[i]
            if d == "batch_size":
                assert lo[i] == hi[i] == 1  # one sequence per session
            elif d in ("sequence_length", "total_sequence_length"):
                assert lo[i] == 1 and hi[i] == most  # decode (1) to a full-context prefill
            elif d == "past_sequence_length":
                assert lo[i] == 0 and hi[i] == most  # the empty cache of a prefill
            elif d == "kv_cache_dim":
                assert lo[i] == hi[i] == comp.extra["head_dim"]
            else:
                assert lo[i] == opt[i] == hi[i] == d
    assert {"batch_size", "sequence_length", "past_sequence_length"} <= seen


def test_unknown_dim_is_refused():
    from export.tensorrt import profile_shapes

    comp = Component("x.onnx", "onnx", "fp32", (TensorSpec("x", "float32", (1, "N")),), (),
                     "0" * 64)
    with pytest.raises(ValueError, match="x: dynamic dim 'N' has no TensorRT profile range"):
        profile_shapes("x", comp, {})


# --- fp32 pinning --------------------------------------------------------------------------------

def test_fp32_layers_are_the_normalization_nodes(tiny_bundle):
    from export.onnx_export import FP32_OPS
    from export.tensorrt import fp32_nodes, keep_fp32, onnx_nodes_of

    root, manifest = tiny_bundle
    path = root / manifest.components["mask_decoder"].file
    graph = onnx.load(str(path)).graph
    pinned = fp32_nodes(path)
    by_op = {}
    for n in graph.node:
        by_op.setdefault(n.op_type, set()).add(n.name)
    for op in ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt"):
        assert by_op[op] and by_op[op] <= pinned, op
    assert not (by_op["MatMul"] | by_op["Conv"]) & pinned
    assert pinned == {n.name for n in graph.node if n.op_type in FP32_OPS}
    ln, mm = sorted(by_op["LayerNormalization"])[0], sorted(by_op["MatMul"])[0]
    # The parser's metadata; a fused layer lists every node it came from.
    assert onnx_nodes_of(f"[ONNX Layer: {mm}]\x1f[ONNX Layer: {ln}]") == [mm, ln]
    assert keep_fp32(f"[ONNX Layer: {mm}]\x1f[ONNX Layer: {ln}]", "fused", pinned)
    assert not keep_fp32(f"[ONNX Layer: {mm}]", ln, pinned)  # metadata wins over the name
    assert keep_fp32("", ln, pinned) and not keep_fp32("", mm, pinned)


# --- calibration samples -------------------------------------------------------------------------

def test_calibration_samples_are_preprocessed_scenes():
    from export.tensorrt import calibration_samples

    a = calibration_samples("optical", 3, 112, count=3)
    b = calibration_samples("optical", 3, 112, count=3)
    assert [s.shape for s in a] == [(1, 3, 112, 112)] * 3 and a[0].dtype == np.float32
    assert all(np.isfinite(s).all() for s in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # seeded
    assert not np.array_equal(a[0], a[1])  # different scenes
    assert calibration_samples("sar", 1, 112, count=1)[0].shape == (1, 1, 112, 112)
    with pytest.raises(ValueError, match="synthetic multispectral images have 4 band"):
        calibration_samples("multispectral", 13, 112, count=1)


# --- the engine cache ----------------------------------------------------------------------------

KEY = EngineKey("NVIDIA H100 80GB HBM3", "9.0", "10.3.0", "a" * 64, "fp16")


def test_cache_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.lookup("vision_optical_3", KEY) is None
    path = cache.store("vision_optical_3", KEY, b"serialized engine")
    assert path.name == "vision_optical_3.fp16.engine"
    assert cache.lookup("vision_optical_3", KEY) == path
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side["key"] == KEY.to_dict()
    assert not list(tmp_path.glob("*.tmp"))
    # another precision is another file, not a conflict
    assert cache.lookup("vision_optical_3", EngineKey(*list(KEY.to_dict().values())[:4],
                                                      "int8")) is None


@pytest.mark.parametrize("field, other, words", [
    ("gpu_name", "Orin", "runs only on the GPU model that built it"),
    ("compute_capability", "8.7", "GPU architecture"),
    ("tensorrt_version", "10.7.0", "runs only with the TensorRT version that built it"),
    ("onnx_sha256", "b" * 64, "the ONNX graph changed"),
])
def test_foreign_or_stale_engine_is_refused(tmp_path, field, other, words):
    cache = EngineCache(tmp_path)
    cache.store("mask_decoder", KEY, b"engine")
    here = EngineKey(**{**KEY.to_dict(), field: other})
    with pytest.raises(EngineCacheError) as e:
        cache.lookup("mask_decoder", here)
    msg = str(e.value)
    assert e.value.fields == (field,)
    assert f"{field} is {getattr(KEY, field)!r}, this machine needs {other!r}" in msg
    assert words in msg and "Rebuild it on this machine" in msg and "or delete" in msg


def test_every_differing_field_is_named(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store("mask_decoder", KEY, b"engine")
    here = EngineKey("Orin", "8.7", "10.3.0", "a" * 64, "fp16")
    with pytest.raises(EngineCacheError, match="gpu_name is .*; compute_capability is") as e:
        cache.lookup("mask_decoder", here)
    assert e.value.fields == ("gpu_name", "compute_capability")


def test_engine_without_or_with_a_broken_key_file(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store("prompt_encoder", KEY, b"engine")
    side = path.with_name(path.name + ".json")
    path.write_bytes(b"engine, modified")
    with pytest.raises(EngineCacheError, match="was modified after it was built"):
        cache.lookup("prompt_encoder", KEY)
    side.write_text("{")
    with pytest.raises(EngineCacheError, match="key file .* is malformed"):
        cache.lookup("prompt_encoder", KEY)
    side.write_text(json.dumps({"key": {**KEY.to_dict(), "driver": "x"}, "engine_sha256": "0"}))
    with pytest.raises(EngineCacheError, match="malformed.*keys must be"):
        cache.lookup("prompt_encoder", KEY)
    side.unlink()
    with pytest.raises(EngineCacheError, match="has no key file"):
        cache.lookup("prompt_encoder", KEY)


def test_get_or_build_rebuilds_a_stale_engine_and_says_why(tmp_path):
    cache = EngineCache(tmp_path)
    builds = []

    def build():
        builds.append(1)
        return f"engine {len(builds)}".encode()

    path = cache.get_or_build("vision_optical_3", KEY, build)
    assert cache.get_or_build("vision_optical_3", KEY, build) == path and len(builds) == 1
    newer = EngineKey(**{**KEY.to_dict(), "tensorrt_version": "10.7.0"})
    with pytest.warns(RuntimeWarning, match="tensorrt_version is '10.3.0'.*rebuilding"):
        assert cache.get_or_build("vision_optical_3", newer, build) == path
    assert len(builds) == 2 and path.read_bytes() == b"engine 2"
    assert cache.lookup("vision_optical_3", newer) == path


def test_bad_keys_and_names():
    with pytest.raises(ValueError, match="precision must be one of"):
        EngineKey("g", "9.0", "10.3.0", "a", "int4")
    with pytest.raises(ValueError, match="gpu_name must be a non-empty string"):
        EngineKey("", "9.0", "10.3.0", "a", "fp16")
    with pytest.raises(ValueError, match="component must be a plain name"):
        EngineCache("/tmp").paths("../x", "fp16")
    with pytest.raises(ValueError, match="keys must be"):
        EngineKey.from_dict({"gpu_name": "g"})


def test_engine_cache_is_torch_free():
    code = ("import sys, earthx_sdk.runtime.engine_cache; "
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_this_machine_without_gpu_or_tensorrt():
    try:
        name, cc = gpu_identity()
    except RuntimeError as e:
        assert "no NVIDIA driver" in str(e) or "CUDA driver error" in str(e)
    else:  # a GPU machine
        assert name and cc.count(".") == 1
    if not HAVE_TRT:
        with pytest.raises(ImportError, match="TensorRT is not installed"):
            tensorrt_version()


# --- building (TensorRT only) --------------------------------------------------------------------

@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_build_without_tensorrt_says_so(tmp_path):
    from export.tensorrt import build_engines, require_tensorrt

    with pytest.raises(ImportError, match="TensorRT is not installed.*cannot build engines"):
        require_tensorrt()
    with pytest.raises(ImportError, match="TensorRT is not installed"):
        build_engines(tmp_path)  # refused before the bundle is even read


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_cli_tensorrt_without_tensorrt_fails_before_exporting(tmp_path, capsys):
    from export.__main__ import main

    rc = main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"), "--tensorrt"])
    assert rc == 2
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # nothing was exported
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"), "--tensorrt", "int4"])


@pytest.mark.trt
@pytest.mark.gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_engines(tiny_bundle, tmp_path, precision):
    from export.tensorrt import TIMING_CACHE, build_engines

    root, manifest = tiny_bundle
    engines = build_engines(root, precision, cache_dir=tmp_path)
    assert set(engines) == {"vision_optical_3", "prompt_encoder", "mask_decoder"}
    assert all(p.stat().st_size > 0 for p in engines.values())
    assert (tmp_path / TIMING_CACHE).stat().st_size > 0
    again = build_engines(root, precision, cache_dir=tmp_path)  # from the cache
    assert again == engines
