"""training.diagnose: the <seg> sensitivity figures on a random tiny model."""

import numpy as np
import pytest
import torch

from earthx_sdk.modeling.config import EarthXConfig
from earthx_sdk.modeling.model import EarthXModel
from training.diagnose import main, seg_sensitivity
from training.synthetic import render_scene


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EarthXModel(EarthXConfig.from_name("tiny")).eval()


def _images(n):
    return [render_scene(7 + s, (112, 112))["optical"].image for s in range(n)]


def test_question_and_image_terms(model):
    r = seg_sensitivity(model, _images(2), questions=("Please segment the ship.",
                                                      "Please segment all trees on the left."))
    for name in ("hidden", "logits"):
        for k in ("question", "image"):
            assert np.isfinite(r[name][k]) and r[name][k] > 0, (name, k, r)
    # the same image and question twice gives no change at all
    same = seg_sensitivity(model, _images(1) * 2, questions=("Please segment the ship.",) * 2)
    assert same["hidden"] == {"question": 0.0, "image": 0.0}


def test_needs_two_images(model):
    with pytest.raises(ValueError, match=">= 2 images"):
        seg_sensitivity(model, _images(1))


def test_cli_writes_json(model, tmp_path, capsys):
    model.save(tmp_path / "m")
    assert main(["--checkpoint", str(tmp_path / "m"), "--json", str(tmp_path / "d.json")]) == 0
    assert "other question" in capsys.readouterr().out
    assert (tmp_path / "d.json").is_file()


def test_region_sensitivity_on_distinct_objects(model):
    from training.diagnose import _object_boxes, region_sensitivity

    rec = render_scene(7, (112, 112))["optical"]
    boxes = _object_boxes(rec)
    assert len(boxes) >= 2
    r = region_sensitivity(model, rec.image, boxes)
    # a random model's region tokens still depend on the box (the collapse is a trained one)
    assert r["region"] > 0.05 and r["states"] > 0.05 and r["logits"] > 0
    assert all(v > 0 for v in r["norms"].values())
    # the same box twice: no change
    same = region_sensitivity(model, rec.image, [boxes[0], boxes[0]])
    assert same["region"] == 0.0 and same["logits"] == 0.0
    with pytest.raises(ValueError, match=">= 2 boxes"):
        region_sensitivity(model, rec.image, boxes[:1])


def test_linear_probe_reads_separable_classes_and_not_noise():
    from training.diagnose import linear_probe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(0, 1, (300, 8))
    x[:, 0] += 10 * y  # the class is linear in feature 0 (5 sigma apart)
    pred = linear_probe(x[:200], y[:200], x[200:])
    assert np.mean(pred == y[200:]) == 1.0
    noise = rng.normal(0, 1, (300, 8))  # features that say nothing of the class
    acc = np.mean(linear_probe(noise[:200], y[:200], noise[200:]) == y[200:])
    assert acc < 0.6, acc


def test_region_probe_scores_each_sensor(model):
    from training.diagnose import region_probe

    train = [r for s in range(2) for r in render_scene(s, (112, 112)).values()]
    test = list(render_scene(100_000, (112, 112)).values())
    r = region_probe(model, train, test)
    assert r["n_train"] > r["n_test"] > 0
    for name in ("pooled", "region_token"):
        assert set(r[name]) == {"optical", "multispectral", "sar", "infrared"}
        assert all(0.0 <= v <= 1.0 for v in r[name].values())
