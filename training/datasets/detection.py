"""Box / instance datasets in COCO or VOC form: SARDet-100K, HRSID, SSDD (SAR), iSAID (optical,
instance polygons) and HIT-UAV (infrared, COCO-like with keys `filename` and `annotation`)."""

from __future__ import annotations

import os

from training.datasets._common import check_split, first_existing
from training.datasets.coco import read_coco
from training.datasets.voc import parse_voc_xml, xml_files
from training.records import Annotation, ImageRecord


def read_sardet_100k(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """SARDet-100K: `Annotations/{split}.json` (COCO) and `JPEGImages/{split}/`.

    Args:
        root: the SARDet_100K folder.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord] with boxes, sensor "sar".

    Raises:
        ValueError: bad split; a malformed COCO file (see read_coco).
        FileNotFoundError: the JSON missing.
    """
    check_split("sardet-100k", split)
    root = os.fspath(root)
    return read_coco(os.path.join(root, "Annotations", f"{split}.json"),
                     os.path.join(root, "JPEGImages", split), source="sardet-100k", split=split,
                     sensor="sar")


def read_hrsid(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """HRSID: `annotations/train2017.json` / `test2017.json` (COCO, boxes and ship polygons) and
    `JPEGImages/` (or `images/`). HRSID has no val split.

    Args:
        root: the HRSID folder.
        split: "train" or "test".

    Returns:
        list[ImageRecord] with boxes, polygons and lazy masks, sensor "sar".

    Raises:
        ValueError: bad split; a malformed COCO file (see read_coco).
        FileNotFoundError: the JSON or the image folder missing.
    """
    check_split("hrsid", split, ("train", "test"))
    root = os.fspath(root)
    image_dir = first_existing("hrsid", "image folder", [os.path.join(root, "JPEGImages"),
                                                         os.path.join(root, "images")])
    return read_coco(os.path.join(root, "annotations", f"{split}2017.json"), image_dir,
                     source="hrsid", split=split, sensor="sar")


def read_ssdd(root: str | os.PathLike, split: str = "train", style: str = "auto"
              ) -> list[ImageRecord]:
    """SSDD, COCO style (`annotations/{split}.json`, `images/{split}/`) or VOC style
    (`Annotations_{split}/*.xml`, sorted, and `JPEGImages_{split}/`). SSDD has no val split.

    Args:
        root: the folder holding one of the two layouts.
        split: "train" or "test".
        style: "coco", "voc", or "auto" (COCO when its JSON exists, else VOC).

    Returns:
        list[ImageRecord] with boxes (ship), sensor "sar".

    Raises:
        ValueError: bad split or style; a malformed annotation file (see read_coco,
            parse_voc_xml).
        FileNotFoundError: the chosen layout missing.
    """
    check_split("ssdd", split, ("train", "test"))
    if style not in ("auto", "coco", "voc"):
        raise ValueError(f"ssdd: style must be 'auto', 'coco' or 'voc', got {style!r}")
    root = os.fspath(root)
    coco_json = os.path.join(root, "annotations", f"{split}.json")
    if style == "coco" or (style == "auto" and os.path.exists(coco_json)):
        return read_coco(coco_json, os.path.join(root, "images", split), source="ssdd",
                         split=split, sensor="sar")
    records = []
    for xml in xml_files(os.path.join(root, f"Annotations_{split}")):
        vf = parse_voc_xml(xml)
        records.append(ImageRecord(
            source="ssdd", split=split, sensor="sar",
            image_path=os.path.join(root, f"JPEGImages_{split}", vf.filename), size=vf.size,
            annotations=[Annotation(category=o.category, box=o.box) for o in vf.objects]))
    return records


def read_isaid(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """iSAID 800x800 patches: `{split}/instancesonly_filtered_{split}.json` (COCO with instance
    polygons) and `{split}/images/`. The test split has no public annotations.

    Args:
        root: the iSAID patches folder.
        split: "train" or "val".

    Returns:
        list[ImageRecord] with boxes, polygons and lazy masks, sensor "optical".

    Raises:
        ValueError: bad split; a malformed COCO file (see read_coco).
        FileNotFoundError: the JSON missing.
    """
    check_split("isaid", split, ("train", "val"))
    root = os.fspath(root)
    return read_coco(os.path.join(root, split, f"instancesonly_filtered_{split}.json"),
                     os.path.join(root, split, "images"), source="isaid", split=split,
                     sensor="optical")


def read_hit_uav(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """HIT-UAV, standard boxes (`normal_json/`): `annotations/{train,test}.json` and
    `annotations/val.json` or `instances_val.json`, images in `{split}/`. The JSON is COCO-like
    but names the image file `filename` and the annotation list `annotation`. "DontCare"
    regions are left out.

    Args:
        root: the `normal_json` folder, or the HIT-UAV folder holding it.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord] with boxes (person, car, bicycle, other vehicle), sensor "infrared".

    Raises:
        ValueError: bad split; a malformed file (see read_coco).
        FileNotFoundError: the JSON missing.
    """
    check_split("hit-uav", split)
    root = os.fspath(root)
    if os.path.isdir(os.path.join(root, "normal_json")):
        root = os.path.join(root, "normal_json")
    names = [f"{split}.json"] + (["instances_val.json"] if split == "val" else [])
    json_path = first_existing("hit-uav", f"{split} annotations",
                               [os.path.join(root, "annotations", n) for n in names])
    return read_coco(json_path, os.path.join(root, split), source="hit-uav", split=split,
                     sensor="infrared", file_key="filename", annotations_key="annotation",
                     skip_categories=("dont care",))
