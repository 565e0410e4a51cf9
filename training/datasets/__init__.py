"""Readers of the public dataset formats (DATA.md), each returning `ImageRecord`s.

    read_dataset("dior-rsvg", root, split="train")
"""

from __future__ import annotations

from training.datasets.captions import read_karpathy, read_nwpu_captions
from training.datasets.coco import read_coco_dataset, read_hit_uav, read_rrsis_d
from training.datasets.masks import read_irstd1k, read_refsegrs, read_sirst
from training.datasets.voc import read_dior_rsvg, read_ssdd_voc

READERS = {
    "dior-rsvg": read_dior_rsvg,
    "rrsis-d": read_rrsis_d,
    "refsegrs": read_refsegrs,
    "rsicd": lambda root, split="train": read_karpathy(root, split, "rsicd", "RSICD_images"),
    "ucm-captions": lambda root, split="train": read_karpathy(root, split, "ucm-captions",
                                                              "images"),
    "nwpu-captions": read_nwpu_captions,
    "sardet-100k": lambda root, split="train": read_coco_dataset(root, split, "sardet-100k", "sar"),
    "hrsid": lambda root, split="train": read_coco_dataset(root, split, "hrsid", "sar"),
    "ssdd": read_ssdd_voc,
    "isaid": lambda root, split="train": read_coco_dataset(root, split, "isaid", "optical"),
    "sirst": read_sirst,
    "irstd-1k": read_irstd1k,
    "hit-uav": read_hit_uav,
}


def read_dataset(name: str, root: str, split: str = "train"):
    """Records of dataset `name` under `root` for `split`.

    Raises:
        ValueError: unknown name (the message lists them) or malformed annotations (file, record).
    """
    if name not in READERS:
        raise ValueError(f"dataset must be one of {sorted(READERS)}, got {name!r}")
    return READERS[name](root, split=split)
