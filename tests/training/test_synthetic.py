import numpy as np
import pytest

from training.synthetic import _LAND, CLASSES, SAR_LOOKS, render_scene
from training.templates import PROMPT_KINDS, TASKS, make_prompt, samples_for


def test_deterministic_per_seed():
    a, b, c = render_scene(5), render_scene(5), render_scene(6)
    for sensor in a:
        assert np.array_equal(a[sensor].image, b[sensor].image)
        assert not np.array_equal(a[sensor].image, c[sensor].image)
    assert a["sar"].captions == b["sar"].captions


def _class_mask(rec, cat):
    m = np.zeros(rec.size, bool)
    for a in rec.annotations:
        if a.category == cat:
            m |= a.mask()
    return m


def test_physics_of_the_sensors():
    recs = render_scene(0)
    water = _class_mask(recs["sar"], "water")
    objects = np.zeros(recs["sar"].size, bool)
    for a in recs["sar"].annotations:
        objects |= a.mask()
    land = ~objects
    intensity = recs["sar"].image.astype(np.float64) ** 2
    # speckle on open land: mean = the land backscatter, variance / mean^2 = 1 / L
    mean = intensity[land].mean()
    looks = mean**2 / intensity[land].var()
    assert abs(mean / _LAND["sar"] - 1) < 0.05
    assert abs(looks / SAR_LOOKS - 1) < 0.2
    assert intensity[water].mean() < 0.2 * mean  # dark water
    # double bounce: building outlines brighter than their interiors
    b = recs["sar"].annotations[[a.category for a in recs["sar"].annotations].index("building")]
    m = b.mask()
    inner = m.copy()
    inner[1:-1, 1:-1] &= m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    edge = m & ~inner
    assert intensity[edge].mean() > 3 * intensity[inner & ~edge].mean()
    # thermal: roofs warmer than water, water cooler than land
    ir = recs["infrared"].image.astype(np.float64)
    roofs = _class_mask(recs["infrared"], "building")
    assert ir[roofs].mean() > ir[land].mean() > ir[water].mean()
    # NIR: vegetation bright, water dark
    nir = recs["multispectral"].image[..., 3].astype(np.float64)
    trees = _class_mask(recs["multispectral"], "tree")
    assert nir[trees].mean() > nir[land].mean() > nir[water].mean()


def test_masks_agree_with_boxes_and_every_class_appears():
    seen = set()
    for seed in range(4):
        for a in render_scene(seed)["optical"].annotations:
            ys, xs = np.nonzero(a.mask())
            assert a.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            seen.add(a.category)
    assert seen == set(CLASSES)


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_prompts_lie_on_their_object(kind):
    rec = render_scene(2)["optical"]
    ann = next(a for a in rec.annotations if a.category == "building")
    p = make_prompt(ann, kind, np.random.default_rng(0))
    drawn = p.rasterize(rec.size) > 0
    assert drawn.any() and (drawn & ann.mask()).sum() >= 0.5 * drawn.sum()


def test_templates_cover_every_task_and_encode():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    torch.manual_seed(0)
    proc = EarthXModel(EarthXConfig.from_name("tiny")).processor
    rng = np.random.default_rng(0)
    tasks = set()
    for rec in render_scene(3).values():
        for s in samples_for(rec, rng=rng):
            tasks.add(s["task"])
            e = proc.encode(**{k: v for k, v in s.items() if k != "task"})
            text = s["question"] + " ".join(q for q, _ in s["history"])
            assert text.count("<region>") <= len(s["prompts"])
            n_seg = s["answer"].count("<seg>")
            assert n_seg == (0 if e.target_masks is None else len(e.target_masks))
    assert tasks == set(TASKS)
    with pytest.raises(ValueError, match=r"tasks \['dance'\] unknown"):
        samples_for(render_scene(0)["sar"], tasks=["dance"])
