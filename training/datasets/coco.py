"""COCO-style instance JSON -> ImageRecord: boxes [x, y, w, h], polygons and RLE masks.

Shared by SARDet-100K, HRSID, SSDD (COCO style), iSAID, HIT-UAV (which spells the keys
`filename` and `annotation`) and RRSIS-D (its `instances.json`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from numbers import Real

import numpy as np

from training.datasets._common import category_name, load_json, malformed
from training.records import Annotation, ImageRecord


def _is_num(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)


def coco_box(path: str, record: str, bbox: object) -> tuple[float, float, float, float]:
    """COCO [x, y, w, h] -> (x0, y0, x1, y1).

    Raises:
        ValueError: not four finite numbers with w, h >= 0 (names the file and record).
    """
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_num(v) for v in bbox)
    if not ok or bbox[2] < 0 or bbox[3] < 0:
        raise malformed(path, record,
                        "bbox must be four finite numbers [x, y, w, h] with w, h >= 0", bbox)
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h)


def _polygon_mask(rings: list[np.ndarray], hw: tuple[int, int]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from earthx_sdk.ops.rasterize import raster_polygon

        out = np.zeros(hw, bool)
        for ring in rings:
            out |= raster_polygon(ring, hw).astype(bool)
        return out

    return load


def _rle_mask(rle: dict) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from earthx_sdk.ops.masks import rle_decode

        return rle_decode(rle).astype(bool)

    return load


def coco_segmentation(path: str, record: str, seg: object, hw: tuple[int, int] | None
                      ) -> tuple[list[tuple[float, float]] | None, Callable[[], np.ndarray] | None]:
    """Checks a COCO `segmentation` and makes its lazy mask.

    Polygons ([[x0, y0, x1, y1, ...], ...]) are rasterized with earthx_sdk.ops.rasterize
    (pixel centers inside, even-odd); rings of fewer than 3 points cover nothing and are dropped.
    RLE ({"size": [H, W], "counts": str or [int]}) is decoded with earthx_sdk.ops.masks.rle_decode.

    Args:
        path: the JSON file, for messages.
        record: which annotation, for messages.
        seg: the `segmentation` value (None or [] for none).
        hw: the image (H, W), needed for polygons; None when the image entry has no size.

    Returns:
        (polygon, mask): the outline when exactly one ring has >= 3 points (else None), and a
        function returning bool [H, W] (None without a segmentation, or for polygons on an image
        of unknown size).

    Raises:
        ValueError: a polygon that is not a list of an even number of finite numbers; an RLE
            without `size` and `counts`.
    """
    if seg is None or (isinstance(seg, list) and not seg):
        return None, None
    if isinstance(seg, dict):
        if "size" not in seg or "counts" not in seg:
            raise malformed(path, record, "an RLE segmentation needs 'size' and 'counts'",
                            sorted(seg))
        return None, _rle_mask(seg)
    if not isinstance(seg, list):
        raise malformed(path, record, "segmentation must be a list of polygons or an RLE dict",
                        type(seg).__name__)
    rings = []
    for ring in seg:
        ok = isinstance(ring, list) and len(ring) % 2 == 0 and all(_is_num(v) for v in ring)
        if not ok:
            raise malformed(path, record, "a polygon must be a flat list of an even number of "
                            "finite numbers [x0, y0, x1, y1, ...]", ring)
        if len(ring) >= 6:
            rings.append(np.asarray(ring, np.float64).reshape(-1, 2))  # [N, 2]
    polygon = [(float(x), float(y)) for x, y in rings[0]] if len(rings) == 1 else None
    if hw is None or not rings:
        return polygon, None
    return polygon, _polygon_mask(rings, hw)


def _image_size(path: str, record: str, img: dict) -> tuple[int, int] | None:
    h, w = img.get("height"), img.get("width")
    if h is None and w is None:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (h, w)):
        raise malformed(path, record, "height and width must be ints >= 1", (h, w))
    return (h, w)


def read_coco(json_path: str | os.PathLike, image_dir: str | os.PathLike, *, source: str,
              split: str, sensor: str, file_key: str = "file_name",
              annotations_key: str = "annotations", skip_categories: Sequence[str] = (),
              ) -> list[ImageRecord]:
    """Reads a COCO instances JSON into one ImageRecord per image (in the file's order).

    Crowd annotations (`iscrowd` 1) are left out: they mark groups, not objects.

    Args:
        json_path: the JSON file.
        image_dir: folder holding the images named by `file_key`.
        source, split, sensor: copied into every record.
        file_key: key of the image file name in `images` entries.
        annotations_key: top-level key of the annotation list.
        skip_categories: normalized category names to leave out (e.g. "dont care").

    Returns:
        list[ImageRecord] with boxes (x0, y0, x1, y1), polygons and lazy masks.

    Raises:
        ValueError: a missing `images` / `categories` list; an image without `id` or file name;
            an annotation whose image_id or category_id names nothing; a bad bbox or segmentation.
            Each names the file and the record.
    """
    path = os.fspath(json_path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise malformed(path, "top level", "must be an object with an 'images' list",
                        sorted(data) if isinstance(data, dict) else type(data).__name__)
    cats = data.get("categories")
    if not isinstance(cats, list):
        raise malformed(path, "top level", "must have a 'categories' list", type(cats).__name__)
    names = {}
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise malformed(path, f"category {i}", "needs 'id' and a string 'name'", c)
        names[c["id"]] = category_name(c["name"])
    records: dict[object, ImageRecord] = {}
    for i, img in enumerate(data["images"]):
        rec = f"image {i}"
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get(file_key), str):
            raise malformed(path, rec, f"an image needs 'id' and a string '{file_key}'", img)
        if img["id"] in records:
            raise malformed(path, rec, "image ids must be unique", img["id"])
        records[img["id"]] = ImageRecord(
            source=source, split=split, sensor=sensor,
            image_path=os.path.join(os.fspath(image_dir), img[file_key]),
            size=_image_size(path, rec, img))
    anns = data.get(annotations_key, [])
    if not isinstance(anns, list):
        raise malformed(path, "top level", f"'{annotations_key}' must be a list",
                        type(anns).__name__)
    skip = set(skip_categories)
    for i, ann in enumerate(anns):
        rec = f"annotation {i} (id {ann.get('id') if isinstance(ann, dict) else None})"
        if not isinstance(ann, dict):
            raise malformed(path, rec, "an annotation must be an object", type(ann).__name__)
        image = records.get(ann.get("image_id"))
        if image is None:
            raise malformed(path, rec, "image_id must name an entry of 'images'",
                            ann.get("image_id"))
        if ann.get("category_id") not in names:
            raise malformed(path, rec, f"category_id must be one of {sorted(names)}",
                            ann.get("category_id"))
        if ann.get("iscrowd", 0) == 1 or names[ann["category_id"]] in skip:
            continue
        box = coco_box(path, rec, ann["bbox"]) if "bbox" in ann else None
        polygon, mask = coco_segmentation(path, rec, ann.get("segmentation"), image.size)
        image.annotations.append(Annotation(category=names[ann["category_id"]], box=box,
                                            polygon=polygon, mask=mask))
    return list(records.values())
