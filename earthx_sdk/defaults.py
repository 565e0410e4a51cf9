"""The embedded default model: the name `default` wherever a bundle is taken.

The wheel ships a small bundle (`earthx_sdk/assets/default/`: the tiny model of the
`earthx-tiny` recipe, exported for onnxruntime with an int8 LLM) and three sample scenes
(`earthx_sdk/assets/samples/`: optical, SAR, thermal infrared, with their ground truth in
`samples.json`). `EarthX.load("default")` and every bundle argument of the `earthx` command
resolve `default` here. A directory that happens to be called `default` is reached as
`./default`.

Both are regenerated from a checkout by `python -m export.default_model` (train -> export ->
copy -> samples); see that module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_NAME = "default"
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_BUNDLE = ASSETS / "default"
SAMPLES_DIR = ASSETS / "samples"
SAMPLES_FILE = "samples.json"


def default_bundle() -> Path:
    """The directory of the embedded bundle.

    Raises:
        FileNotFoundError: this installation has no embedded bundle (a build without the
            package data), naming the folder and how to rebuild it.
    """
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        raise FileNotFoundError(
            f"the embedded default model is missing: {DEFAULT_BUNDLE}/manifest.json does not "
            f"exist (the package was built without earthx_sdk/assets; reinstall earthx-sdk, or "
            f"regenerate it from a checkout with python -m export.default_model)")
    return DEFAULT_BUNDLE


def resolve_bundle(bundle: str | os.PathLike) -> Path:
    """`default` -> the embedded bundle; anything else -> that path, unchanged.

    Raises:
        FileNotFoundError: `default` asked for and not embedded (see default_bundle).
        TypeError: not a str or path.
    """
    if not isinstance(bundle, (str, os.PathLike)):
        raise TypeError(f"bundle must be a path or the name {DEFAULT_NAME!r}, got "
                        f"{type(bundle).__name__}")
    if isinstance(bundle, str) and bundle == DEFAULT_NAME:
        return default_bundle()
    return Path(bundle)


def samples() -> list[dict]:
    """The sample scenes' entries of samples.json, each with `path` (absolute) added.

    Raises:
        FileNotFoundError: the samples are not installed.
        ValueError: samples.json is malformed (names the entry and the key).
    """
    path = SAMPLES_DIR / SAMPLES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the sample scenes are missing: {path} does not exist "
                                f"(regenerate them with python -m export.default_model --samples)")
    data = json.loads(path.read_text())
    entries = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'samples' must be a non-empty list")
    out = []
    for k, e in enumerate(entries):
        for key in ("file", "sensor", "box", "point", "polygon", "refer"):
            if key not in e:
                raise ValueError(f"{path}: samples[{k}] lacks {key!r}")
        f = SAMPLES_DIR / e["file"]
        if not f.is_file():
            raise FileNotFoundError(f"{path}: samples[{k}] names {e['file']}, not in "
                                    f"{SAMPLES_DIR}")
        out.append({**e, "path": str(f)})
    return out
