"""VOC-style XML datasets: DIOR-RSVG (visual grounding) and SSDD (SAR ship detection, VOC form)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from training.records import Annotation, ImageRecord


def _text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"{where}: <{tag}> is missing")
    return child.text.strip()


def _objects(xml_path: Path):
    """(filename, (H, W), [(name, box, description)]) of one VOC XML file."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{xml_path}: not valid XML ({exc})") from None
    filename = _text(root, "filename", str(xml_path))
    size = root.find("size")
    hw = None
    if size is not None:
        hw = (int(_text(size, "height", f"{xml_path} size")),
              int(_text(size, "width", f"{xml_path} size")))
    objs = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{xml_path} object {k}"
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError(f"{where}: <bndbox> is missing")
        try:
            box = tuple(float(_text(bb, t, where)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise ValueError(str(exc) if "missing" in str(exc) else
                             f"{where}: bndbox values must be numbers") from None
        desc = obj.find("description")
        objs.append((_text(obj, "name", where).lower(), box,
                     desc.text.strip() if desc is not None and desc.text else None))
    return filename, hw, objs


def read_dior_rsvg(root: str, split: str = "train") -> list[ImageRecord]:
    """DIOR-RSVG: Annotations/*.xml, JPEGImages/, {split}.txt listing object indices.

    Object indices count the objects of all XML files in SORTED file-name order (the official
    loader uses the file system's order, which is not portable; sorted is what we define).
    """
    root_p = Path(root)
    split_file = root_p / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(f"DIOR-RSVG split file {split_file} is missing")
    wanted = {int(x) for x in split_file.read_text().split()}
    records, index = [], 0
    for xml_path in sorted((root_p / "Annotations").glob("*.xml")):
        filename, hw, objs = _objects(xml_path)
        anns = []
        for name, box, desc in objs:
            if index in wanted:
                anns.append(Annotation(category=name, box=box, phrase=desc))
            index += 1
        if anns:
            records.append(ImageRecord("dior-rsvg", split, "optical",
                                       image_path=str(root_p / "JPEGImages" / filename), size=hw,
                                       annotations=anns))
    return records


def read_ssdd_voc(root: str, split: str = "train") -> list[ImageRecord]:
    """SSDD in VOC form: Annotations/*.xml, JPEGImages/, optional ImageSets/Main/{split}.txt."""
    root_p = Path(root)
    ids_file = root_p / "ImageSets" / "Main" / f"{split}.txt"
    ids = set(ids_file.read_text().split()) if ids_file.is_file() else None
    records = []
    for xml_path in sorted((root_p / "Annotations").glob("*.xml")):
        if ids is not None and xml_path.stem not in ids:
            continue
        filename, hw, objs = _objects(xml_path)
        records.append(ImageRecord("ssdd", split, "sar",
                                   image_path=os.path.join(root, "JPEGImages", filename), size=hw,
                                   annotations=[Annotation(category=n, box=b) for n, b, _ in objs]))
    return records
