"""Datasets whose targets are mask images: RefSegRS, SIRST, IRSTD-1k."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.records import Annotation, ImageRecord


def _mask_loader(path: Path, threshold: int = 127):
    def load():
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(path)
        else:
            from PIL import Image

            a = np.asarray(Image.open(path))
        if a.ndim == 3:
            a = a[..., 0]
        return a > threshold
    return load


def read_refsegrs(root: str, split: str = "train") -> list[ImageRecord]:
    """images/<id>.tif, masks/<id>.tif (255 = target), output_phrase_{split}.txt lines
    "<id> <phrase>"."""
    r = Path(root)
    phrases = r / f"output_phrase_{split}.txt"
    records = []
    for k, line in enumerate(phrases.read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{phrases} line {k + 1}: expected '<id> <phrase>', got {line!r}")
        ident, phrase = parts
        mask = r / "masks" / f"{ident}.tif"
        if not mask.is_file():
            raise ValueError(f"{phrases} line {k + 1}: mask {mask} is missing")
        records.append(ImageRecord("refsegrs", split, "optical",
                                   image_path=str(r / "images" / f"{ident}.tif"),
                                   annotations=[Annotation(category="target", phrase=phrase,
                                                           mask=_mask_loader(mask))]))
    return records


def _paired(root: Path, image_dir: str, mask_dir: str, mask_name, source: str, split: str):
    ids_file = root / f"{split}.txt"
    ids = set(ids_file.read_text().split()) if ids_file.is_file() else None
    records = []
    for img in sorted((root / image_dir).glob("*.png")):
        if ids is not None and img.stem not in ids:
            continue
        mask = root / mask_dir / mask_name(img.stem)
        if not mask.is_file():
            raise ValueError(f"{source}: image {img} has no mask {mask}")
        records.append(ImageRecord(source, split, "infrared", image_path=str(img),
                                   annotations=[Annotation(category="small target",
                                                           mask=_mask_loader(mask, 0))]))
    return records


def read_sirst(root: str, split: str = "train") -> list[ImageRecord]:
    """SIRST: images/<name>.png with masks/<name>_pixels0.png ({split}.txt lists names, if any)."""
    return _paired(Path(root), "images", "masks", lambda s: f"{s}_pixels0.png", "sirst", split)


def read_irstd1k(root: str, split: str = "train") -> list[ImageRecord]:
    """IRSTD-1k: IRSTD1k_Img/<name>.png with IRSTD1k_Label/<name>.png."""
    return _paired(Path(root), "IRSTD1k_Img", "IRSTD1k_Label", lambda s: f"{s}.png", "irstd-1k",
                   split)
