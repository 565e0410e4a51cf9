"""The synthetic scene generator: determinism, annotations, and the physics each sensor shows."""

import numpy as np
import pytest

from earthx_sdk.ops.rasterize import raster_polygon
from training.records import SENSORS
from training.synthetic import CLASSES, IR_SCALE, SAR_LAND, SAR_LOOKS, render_scene

SEEDS = range(8)


@pytest.fixture(scope="module")
def scenes():
    return {s: render_scene(s) for s in SEEDS}


def _masks(rec, cat):
    out = np.zeros(rec.size, bool)
    for a in rec.annotations:
        if a.category == cat:
            out |= a.mask()
    return out


def _shrink(m, r):
    """Erosion by a (2r+1)^2 square, written independently of the generator's."""
    p = np.pad(m, r, constant_values=False)
    out = np.ones_like(m)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out &= p[dy: dy + m.shape[0], dx: dx + m.shape[1]]
    return out


def test_sensors_dtypes_and_shapes(scenes):
    rec = scenes[0]
    assert set(rec) == set(SENSORS)
    expect = {"optical": (np.uint8, (224, 224, 3)), "multispectral": (np.uint16, (224, 224, 4)),
              "sar": (np.float32, (224, 224)), "infrared": (np.uint16, (224, 224))}
    for sensor, (dtype, shape) in expect.items():
        r = rec[sensor]
        assert r.sensor == sensor and r.source == "synthetic" and r.size == (224, 224)
        assert r.image.dtype == dtype and r.image.shape == shape, sensor
        assert r.captions and r.qa and r.scene
    anns = [rec[s].annotations for s in SENSORS]
    assert all(len(a) == len(anns[0]) and all(x is y for x, y in zip(a, anns[0], strict=True))
               for a in anns)


def test_deterministic_per_seed():
    a, b, c = render_scene(5), render_scene(5), render_scene(6)
    for sensor in SENSORS:
        assert a[sensor].image.tobytes() == b[sensor].image.tobytes(), sensor
        assert a[sensor].image.tobytes() != c[sensor].image.tobytes(), sensor
        assert a[sensor].captions == b[sensor].captions and a[sensor].qa == b[sensor].qa
    for x, y in zip(a["sar"].annotations, b["sar"].annotations, strict=True):
        assert (x.category, x.box, x.polygon, x.phrase) == (y.category, y.box, y.polygon,
                                                            y.phrase)
        assert np.array_equal(x.mask(), y.mask())


def test_other_sizes():
    rec = render_scene(1, size=(96, 160))
    assert rec["optical"].image.shape == (96, 160, 3)
    assert all(a.mask().shape == (96, 160) for a in rec["optical"].annotations)
    with pytest.raises(ValueError, match="size"):
        render_scene(1, size=(10, 224))


def test_masks_agree_with_boxes_and_polygons(scenes):
    for seed, rec in scenes.items():
        taken = np.zeros((224, 224), bool)
        ships = _masks(rec["optical"], "ship")
        for a in rec["optical"].annotations:
            m = a.mask()
            assert m.dtype == bool and m.any()
            assert not (taken & m).any(), f"seed {seed}: {a.category} overlaps another instance"
            taken |= m
            ys, xs = np.nonzero(m)
            assert a.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), (seed, a.category)
            poly = raster_polygon(a.polygon, (224, 224)).astype(bool)
            if a.category == "water":  # the lake's outline; ships on it are cut out of its mask
                assert np.array_equal(poly & ~ships, m) and (poly | ~ships).all(), seed
            else:
                assert np.array_equal(poly, m), (seed, a.category)
            assert a.category in CLASSES and a.phrase.startswith("the ")


def test_every_class_appears_and_is_visible(scenes):
    seen = {}
    for rec in scenes.values():
        for a in rec["optical"].annotations:
            seen.setdefault(a.category, []).append(int(a.mask().sum()))
    assert set(seen) == set(CLASSES)
    for cat, areas in seen.items():
        assert min(areas) >= 30, f"{cat} instances as small as {min(areas)} pixels"


def test_captions_and_qa_follow_the_layout(scenes):
    for rec in scenes.values():
        r = rec["sar"]
        counts = {c: sum(a.category == c for a in r.annotations) for c in CLASSES}
        qa = dict(r.qa)
        assert qa["How many buildings are there in the image?"] == str(counts["building"])
        assert qa["Is there a ship in the image?"] == ("yes" if counts["ship"] else "no")
        assert qa["Is there any water in the image?"] == ("yes" if counts["water"] else "no")
        assert r.captions[0].startswith("A SAR image")
        assert rec["optical"].captions[0].startswith("An optical image")
        for c in CLASSES:
            if counts[c] == 1:
                assert qa[f"Where is the {c}?"] in {
                    "top left", "top", "top right", "left", "center", "right", "bottom left",
                    "bottom", "bottom right"}


def test_sar_speckle_statistics(scenes):
    """Open land: intensity mean ~ SAR_LAND, equivalent number of looks mean^2/var ~ SAR_LOOKS."""
    for seed in (0, 1, 2):
        rec = scenes[seed]["sar"]
        objects = np.zeros((224, 224), bool)
        for a in rec.annotations:
            objects |= a.mask()
        land = _shrink(~objects, 6)  # away from object edges and radar shadows
        assert land.sum() > 5000
        i = rec.image.astype(np.float64)[land] ** 2
        enl = i.mean() ** 2 / i.var()
        print(f"seed {seed}: mean/sigma0 {i.mean() / SAR_LAND:.3f}, ENL {enl:.2f}")
        assert abs(i.mean() / SAR_LAND - 1) < 0.05
        assert abs(enl / SAR_LOOKS - 1) < 0.2


def test_water_dark_roofs_warm_edges_bright(scenes):
    checked = 0
    for seed, rec in scenes.items():
        water = _shrink(_masks(rec["sar"], "water"), 2)
        objects = np.zeros((224, 224), bool)
        for a in rec["sar"].annotations:
            objects |= a.mask()
        land = _shrink(~objects, 6)
        buildings = [a.mask() for a in rec["sar"].annotations if a.category == "building"]
        ir = rec["infrared"].image.astype(np.float64) / IR_SCALE
        sar = rec["sar"].image.astype(np.float64) ** 2
        nir = rec["multispectral"].image[..., 3].astype(np.float64)
        if water.sum() > 100:
            checked += 1
            assert sar[water].mean() < 0.2 * sar[land].mean(), seed
            assert ir[water].mean() < ir[land].mean() - 3, seed
            assert nir[water].mean() < 0.2 * nir[land].mean(), seed
            for m in buildings:
                assert ir[_shrink(m, 2)].mean() > ir[water].mean() + 10, seed
        trees = _masks(rec["multispectral"], "tree")
        if trees.any():
            assert nir[trees].mean() > nir[land].mean(), seed
        for m in buildings:
            inner = _shrink(m, 2)
            edge = m & ~_shrink(m, 1)
            assert sar[edge].mean() > 3 * sar[inner].mean(), seed
    assert checked >= 2


def test_class_map_labels_every_instance_pixel():
    from training.synthetic import class_map

    rec = render_scene(5, (96, 128), object_scale=1.5)["optical"]
    cmap = class_map(rec)
    assert cmap.shape == (96, 128) and cmap.dtype == np.int64
    covered = np.zeros((96, 128), bool)
    for ann in rec.annotations:
        m = np.asarray(ann.mask(), bool)
        assert (cmap[m] == CLASSES.index(ann.category) + 1).all(), ann.category
        covered |= m
    assert (cmap[~covered] == 0).all() and covered.any()
