"""The end-to-end benchmark's code paths, on the tiny preset with one round (no timing asserted).

The slow test runs `benchmarks.e2e.main` for real: a seeded tiny checkpoint, its exported bundle
(optical only: the synthetic cases), torch and onnxruntime side by side, TensorRT refused with
the runtime's reason, the JSON and the PNG written. The fast tests check the ratio arithmetic and
the LLM length bookkeeping on made-up figures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import e2e
from benchmarks.e2e_cases import cases

pytest.importorskip("torch", reason="the benchmark's reference backend needs torch")


def _fake_case(wall: float, stages: dict, steps: int = 0, decode: float = 0.0) -> dict:
    st = {s: 0.0 for s in e2e.STAGES}
    st.update(stages)
    st["decode"] = decode
    return {"wall": wall, "stages": st, "steps": steps,
            "step_positions": list(range(11, 11 + steps)), "prompt_tokens": [10], "tiles": 1,
            "masks": 0, "text_tokens": steps + 1, "backend": {}}


def test_ratios_and_bandwidth_share():
    ref = e2e.Backend("torch", llm_bytes=1000, kv_bytes_per_position=10)
    fast = e2e.Backend("ort-fp32", llm_bytes=1000, kv_bytes_per_position=10)
    slow_runs = [_fake_case(2.0, {"vision": 1.0, "prefill": 0.5}, steps=4, decode=0.4)] * 3
    fast_runs = [_fake_case(0.5, {"vision": 0.25, "prefill": 0.1}, steps=4, decode=0.1)] * 3
    def mem(peak):
        return {"status": "ran", "reason": "", "load_mb": peak / 2, "run_peak_mb": peak / 2,
                "peak_mb": peak, "llm_weight_mb": 0.001, "warmup_s": 0.0, "notes": []}

    out = {"backends": {"torch": mem(100.0), "ort-fp32": mem(50.0)},
           "cases": [{"name": "c", "call": "ask", "backends": {
               "torch": e2e.summarize_case(ref, slow_runs, bandwidth=1e6),
               "ort-fp32": e2e.summarize_case(fast, fast_runs, bandwidth=1e6)}}]}
    e2e.add_ratios(out)
    r = out["cases"][0]["backends"]["ort-fp32"]
    assert r["speedup"] == pytest.approx(4.0)
    assert r["stage_speedup"]["vision"] == pytest.approx(4.0)
    assert r["stage_speedup"]["prefill"] == pytest.approx(5.0)
    assert r["stage_speedup"]["fusion"] is None  # a stage that did not run has no ratio
    assert r["ttft_speedup"] == pytest.approx(1.5 / 0.35)
    assert r["decode_tokens_per_s"] == pytest.approx(40.0)
    assert r["decode_vs_torch"] == pytest.approx(4.0)
    # per step: 1000 weight bytes + 10 bytes x positions 11..14 of the cache
    step_bytes = (4 * 1000 + 10 * (11 + 12 + 13 + 14)) / 4
    assert r["decode_bytes_per_step"] == pytest.approx(step_bytes)
    assert r["decode_pct_bw_limit"] == pytest.approx(100 * step_bytes * 40 / 1e6)
    assert out["backends"]["ort-fp32"]["peak_mb_vs_torch"] == pytest.approx(2.0)
    assert out["totals"]["ort-fp32"]["speedup"] == pytest.approx(4.0)
    assert "| c | ort-fp32 | 500.0 |" in e2e.markdown({"preset": "tiny", "model_fp32_bytes": 1,
                                                       **out})


class _FakeLLM:
    backend = "fake"

    def embed(self, ids):
        return np.zeros((len(ids), 2), np.float32)

    def new_state(self):
        return object()

    def forward(self, embeds, state):
        return np.zeros(3, np.float32), embeds


def test_counting_llm_tracks_each_request():
    llm = e2e.CountingLLM(_FakeLLM())
    for prompt, steps in ((5, 2), (7, 0)):
        st = llm.new_state()
        llm.forward(llm.embed(np.zeros(prompt, np.int64)), st)
        for _ in range(steps):
            llm.forward(llm.embed(np.zeros(1, np.int64)), st)
    assert llm.lengths == [0, 5, 6, 7, 0, 7]
    assert llm.backend == "fake"  # delegated


@pytest.mark.slow
def test_e2e_tiny_one_round(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the bundle export needs onnx (the `export` extra)")
    pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")
    import importlib.util

    plot = importlib.util.find_spec("matplotlib") is not None  # the `bench` extra
    names = [c.name for c in cases() if c.image == "synthetic"]
    out_json, out_png = tmp_path / "e2e.json", tmp_path / "e2e.png"
    rc = e2e.main(["--preset", "tiny", "--backends", "torch,ort-fp32,trt", "--repeat", "1",
                   "--threads", "1", "--cases", ",".join(names), "--json", str(out_json),
                   "--workdir", str(tmp_path / "work")] + (["--plot", str(out_png)] if plot
                                                            else []))
    assert rc == 0
    text = capsys.readouterr().out
    assert "| synthetic_point_seg | ort-fp32 |" in text
    d = json.loads(out_json.read_text())
    (p,) = d["presets"]
    assert p["backends"]["torch"]["status"] == "ran"
    assert p["backends"]["ort-fp32"]["status"] == "ran"
    trt = p["backends"]["trt"]
    assert trt["status"] == "not run" and "TensorRT" in trt["reason"]
    by_name = {c["name"]: c for c in p["cases"]}
    assert set(by_name) == set(names)
    for c in p["cases"]:
        assert set(c["backends"]) == {"torch", "ort-fp32"}
        ref, ort = c["backends"]["torch"], c["backends"]["ort-fp32"]
        assert ref["speedup"] == pytest.approx(1.0)
        assert ort["stage_backends"]["vision"].startswith("onnxruntime:")
        assert ref["stage_backends"]["vision"].startswith("torch:cpu")
        for r in (ref, ort):
            assert r["wall"]["n"] == 1
            assert r["stages"]["vision"]["median"] > 0
            assert r["stages"]["fusion"]["median"] > 0  # both cases carry a prompt
            assert sum(s["median"] for s in r["stages"].values()) <= r["wall"]["median"]
    seg = by_name["synthetic_point_seg"]["backends"]
    assert seg["torch"]["masks"] == seg["ort-fp32"]["masks"] == 1
    assert seg["ort-fp32"]["stages"]["mask_decoder"]["median"] > 0
    cap = by_name["synthetic_box_caption"]["backends"]["ort-fp32"]
    assert cap["decode_steps_per_request"] >= 1 and cap["decode_tokens_per_s"] > 0
    assert 0 < cap["decode_pct_bw_limit"]
    if plot:
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_earthx_bench_forwards_to_the_benchmark(capsys):
    from earthx_sdk import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--preset", "huge"])
    assert e.value.code == 2
    assert "--preset: ['huge'] not in ['tiny', 'small', 'base']" in capsys.readouterr().err


def test_earthx_bench_outside_a_checkout(tmp_path, monkeypatch, capsys):
    from earthx_sdk import cli

    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "earthx_sdk" /
                                             "cli.py"))
    assert cli.main(["bench", "--preset", "tiny"]) == 2
    assert "the benchmarks run from a source checkout" in capsys.readouterr().err
