"""Dataset readers: tiny fixtures written in each dataset's exact on-disk format."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from PIL import Image

from earthx_sdk.ops.masks import rle_encode
from training.datasets import READERS, read_dataset

# Rectangle polygon: pixel centers inside are rows 1..2, cols 1..3 (6 pixels) of a 5x6 image.
RECT = [1, 1, 4, 1, 4, 3, 1, 3]
RECT_MASK = np.zeros((5, 6), bool)
RECT_MASK[1:3, 1:4] = True


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text if isinstance(text, str) else json.dumps(text))


def _png(path, a):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(a).save(path)


def _voc(filename, objects, size=(5, 6)):
    objs = "".join(
        f"<object><name>{name}</name><bndbox>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box,
                                                        strict=True) if v is not None)
        + "</bndbox>" + (f"<description>{desc}</description>" if desc else "") + "</object>"
        for name, box, desc in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{size[1]}</width>"
            f"<height>{size[0]}</height><depth>3</depth></size>{objs}</annotation>")


def _coco(images, anns, cats=((1, "ship"),), file_key="file_name", ann_key="annotations"):
    return {"images": [{"id": i, file_key: f, "height": 5, "width": 6} for i, f in images],
            ann_key: anns, "categories": [{"id": i, "name": n} for i, n in cats]}


def test_registry_names_and_unknown_name(tmp_path):
    assert len(READERS) == 13 and {"dior-rsvg", "rrsis-d", "hit-uav", "isaid"} <= set(READERS)
    with pytest.raises(ValueError, match=r"unknown dataset 'dior'.*dior-rsvg, hit-uav, hrsid"):
        read_dataset("dior", tmp_path, "train")


def _dior(root, bad=False):
    # Written in reverse name order: the reader must still count objects in sorted order.
    _write(f"{root}/Annotations/00002.xml", _voc("00002.jpg", [
        ("ship", (0, 1, 2, None if bad else 3), "the ship on the left")]))
    _write(f"{root}/Annotations/00001.xml", _voc("00001.jpg", [
        ("storagetank", (1, 2, 3, 4), "the tank at the top"),
        ("Expressway-toll-station", (0, 0, 5, 4), "the toll station")]))
    _write(f"{root}/train.txt", "0\n2\n")
    _write(f"{root}/val.txt", "1\n")
    _write(f"{root}/test.txt", "7\n")


def test_dior_rsvg_sorted_objects_and_splits(tmp_path, monkeypatch):
    _dior(tmp_path)
    listdir = os.listdir  # file-system order is arbitrary: hand the names out reversed
    monkeypatch.setattr(os, "listdir", lambda p: sorted(listdir(p), reverse=True))
    train = read_dataset("dior-rsvg", tmp_path, "train")
    assert [os.path.basename(r.image_path) for r in train] == ["00001.jpg", "00002.jpg"]
    a, b = train[0].annotations[0], train[1].annotations[0]
    assert (a.category, a.box, a.phrase) == ("storage tank", (1, 2, 3, 4), "the tank at the top")
    assert (b.category, b.box, b.phrase) == ("ship", (0, 1, 2, 3), "the ship on the left")
    assert train[0].size == (5, 6) and {r.sensor for r in train} == {"optical"}
    val = read_dataset("dior-rsvg", tmp_path, "val")
    assert [a.category for r in val for a in r.annotations] == ["expressway toll station"]
    with pytest.raises(ValueError, match=r"test.txt: object indices: must be < 3"):
        read_dataset("dior-rsvg", tmp_path, "test")
    with pytest.raises(ValueError, match=r"split must be one of"):
        read_dataset("dior-rsvg", tmp_path, "dev")


def test_dior_rsvg_bndbox_missing_coordinate(tmp_path):
    _dior(tmp_path, bad=True)
    with pytest.raises(ValueError, match=r"00002\.xml: object 0 \(ship\): .*missing ymax"):
        read_dataset("dior-rsvg", tmp_path, "train")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _rrsisd(root, extra=None):
    refs = [{"ref_id": 10, "image_id": 1, "ann_id": 100, "split": "train", "category_id": 1,
             "sentences": [{"raw": "the ship at the top", "sent": "x"}, {"raw": "upper ship"}]},
            {"ref_id": 11, "image_id": 1, "ann_id": 101, "split": "train", "category_id": 1,
             "sentences": [{"raw": "the small ship"}]},
            {"ref_id": 12, "image_id": 2, "ann_id": 102, "split": "val", "category_id": 1,
             "sentences": [{"raw": "a ship"}], "extra": extra}]
    os.makedirs(f"{root}/rrsisd")
    with open(f"{root}/rrsisd/refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    anns = [{"id": 100, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 2],
             "segmentation": [RECT]},
            {"id": 101, "image_id": 1, "category_id": 1, "bbox": [0, 1, 1, 2],
             "segmentation": {"size": [5, 6], "counts": [1, 2, 27]}},
            {"id": 102, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]
    _write(f"{root}/rrsisd/instances.json", _coco([(1, "a.jpg"), (2, "b.jpg")], anns))
    os.makedirs(f"{root}/images/rrsisd/JPEGImages")


def test_rrsisd_refs_and_masks(tmp_path):
    _rrsisd(tmp_path)
    (rec,) = read_dataset("rrsis-d", tmp_path, "train")
    assert rec.image_path.endswith(os.path.join("images", "rrsisd", "JPEGImages", "a.jpg"))
    assert [a.phrase for a in rec.annotations] == ["the ship at the top", "upper ship",
                                                   "the small ship"]
    first, _, rle = rec.annotations
    assert first.box == (1, 1, 4, 3) and first.polygon == [(1, 1), (4, 1), (4, 3), (1, 3)]
    np.testing.assert_array_equal(first.mask(), RECT_MASK)
    expected = np.zeros((5, 6), bool)
    expected[1:3, 0] = True  # runs [1, 2, 27], column-major
    np.testing.assert_array_equal(rle.mask(), expected)
    assert [r.image_path[-5:] for r in read_dataset("rrsis-d", tmp_path, "val")] == ["b.jpg"]


def test_rrsisd_pickle_with_non_plain_class(tmp_path, monkeypatch):
    _rrsisd(tmp_path, extra=[OrderedDict(a=1), _RunsCode()])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"refs\(unc\)\.p: record 2 \(ref_id 12\): only plain "
                       r".*collections.OrderedDict at \['extra'\]\[0\]"):
        read_dataset("rrsis-d", tmp_path, "train")
    assert not os.path.exists(tmp_path / "pwned")  # os.system was never called


def test_refsegrs_phrases_and_tif_masks(tmp_path):
    import tifffile

    for i, m in ((0, RECT_MASK), (1, ~RECT_MASK)):
        os.makedirs(tmp_path / "masks", exist_ok=True)
        tifffile.imwrite(tmp_path / "masks" / f"{i}.tif", m.astype(np.uint8) * 255)
    tifffile.imwrite(tmp_path / "masks" / "2.tif", np.full((5, 6), 7, np.uint8))
    _write(f"{tmp_path}/output_phrase_test.txt", "0 road along the river\n1 vehicle\n2 bad\n")
    recs = read_dataset("refsegrs", tmp_path, "test")
    assert [r.annotations[0].phrase for r in recs] == ["road along the river", "vehicle", "bad"]
    assert recs[0].image_path.endswith(os.path.join("images", "0.tif"))
    np.testing.assert_array_equal(recs[0].annotations[0].mask(), RECT_MASK)
    np.testing.assert_array_equal(recs[1].annotations[0].mask(), ~RECT_MASK)
    with pytest.raises(ValueError, match=r"2\.tif: mask values must be 0 or 255.*\[7\]"):
        recs[2].annotations[0].mask()


def _karpathy(images):
    return {"dataset": "rsicd", "images": images}


def test_rsicd_and_ucm_karpathy_json(tmp_path):
    ims = [{"filename": "airport_1.jpg", "split": "train", "sentences": [{"raw": "a runway ."}]},
           {"filename": "00017.jpg", "split": "restval", "sentences": [{"raw": " planes "}]},
           {"filename": "dense_residential_2.jpg", "split": "test", "sentences": [{"raw": "h"}]}]
    _write(f"{tmp_path}/rsicd/dataset_rsicd.json", _karpathy(ims))
    os.makedirs(tmp_path / "rsicd" / "RSICD_images")
    train = read_dataset("rsicd", tmp_path / "rsicd", "train")
    assert [(r.captions, r.scene) for r in train] == [(["a runway ."], "airport"),
                                                      (["planes"], None)]
    (test,) = read_dataset("rsicd", tmp_path / "rsicd", "test")
    assert test.scene == "dense residential"
    assert test.image_path.endswith(os.path.join("RSICD_images", "dense_residential_2.jpg"))
    _write(f"{tmp_path}/ucm/dataset.json", _karpathy(ims))
    os.makedirs(tmp_path / "ucm" / "imgs")
    assert [r.scene for r in read_dataset("ucm-captions", tmp_path / "ucm", "train")] == [None] * 2


def test_caption_json_without_sentences(tmp_path):
    ims = [{"filename": "1.tif", "split": "train", "sentences": [{"raw": "a"}]},
           {"filename": "2.tif", "split": "train"}]
    _write(f"{tmp_path}/dataset.json", _karpathy(ims))
    os.makedirs(tmp_path / "imgs")
    with pytest.raises(ValueError, match=r"dataset\.json: image 1 \(2\.tif\): .*'sentences'"):
        read_dataset("ucm-captions", tmp_path, "train")


def test_nwpu_captions(tmp_path):
    caps = {f"raw{s}": f"caption {i}" for i, s in enumerate(["", "_1", "_2", "_3", "_4"])}
    _write(f"{tmp_path}/dataset_nwpu.json", {
        "airplane": [{"filename": "airplane_001.jpg", "split": "train", **caps},
                     {"filename": "airplane_002.jpg", "split": "val", **caps}],
        "basketball_court": [{"filename": "basketball_court_001.jpg", "split": "train", **caps}]})
    recs = read_dataset("nwpu-captions", tmp_path, "train")
    assert [r.scene for r in recs] == ["airplane", "basketball court"]
    assert recs[0].captions == [f"caption {i}" for i in range(5)]
    assert recs[1].image_path.endswith(
        os.path.join("NWPU_images", "basketball_court", "basketball_court_001.jpg"))


def test_sardet_coco_boxes_and_categories(tmp_path):
    cats = ((0, "ship"), (1, "Aircraft"), (2, "Harbor"))
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 1]},
            {"id": 2, "image_id": 7, "category_id": 0, "bbox": [0, 0, 2, 2], "iscrowd": 1},
            {"id": 3, "image_id": 8, "category_id": 0, "bbox": [2, 2, 1, 1]}]
    _write(f"{tmp_path}/Annotations/val.json", _coco([(7, "a.png"), (8, "b.png")], anns, cats))
    recs = read_dataset("sardet-100k", tmp_path, "val")
    assert [r.image_path for r in recs] == [os.path.join(str(tmp_path), "JPEGImages", "val", n)
                                            for n in ("a.png", "b.png")]
    assert [(a.category, a.box) for a in recs[0].annotations] == [("aircraft", (1, 2, 4, 3))]
    assert recs[1].annotations[0].category == "ship" and {r.sensor for r in recs} == {"sar"}
    assert recs[0].size == (5, 6) and recs[0].annotations[0].mask is None


def test_coco_annotation_with_missing_image_id(tmp_path):
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 1]},
            {"id": 55, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 1]}]
    _write(f"{tmp_path}/Annotations/train.json", _coco([(7, "a.png")], anns))
    with pytest.raises(ValueError, match=r"train\.json: annotation 1 \(id 55\): image_id must "
                       r"name an entry of 'images', got 9"):
        read_dataset("sardet-100k", tmp_path, "train")


def test_hrsid_polygons_and_isaid_compressed_rle(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 2],
             "segmentation": [RECT]}]
    _write(f"{tmp_path}/hrsid/annotations/test2017.json", _coco([(1, "P1.jpg")], anns))
    os.makedirs(tmp_path / "hrsid" / "JPEGImages")
    (rec,) = read_dataset("hrsid", tmp_path / "hrsid", "test")
    np.testing.assert_array_equal(rec.annotations[0].mask(), RECT_MASK)
    with pytest.raises(ValueError, match=r"hrsid: split must be one of \('train', 'test'\)"):
        read_dataset("hrsid", tmp_path / "hrsid", "val")
    disk = np.zeros((5, 6), np.uint8)
    disk[0, 5] = disk[4, 0:3] = 1
    rle = rle_encode(disk)
    seg = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    anns = [{"id": 1, "image_id": 3, "category_id": 2, "bbox": [0, 0, 6, 5],
             "segmentation": seg},
            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [1, 1, 3, 2],
             "segmentation": [RECT, [0, 0, 1, 0]]}]
    cats = ((1, "Small_Vehicle"), (2, "storage_tank"))
    _write(f"{tmp_path}/isaid/val/instancesonly_filtered_val.json",
           _coco([(3, "P0003_0_800_0_800.png")], anns, cats))
    (rec,) = read_dataset("isaid", tmp_path / "isaid", "val")
    tank, car = rec.annotations
    assert (tank.category, car.category) == ("storage tank", "small vehicle")
    assert tank.polygon is None and car.polygon == [(1, 1), (4, 1), (4, 3), (1, 3)]
    np.testing.assert_array_equal(tank.mask(), disk.astype(bool))
    np.testing.assert_array_equal(car.mask(), RECT_MASK)  # the 2-point ring covers nothing


def test_ssdd_voc_and_coco_styles(tmp_path):
    _write(f"{tmp_path}/voc/Annotations_train/000002.xml", _voc("000002.jpg", [
        ("ship", (1, 1, 3, 3), None), ("ship", (0, 0, 1, 1), None)]))
    _write(f"{tmp_path}/voc/Annotations_train/000001.xml", _voc("000001.jpg", []))
    recs = read_dataset("ssdd", tmp_path / "voc", "train")
    assert [len(r.annotations) for r in recs] == [0, 2]
    assert recs[1].image_path.endswith(os.path.join("JPEGImages_train", "000002.jpg"))
    assert recs[1].annotations[1].box == (0, 0, 1, 1) and recs[1].sensor == "sar"
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}]
    _write(f"{tmp_path}/coco/annotations/test.json", _coco([(1, "x.jpg")], anns))
    (rec,) = read_dataset("ssdd", tmp_path / "coco", "test")
    assert rec.annotations[0].box == (1, 1, 3, 3)
    assert rec.image_path.endswith(os.path.join("images", "test", "x.jpg"))


def test_hit_uav_nonstandard_keys(tmp_path):
    cats = ((0, "Person"), (1, "Car"), (3, "OtherVehicle"), (4, "DontCare"))
    anns = [{"id": 5, "image_id": 2319, "category_id": 0, "bbox": [1, 1, 2, 3]},
            {"id": 6, "image_id": 2319, "category_id": 3, "bbox": [0, 0, 4, 4]},
            {"id": 7, "image_id": 2319, "category_id": 4, "bbox": [0, 0, 1, 1]}]
    _write(f"{tmp_path}/normal_json/annotations/instances_val.json",
           _coco([(2319, "0_60_30_0_01609.jpg")], anns, cats, "filename", "annotation"))
    (rec,) = read_dataset("hit-uav", tmp_path, "val")
    assert [(a.category, a.box) for a in rec.annotations] == [("person", (1, 1, 3, 4)),
                                                              ("other vehicle", (0, 0, 4, 4))]
    assert rec.sensor == "infrared"
    assert rec.image_path.endswith(os.path.join("normal_json", "val", "0_60_30_0_01609.jpg"))


def test_sirst_and_irstd_masks(tmp_path):
    target = np.zeros((5, 6), np.uint8)
    target[2, 3] = 255
    _png(f"{tmp_path}/sirst/masks/Misc_1_pixels0.png", target)
    _png(f"{tmp_path}/sirst/masks/Misc_2_pixels0.png", np.zeros((5, 6), np.uint8))
    _write(f"{tmp_path}/sirst/idx_427/trainval.txt", "Misc_1\nMisc_2\n")
    _write(f"{tmp_path}/sirst/idx_427/test.txt", "Misc_3\n")
    recs = read_dataset("sirst", tmp_path / "sirst", "train")
    assert [os.path.basename(r.image_path) for r in recs] == ["Misc_1.png", "Misc_2.png"]
    np.testing.assert_array_equal(recs[0].annotations[0].mask(), target == 255)
    assert not recs[1].annotations[0].mask().any() and recs[0].sensor == "infrared"
    assert len(read_dataset("sirst", tmp_path / "sirst", "test")) == 1
    with pytest.raises(FileNotFoundError, match=r"sirst: val list not found"):
        read_dataset("sirst", tmp_path / "sirst", "val")
    _png(f"{tmp_path}/irstd/IRSTD1k_Label/XDU0.png", np.dstack([target] * 3))
    _write(f"{tmp_path}/irstd/test.txt", "XDU0\n")
    (rec,) = read_dataset("irstd-1k", tmp_path / "irstd", "test")
    assert rec.image_path.endswith(os.path.join("IRSTD1k_Img", "XDU0.png"))
    np.testing.assert_array_equal(rec.annotations[0].mask(), target == 255)
