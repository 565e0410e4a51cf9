"""benchmarks.ort_spinning for one round of one trial (no timing asserted): both settings run in
their own child process on the embedded bundle and report every request's stages."""

from __future__ import annotations

import json

import pytest

from benchmarks import ort_spinning

pytest.importorskip("onnxruntime")


def test_one_trial_runs_both_settings(tmp_path, capsys):
    out = tmp_path / "spin.json"
    assert ort_spinning.main(["--rounds", "1", "--trials", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["mode"] for r in doc["runs"]] == ["spin", "nospin"]
    for r in doc["runs"]:
        assert r["requests"] == 12 and len(r["wall_s"]) == 1
        assert r["stages_s"]["mask_decoder"] > 0 and r["stages_s"]["prefill"] > 0
    assert "on / off =" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ort_spinning.main(["--rounds", "0"])


def test_the_child_turns_spinning_back_on(monkeypatch):
    from earthx_sdk.runtime import ort_llm

    monkeypatch.setattr(ort_llm, "no_spin", ort_llm.no_spin)  # restored after the test
    doc = ort_spinning.child("spin", "default", 1)
    assert doc["mode"] == "spin" and ort_llm.no_spin("x") == "x"
