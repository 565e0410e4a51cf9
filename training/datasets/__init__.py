"""Readers of the public remote-sensing datasets' on-disk formats -> list[ImageRecord].

Every reader is `read_<name>(root, split="train") -> list[ImageRecord]`; `READERS` maps the
dataset names to them and `read_dataset(name, root, split)` dispatches. Masks are lazy
(`Annotation.mask` is a function); nothing reads pixels while listing a dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from training.datasets.captions import read_nwpu_captions, read_rsicd, read_ucm_captions
from training.datasets.detection import (
    read_hit_uav,
    read_hrsid,
    read_isaid,
    read_sardet_100k,
    read_ssdd,
)
from training.datasets.grounding import read_dior_rsvg, read_refsegrs
from training.datasets.infrared import read_irstd_1k, read_sirst
from training.datasets.rrsisd import read_rrsisd
from training.records import ImageRecord

READERS: dict[str, Callable[..., list[ImageRecord]]] = {
    "dior-rsvg": read_dior_rsvg,
    "rrsis-d": read_rrsisd,
    "refsegrs": read_refsegrs,
    "rsicd": read_rsicd,
    "ucm-captions": read_ucm_captions,
    "nwpu-captions": read_nwpu_captions,
    "sardet-100k": read_sardet_100k,
    "hrsid": read_hrsid,
    "ssdd": read_ssdd,
    "sirst": read_sirst,
    "irstd-1k": read_irstd_1k,
    "hit-uav": read_hit_uav,
    "isaid": read_isaid,
}


def read_dataset(name: str, root: str | os.PathLike, split: str = "train") -> list[ImageRecord]:
    """Reads dataset `name` from `root`.

    Args:
        name: a key of READERS.
        root: the dataset folder.
        split: "train", "val" or "test" (some datasets lack one; their reader says which).

    Returns:
        list[ImageRecord].

    Raises:
        ValueError: unknown name (lists the valid ones), or whatever the reader raises.
    """
    reader = READERS.get(name)
    if reader is None:
        raise ValueError(f"read_dataset: unknown dataset {name!r}; valid names: "
                         f"{', '.join(sorted(READERS))}")
    return reader(root, split=split)


__all__ = ["READERS", "read_dataset", *sorted(f.__name__ for f in READERS.values())]
