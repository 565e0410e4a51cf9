"""Each reader on a small fixture written in the dataset's exact on-disk format."""

import json
import pickle

import numpy as np
import pytest
import tifffile
from PIL import Image

from training.datasets import READERS, read_dataset


def _voc(path, filename, objects, hw=(40, 50)):
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>"
        + (f"<description>{d}</description>" if d else "") + "</object>"
        for n, b, d in objects)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{hw[1]}</width>"
                    f"<height>{hw[0]}</height></size>{objs}</annotation>")


def test_dior_rsvg_counts_objects_in_sorted_file_order(tmp_path):
    (tmp_path / "Annotations").mkdir()
    # written in reverse order: the reader must sort (b.xml's objects come after a.xml's)
    _voc(tmp_path / "Annotations" / "b.xml", "b.jpg", [("Ship", (1, 2, 10, 12), "the ship")])
    _voc(tmp_path / "Annotations" / "a.xml", "a.jpg",
         [("vehicle", (0, 0, 5, 5), "a car"), ("airplane", (3, 4, 20, 30), "the plane")])
    (tmp_path / "train.txt").write_text("1\n2\n")
    recs = read_dataset("dior-rsvg", str(tmp_path), "train")
    got = [(r.image_path.split("/")[-1], a.category, a.box, a.phrase)
           for r in recs for a in r.annotations]
    assert got == [("a.jpg", "airplane", (3, 4, 20, 30), "the plane"),
                   ("b.jpg", "ship", (1, 2, 10, 12), "the ship")]
    assert recs[0].size == (40, 50) and recs[0].sensor == "optical"


def test_dior_rsvg_malformed_bndbox(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><object><name>ship</name><bndbox><xmin>1</xmin>"
        "<ymin>2</ymin><xmax>3</xmax></bndbox></object></annotation>")
    (tmp_path / "train.txt").write_text("0")
    with pytest.raises(ValueError, match=r"x.xml object 0: <ymax> is missing"):
        read_dataset("dior-rsvg", str(tmp_path), "train")


def _coco(tmp_path, name, **extra):
    data = {"images": [{"id": 1, "file_name": "p.png", "height": 8, "width": 8}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 4, 3],
                             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]}],
            "categories": [{"id": 2, "name": "Ship"}], **extra}
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "annotations" / name).write_text(json.dumps(data))
    return data


def test_coco_polygons_and_sar_sensor(tmp_path):
    _coco(tmp_path, "train2017.json")
    (rec,) = read_dataset("hrsid", str(tmp_path), "train")
    (ann,) = rec.annotations
    assert rec.sensor == "sar" and ann.category == "ship" and ann.box == (1, 1, 5, 4)
    m = ann.mask()
    assert m.shape == (8, 8) and m[1:4, 1:5].all() and m.sum() == 12


def test_coco_annotation_with_unknown_image(tmp_path):
    data = _coco(tmp_path, "train2017.json")
    data["annotations"][0]["image_id"] = 9
    (tmp_path / "annotations" / "train2017.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 5\): image_id 9 is not in images"):
        read_dataset("hrsid", str(tmp_path), "train")


def test_hit_uav_nonstandard_keys(tmp_path):
    data = {"images": [{"id": 3, "filename": "t.jpg", "height": 10, "width": 10}],
            "annotation": [{"id": 1, "image_id": 3, "category_id": 0, "bbox": [2, 2, 3, 3]}],
            "categories": [{"id": 0, "name": "Person"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text(json.dumps(data))
    (rec,) = read_dataset("hit-uav", str(tmp_path), "train")
    assert rec.sensor == "infrared" and rec.annotations[0].box == (2, 2, 5, 5)
    assert rec.image_path.endswith("images/train/t.jpg")


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_rrsis_d_reads_refs_without_executing_code(tmp_path):
    data = _coco(tmp_path, "unused.json")
    (tmp_path / "instances.json").write_text(json.dumps(data))
    refs = [{"ref_id": 0, "ann_id": 5, "image_id": 1, "split": "train",
             "sentences": [{"sent": "the ship on the left"}]}]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs))
    (rec,) = read_dataset("rrsis-d", str(tmp_path), "train")
    assert rec.annotations[0].phrase == "the ship on the left"
    assert rec.annotations[0].mask().sum() == 12

    # a pickle that would call os.system when loaded by a plain pickle.load
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(ValueError, match="refusing .*system: only plain containers"):
        read_dataset("rrsis-d", str(tmp_path), "train")


def test_refsegrs(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    m = np.zeros((6, 6), np.uint8)
    m[2:4, 1:5] = 255
    tifffile.imwrite(tmp_path / "masks" / "7.tif", m)
    tifffile.imwrite(tmp_path / "images" / "7.tif", np.zeros((6, 6, 3), np.uint8))
    (tmp_path / "output_phrase_test.txt").write_text("7 road along the river\n")
    (rec,) = read_dataset("refsegrs", str(tmp_path), "test")
    assert rec.annotations[0].phrase == "road along the river"
    assert rec.annotations[0].mask().sum() == 8
    (tmp_path / "output_phrase_test.txt").write_text("8 a missing mask\n")
    with pytest.raises(ValueError, match="line 1: mask .*8.tif is missing"):
        read_dataset("refsegrs", str(tmp_path), "test")


def test_captions_karpathy_and_nwpu(tmp_path):
    (tmp_path / "dataset_rsicd.json").write_text(json.dumps({"images": [
        {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "many planes."}]},
        {"filename": "b.jpg", "split": "test", "sentences": [{"raw": "a river."}]}]}))
    (rec,) = read_dataset("rsicd", str(tmp_path), "train")
    assert rec.captions == ["many planes."] and rec.image_path.endswith("RSICD_images/a.jpg")
    (tmp_path / "dataset_rsicd.json").write_text(json.dumps({"images": [{"filename": "a.jpg"}]}))
    with pytest.raises(ValueError, match=r"images\[0\]: needs 'filename' and 'sentences'"):
        read_dataset("rsicd", str(tmp_path), "train")
    (tmp_path / "dataset_nwpu.json").write_text(json.dumps({"storage_tank": [
        {"filename": "s.jpg", "split": "train", "raw": "tanks.", "raw_1": "white tanks."}]}))
    (rec,) = read_dataset("nwpu-captions", str(tmp_path), "train")
    assert rec.captions == ["tanks.", "white tanks."] and rec.scene == "storage tank"


def test_infrared_mask_pairs(tmp_path):
    for d in ("images", "masks", "IRSTD1k_Img", "IRSTD1k_Label"):
        (tmp_path / d).mkdir()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "images" / "m1.png")
    tgt = np.zeros((5, 5), np.uint8)
    tgt[2, 2] = 255
    Image.fromarray(tgt).save(tmp_path / "masks" / "m1_pixels0.png")
    (rec,) = read_dataset("sirst", str(tmp_path))
    assert rec.sensor == "infrared" and rec.annotations[0].mask().sum() == 1
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "IRSTD1k_Img" / "x.png")
    with pytest.raises(ValueError, match="has no mask"):
        read_dataset("irstd-1k", str(tmp_path))


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"dataset must be one of \['dior-rsvg'"):
        read_dataset("imagenet", "/nowhere")
    assert len(READERS) == 13
