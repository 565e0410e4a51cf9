"""deepforest's tree boxes as ImageRecords: the real files (realdata) and malformed fixtures."""

import numpy as np
import pytest
from PIL import Image

from tests.conftest import realdata
from training import realdata as rd
from training.datasets.deepforest import read_deepforest
from training.templates import samples_for


def _boxes(records):
    return sorted((a.category, a.box) for r in records for a in r.annotations)


@pytest.mark.realdata
def test_osbs_029_csv():
    path = realdata(rd.deepforest, "OSBS_029.csv")
    (rec,) = read_deepforest(path)
    assert rec.sensor == "optical" and rec.image.shape == (400, 400, 3)
    assert rec.image.dtype == np.uint8 and rec.image.std() > 5  # real pixels, not a blank
    assert len(rec.annotations) == 61 and {a.category for a in rec.annotations} == {"tree"}
    assert rec.annotations[0].box == (203.0, 67.0, 227.0, 90.0)  # the file's first row


@pytest.mark.realdata
def test_soap_061_xml_labels_and_deterministic_held_out_half():
    path = realdata(rd.deepforest, "SOAP_061.xml")
    everything = read_deepforest(path, "all")
    train, held = read_deepforest(path, "train"), read_deepforest(path, "eval")
    cats = [a.category for a in everything[0].annotations]
    assert (cats.count("dead tree"), cats.count("live tree")) == (28, 9)
    a, b = _boxes(train), _boxes(held)
    assert not set(a) & set(b) and sorted(a + b) == _boxes(everything)
    assert (len(a), len(b)) == (19, 18)
    for cat in ("dead tree", "live tree"):  # both halves hold both classes
        assert any(c == cat for c, _ in a) and any(c == cat for c, _ in b)
    assert _boxes(read_deepforest(path, "train")) == a  # the same half every time
    assert held[0].split == "val" and train[0].split == "train"
    samples = samples_for(train[0], tasks=("region_class",), rng=np.random.default_rng(0))
    assert {s["answer"] for s in samples} <= {"dead tree", "live tree"} and len(samples) == 5


def _fixture(tmp_path, text, name="trees.csv", size=(40, 50)):
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(tmp_path / "img.png")
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = "image_path,xmin,ymin,xmax,ymax,label\n"


def test_csv_fixture_and_halves(tmp_path):
    rows = "".join(f"img.png,{x},2,{x + 4},9,{lab}\n"
                   for x, lab in ((1, "Tree"), (10, "Dead"), (20, "Tree"), (30, "Alive")))
    path = _fixture(tmp_path, HEADER + rows)
    (rec,) = read_deepforest(path)
    assert [a.category for a in rec.annotations] == ["tree", "dead tree", "tree", "live tree"]
    assert rec.size == (40, 50)
    train, held = read_deepforest(path, "train")[0], read_deepforest(path, "eval")[0]
    assert [a.box[0] for a in train.annotations] == [1.0, 10.0, 30.0]
    assert [a.box[0] for a in held.annotations] == [20.0]


@pytest.mark.parametrize("body, match", [
    ("image,xmin,ymin,xmax,ymax,label\nimg.png,1,1,5,5,Tree\n", "header: the header must be"),
    (HEADER + "img.png,1,1,5\n", "line 2: a row needs 6 fields"),
    (HEADER + "img.png,1,one,5,5,Tree\n", "line 2: xmin, ymin, xmax, ymax must be numbers"),
    (HEADER + "img.png,1,1,5,5,Tree\nimg.png,6,1,6,5,Tree\n",
     r"line 3 \(img.png\): a box needs xmax > xmin"),
    (HEADER + "img.png,40,1,60,5,Tree\n", r"line 2 \(img.png\): a box must lie inside the 50x40"),
    (HEADER + "img.png,1,1,5,5,\n", "line 2: label must not be empty"),
    (HEADER, "rows: the file must hold at least one box"),
])
def test_malformed_csv_names_file_and_row(tmp_path, body, match):
    path = _fixture(tmp_path, body)
    with pytest.raises(ValueError, match=match) as e:
        read_deepforest(path)
    assert str(path) in str(e.value)


def test_missing_image_split_and_suffix(tmp_path):
    path = _fixture(tmp_path, HEADER + "gone.png,1,1,5,5,Tree\n")
    with pytest.raises(FileNotFoundError, match="gone.png not found"):
        read_deepforest(path)
    with pytest.raises(ValueError, match="split must be one of"):
        read_deepforest(path, "test")
    with pytest.raises(ValueError, match="must be .csv or .xml"):
        read_deepforest(_fixture(tmp_path, "", name="trees.json"))
    xml = _fixture(tmp_path, "<annotation><filename>img.png</filename></annotation>",
                   name="t.xml")
    with pytest.raises(ValueError, match="at least one <object>"):
        read_deepforest(xml)


@pytest.mark.realdata
def test_deepforest_sources_for_a_recipe():
    from training.recipes import deepforest_sources

    realdata(rd.deepforest, "SOAP_061.xml")
    train = deepforest_sources("train", draws=4)["deepforest/region_class"]
    held = deepforest_sources("eval", draws=4)["deepforest/region_class"]
    assert len(train) == 2 * 2 * 4  # 2 images x 2 prompt types x 4 draws
    assert {s["answer"] for s in train} <= {"tree", "dead tree", "live tree"}
    assert {s["prompts"][0].kind for s in train} == {"box", "point"}
    boxes = lambda ss: {s["prompts"][0].bbox() for s in ss if s["prompts"][0].kind == "box"}  # noqa: E731
    assert not boxes(train) & boxes(held)  # the held-out half never trains
    both = deepforest_sources("train", draws=2, tasks=("region_class", "region_caption"))
    assert sorted(both) == ["deepforest/region_caption", "deepforest/region_class"]
    caps = [s["answer"] for s in both["deepforest/region_caption"]]
    assert len(caps) == 2 * 2 * 2 and all("tree" in c for c in caps)


@pytest.mark.realdata
def test_balanced_deepforest_sources_prompt_every_class_as_often():
    """balanced=True: SOAP_061 (14 dead, 5 live training boxes) is drawn per class, so live
    trees are asked about as often as dead ones; the held-out boxes still never train."""
    from collections import Counter

    from training.recipes import deepforest_sources

    realdata(rd.deepforest, "SOAP_061.xml")
    plain = Counter(s["answer"] for s in deepforest_sources("train", draws=8)
                    ["deepforest/region_class"])
    assert plain["live tree"] < plain["dead tree"] / 2  # the imbalance balanced=True removes
    bal = deepforest_sources("train", draws=8, balanced=True)["deepforest/region_class"]
    assert Counter(s["answer"] for s in bal) == {"tree": 16, "dead tree": 16, "live tree": 16}
    held = deepforest_sources("eval", draws=4)["deepforest/region_class"]
    boxes = lambda ss: {s["prompts"][0].bbox() for s in ss if s["prompts"][0].kind == "box"}  # noqa: E731
    assert not boxes(bal) & boxes(held)
