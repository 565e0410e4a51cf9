"""Visual prompts, in image pixel coordinates: `Point`, `Box`, `Polygon`, `Scribble`, `Mask`.

Shared by the model, the predictor and the SDK API. Pixel (row r, col c) covers [c, c+1) x [r, r+1);
x is the column axis. Each prompt validates itself on construction (finite coordinates, a box with
x0 <= x1 and y0 <= y1, a polygon of >= 3 vertices that are not all on one line, a non-empty mask),
and against an image with `check_in_image`: a prompt wholly outside the image is an error; a prompt
partly outside is clipped by rasterization (only its part inside the image counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from earthx_sdk.ops import rasterize as R

# Type ids the prompt encoder embeds.
TYPE_IDS = {"point": 0, "box": 1, "polygon": 2, "scribble": 3, "mask": 4}


def _finite(name: str, values) -> None:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")


def _points(name: str, pts, min_count: int) -> tuple[tuple[float, float], ...]:
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of (x, y) pairs, got {pts!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < min_count:
        raise ValueError(f"{name} must be [N, 2] (x, y) with N >= {min_count}, got shape "
                         f"{list(arr.shape)}")
    _finite(name, arr)
    return tuple((float(x), float(y)) for x, y in arr)


@dataclass(frozen=True)
class Point:
    """A point prompt, drawn as a disk of `radius` image pixels (the never-vanish rule keeps at
    least the pixel under the point)."""

    x: float
    y: float
    radius: float = 4.0
    kind = "point"

    def __post_init__(self) -> None:
        _finite("Point (x, y, radius)", [self.x, self.y, self.radius])
        if self.radius < 0:
            raise ValueError(f"Point radius must be >= 0, got {self.radius}")

    def bbox(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x, self.y)

    def rasterize(self, out_hw, scale=(1.0, 1.0)) -> np.ndarray:
        return R.raster_disk((self.x, self.y), self.radius, out_hw, scale)


@dataclass(frozen=True)
class Box:
    """A box prompt (x0, y0, x1, y1), closed; zero width or height is allowed."""

    x0: float
    y0: float
    x1: float
    y1: float
    kind = "box"

    def __post_init__(self) -> None:
        _finite("Box (x0, y0, x1, y1)", [self.x0, self.y0, self.x1, self.y1])
        if self.x0 > self.x1 or self.y0 > self.y1:
            raise ValueError(f"Box must have x0 <= x1 and y0 <= y1, got ({self.x0}, {self.y0}, "
                             f"{self.x1}, {self.y1})")

    def bbox(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def rasterize(self, out_hw, scale=(1.0, 1.0)) -> np.ndarray:
        return R.raster_box(self.bbox(), out_hw, scale)


@dataclass(frozen=True)
class Polygon:
    """A free-form region: >= 3 vertices, filled with the even-odd rule (self-intersections
    allowed). Vertices all on one line make a degenerate polygon, which is an error."""

    vertices: tuple[tuple[float, float], ...]
    kind = "polygon"

    def __post_init__(self) -> None:
        v = _points("Polygon vertices", self.vertices, 3)
        object.__setattr__(self, "vertices", v)
        arr = np.asarray(v)
        d = arr - arr[0]
        # all vertices on one line (or one point): every cross product with the first edge is 0
        if np.linalg.matrix_rank(d, tol=1e-9 * max(1.0, float(np.abs(d).max()))) < 2:
            raise ValueError(f"Polygon is degenerate: its {len(v)} vertices lie on one line or "
                             "point, so it encloses no area")

    def bbox(self) -> tuple[float, float, float, float]:
        a = np.asarray(self.vertices)
        return (float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()),
                float(a[:, 1].max()))

    def rasterize(self, out_hw, scale=(1.0, 1.0)) -> np.ndarray:
        return R.raster_polygon(np.asarray(self.vertices), out_hw, scale)


@dataclass(frozen=True)
class Scribble:
    """A polyline of >= 1 points drawn with `width` image pixels."""

    points: tuple[tuple[float, float], ...]
    width: float = 3.0
    kind = "scribble"

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points("Scribble points", self.points, 1))
        _finite("Scribble width", [self.width])
        if self.width <= 0:
            raise ValueError(f"Scribble width must be > 0, got {self.width}")

    def bbox(self) -> tuple[float, float, float, float]:
        a = np.asarray(self.points)
        h = self.width / 2
        return (float(a[:, 0].min()) - h, float(a[:, 1].min()) - h, float(a[:, 0].max()) + h,
                float(a[:, 1].max()) + h)

    def rasterize(self, out_hw, scale=(1.0, 1.0)) -> np.ndarray:
        return R.raster_polyline(np.asarray(self.points), self.width, out_hw, scale)


@dataclass(frozen=True, eq=False)
class Mask:
    """A mask prompt at image resolution: [H, W] bool or uint8, nonzero = in the region."""

    mask: np.ndarray
    kind = "mask"

    def __post_init__(self) -> None:
        m = self.mask
        if not isinstance(m, np.ndarray) or m.dtype not in (np.bool_, np.uint8):
            raise TypeError(f"Mask prompt must be a bool or uint8 numpy array, got "
                            f"{getattr(m, 'dtype', type(m).__name__)}")
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"Mask prompt must be a non-empty [H, W] array, got shape "
                             f"{list(m.shape)}")
        if not m.any():
            raise ValueError("Mask prompt has no foreground pixel")

    def bbox(self) -> tuple[float, float, float, float]:
        ys, xs = np.nonzero(self.mask)
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))

    def rasterize(self, out_hw, scale=(1.0, 1.0)) -> np.ndarray:
        return R.resample_mask(self.mask, out_hw, scale)


Prompt = Union[Point, Box, Polygon, Scribble, Mask]  # noqa: UP007 (isinstance needs the tuple)
PROMPT_CLASSES = (Point, Box, Polygon, Scribble, Mask)


def check_in_image(prompt: Prompt, image_hw: tuple[int, int], index: int | None = None) -> None:
    """Raises ValueError when `prompt` lies wholly outside an image of (H, W) pixels, or when a mask
    prompt's shape is not (H, W); TypeError when it is not a prompt."""
    where = "prompt" if index is None else f"prompts[{index}]"
    if not isinstance(prompt, PROMPT_CLASSES):
        raise TypeError(f"{where} must be a Point, Box, Polygon, Scribble or Mask, got "
                        f"{type(prompt).__name__}")
    h, w = image_hw
    if isinstance(prompt, Mask):
        if prompt.mask.shape != (h, w):
            raise ValueError(f"{where}: a Mask prompt must have the image's shape {(h, w)}, got "
                             f"{prompt.mask.shape}")
        return
    x0, y0, x1, y1 = prompt.bbox()
    if x1 < 0 or y1 < 0 or x0 > w or y0 > h:
        raise ValueError(f"{where}: {prompt.kind} with bounding box ({x0:g}, {y0:g}, {x1:g}, "
                         f"{y1:g}) lies wholly outside the image of {w}x{h} pixels")
