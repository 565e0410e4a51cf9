"""Referring datasets with one phrase per object: DIOR-RSVG (boxes) and RefSegRS (masks)."""

from __future__ import annotations

import os

from training.datasets._common import binary_mask_file, check_split, malformed, read_split_ids
from training.datasets.voc import parse_voc_xml, xml_files
from training.records import Annotation, ImageRecord


def _indices(path: str) -> set[int]:
    out = set()
    for i, s in enumerate(read_split_ids(path)):
        if not s.isdigit():
            raise malformed(path, f"line {i + 1}",
                            "each line must be an object index (an int >= 0)", s)
        out.add(int(s))
    return out


def read_dior_rsvg(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """DIOR-RSVG: `Annotations/*.xml` (VOC-like, each object with a `description`),
    `JPEGImages/`, and `{split}.txt` listing object indices.

    An object's index counts every `<object>` of every XML file, the files taken in sorted name
    order (the official loader uses file-system order, which the indices match only when sorted),
    objects in file order. Each listed object becomes one Annotation (category, box as written,
    phrase = description); the objects of one image are grouped into one record, images in sorted
    order.

    Args:
        root: the DIOR-RSVG folder.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord], sensor "optical".

    Raises:
        ValueError: bad split; a malformed XML (see parse_voc_xml); a listed object without a
            description; a split line that is not an index, or an index beyond the objects.
        FileNotFoundError: Annotations/ or the split file missing.
    """
    check_split("dior-rsvg", split)
    root = os.fspath(root)
    split_file = os.path.join(root, f"{split}.txt")
    wanted = _indices(split_file)
    records, count = [], 0
    for xml in xml_files(os.path.join(root, "Annotations")):
        vf = parse_voc_xml(xml)
        anns = []
        for i, obj in enumerate(vf.objects):
            if count in wanted:
                if not obj.description:
                    raise malformed(xml, f"object {i} ({obj.category})",
                                    "a referring object needs a non-empty <description>",
                                    obj.description)
                anns.append(Annotation(category=obj.category, box=obj.box,
                                       phrase=obj.description))
            count += 1
        if anns:
            records.append(ImageRecord(
                source="dior-rsvg", split=split, sensor="optical",
                image_path=os.path.join(root, "JPEGImages", vf.filename), size=vf.size,
                annotations=anns))
    beyond = sorted(i for i in wanted if i >= count)
    if beyond:
        raise malformed(split_file, "object indices", f"must be < {count} (the objects in "
                        "Annotations/*.xml)", beyond[:5])
    return records


def read_refsegrs(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """RefSegRS: `images/<id>.tif`, `masks/<id>.tif` (255 = target, 0 = background) and
    `output_phrase_{split}.txt` with lines "<id> <phrase>".

    One record per line, in file order, with one Annotation: category "object" (the dataset
    names no class), phrase, and the lazy mask.

    Args:
        root: the RefSegRS folder.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord], sensor "optical".

    Raises:
        ValueError: bad split; a line without an id and a phrase (names the file and line).
        FileNotFoundError: the phrase file missing.
    """
    check_split("refsegrs", split)
    root = os.fspath(root)
    path = os.path.join(root, f"output_phrase_{split}.txt")
    records = []
    with open(path, encoding="utf-8") as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    for n, line in lines:
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise malformed(path, f"line {n}", "each line must be '<id> <phrase>'", line)
        image_id, phrase = parts
        mask = binary_mask_file(os.path.join(root, "masks", f"{image_id}.tif"))
        records.append(ImageRecord(
            source="refsegrs", split=split, sensor="optical",
            image_path=os.path.join(root, "images", f"{image_id}.tif"),
            annotations=[Annotation(category="object", mask=mask, phrase=phrase)]))
    return records
