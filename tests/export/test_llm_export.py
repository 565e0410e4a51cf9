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


def test_int4_graph_is_smaller_and_agrees(model, tmp_path):
    from earthx_sdk.runtime.ort_llm import OrtLLM

    exp = export_llm(model.llm, model.tokenizer, tmp_path, "int4", block_size=32,
                     agreement_floor=0.85)
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
    # the runtime runs it, greedy tokens close to PyTorch's
    rt = OrtLLM(tmp_path / llm.file, tmp_path / embed.file, llm.extra)
    ids = np.random.default_rng(3).integers(0, 2048, 40)
    state = rt.new_state()
    got = [rt.forward(rt.embed(ids[i: i + 1]), state)[0] for i in range(len(ids))]
    assert agreement(_ref_logits(model.llm, ids), np.stack(got)) >= 0.85


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
