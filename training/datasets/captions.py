"""Caption datasets: RSICD and UCM-Captions (Karpathy-style JSON) and NWPU-Captions (JSON keyed
by class, five captions `raw`, `raw_1`..`raw_4` per image)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from training.datasets._common import (
    category_name,
    check_split,
    first_existing,
    load_json,
    malformed,
)
from training.records import ImageRecord

_NWPU_KEYS = ("raw", "raw_1", "raw_2", "raw_3", "raw_4")


def _scene_from_name(filename: str) -> str | None:
    m = re.fullmatch(r"([A-Za-z]+(?:_[A-Za-z]+)*)_\d+\.\w+", filename)
    return category_name(m.group(1)) if m else None


def read_karpathy(json_path: str | os.PathLike, image_dir: str | os.PathLike, *, source: str,
                  split: str, scene_from_name: bool = False) -> list[ImageRecord]:
    """Karpathy-style caption JSON: `{"images": [{"filename", "split", "sentences": [{"raw"}]}]}`.

    Split "train" also takes "restval" entries (Karpathy's COCO convention).

    Args:
        json_path: the JSON file.
        image_dir: folder of the images.
        source, split: copied into the records.
        scene_from_name: set `scene` from names like "dense_residential_12.jpg".

    Returns:
        One record per image of `split`, in file order, sensor "optical".

    Raises:
        ValueError: no `images` list; an entry without `filename`, `split` or `sentences`, or a
            sentence without a string `raw` (names the file and the entry).
    """
    path = os.fspath(json_path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise malformed(path, "top level", "must be an object with an 'images' list",
                        sorted(data) if isinstance(data, dict) else type(data).__name__)
    wanted = {split, "restval"} if split == "train" else {split}
    records = []
    for i, entry in enumerate(data["images"]):
        name = entry.get("filename") if isinstance(entry, dict) else None
        rec = f"image {i} ({name})"
        if not isinstance(name, str):
            raise malformed(path, rec, "an entry needs a string 'filename'", entry)
        for key in ("split", "sentences"):
            if key not in entry:
                raise malformed(path, rec, f"an entry needs '{key}'", sorted(entry))
        if entry["split"] not in wanted:
            continue
        sents = entry["sentences"]
        if not isinstance(sents, list) or not all(
                isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sents):
            raise malformed(path, rec, "'sentences' must be a list of {'raw': str}", sents)
        records.append(ImageRecord(
            source=source, split=split, sensor="optical",
            image_path=os.path.join(os.fspath(image_dir), name),
            captions=[s["raw"].strip() for s in sents],
            scene=_scene_from_name(name) if scene_from_name else None))
    return records


def _karpathy_dataset(root: str | os.PathLike, split: str, source: str,
                      json_names: Sequence[str], image_dirs: Sequence[str],
                      scene_from_name: bool) -> list[ImageRecord]:
    check_split(source, split)
    root = os.fspath(root)
    json_path = first_existing(source, "caption JSON", [os.path.join(root, n) for n in json_names])
    image_dir = first_existing(source, "image folder", [os.path.join(root, d) for d in image_dirs])
    return read_karpathy(json_path, image_dir, source=source, split=split,
                         scene_from_name=scene_from_name)


def read_rsicd(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """RSICD: `dataset_rsicd.json` (Karpathy style) and `RSICD_images/` (or `images/`).

    `scene` comes from class-named files ("airport_12.jpg" -> "airport"); numbered files get None.

    Args:
        root: the RSICD folder.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord] with five captions each, sensor "optical".

    Raises:
        ValueError: bad split or a malformed entry (see read_karpathy).
        FileNotFoundError: JSON or image folder missing.
    """
    return _karpathy_dataset(root, split, "rsicd", ("dataset_rsicd.json", "dataset.json"),
                             ("RSICD_images", "images"), scene_from_name=True)


def read_ucm_captions(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """UCM-Captions: `dataset.json` (Karpathy style) and `imgs/` (or `images/`).

    Args:
        root: the UCM-Captions folder.
        split: "train", "val" or "test".

    Returns:
        list[ImageRecord] with five captions each, sensor "optical".

    Raises:
        ValueError: bad split or a malformed entry (see read_karpathy).
        FileNotFoundError: JSON or image folder missing.
    """
    return _karpathy_dataset(root, split, "ucm-captions", ("dataset.json",), ("imgs", "images"),
                             scene_from_name=False)


def read_nwpu_captions(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """NWPU-Captions: `dataset_nwpu.json` = {class: [{"filename", "split", "raw", "raw_1", ...
    "raw_4"}]} and images in `NWPU_images/<class>/<filename>`.

    Args:
        root: the NWPU-Captions folder.
        split: "train", "val" or "test".

    Returns:
        One record per image of `split` (classes in file order), five captions, scene = class
        ("dense_residential" -> "dense residential"), sensor "optical".

    Raises:
        ValueError: bad split; a class whose value is not a list; an entry without `filename`,
            `split` or one of raw..raw_4 (names the file, class and entry).
        FileNotFoundError: the JSON missing.
    """
    check_split("nwpu-captions", split)
    root = os.fspath(root)
    path = os.path.join(root, "dataset_nwpu.json")
    data = load_json(path)
    if not isinstance(data, dict):
        raise malformed(path, "top level", "must be an object keyed by class",
                        type(data).__name__)
    records = []
    for cls, entries in data.items():
        if not isinstance(entries, list):
            raise malformed(path, f"class {cls!r}", "must map to a list of images",
                            type(entries).__name__)
        for i, entry in enumerate(entries):
            rec = f"class {cls!r} image {i}"
            if not isinstance(entry, dict):
                raise malformed(path, rec, "an entry must be an object", type(entry).__name__)
            missing = [k for k in ("filename", "split", *_NWPU_KEYS)
                       if not isinstance(entry.get(k), str)]
            if missing:
                raise malformed(path, rec, f"an entry needs strings {missing}", sorted(entry))
            if entry["split"] != split:
                continue
            records.append(ImageRecord(
                source="nwpu-captions", split=split, sensor="optical",
                image_path=os.path.join(root, "NWPU_images", cls, entry["filename"]),
                captions=[entry[k].strip() for k in _NWPU_KEYS], scene=category_name(cls)))
    return records
