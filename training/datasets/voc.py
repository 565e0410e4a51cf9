"""Pascal-VOC-style XML (one file per image): filename, size, objects with name, bndbox and,
in DIOR-RSVG, a `description` referring expression. Used by DIOR-RSVG and SSDD (VOC style)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from training.datasets._common import category_name, malformed

_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VocObject:
    """One `<object>`: normalized category, (x0, y0, x1, y1) as written, description or None."""

    category: str
    box: tuple[float, float, float, float]
    description: str | None


@dataclass
class VocFile:
    """One parsed XML file."""

    filename: str
    size: tuple[int, int] | None
    objects: list[VocObject]


def _text(el: ET.Element | None) -> str | None:
    return None if el is None or el.text is None else el.text.strip()


def _size(path: str, root: ET.Element) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    h, w = _text(size.find("height")), _text(size.find("width"))
    try:
        hw = (int(h), int(w))
    except (TypeError, ValueError):
        raise malformed(path, "<size>", "height and width must be integers", (h, w)) from None
    if min(hw) < 1:
        raise malformed(path, "<size>", "height and width must be >= 1", hw)
    return hw


def parse_voc_xml(path: str | os.PathLike) -> VocFile:
    """Parses one VOC-style annotation file. Coordinates are kept as written (VOC's are 1-based
    inclusive; DIOR-RSVG's loader uses them as pixel coordinates, and so do we).

    Args:
        path: the XML file.

    Returns:
        VocFile with the objects in file order.

    Raises:
        ValueError: not XML; no `<filename>`; an object without `<name>` or `<bndbox>`, a bndbox
            missing a coordinate or with one that is not a number, or xmax < xmin / ymax < ymin.
            Each names the file and the object (0-based, in file order).
    """
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not valid XML: {exc}") from None
    filename = _text(root.find("filename"))
    if not filename:
        raise malformed(path, "<annotation>", "needs a non-empty <filename>", filename)
    objects = []
    for i, obj in enumerate(root.findall("object")):
        name = _text(obj.find("name"))
        rec = f"object {i} ({name})"
        if not name:
            raise malformed(path, rec, "an object needs a non-empty <name>", name)
        bb = obj.find("bndbox")
        if bb is None:
            raise malformed(path, rec, "an object needs a <bndbox>", None)
        values = {k: _text(bb.find(k)) for k in _COORDS}
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise malformed(path, rec, f"<bndbox> needs {', '.join(_COORDS)}; missing "
                            f"{', '.join(missing)}", values)
        try:
            x0, y0, x1, y1 = (float(values[k]) for k in _COORDS)
        except ValueError:
            raise malformed(path, rec, "<bndbox> coordinates must be numbers", values) from None
        if x1 < x0 or y1 < y0:
            raise malformed(path, rec, "<bndbox> needs xmin <= xmax and ymin <= ymax", values)
        objects.append(VocObject(category_name(name), (x0, y0, x1, y1),
                                 _text(obj.find("description"))))
    return VocFile(filename, _size(path, root), objects)


def xml_files(folder: str | os.PathLike) -> list[str]:
    """The `*.xml` files of `folder`, sorted by name.

    The official DIOR-RSVG loader enumerates them in file-system order (os.listdir), which is not
    defined; the object indices in train/val/test.txt match the sorted order (00001.xml, ...),
    so we sort.

    Raises:
        FileNotFoundError: no such folder.
    """
    folder = os.fspath(folder)
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.lower().endswith(".xml")]
