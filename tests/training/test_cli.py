"""`python -m training` and `python -m training.eval` end to end on the tiny-synthetic recipe."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_train_resume_and_evaluate(tmp_path, monkeypatch):
    from training import recipes
    from training.__main__ import main as train_main
    from training.eval import main as eval_main

    # a smaller sample set than the recipe's 48 scenes, to stay fast
    small = lambda: recipes._synthetic_sources(scenes=2)  # noqa: E731
    monkeypatch.setitem(recipes.RECIPES, "tiny-synthetic",
                        recipes.Recipe("tiny-synthetic", "tiny",
                                       recipes.RECIPES["tiny-synthetic"].train, small))
    out = tmp_path / "run"
    assert train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--steps", "2"]) == 0
    with pytest.raises(FileExistsError, match="pass resume=True"):
        train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--steps", "3"])
    assert train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--steps", "3",
                       "--resume"]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3]
    report_path = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(out), "--scenes", "1", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert set(report["sensors"]) == {"optical", "sar", "infrared", "multispectral"}
    seg = report["sensors"]["sar"]["referring_segmentation"]
    assert seg["n"] > 0 and 0.0 <= seg["gIoU"] <= 1.0
    with pytest.raises(SystemExit):
        eval_main(["--checkpoint", str(tmp_path / "nowhere")])
