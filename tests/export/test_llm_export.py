"""The LLM stage of the export: quantized graphs, the torchao path, the pipeline and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")

from earthx_sdk.modeling.config import PRESETS  # noqa: E402
from earthx_sdk.modeling.model import EarthXModel  # noqa: E402
from export.llm import builder_options, export_llm  # noqa: E402
from export.quantize import agreement, snr_db  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EarthXModel(PRESETS["tiny"]).eval()


def _ref_logits(llm, ids):
    with torch.no_grad():
        return llm(input_ids=torch.as_tensor(ids)[None]).logits[0].numpy()


@pytest.mark.parametrize("scheme", ["affine", "affine-fold"])
def test_int4_graph_is_smaller_and_agrees(model, tmp_path, scheme):
    from earthx_sdk.runtime.ort_llm import OrtLLM

    exp = export_llm(model.llm, model.tokenizer, tmp_path, "int4", block_size=32,
                     agreement_floor=0.85, int4_scheme=scheme)
    llm, embed = exp.components["llm"], exp.components["llm_embed"]
    assert llm.precision == "int4" and embed.precision == "fp16"
    assert llm.extra["quantization"]["bits"] == 4
    assert llm.extra["quantization"]["block_size"] == 32
    (entry,) = exp.parity
    assert entry["output"] == "next_token_agreement.int4" and entry["value"] >= 0.85
    # the weights really are 4-bit: the tiny fp32 graph is ~2.3 MB
    assert (tmp_path / llm.file).stat().st_size < 0.3 * 2.3e6
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / llm.file)).graph.node}
    assert "MatMulNBits" in ops and "GroupQueryAttention" in ops
    assert "MatMul" in ops and "Cast" in ops  # the block-offset terms and fp16 constants
    assert ("Concat" in ops) == (scheme == "affine-fold")  # [A, block sums] when folded
    assert llm.extra["quantization"]["lm_head_bits"] == 8
    assert llm.extra["quantization"]["folded_offsets"] == (scheme == "affine-fold")
    assert (tmp_path / "llm.onnx.data").is_file() and set(exp.files) == {"llm.onnx.data"}
    # the runtime runs it, greedy tokens close to PyTorch's
    rt = OrtLLM(tmp_path / llm.file, tmp_path / embed.file, llm.extra)
    ids = np.random.default_rng(3).integers(0, 2048, 40)
    state = rt.new_state()
    got = [rt.forward(rt.embed(ids[i: i + 1]), state)[0] for i in range(len(ids))]
    assert agreement(_ref_logits(model.llm, ids), np.stack(got)) >= 0.85


@pytest.mark.parametrize("scheme", ["affine", "affine-2pass"])
def test_int8_affine_scheme_runs_in_the_runtime(model, tmp_path, scheme):
    """export_llm(int8_scheme="affine"): 8-bit MatMulNBits with float block offsets, recorded in
    the component's extra, run by OrtLLM with next tokens close to PyTorch's; "affine-2pass"
    likewise, with every MatMulNBits fed its activations in two passes (KV cache included)."""
    import onnx

    from earthx_sdk.runtime.ort_llm import OrtLLM

    exp = export_llm(model.llm, model.tokenizer, tmp_path, "int8", agreement_floor=0.95,
                     int8_scheme=scheme)
    llm, embed = exp.components["llm"], exp.components["llm_embed"]
    q = llm.extra["quantization"]
    assert q["bits"] == 8 and q["quantizer"] == "export.quantize.quantize_affine"
    assert q["two_pass_activations"] == (scheme == "affine-2pass")
    nodes = onnx.load(str(tmp_path / llm.file), load_external_data=False).graph.node
    bits = {a.i for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute
            if a.name == "bits"}
    assert bits == {8} and any(n.name.endswith("_offset") for n in nodes)
    n_mm = sum(n.op_type == "MatMulNBits" for n in nodes)
    n_split = sum(n.op_type == "Split" for n in nodes)
    assert n_split == (n_mm if scheme == "affine-2pass" else 0), (n_mm, n_split)
    rt = OrtLLM(tmp_path / llm.file, tmp_path / embed.file, llm.extra)
    ids = np.random.default_rng(4).integers(0, 2048, 40)
    state = rt.new_state()
    got = [rt.forward(rt.embed(ids[i: i + 1]), state)[0] for i in range(len(ids))]
    assert agreement(_ref_logits(model.llm, ids), np.stack(got)) >= 0.95
    with pytest.raises(ValueError, match="int8_scheme must be one of"):
        export_llm(model.llm, model.tokenizer, tmp_path / "x", "int8", int8_scheme="k-quant")


def test_agreement_floor_is_enforced(model, tmp_path):
    from export.validate import ParityError

    with pytest.raises(ParityError, match=r"agreement .* < 1.01"):
        export_llm(model.llm, model.tokenizer, tmp_path, "int4", agreement_floor=1.01)


def test_bad_settings_are_refused(model, tmp_path):
    with pytest.raises(ValueError, match="llm precision must be one of"):
        export_llm(model.llm, model.tokenizer, tmp_path, "int3")
    with pytest.raises(ValueError, match="block_size must be one of"):
        builder_options("int4", block_size=48)
    with pytest.raises(ValueError, match="accuracy_level must be"):
        builder_options("int8", accuracy_level=5)


def test_torchao_int8_weight_only(model):
    pytest.importorskip("torchao", reason="torchao not installed")
    import copy

    from export.quantize import int8_weight_only

    ids = np.random.default_rng(4).integers(0, 2048, 48)
    ref = _ref_logits(model.llm, ids)
    q = int8_weight_only(copy.deepcopy(model.llm))
    got = _ref_logits(q, ids)
    snr = snr_db(ref, got)
    print(f"torchao int8 weight-only: logits SNR {snr:.1f} dB, agreement "
          f"{agreement(ref, got):.3f}")
    assert snr > 30  # int8 per-channel weights: ~40 dB on tiny
    assert agreement(ref, got) >= 0.95
    assert not np.array_equal(ref, got)  # it did quantize
    with pytest.raises(TypeError, match="torch.nn.Module"):
        int8_weight_only("model")


def test_snr_and_agreement_measures():
    a = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    assert snr_db(a, a) == float("inf")
    assert snr_db(a, a * 1.1) == pytest.approx(20.0)
    assert agreement(a, a[::-1]) == 0.0
    with pytest.raises(ValueError, match="shapes must match"):
        snr_db(a, a[0])


@pytest.mark.slow
def test_pipeline_llm_stage(model, tmp_path):
    """`python -m export ... --llm int8`: the bundle has llm + llm_embed, verified on load."""
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript")
    from earthx_sdk.bundle import load_bundle
    from earthx_sdk.runtime.ort_llm import OrtLLM
    from export.__main__ import main

    model.save(tmp_path / "ckpt")
    rc = main(["--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "b"),
               "--sensors", "optical", "--llm", "int8"])
    assert rc == 0
    manifest = load_bundle(tmp_path / "b")
    assert {"llm", "llm_embed", "mask_decoder"} <= set(manifest.components)
    entries = [p for p in manifest.parity if p["component"] == "llm"]
    assert entries and entries[0]["output"] == "next_token_agreement.int8"
    assert entries[0]["value"] >= 0.95
    rt = OrtLLM.from_bundle(tmp_path / "b", manifest, threads=1)
    logits, hidden = rt.forward(rt.embed(np.array([5, 6, 7])), rt.new_state())
    assert logits.shape == (2048,) and hidden.shape == (3, 128)


def test_cli_refuses_bad_llm_precision(tmp_path):
    from export.__main__ import main

    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"), "--llm", "int2"])


def _unpack4(packed):
    u = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), np.uint8)
    u[..., 0::2], u[..., 1::2] = packed & 15, packed >> 4
    return u


def _q4_1_weight(rng, K, N, bs):
    """A weight [K, N] on a Q4_1 grid: d * q + m per block, q in 0..15 with both ends used."""
    nb = K // bs
    d = rng.uniform(0.001, 0.02, (N, nb, 1))
    m = rng.uniform(-0.2, 0.05, (N, nb, 1))
    q = rng.integers(0, 16, (N, nb, bs))
    q[..., 0], q[..., 1] = 0, 15
    return (d * q + m).reshape(N, K).T.astype(np.float32)  # [K, N]


@pytest.mark.parametrize("K,N,bs", [(64, 7, 32), (96, 1, 16), (256, 33, 32)])
def test_int4_affine_codes_are_exact_on_a_q4_1_grid(K, N, bs):
    """Weights on a Q4_1 grid (d * q + m per block, m fractional in units of d) come back
    exactly; MatMulNBits' integer zero points could not."""
    from export.quantize import int4_affine_codes, int8_symmetric_codes

    rng = np.random.default_rng(K + N)
    nb = K // bs
    w = _q4_1_weight(rng, K, N, bs)
    d = rng.uniform(0.001, 0.02, (N, nb, 1))  # scales of the Q8_0 case below
    packed, scales, off = int4_affine_codes(w, bs)
    assert packed.shape == (N, nb, bs // 2) and scales.shape == (N, nb) and off.shape == (nb, N)
    rec = scales[..., None] * (_unpack4(packed).astype(np.float32) - 8) + off.T[..., None]
    np.testing.assert_allclose(rec.reshape(N, K).T, w, atol=1e-6, rtol=0)
    # and Q8_0 (symmetric, max |q| = 127 per block) through the 8-bit head codes
    q8 = rng.integers(-127, 128, (N, nb, bs))
    q8[..., 0] = 127
    w8 = (d * q8).reshape(N, K).T.astype(np.float32)
    u, s8 = int8_symmetric_codes(w8, bs)
    rec8 = s8[..., None] * (u.astype(np.float32) - 128)
    np.testing.assert_allclose(rec8.reshape(N, K).T, w8, atol=1e-6, rtol=0)


def test_quantize_int4_affine_refuses_bad_settings(tmp_path):
    from export.quantize import quantize_int4_affine

    with pytest.raises(ValueError, match="block_size must be one of"):
        quantize_int4_affine(tmp_path / "a.onnx", tmp_path / "b.onnx", block_size=24)
    with pytest.raises(ValueError, match="head_bits must be 4 or 8"):
        quantize_int4_affine(tmp_path / "a.onnx", tmp_path / "b.onnx", head_bits=6)


def test_affine_codes_at_8_bits_are_exact_on_a_q4_1_grid():
    """A Q4_1 code q is the 8-bit code 17 q (255 = 17 * 15): the 8-bit affine codes reproduce
    Q4_1 weights too."""
    from export.quantize import affine_codes

    rng = np.random.default_rng(3)
    w = _q4_1_weight(rng, 128, 5, 32)
    u, scales, off = affine_codes(w, 32, bits=8)
    assert u.shape == (5, 4, 32) and u.dtype == np.uint8
    assert set(np.unique(u) % 17) == {0}
    rec = scales[..., None] * (u.astype(np.float32) - 128) + off.T[..., None]
    np.testing.assert_allclose(rec.reshape(5, 128).T, w, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        affine_codes(w, 32, bits=6)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantize_affine_graph_matches_the_matmul(tmp_path, bits):
    """A two-MatMul fp32 graph on Q4_1 weights, quantized: onnxruntime's output equals the fp32
    product (fp32 activations, accuracy_level 1) up to the fp16-stored scales and offsets."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from export.quantize import quantize_affine

    rng = np.random.default_rng(bits)
    w1, w2 = _q4_1_weight(rng, 64, 32, 32), _q4_1_weight(rng, 32, 16, 32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="/layer/mm1"),
         helper.make_node("MatMul", ["h", "w2"], ["y"], name="/lm_head/MatMul")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    src = tmp_path / "src.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    files = quantize_affine(src, tmp_path / "q.onnx", bits, 32, accuracy_level=1,
                            head_bits=4 if bits == 4 else 8)
    assert files == ["q.onnx", "q.onnx.data"]
    q = onnx.load(str(tmp_path / "q.onnx"), load_external_data=False)
    ops = {(n.op_type, next((a.i for a in n.attribute if a.name == "bits"), None))
           for n in q.graph.node}
    assert ("MatMulNBits", bits) in ops and not any(n.name == "/layer/mm1" for n in q.graph.node)
    x = rng.normal(size=(1, 3, 64)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"x": x})[0]
    want = x @ w1 @ w2
    # scales/offsets are stored as float16: a relative error near 1e-3
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-3 * np.abs(want).max())
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        quantize_affine(src, tmp_path / "r.onnx", bits=6)
    with pytest.raises(ValueError, match="accuracy_level must be 0..4"):
        quantize_affine(src, tmp_path / "r.onnx", bits, accuracy_level=7)


def test_two_pass_activations_remove_the_int8_activation_error(tmp_path):
    """quantize_affine(two_pass=...): at accuracy_level 4 (int8 activations) the MatMuls named
    read [Q(A); A - Q(A)] and sum the halves, which brings their output to within a small
    fraction of the fp32-activation result (accuracy_level 1) for every row of a batch of two;
    MatMuls not named keep one pass."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from export.quantize import quantize_affine

    rng = np.random.default_rng(11)
    w1, w2 = _q4_1_weight(rng, 64, 64, 32), _q4_1_weight(rng, 64, 48, 32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="/layer/mm1"),
         helper.make_node("MatMul", ["h", "w2"], ["y"], name="/lm_head/MatMul")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, 48])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    src = tmp_path / "src.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    # heavy-tailed channels, as in an LLM's residual stream: int8 activations lose the small ones
    x = (rng.normal(size=(2, 5, 64)) * np.exp(rng.normal(size=(1, 1, 64)))).astype(np.float32)
    out = {}
    for name, level, two in (("fp32 act", 1, ()), ("int8 act", 4, ()),
                             ("two-pass", 4, ("/",)), ("head only", 4, ("lm_head",))):
        path = tmp_path / f"{name.replace(' ', '_')}.onnx"
        quantize_affine(src, path, 8, 32, accuracy_level=level, two_pass=two)
        nodes = onnx.load(str(path), load_external_data=False).graph.node
        splits = sum(n.op_type == "Split" for n in nodes)
        assert splits == {(): 0, ("/",): 2, ("lm_head",): 1}[two], (name, splits)
        out[name] = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    ref = out["fp32 act"]
    err = {k: float(np.abs(v - ref).max()) for k, v in out.items()}
    assert err["int8 act"] > 1e-3 * np.abs(ref).max(), err  # the error there is to remove
    assert err["two-pass"] < err["int8 act"] / 20, err
    assert err["head only"] > err["int8 act"] / 20, err  # /layer/mm1 still rounds its input
    for b in range(2):  # the halves are summed per batch row, not across the batch
        np.testing.assert_allclose(out["two-pass"][b], ref[b], rtol=0,
                                   atol=err["int8 act"] / 20)


def test_folded_offsets_match_the_offset_matmuls(tmp_path):
    """quantize_affine(fold_offsets=True): the offsets ride in extra 4-bit blocks of one
    MatMulNBits fed [A, block sums]; with fp32 activations (accuracy_level 1) the output is the
    product up to the offsets' 3-level residual, and the graph has no offset MatMul or Add; the
    level codes reproduce the offsets to ~(1/14)^3 of their range."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from export.quantize import FOLD_LEVELS, _pack4, folded_offset_codes, quantize_affine

    rng = np.random.default_rng(5)
    off = rng.uniform(-0.2, 0.05, (3, 7)).astype(np.float32)  # [nb, N]
    packed, scales = folded_offset_codes(off, 32)
    assert packed.shape == (7, FOLD_LEVELS, 16) and scales.shape == (7, FOLD_LEVELS)
    u = _unpack4(packed).astype(np.float64) - 8  # [N, levels, 32]
    rec = (scales[..., None] * u).sum(1)  # [N, 32]: the padding blocks sum to 0
    np.testing.assert_allclose(rec[:, :3].T, off, rtol=0, atol=np.abs(off).max() / 14 ** 3)
    assert np.all(rec[:, 3:] == 0)
    assert np.array_equal(_pack4(np.full((1, 1, 2), 8, np.uint8)), [[[0x88]]])

    w1, w2 = _q4_1_weight(rng, 64, 64, 32), _q4_1_weight(rng, 64, 48, 32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="/layer/mm1"),
         helper.make_node("MatMul", ["x", "w2"], ["h2"], name="/layer/mm2"),
         helper.make_node("Concat", ["h", "h2"], ["y"], name="/cat", axis=-1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, 112])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    src = tmp_path / "src.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    x = rng.normal(size=(2, 3, 64)).astype(np.float32)
    want = np.concatenate([x @ w1, x @ w2], -1)
    out = {}
    for fold in (False, True):
        path = tmp_path / f"q{int(fold)}.onnx"
        quantize_affine(src, path, 4, 32, accuracy_level=1, fold_offsets=fold)
        nodes = onnx.load(str(path), load_external_data=False).graph.node
        ops = [n.op_type for n in nodes]
        # folded: one block-sum MatMul and one Concat for the shared input, no offset ops
        assert (ops.count("MatMul"), ops.count("Add")) == ((1, 0) if fold else (3, 2)), ops
        ks = {a.i for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute
              if a.name == "K"}
        assert ks == ({64 + FOLD_LEVELS * 32} if fold else {64})
        out[fold] = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(out[True], want, rtol=0, atol=5e-3 * np.abs(want).max())
    np.testing.assert_allclose(out[True], out[False], rtol=0, atol=2e-3 * np.abs(want).max())
    with pytest.raises(ValueError, match="fold_offsets needs bits=4 and no two_pass"):
        quantize_affine(src, tmp_path / "r.onnx", 8, fold_offsets=True)


@pytest.mark.parametrize("argv, message", [
    (["--report", "--int4-schemes", "nope"], "--int4-schemes: 'nope' is not one of"),
    (["--report", "--int8-schemes", "affine,nope"], "--int8-schemes: 'nope' is not one of"),
    (["--report", "--precisions", "int4", "--int4-schemes", ","],
     "--int4-schemes: name at least one scheme when scoring int4"),
    (["--report", "--int8-schemes", ""], "--int8-schemes: name at least one scheme"),
])
def test_report_cli_refuses_bad_schemes_before_any_work(argv, message, capsys):
    from export.llm_report import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
