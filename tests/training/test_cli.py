"""`python -m training` and `python -m training.eval` end to end on the tiny-synthetic recipe."""

import dataclasses
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_train_resume_and_evaluate(tmp_path, monkeypatch):
    from training import recipes
    from training.__main__ import main as train_main
    from training.eval import main as eval_main

    # a smaller sample set than the recipe's 48 scenes, to stay fast
    # (and without the deepforest sources, which need the realdata package)
    small = lambda: recipes._synthetic_sources(scenes=2)  # noqa: E731
    cfg = recipes.RECIPES["tiny-synthetic"].train
    cfg = dataclasses.replace(cfg, mixture=tuple(m for m in cfg.mixture
                                                 if not m[0].startswith("deepforest/")))
    assert cfg.aux_classes  # the recipe's dense auxiliary head runs here too
    # the recipe itself (its model options and lr factors) on the smaller sample set
    recipe = dataclasses.replace(recipes.RECIPES["tiny-synthetic"], train=cfg, sources=small)
    monkeypatch.setitem(recipes.RECIPES, "tiny-synthetic", recipe)
    out = tmp_path / "run"
    assert train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--steps", "2",
                       "--calibration-scenes", "1"]) == 0
    # the run ends with the mask-threshold calibration: its sweep, and its choice in the config
    from training.calibrate import THRESHOLDS

    cal = json.loads((out / "model" / "calibration.json").read_text())
    assert cal["thresholds"] == list(THRESHOLDS) and cal["scenes"] == 1
    saved = json.loads((out / "model" / "config.json").read_text())["mask"]["threshold"]
    assert saved == cal["threshold"] in THRESHOLDS
    with pytest.raises(FileExistsError, match="pass resume=True"):
        train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--steps", "3"])
    with pytest.raises(SystemExit):
        train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--calibration-scenes", "-1"])
    assert train_main(["--recipe", "tiny-synthetic", "--out", str(out), "--steps", "3",
                       "--resume", "--calibration-scenes", "0"]) == 0
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


def test_recipe_model_config_and_sources():
    from training.recipes import TINY_MIXTURE, get_recipe

    tiny = get_recipe("tiny-synthetic")
    cfg = tiny.model_config()
    assert cfg.name == "tiny"
    assert cfg.mask.text_tokens and cfg.mask.text_embeddings and cfg.mask.position_prior
    base = get_recipe("base").model_config().mask
    assert not (base.text_tokens or base.text_embeddings or base.position_prior)
    assert tiny.train.aux_classes == 8 and tiny.train.mixture == TINY_MIXTURE
    assert {"deepforest/region_class", "deepforest/region_caption"} <= dict(TINY_MIXTURE).keys()
    default = get_recipe("earthx-tiny")  # the embedded model's: tiny-synthetic, longer, more
    dm = default.model_config().mask  # scenes, and the prompts' region masks in the decoder
    assert dm.prompt_map and dm.position_cells  # the prompts' region masks, the ninths' bumps
    assert not (cfg.mask.prompt_map or cfg.mask.position_cells)
    assert default.model_config().prompt == cfg.prompt
    assert dataclasses.replace(dm, prompt_map=False, position_cells=False) == cfg.mask
    assert default.scenes.scenes > tiny.scenes.scenes and default.train.steps > tiny.train.steps
    assert dataclasses.replace(default.scenes, scenes=tiny.scenes.scenes) == tiny.scenes
    assert dataclasses.replace(default.train, steps=tiny.train.steps) == tiny.train
    with pytest.raises(ValueError, match="recipe must be one of"):
        get_recipe("nope")
