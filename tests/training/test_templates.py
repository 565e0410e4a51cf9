"""Instruction templates: every task and prompt type, valid prompts, and samples the processor
encodes."""

import numpy as np
import pytest

from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble
from training.records import Annotation, ImageRecord
from training.synthetic import render_scene
from training.templates import (
    PHRASINGS,
    PROMPT_TYPES,
    TASKS,
    make_prompt,
    position_name,
    region_mask,
    samples_for,
)

KEYS = {"image", "sensor", "question", "answer", "prompts", "target_masks", "history", "task"}
KINDS = {"point": Point, "box": Box, "polygon": Polygon, "scribble": Scribble, "mask": Mask}


@pytest.fixture(scope="module")
def scene():
    return render_scene(2)


@pytest.fixture(scope="module")
def processor():
    torch = pytest.importorskip("torch")
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    torch.manual_seed(0)
    return EarthXModel(EarthXConfig.from_name("tiny")).processor


def _texts(s):
    return [t for qa in s["history"] for t in qa] + [s["question"], s["answer"]]


def test_every_task_and_prompt_type(scene):
    samples = samples_for(scene["optical"], rng=np.random.default_rng(0))
    assert all(set(s) == KEYS for s in samples)
    assert {s["task"] for s in samples} == set(TASKS)
    for task in ("region_class", "region_caption", "prompt_seg"):
        kinds = [s["prompts"][0].kind for s in samples if s["task"] == task]
        assert sorted(kinds) == sorted(PROMPT_TYPES), task
        for s in samples:
            if s["task"] == task:
                assert isinstance(s["prompts"][0], KINDS[s["prompts"][0].kind])
    refer = [s for s in samples if s["task"] == "refer_seg"]
    assert len(refer) == 2 and all(not s["prompts"] for s in refer)
    multi = [s for s in samples if s["task"] == "multi_turn"]
    assert multi and all(s["history"] for s in multi)


@pytest.mark.parametrize("sensor", ["optical", "multispectral", "sar", "infrared"])
def test_samples_encode_with_the_tiny_processor(scene, processor, sensor):
    rec = scene[sensor]
    seen = 0.0
    for seed in (0, 1):
        for s in samples_for(rec, rng=np.random.default_rng(seed)):
            assert s["sensor"] == sensor and s["image"] is rec.image
            text = " ".join(_texts(s))
            assert text.count("<region>") == len(s["prompts"]), s
            n_masks = 0 if s["target_masks"] is None else len(s["target_masks"])
            assert s["answer"].count("<seg>") == n_masks and text.count("<seg>") == n_masks, s
            kw = {k: v for k, v in s.items() if k != "task"}
            enc = processor.encode(**kw)
            assert enc.boxes.shape[0] == len(s["prompts"])
            seg_id = processor.tokenizer.seg_id
            assert int((enc.input_ids == seg_id).sum()) == n_masks
            if n_masks:
                # objects under the 1/4-grid stride can vanish (nearest sampling): no max check
                assert enc.target_masks.shape[0] == n_masks
                assert set(np.unique(enc.target_masks)) <= {0.0, 1.0}
                seen += float(enc.target_masks.sum())
    assert seen > 0


def test_prompts_lie_in_their_object(scene):
    rec = scene["optical"]
    h, w = rec.size
    rng = np.random.default_rng(3)
    for ann in rec.annotations:
        m = ann.mask()
        for kind in PROMPT_TYPES:
            p = make_prompt(kind, ann, m, rng)
            x0, y0, x1, y1 = p.bbox()
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h, (ann.category, kind)
            if kind == "point":
                assert m[int(p.y), int(p.x)], ann.category
            elif kind == "scribble":
                assert all(m[int(y), int(x)] for x, y in p.points), ann.category
                assert len(p.points) >= 3
            elif kind == "box":
                assert p.bbox() == ann.box
            elif kind in ("polygon", "mask"):
                r = p.rasterize((h, w)).astype(bool)
                if ann.category != "water":  # a lake's outline includes the ships on it
                    assert np.array_equal(r, m), (ann.category, kind)


def test_target_masks_are_the_objects(scene):
    rec = scene["sar"]
    masks = [a.mask() for a in rec.annotations]
    for s in samples_for(rec, tasks=("prompt_seg", "refer_seg", "multi_turn"),
                         rng=np.random.default_rng(4)):
        for t in s["target_masks"]:
            assert t.shape == rec.size and t.dtype == bool
            parts = [m for m in masks if (m & t).any()]
            assert np.array_equal(np.logical_or.reduce(parts), t), s["question"]


def test_phrasings_vary_and_rng_is_reproducible(scene):
    rec = scene["infrared"]
    a = samples_for(rec, rng=np.random.default_rng(7))
    b = samples_for(rec, rng=np.random.default_rng(7))
    assert [(s["question"], s["answer"]) for s in a] == [(s["question"], s["answer"]) for s in b]
    questions = {s["question"] for seed in range(12)
                 for s in samples_for(rec, tasks=("caption",), rng=np.random.default_rng(seed))}
    assert len(questions) >= 3 and questions <= set(PHRASINGS["caption"])


def test_box_only_record_from_a_file(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    path = tmp_path / "tile.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(path)
    rec = ImageRecord("dior-rsvg", "train", "optical", image_path=str(path),
                      annotations=[Annotation("storage tank", box=(10, 12, 30, 40),
                                              phrase="the gray storage tank on the left")])
    samples = samples_for(rec, rng=np.random.default_rng(0))
    assert all(s["image"] == str(path) for s in samples)
    assert {s["task"] for s in samples} == {"region_class", "region_caption", "refer_seg",
                                            "prompt_seg", "multi_turn"}
    for s in samples:
        for p in s["prompts"]:
            x0, y0, x1, y1 = p.bbox()
            assert 10 - 1e-9 <= x0 and x1 <= 30 + 1e-9 and 12 - 1e-9 <= y0 and y1 <= 40 + 1e-9
        if s["task"] == "region_caption":
            assert s["answer"] == "The gray storage tank on the left."


def test_errors_name_the_input(scene):
    with pytest.raises(ValueError, match="task must be one of"):
        samples_for(scene["optical"], tasks=("captions",))
    with pytest.raises(ValueError, match="prompt type must be one of"):
        samples_for(scene["optical"], prompt_types=("lasso",))
    rec = ImageRecord("rrsis-d", "val", "optical", image=np.zeros((20, 20, 3), np.uint8),
                      annotations=[Annotation("ship", mask=lambda: np.ones((10, 10), bool))])
    with pytest.raises(ValueError, match=r"rrsis-d.*'ship'.*shape"):
        samples_for(rec)
    with pytest.raises(ValueError, match="no mask, polygon or box"):
        region_mask(Annotation("ship"), (20, 20), rec)
    with pytest.raises(ValueError, match="covers no pixel"):
        region_mask(Annotation("ship", box=(30, 30, 40, 40)), (20, 20), rec)


def test_position_names():
    assert position_name(1, 1, (90, 90)) == "top left"
    assert position_name(45, 45, (90, 90)) == "center"
    assert position_name(89, 89, (90, 90)) == "bottom right"
    assert position_name(89, 1, (90, 90)) == "top right"


def test_mask_only_annotation_gets_outline_and_scribble_inside():
    m = np.zeros((40, 50), bool)
    m[5:30, 8:14] = True  # an L shape: a scribble must not cut across the empty corner
    m[24:30, 8:40] = True
    rec = ImageRecord("refsegrs", "test", "optical", image=np.zeros((40, 50, 3), np.uint8),
                      annotations=[Annotation("road", mask=lambda: m)])
    rng = np.random.default_rng(0)
    ann = rec.annotations[0]
    poly = make_prompt("polygon", ann, region_mask(ann, (40, 50), rec), rng)
    r = poly.rasterize((40, 50)).astype(bool)
    assert (r | ~m).all() and r.sum() < 2 * m.sum()
    for seed in range(5):
        s = make_prompt("scribble", ann, m, np.random.default_rng(seed))
        assert all(m[int(y), int(x)] for x, y in s.points)
        assert make_prompt("box", ann, m, rng).bbox() == (8.0, 5.0, 40.0, 30.0)
