"""Caption datasets: RSICD and UCM-Captions (Karpathy-style JSON) and NWPU-Captions."""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.records import ImageRecord


def read_karpathy(root: str, split: str, source: str, image_dir: str) -> list[ImageRecord]:
    """dataset_*.json: {"images": [{"filename", "split", "sentences": [{"raw"}]}]}."""
    files = sorted(Path(root).glob("dataset*.json"))
    if not files:
        raise FileNotFoundError(f"{source}: no dataset*.json under {root}")
    path = files[0]
    data = json.loads(path.read_text())
    records = []
    for k, img in enumerate(data.get("images", [])):
        where = f"{path} images[{k}]"
        if "filename" not in img or "sentences" not in img:
            raise ValueError(f"{where}: needs 'filename' and 'sentences'")
        if img.get("split", "train") != split:
            continue
        caps = [s.get("raw", "").strip() for s in img["sentences"]]
        records.append(ImageRecord(source, split, "optical",
                                   image_path=os.path.join(root, image_dir, img["filename"]),
                                   captions=[c for c in caps if c]))
    return records


def read_nwpu_captions(root: str, split: str = "train") -> list[ImageRecord]:
    """dataset_nwpu.json keyed by class: [{"filename", "split", "raw", "raw_1".."raw_4"}]."""
    path = Path(root) / "dataset_nwpu.json"
    data = json.loads(path.read_text())
    records = []
    for cls, items in sorted(data.items()):
        for k, it in enumerate(items):
            if "filename" not in it or "raw" not in it:
                raise ValueError(f"{path} {cls}[{k}]: needs 'filename' and 'raw'")
            if it.get("split", "train") != split:
                continue
            caps = [it[key] for key in ("raw", "raw_1", "raw_2", "raw_3", "raw_4") if it.get(key)]
            records.append(ImageRecord("nwpu-captions", split, "optical",
                                       image_path=os.path.join(root, cls, it["filename"]),
                                       captions=caps, scene=cls.replace("_", " ")))
    return records
