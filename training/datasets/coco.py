"""COCO-style datasets: SARDet-100K, HRSID, iSAID (polygons), HIT-UAV (non-standard keys), and
RRSIS-D (refCOCO-style refs pickle + COCO instances)."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np

from training.records import Annotation, ImageRecord


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _mask_fn(seg, hw, where: str):
    """A lazy mask from a COCO segmentation (polygons or RLE)."""
    from earthx_sdk.ops.masks import rle_decode
    from earthx_sdk.ops.rasterize import raster_polygon

    if isinstance(seg, dict):
        return lambda: rle_decode(seg).astype(bool)
    if isinstance(seg, list) and seg:
        polys = [np.asarray(p, np.float64).reshape(-1, 2) for p in seg]
        for p in polys:
            if len(p) < 3:
                raise ValueError(f"{where}: a segmentation polygon has fewer than 3 points")

        def fn():
            m = np.zeros(hw, bool)
            for p in polys:
                m |= raster_polygon(p, hw).astype(bool)
            return m
        return fn
    return None


def _coco_records(data: dict, path: Path, image_dir: str, source: str, split: str, sensor: str,
                  images_key="images", anns_key="annotations", file_key="file_name"):
    cats = {c["id"]: c["name"].lower() for c in data.get("categories", [])}
    images = {}
    for k, img in enumerate(data.get(images_key, [])):
        if "id" not in img or file_key not in img:
            raise ValueError(f"{path} {images_key}[{k}]: needs 'id' and '{file_key}'")
        images[img["id"]] = img
    anns: dict = {i: [] for i in images}
    for k, a in enumerate(data.get(anns_key, [])):
        where = f"{path} {anns_key}[{k}] (id {a.get('id')})"
        if a.get("image_id") not in images:
            raise ValueError(f"{where}: image_id {a.get('image_id')!r} is not in {images_key}")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise ValueError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
        img = images[a["image_id"]]
        hw = (int(img.get("height", 0)), int(img.get("width", 0)))
        x, y, w, h = (float(v) for v in bbox)
        anns[a["image_id"]].append(Annotation(
            category=cats.get(a.get("category_id"), str(a.get("category_id"))),
            box=(x, y, x + w, y + h),
            mask=_mask_fn(a.get("segmentation"), hw, where) if all(hw) else None))
    return [ImageRecord(source, split, sensor, image_path=os.path.join(image_dir, img[file_key]),
                        size=(img["height"], img["width"]) if "height" in img else None,
                        annotations=anns[i]) for i, img in images.items()]


def read_coco_dataset(root: str, split: str, source: str, sensor: str) -> list[ImageRecord]:
    """COCO JSON at Annotations/{split}.json (SARDet-100K), annotations/{split}2017.json (HRSID),
    or {split}.json; images in JPEGImages/ or images/."""
    r = Path(root)
    for cand in (r / "Annotations" / f"{split}.json", r / "annotations" / f"{split}2017.json",
                 r / f"{split}2017.json", r / f"{split}.json"):
        if cand.is_file():
            image_dir = next((str(r / d) for d in ("JPEGImages", "images") if (r / d).is_dir()),
                             str(r))
            return _coco_records(_load_json(cand), cand, image_dir, source, split, sensor)
    raise FileNotFoundError(f"{source}: no COCO annotation file for split {split!r} under {root}")


def read_hit_uav(root: str, split: str = "train") -> list[ImageRecord]:
    """HIT-UAV: COCO-like JSON whose images use `filename` and whose objects are `annotation`."""
    path = Path(root) / "annotations" / f"{split}.json"
    return _coco_records(_load_json(path), path, os.path.join(root, "images", split), "hit-uav",
                         split, "infrared", anns_key="annotation", file_key="filename")


class _PlainUnpickler(pickle.Unpickler):
    """Admits only plain containers and scalars: any class or function reference is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only plain containers are allowed")


def read_rrsis_d(root: str, split: str = "train") -> list[ImageRecord]:
    """RRSIS-D: refs(unc).p (refCOCO style, read without executing code) + instances.json."""
    r = Path(root)
    refs_path = r / "refs(unc).p"
    try:
        refs = _PlainUnpickler(io.BytesIO(refs_path.read_bytes())).load()
    except FileNotFoundError:
        raise FileNotFoundError(f"RRSIS-D refs file {refs_path} is missing") from None
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{refs_path}: {exc}") from None
    inst_path = r / "instances.json"
    data = _load_json(inst_path)
    cats = {c["id"]: c["name"].lower() for c in data.get("categories", [])}
    images = {img["id"]: img for img in data.get("images", [])}
    anns = {a["id"]: a for a in data.get("annotations", [])}
    by_image: dict = {}
    for k, ref in enumerate(refs):
        where = f"{refs_path} ref {k}"
        if not isinstance(ref, dict) or "ann_id" not in ref or "sentences" not in ref:
            raise ValueError(f"{where}: needs 'ann_id' and 'sentences'")
        if ref.get("split") != split:
            continue
        a = anns.get(ref["ann_id"])
        if a is None or a.get("image_id") not in images:
            raise ValueError(f"{where}: ann_id {ref['ann_id']} is not an annotation of "
                             f"{inst_path} with a known image")
        img = images[a["image_id"]]
        hw = (img["height"], img["width"])
        x, y, w, h = a["bbox"]
        for sent in ref["sentences"]:
            by_image.setdefault(a["image_id"], []).append(Annotation(
                category=cats.get(a.get("category_id"), "object"), box=(x, y, x + w, y + h),
                mask=_mask_fn(a.get("segmentation"), hw, where),
                phrase=sent.get("sent") or sent.get("raw")))
    return [ImageRecord("rrsis-d", split, "optical",
                        image_path=str(r / "images" / images[i]["file_name"]),
                        size=(images[i]["height"], images[i]["width"]), annotations=a)
            for i, a in by_image.items()]
