"""Helpers shared by the dataset readers: split names, error messages for malformed annotation
files, category-name normalization, JSON loading and lazy masks read from image files."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence

import numpy as np

SPLITS = ("train", "val", "test")

# Class names written as one word in the public label sets, split into the words a person
# would write (the referring-classification metrics compare words).
_COMPOUNDS = {
    "storagetank": "storage tank",
    "golffield": "golf field",
    "groundtrackfield": "ground track field",
    "trainstation": "train station",
    "baseballfield": "baseball field",
    "tenniscourt": "tennis court",
    "basketballcourt": "basketball court",
    "expresswaytollstation": "expressway toll station",
    "expresswayservicearea": "expressway service area",
    "dontcare": "dont care",
}


def check_split(source: str, split: str, allowed: Sequence[str] = SPLITS) -> str:
    """Validates a split name.

    Args:
        source: dataset name, for the message.
        split: the requested split.
        allowed: the splits this dataset has.

    Returns:
        `split`.

    Raises:
        ValueError: `split` is not in `allowed`.
    """
    if split not in allowed:
        raise ValueError(f"{source}: split must be one of {tuple(allowed)}, got {split!r}")
    return split


def malformed(path: str | os.PathLike, record: str, rule: str, got: object) -> ValueError:
    """The error for a malformed annotation: names the file, the record, the rule, what came."""
    return ValueError(f"{os.fspath(path)}: {record}: {rule}, got {got!r}")


def category_name(raw: str) -> str:
    """Normalizes a class label to lowercase words.

    "Small_Vehicle" -> "small vehicle", "OtherVehicle" -> "other vehicle",
    "Expressway-toll-station" -> "expressway toll station", "storagetank" -> "storage tank".

    Args:
        raw: the label as the dataset writes it.

    Returns:
        Lowercase words separated by single spaces.
    """
    s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(raw))  # CamelCase -> Camel Case
    s = re.sub(r"[_\-\s]+", " ", s).strip().lower()
    return _COMPOUNDS.get(s.replace(" ", ""), s)


def load_json(path: str | os.PathLike) -> object:
    """Reads a JSON file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON (names the file, line and column).
    """
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}: not valid JSON: {exc}") from None


def first_existing(source: str, what: str, candidates: Sequence[str]) -> str:
    """The first path of `candidates` that exists.

    Raises:
        FileNotFoundError: none exists (lists them).
    """
    for c in candidates:
        if os.path.exists(c):
            return c
    raise FileNotFoundError(f"{source}: {what} not found; looked for {list(candidates)}")


def read_split_ids(path: str | os.PathLike) -> list[str]:
    """Non-empty stripped lines of a split list file (one image id or index per line)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _read_pixels(path: str) -> np.ndarray:
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def binary_mask_file(path: str, on_value: int = 255) -> Callable[[], np.ndarray]:
    """A lazy loader of a 0 / `on_value` mask image (PNG, TIFF, ...).

    The returned function reads the file when called and returns bool [H, W]. A mask with
    several channels must have them equal.

    Raises (when called):
        ValueError: channels that differ, or a value other than 0 and `on_value` (names the file).
    """

    def load() -> np.ndarray:
        a = _read_pixels(path)
        if a.ndim == 3:
            if not (a == a[..., :1]).all():
                raise ValueError(f"{path}: a mask must have equal channels, got shape "
                                 f"{list(a.shape)} with differing channels")
            a = a[..., 0]
        if a.ndim != 2:
            raise ValueError(f"{path}: a mask must be [H, W] or [H, W, C], got shape "
                             f"{list(a.shape)}")
        bad = np.setdiff1d(np.unique(a), [0, on_value])
        if bad.size:
            raise ValueError(f"{path}: mask values must be 0 or {on_value} ({on_value} = target), "
                             f"got also {bad[:5].tolist()}")
        return a == on_value

    return load
