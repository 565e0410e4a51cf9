"""RRSIS-D (referring segmentation): refCOCO-style `refs(unc).p` + COCO `instances.json`.

The pickle is read by a restricted unpickler: no class named in the file is ever imported or
run. Each global the file names is replaced by an inert stand-in (set and frozenset excepted), so
the whole file loads, and a walk over the result then reports where a non-plain object sits.
"""

from __future__ import annotations

import os
import pickle

from training.datasets._common import (
    category_name,
    check_split,
    first_existing,
    load_json,
    malformed,
)
from training.datasets.coco import coco_box, coco_segmentation
from training.records import Annotation, ImageRecord

_PLAIN = (dict, list, tuple, set, frozenset, str, int, float, bool, type(None))
_BUILTINS = {"set": set, "frozenset": frozenset}


class _Foreign:
    """Inert stand-in for an object of a class a pickle names; records the name only."""

    qualname = "?"

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        return type("Foreign", (_Foreign,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid):
        return _Foreign()


def _first_foreign(obj: object) -> tuple[str, str] | None:
    """(where, class name) of the first non-plain object under `obj`, or None."""
    stack, seen = [(obj, "")], set()
    while stack:
        x, where = stack.pop()
        if isinstance(x, _Foreign) or (isinstance(x, type) and issubclass(x, _Foreign)):
            return where or "(itself)", x.qualname
        if type(x) not in _PLAIN:
            return where or "(itself)", f"{type(x).__module__}.{type(x).__qualname__}"
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, dict):
            for k, v in reversed(list(x.items())):
                stack += [(v, f"{where}[{k!r}]"), (k, f"{where} key {k!r}")]
        elif isinstance(x, (list, tuple)):
            stack += [(v, f"{where}[{i}]") for i, v in reversed(list(enumerate(x)))]
        elif isinstance(x, (set, frozenset)):
            stack += [(v, f"{where} element") for v in x]
    return None


def load_plain_pickle(path: str | os.PathLike) -> list[dict]:
    """Loads a pickle that may hold only dict, list, tuple, set, frozenset, str, int, float, bool
    and None, and whose top level is a list of dicts (the refs of refCOCO-style datasets).

    Args:
        path: the pickle file.

    Returns:
        The list of records.

    Raises:
        ValueError: not a readable pickle; a top level that is not a list of dicts; an object of
            any other class (names the file, the record index and ref_id, where, and the class).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            data = _PlainUnpickler(f).load()
        except Exception as exc:  # noqa: BLE001 - any failure of a foreign pickle is "malformed"
            raise ValueError(f"{path}: not a pickle of plain containers: "
                             f"{type(exc).__name__}: {exc}") from None
    if not isinstance(data, list):
        bad = _first_foreign(data)
        raise malformed(path, "top level", "must be a list of dicts",
                        bad[1] if bad else type(data).__name__)
    for i, rec in enumerate(data):
        ref_id = rec.get("ref_id") if isinstance(rec, dict) else None
        bad = _first_foreign(rec)
        if bad is not None:
            raise malformed(path, f"record {i} (ref_id {ref_id!r})", "only plain containers, str, "
                            "int, float, bool and None are admitted",
                            f"an object of class {bad[1]} at {bad[0]}")
        if not isinstance(rec, dict):
            raise malformed(path, f"record {i}", "each record must be a dict", type(rec).__name__)
    return data


def _phrases(path: str, rec: str, ref: dict) -> list[str]:
    sents = ref.get("sentences")
    if not isinstance(sents, list) or not sents:
        raise malformed(path, rec, "needs a non-empty 'sentences' list", sents)
    out = []
    for s in sents:
        text = s.get("raw", s.get("sent")) if isinstance(s, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise malformed(path, rec, "each sentence needs a non-empty 'raw' or 'sent'", s)
        out.append(text.strip())
    return out


def read_rrsisd(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """RRSIS-D: `refs(unc).p` and `instances.json` in `root` or `root/rrsisd/`; images in
    `root/images/rrsisd/JPEGImages/` (the RMSIN layout) or `JPEGImages/` beside the refs.

    Each sentence of a ref of `split` becomes one Annotation (category, COCO box, polygon, lazy
    mask, phrase); the refs of one image are grouped, images in order of first appearance.

    Args:
        root: the data root.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord], sensor "optical".

    Raises:
        ValueError: bad split; a pickle that is not plain (see load_plain_pickle); a ref whose
            image_id or ann_id is not in instances.json, or without sentences; a malformed COCO
            entry. Each names the file and the record.
        FileNotFoundError: refs, instances or image folder missing.
    """
    check_split("rrsis-d", split)
    root = os.fspath(root)
    ann_dir = os.path.dirname(first_existing(
        "rrsis-d", "refs(unc).p", [os.path.join(root, "refs(unc).p"),
                                   os.path.join(root, "rrsisd", "refs(unc).p")]))
    refs_path = os.path.join(ann_dir, "refs(unc).p")
    inst_path = os.path.join(ann_dir, "instances.json")
    image_dir = first_existing("rrsis-d", "image folder", [
        os.path.join(root, "images", "rrsisd", "JPEGImages"), os.path.join(ann_dir, "JPEGImages")])
    refs = load_plain_pickle(refs_path)
    coco = load_json(inst_path)
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise malformed(inst_path, "top level", "needs 'images', 'annotations' and 'categories' "
                        "lists", sorted(coco) if isinstance(coco, dict) else type(coco).__name__)
    images = {im.get("id"): im for im in coco["images"] if isinstance(im, dict)}
    anns = {a.get("id"): a for a in coco["annotations"] if isinstance(a, dict)}
    cats = {c.get("id"): category_name(c.get("name", "")) for c in coco["categories"]
            if isinstance(c, dict)}
    records: dict[object, ImageRecord] = {}
    for i, ref in enumerate(refs):
        if ref.get("split") != split:
            continue
        rec = f"record {i} (ref_id {ref.get('ref_id')!r})"
        img, ann = images.get(ref.get("image_id")), anns.get(ref.get("ann_id"))
        if img is None:
            raise malformed(refs_path, rec, f"image_id must name an image of {inst_path}",
                            ref.get("image_id"))
        if ann is None:
            raise malformed(refs_path, rec, f"ann_id must name an annotation of {inst_path}",
                            ref.get("ann_id"))
        ann_rec = f"annotation id {ann.get('id')!r}"
        if ann.get("category_id") not in cats:
            raise malformed(inst_path, ann_rec, f"category_id must be one of {sorted(cats)}",
                            ann.get("category_id"))
        if not isinstance(img.get("file_name"), str):
            raise malformed(inst_path, f"image id {img.get('id')!r}", "needs a 'file_name'", img)
        hw = (img["height"], img["width"]) if "height" in img and "width" in img else None
        box = coco_box(inst_path, ann_rec, ann["bbox"]) if "bbox" in ann else None
        polygon, mask = coco_segmentation(inst_path, ann_rec, ann.get("segmentation"), hw)
        image = records.get(img["id"])
        if image is None:
            image = records[img["id"]] = ImageRecord(
                source="rrsis-d", split=split, sensor="optical",
                image_path=os.path.join(image_dir, img["file_name"]), size=hw)
        for phrase in _phrases(refs_path, rec, ref):
            image.annotations.append(Annotation(category=cats[ann["category_id"]], box=box,
                                                polygon=polygon, mask=mask, phrase=phrase))
    return list(records.values())
