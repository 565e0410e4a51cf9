"""benchmarks.quant_sensitivity: the int8-activation simulation and its bookkeeping.

The simulation is checked against onnxruntime's own MatMulNBits at accuracy_level 4 (int8
activations): it must explain most of that kernel's deviation from fp32 activations, and a block
size other than the bundle's must explain less. The sensitivity rows run on a tiny random Llama.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the simulation runs in PyTorch")

from benchmarks.quant_sensitivity import BLOCK, Sensitivity, act_int8, rows  # noqa: E402


def test_act_int8_is_blockwise_and_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4 * BLOCK, generator=g)
    x[1, 5] = 80.0  # an outlier in the first block of row 1
    q = act_int8(x)
    scale = x.reshape(3, 4, BLOCK).abs().amax(-1, keepdim=True) / 127
    err = (q - x).reshape(3, 4, BLOCK).abs()
    assert bool((err <= scale / 2 + 1e-6).all())
    # the outlier coarsens its own block only
    assert err[1, 0].max() > 5 * err[1, 1:].max()
    assert torch.equal(act_int8(q), q)  # already on the grid
    assert torch.equal(act_int8(torch.zeros(2, BLOCK)), torch.zeros(2, BLOCK))
    with pytest.raises(ValueError, match=r"last dimension \(40\) must be a multiple of the block"):
        act_int8(torch.zeros(2, 40))


def _matmulnbits_int8(tmp_path, w, level):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from export.quantize import quantize_affine

    k, n = w.shape
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/layer/mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T", n])],
        [numpy_helper.from_array(w, "w")])
    src = tmp_path / f"src{level}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    quantize_affine(src, tmp_path / f"q{level}.onnx", 8, BLOCK, accuracy_level=level)
    return ort.InferenceSession(str(tmp_path / f"q{level}.onnx"),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulation_explains_most_of_the_kernels_int8_activation_error(tmp_path, seed):
    rng = np.random.default_rng(seed)
    k, n = 4 * BLOCK, 48
    w = rng.normal(size=(k, n)).astype(np.float32)
    exact = _matmulnbits_int8(tmp_path, w, 1)  # fp32 activations
    fast = _matmulnbits_int8(tmp_path, w, 4)  # int8 activations
    # the quantized weight matrix, read back row by row through the fp32-activation graph
    eye = np.eye(k, dtype=np.float32)[None]
    wq = exact.run(None, {"x": eye})[0][0]  # [K, N]
    x = rng.normal(size=(1, 6, k)).astype(np.float32)
    x[..., 7] *= 20  # one large channel, as in an LLM's activations
    y_fast = fast.run(None, {"x": x})[0]
    total = np.abs(y_fast - x @ wq).max()

    def residual(block):
        xq = act_int8(torch.from_numpy(x), block).numpy()
        return np.abs(y_fast - xq @ wq).max()

    assert total > 1e-3  # the kernel does quantize its activations
    assert residual(BLOCK) < 0.5 * total
    assert residual(BLOCK) < min(residual(BLOCK // 2), residual(2 * BLOCK))


def _tiny_llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_sensitivity_rows_and_measures():
    model = _tiny_llama()
    ids = np.random.default_rng(0).integers(0, 96, 40)
    sens = Sensitivity(model, ids, window=16)
    assert [len(c) for c in sens.chunks] == [16, 16, 8]
    table = rows(sens, 2)
    linears = 2 * 7 + 1
    assert len(sens.names) == linears and table["all"] == sens.names
    assert sum(len(v) for k, v in table.items() if k.startswith("only layer")) == linears - 1
    assert table["only lm_head"] == ["lm_head"]
    assert not any("layers.1." in n or n == "lm_head" for n in table["all but layer 1 and lm_head"])
    none = sens.measure([])
    assert none == {"linears": 0, "agreement": 1.0, "kl": pytest.approx(0.0, abs=1e-7)}
    every = sens.measure(table["all"])
    assert every["linears"] == linears and every["kl"] > 1e-7
    # the hooks are off again after a measurement
    assert sens.measure([])["kl"] == pytest.approx(0.0, abs=1e-7)
