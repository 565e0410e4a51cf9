"""The records every dataset reader and the synthetic generator produce, and the instruction
templates consume: one image with its annotations, in image pixel coordinates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SENSORS = ("optical", "multispectral", "sar", "infrared")


@dataclass
class Annotation:
    """One object or region of an image.

    Attributes:
        category: class name, lowercase words ("storage tank", "ship", "dead tree").
        box: (x0, y0, x1, y1) in image pixels, or None.
        polygon: [(x, y), ...] outline in image pixels (>= 3 points), or None.
        mask: a function returning the bool [H, W] mask (loaded lazily), or None.
        phrase: a referring expression for this object, or None.
    """

    category: str
    box: tuple[float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None
    mask: Callable[[], np.ndarray] | None = None
    phrase: str | None = None


@dataclass
class ImageRecord:
    """One image and what is known about it.

    Attributes:
        source: dataset name ("dior-rsvg", "synthetic", ...).
        split: "train", "val" or "test".
        sensor: one of SENSORS.
        image_path: file to read, or None when `image` holds the pixels.
        image: the pixels (HWC or HW) for in-memory records, else None.
        size: (H, W) when known without reading the image.
        annotations: objects/regions.
        captions: whole-image captions.
        scene: a scene class, or None.
        qa: (question, answer) pairs about the whole image.
    """

    source: str
    split: str
    sensor: str
    image_path: str | None = None
    image: np.ndarray | None = None
    size: tuple[int, int] | None = None
    annotations: list[Annotation] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    scene: str | None = None
    qa: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise ValueError(f"ImageRecord from {self.source}: sensor must be one of {SENSORS}, "
                             f"got {self.sensor!r}")
        if (self.image_path is None) == (self.image is None):
            raise ValueError(f"ImageRecord from {self.source}: give exactly one of image_path and "
                             "image")
