"""DeepForest's tree-crown annotations (NEON airborne RGB at 0.1 m) -> ImageRecords.

Two on-disk forms, as the deepforest package ships them under its `data/` folder (find the files
with `training.realdata.deepforest(NAME)`; the package itself is never imported):

- CSV with the header `image_path,xmin,ymin,xmax,ymax,label` (one row per box; image paths
  relative to the CSV's folder), e.g. `OSBS_029.csv` (61 "Tree" boxes).
- Pascal-VOC XML, e.g. `SOAP_061.xml` (37 boxes labelled "Dead" / "Alive").

Labels become category names: "Tree" -> "tree", "Dead" -> "dead tree", "Alive" -> "live tree"
(any other label: lowercased words). Boxes are (xmin, ymin, xmax, ymax) pixel edges as written.

Held-out half: `split="train"` keeps, per category, the boxes at even positions of the boxes sorted
by (ymin, xmin, ymax, xmax), `split="eval"` the odd ones, `split="all"` every box: deterministic,
disjoint, and both halves see every category (SOAP_061: 19 / 18 boxes, Dead 14 / 14, Alive 5 / 4).

Source and licence: deepforest 2.1.0 (MIT), NEON open data.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from training.datasets._common import category_name, check_split, malformed
from training.datasets.voc import parse_voc_xml
from training.records import Annotation, ImageRecord

DEEPFOREST_SPLITS = ("train", "eval", "all")
LABELS = {"tree": "tree", "dead": "dead tree", "alive": "live tree"}
_HEADER = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def label_name(raw: str) -> str:
    """A deepforest label as a category name ("Dead" -> "dead tree")."""
    name = category_name(raw)
    return LABELS.get(name, name)


def _rgb(path: Path, source: str) -> np.ndarray:
    """uint8 [H, W, 3] pixels of an image file (GeoTIFF or PNG; an alpha band is dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{source}: image {path} not found")
    from PIL import Image

    # Pillow, not tifffile: the NEON GeoTIFFs are LZW-compressed, which tifffile decodes only
    # with the optional imagecodecs package
    with Image.open(path) as im:
        a = np.asarray(im)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB(A) image, got shape {list(a.shape)}")
    if a.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8-bit RGB, got {a.dtype}")
    return np.ascontiguousarray(a[..., :3])


def _check_box(path: str, record: str, box: tuple[float, ...], hw: tuple[int, int]) -> None:
    x0, y0, x1, y1 = box
    if not all(np.isfinite(box)):
        raise malformed(path, record, "box coordinates must be finite numbers", box)
    if not (x1 > x0 and y1 > y0):
        raise malformed(path, record, "a box needs xmax > xmin and ymax > ymin", box)
    h, w = hw
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise malformed(path, record, f"a box must lie inside the {w}x{h} image", box)


def _read_csv(path: Path) -> dict[str, list[tuple[str, tuple[float, ...], str]]]:
    """{image path: [(record name, box, raw label), ...]} in file order."""
    out: dict[str, list] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _HEADER:
            raise malformed(path, "header", f"the header must be {','.join(_HEADER)}", header)
        for line, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            record = f"line {line}"
            if len(row) != len(_HEADER):
                raise malformed(path, record, f"a row needs {len(_HEADER)} fields", row)
            try:
                box = tuple(float(v) for v in row[1:5])
            except ValueError:
                raise malformed(path, record, "xmin, ymin, xmax, ymax must be numbers",
                                row[1:5]) from None
            if not row[5].strip():
                raise malformed(path, record, "label must not be empty", row[5])
            out.setdefault(row[0].strip(), []).append((record, box, row[5].strip()))
    if not out:
        raise malformed(path, "rows", "the file must hold at least one box", 0)
    return out


def _half(boxes: list[tuple[str, tuple[float, ...], str]], split: str) -> list:
    """The train (even) or eval (odd) half of the boxes of each category, or all of them."""
    if split == "all":
        return boxes
    keep = []
    for cat in sorted({label_name(b[2]) for b in boxes}):
        mine = sorted((b for b in boxes if label_name(b[2]) == cat),
                      key=lambda b: (b[1][1], b[1][0], b[1][3], b[1][2]))
        keep += mine[0 if split == "train" else 1::2]
    order = {id(b): i for i, b in enumerate(boxes)}
    return sorted(keep, key=lambda b: order[id(b)])


def read_deepforest(path: str | os.PathLike, split: str = "all") -> list[ImageRecord]:
    """Reads a deepforest annotation file (CSV or VOC XML) with its images.

    Args:
        path: the .csv or .xml file; images are looked up in its folder.
        split: "train" / "eval" (the two deterministic halves of each image's boxes, see the
            module docstring) or "all".

    Returns:
        One optical ImageRecord per image (pixels loaded, uint8 RGB), its boxes as annotations.

    Raises:
        ValueError: an unknown split; a malformed file or row (names the file and the row or
            object); a box that is empty or outside its image.
        FileNotFoundError: the annotation file or an image it names is missing.
    """
    check_split("deepforest", split, DEEPFOREST_SPLITS)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"deepforest: annotation file {path} not found")
    if path.suffix.lower() == ".csv":
        per_image = _read_csv(path)
    elif path.suffix.lower() == ".xml":
        voc = parse_voc_xml(path)
        per_image = {voc.filename: [(f"<object> {i}", o.box, o.category)
                                    for i, o in enumerate(voc.objects)]}
        if not voc.objects:
            raise malformed(path, "<annotation>", "the file must hold at least one <object>", 0)
    else:
        raise ValueError(f"deepforest: annotation file must be .csv or .xml, got {path.name!r}")
    records = []
    for name in sorted(per_image):
        image = _rgb(path.parent / name, f"{path} ({name})")
        hw = image.shape[:2]
        anns = []
        for record, box, label in _half(per_image[name], split):
            _check_box(str(path), f"{record} ({name})", box, hw)
            anns.append(Annotation(label_name(label), tuple(float(v) for v in box)))
        records.append(ImageRecord("deepforest", "val" if split == "eval" else "train",
                                   "optical", image=image, size=hw, annotations=anns))
    return records
