"""training.checkpoint.init_from and `python -m training --init`: a recipe that continues
another recipe's model."""

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _model(where_bins=0):
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    cfg = EarthXConfig.from_name("tiny")
    torch.manual_seed(where_bins)
    return EarthXModel(dataclasses.replace(cfg, prompt=dataclasses.replace(cfg.prompt,
                                                                           where_bins=where_bins)))


def test_init_from_loads_every_tensor_and_leaves_the_added_ones(tmp_path):
    from training.checkpoint import init_from

    base = _model()
    base.save(tmp_path / "base")
    grown = _model(where_bins=9)
    fresh = {k: v.clone() for k, v in grown.state_dict().items()}
    added = init_from(grown, tmp_path / "base")
    assert added == ["prompt_encoder.where_col.weight", "prompt_encoder.where_row.weight"]
    state = grown.state_dict()
    for name, t in base.state_dict().items():
        assert torch.equal(state[name], t), name
    for name in added:
        assert torch.equal(state[name], fresh[name])
    # not vacuous: the two models were initialized differently
    assert not torch.equal(fresh["mask_decoder.mask_token"],
                           base.state_dict()["mask_decoder.mask_token"])


def test_init_from_refuses_a_model_of_another_shape(tmp_path):
    from training.checkpoint import init_from

    _model(where_bins=9).save(tmp_path / "nine")
    with pytest.raises(ValueError, match="has no tensor 'prompt_encoder.where_col.weight'"):
        init_from(_model(), tmp_path / "nine")
    with pytest.raises(ValueError, match=r"'prompt_encoder.where_col.weight' must have shape "
                                         r"\(8, \d+\), got \(9, \d+\)"):
        init_from(_model(where_bins=8), tmp_path / "nine")
    with pytest.raises(FileNotFoundError, match="model.safetensors missing"):
        init_from(_model(), tmp_path)


def test_training_cli_continues_a_model(tmp_path, monkeypatch):
    from training import recipes
    from training.__main__ import main as train_main

    base = _model()
    base.save(tmp_path / "base")
    cfg = dataclasses.replace(recipes.RECIPES["tiny-synthetic"].train, aux_classes=0,
                              mixture=(), lr_mult=(), steps=1, log_every=1)
    stage = recipes.Recipe("stage-two", "tiny", cfg, lambda: recipes._synthetic_sources(scenes=1),
                           scenes=recipes.TINY_SCENES, prompt=(("where_bins", 9),),
                           init="tiny-synthetic")
    monkeypatch.setitem(recipes.RECIPES, "stage-two", stage)
    with pytest.raises(SystemExit):  # the model it continues must be named
        train_main(["--recipe", "stage-two", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
    out = tmp_path / "run"
    assert train_main(["--recipe", "stage-two", "--out", str(out), "--init",
                       str(tmp_path / "base"), "--calibration-scenes", "0"]) == 0
    assert json.loads((out / "recipe.json").read_text())["init"] == str(tmp_path / "base")
    from earthx_sdk.modeling.model import EarthXModel

    trained = EarthXModel.load(out / "model")
    assert trained.cfg.prompt.where_bins == 9
    # one step moved the weights from the base model's, not from a fresh initialization's
    a = trained.state_dict()["mask_decoder.mask_token"]
    b = base.state_dict()["mask_decoder.mask_token"]
    assert 0 < (a - b).abs().max() < 0.05


def test_recipe_chain_and_the_default_models_stages(tmp_path, monkeypatch):
    """The embedded model is trained in four stages, each from the previous one's model."""
    import subprocess

    from export import default_model
    from training import recipes

    names = [r.name for r in recipes.recipe_chain("earthx-tiny-refine")]
    assert names == ["earthx-tiny", "earthx-tiny-place", "earthx-tiny-tune", "earthx-tiny-refine"]
    assert default_model.DEFAULT_RECIPE == "earthx-tiny-refine"
    assert [r.name for r in recipes.recipe_chain("earthx-tiny")] == ["earthx-tiny"]
    loop = recipes.Recipe("loop", "tiny", recipes.TINY_TRAIN, lambda: {}, init="loop")
    monkeypatch.setitem(recipes.RECIPES, "loop", loop)
    with pytest.raises(ValueError, match="init chain loops at 'loop'"):
        recipes.recipe_chain("loop")
    # the later stages tell the LLM where the prompt is, and keep the first stage's decoder
    place, tune = recipes.get_recipe("earthx-tiny-place"), recipes.get_recipe("earthx-tiny-tune")
    first = recipes.get_recipe("earthx-tiny").model_config()
    for r in (place, tune):
        cfg = r.model_config()
        assert cfg.prompt.where_bins == 9 and cfg.mask == first.mask
        assert dataclasses.replace(cfg.prompt, where_bins=0) == first.prompt
        assert r.scenes == recipes.get_recipe("earthx-tiny").scenes and "vision" in r.train.freeze
    assert dict(place.train.mixture) == {"region_caption": 1.0}
    assert {"prompt_encoder.where_row", "prompt_encoder.where_col"} <= set(tune.train.freeze)
    # the last stage adds the S/2 mask refinement head and trains the mask decoder alone, on
    # mask tasks
    refine = recipes.get_recipe("earthx-tiny-refine")
    cfg = refine.model_config()
    assert cfg.mask == dataclasses.replace(first.mask, refine=True)
    assert cfg.prompt == tune.model_config().prompt and refine.init == "earthx-tiny-tune"
    assert refine.train.train_only == ("mask_decoder",)
    assert {k for k, _ in refine.train.mixture} == {"refer_seg", "prompt_seg"}

    calls = []

    def fake_run(cmd, check, cwd):  # records the command, writes the stage's model
        calls.append(cmd[cmd.index("training") + 1:])
        out = tmp_path / "runs" / cmd[cmd.index("--recipe") + 1] / "model"
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(subprocess, "run", fake_run)
    (tmp_path / "runs" / "earthx-tiny" / "model").mkdir(parents=True)  # done before: skipped
    (tmp_path / "runs" / "earthx-tiny" / "model" / "config.json").write_text("{}")
    last = default_model.train_chain("earthx-tiny-refine", tmp_path / "runs", threads=1)
    runs = tmp_path / "runs"
    assert calls == [
        ["--recipe", "earthx-tiny-place", "--out", str(runs / "earthx-tiny-place"), "--init",
         str(runs / "earthx-tiny" / "model"), "--threads", "1"],
        ["--recipe", "earthx-tiny-tune", "--out", str(runs / "earthx-tiny-tune"), "--init",
         str(runs / "earthx-tiny-place" / "model"), "--threads", "1"],
        ["--recipe", "earthx-tiny-refine", "--out", str(runs / "earthx-tiny-refine"), "--init",
         str(runs / "earthx-tiny-tune" / "model"), "--threads", "1"]]
    assert last == runs / "earthx-tiny-refine" / "model"
