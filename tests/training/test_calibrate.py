"""training.calibrate: the threshold sweep on validation scenes and the choice it makes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.calibrate import THRESHOLDS, VALIDATION_SEED, best_threshold, format_report

torch = pytest.importorskip("torch")


def test_best_threshold_takes_the_top_and_breaks_ties_towards_zero():
    assert best_threshold({"thresholds": [-2.0, -1.0, 0.0], "overall": [0.5, 0.7, 0.6]}) == -1.0
    assert best_threshold({"thresholds": [-2.0, -1.0, 0.0, 1.5],
                           "overall": [0.7, 0.7, 0.6, 0.7]}) == -1.0
    assert best_threshold({"thresholds": [-3.0, -2.0, 0.0], "overall": [0.7, 0.7, 0.6]}) == -2.0
    with pytest.raises(ValueError, match="2 thresholds against 1 means"):
        best_threshold({"thresholds": [0.0, 1.0], "overall": [0.5]})


def test_validation_scenes_are_neither_trained_nor_evaluated_on():
    from export.default_model import SAMPLE_SEED
    from training.eval import HELD_OUT_SEED
    from training.recipes import RECIPES

    most = max(r.scenes.seed + r.scenes.scenes for r in RECIPES.values() if r.scenes)
    assert most <= HELD_OUT_SEED < SAMPLE_SEED < VALIDATION_SEED


class _Offset:
    """A model whose mask logits are known: 24 x (the S/4 cell's target coverage - 0.5) +
    `shift` (a decoder whose logits run high or low)."""

    def __init__(self, model, shift: float):
        self.model, self.shift, self.cfg = model, shift, model.cfg
        self.processor = self
        self.target = None

    def eval(self):
        return self

    def encode(self, **query):
        return self.model.processor.encode(**query)

    def generate(self, enc, max_new_tokens):
        from earthx_sdk.modeling.model import Generation

        g = self.model.cfg.vision.image_size // 4
        t = torch.from_numpy(np.asarray(self.target, np.float32))[None, None]
        h, w = enc.info.resized_hw
        s = enc.info.size
        canvas = torch.zeros(1, 1, s, s)
        canvas[..., :h, :w] = torch.nn.functional.interpolate(t, size=(h, w), mode="nearest")
        cells = torch.nn.functional.interpolate(canvas, size=(g, g), mode="area")[0]
        logits = 24.0 * (cells - 0.5) + self.shift  # 0 where half a cell is covered
        return Generation([], "<seg>", logits, torch.ones(1))


def test_sweep_follows_a_shift_of_the_logits(monkeypatch, tmp_path):
    """Logits 4 higher: the sweep's curve moves 4 to the right (the upsampling is linear), and
    its best threshold with it; the calibration writes the best to config.json. (At shift 0 the
    best already lies below 0: a small object covers no S/4 cell by half, so its coverage logits
    are negative everywhere; that is the resolution of the grid.)"""
    import training.templates as templates
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel
    from training import calibrate

    model = EarthXModel(EarthXConfig.from_name("tiny"))
    real = templates.samples_for
    reports = {}
    for shift in (0.0, 4.0):
        offset = _Offset(model, shift=shift)

        def samples_for(rec, tasks, rng, offset=offset):
            for s in real(rec, tasks=tasks, rng=rng):
                offset.target = s["target_masks"][0]
                yield s

        monkeypatch.setattr(templates, "samples_for", samples_for)
        reports[shift] = calibrate.sweep(offset, scenes=1)
    report = reports[0.0]
    ts = report["thresholds"]
    assert ts == list(THRESHOLDS)
    assert set(report["iou"]) == {"refer_seg", "prompt_seg"}
    assert set(report["iou"]["refer_seg"]) == {"optical", "multispectral", "sar", "infrared"}
    at = {shift: dict(zip(ts, r["overall"], strict=True)) for shift, r in reports.items()}
    for t in (-5.0, -4.5, -4.0, -3.5, -3.0):
        assert at[4.0][t + 4] == pytest.approx(at[0.0][t], abs=2e-3)
    assert best_threshold(report) < 0.0
    assert best_threshold(reports[4.0]) == best_threshold(report) + 4
    assert at[0.0][best_threshold(report)] > at[0.0][0.0] + 0.05
    assert "| all |" in format_report(report)

    # calibrate(): the model directory's config gets the threshold, calibration.json the sweep
    model.save(tmp_path / "model")
    monkeypatch.setattr("earthx_sdk.modeling.model.EarthXModel.load",
                        classmethod(lambda cls, path: offset))
    out = calibrate.calibrate(tmp_path / "model", scenes=1)  # the shift-4 model, last patched
    assert out["threshold"] == best_threshold(reports[4.0]) and out["previous"] == 0.0
    saved = EarthXConfig.load(tmp_path / "model" / "config.json")
    assert saved.mask.threshold == out["threshold"]
    assert json.loads((tmp_path / "model" / "calibration.json").read_text())["threshold"] == \
        out["threshold"]
    assert not list((tmp_path / "model").glob("*.tmp"))


def test_cli_refuses_what_is_not_a_model(tmp_path, capsys):
    from training.calibrate import main

    for argv in (["--checkpoint", str(tmp_path)], ["--checkpoint", str(tmp_path), "--scenes",
                                                    "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no EarthX model there" in err and "--scenes must be >= 1, got 0" in err
