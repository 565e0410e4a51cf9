"""Infrared small-target segmentation: SIRST and IRSTD-1k (image + 0/255 mask per image, split
lists of image ids)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from training.datasets._common import binary_mask_file, check_split, first_existing, read_split_ids
from training.records import Annotation, ImageRecord

CATEGORY = "small target"


def _split_names(split: str) -> list[str]:
    # Both datasets publish trainval/test lists; some copies add train/val lists.
    return {"train": ["trainval.txt", "train.txt"], "val": ["val.txt"],
            "test": ["test.txt"]}[split]


def _records(source: str, split: str, ids: list[str], image_dir: str, mask_dir: str,
             mask_suffix: str) -> list[ImageRecord]:
    records = []
    for image_id in ids:
        stem = os.path.splitext(image_id)[0] if image_id.endswith(".png") else image_id
        mask = binary_mask_file(os.path.join(mask_dir, f"{stem}{mask_suffix}.png"))
        records.append(ImageRecord(
            source=source, split=split, sensor="infrared",
            image_path=os.path.join(image_dir, f"{stem}.png"),
            annotations=[Annotation(category=CATEGORY, mask=mask)]))
    return records


def _find_split(source: str, split: str, folders: Sequence[str]) -> str:
    return first_existing(source, f"{split} list",
                          [os.path.join(d, n) for d in folders for n in _split_names(split)])


def read_sirst(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """SIRST: `images/<id>.png`, `masks/<id>_pixels0.png` (255 = target) and split lists in
    `idx_427/` (else `idx_320/`, `splits/`, or the root): train = trainval.txt (or train.txt),
    val = val.txt, test = test.txt.

    Args:
        root: the SIRST folder.
        split: "train", "val" or "test".

    Returns:
        One record per listed id, one Annotation "small target" with the lazy mask (all targets
        of the image), sensor "infrared".

    Raises:
        ValueError: bad split.
        FileNotFoundError: no split list.
    """
    check_split("sirst", split)
    root = os.fspath(root)
    lst = _find_split("sirst", split, [os.path.join(root, d) for d in
                                       ("idx_427", "idx_320", "splits", "")])
    return _records("sirst", split, read_split_ids(lst), os.path.join(root, "images"),
                    os.path.join(root, "masks"), "_pixels0")


def read_irstd_1k(root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """IRSTD-1k: `IRSTD1k_Img/<id>.png`, `IRSTD1k_Label/<id>.png` (255 = target) and split lists
    in the root: train = trainval.txt (or train.txt), val = val.txt, test = test.txt.

    Args:
        root: the IRSTD-1k folder.
        split: "train", "val" or "test".

    Returns:
        One record per listed id with one "small target" Annotation (lazy mask), sensor
        "infrared".

    Raises:
        ValueError: bad split.
        FileNotFoundError: no split list.
    """
    check_split("irstd-1k", split)
    root = os.fspath(root)
    lst = _find_split("irstd-1k", split, [root])
    return _records("irstd-1k", split, read_split_ids(lst), os.path.join(root, "IRSTD1k_Img"),
                    os.path.join(root, "IRSTD1k_Label"), "")
