"""What a request returns: `Result` (text, regions, masks as COCO RLE, scores, per-stage timings).

Torch-free. Masks are kept as COCO compressed RLE over the original image (`counts` as an ASCII
string, so a Result is JSON as it is); `mask(i)` / `masks_array()` decode them on demand,
`polygons(i)` traces their outer contours, and for a georeferenced image `geojson()` /
`write_geojson(path)` give them as polygons in the image's CRS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from earthx_sdk.io.geo import GeoInfo, masks_geojson, write_json

STAGES = ("preprocess", "vision", "fusion", "prompt_encoder", "prefill", "decode", "mask_decoder",
          "postprocess")


@dataclass
class StageTiming:
    """One stage of one request.

    Attributes:
        seconds: wall time spent in the stage by this request (0.0 when cached or skipped).
        backend: what ran it ("torch:cpu", "onnxruntime:CPUExecutionProvider", "native:_C",
            "numpy").
        precision: "fp32", "fp16", "int8", ...
        status: "ran" | "cached" (the image's features were computed by an earlier request) |
            "skipped" (nothing to do: no prompts, no <seg>).
        calls: how many times it ran (decode steps, tiles).
    """

    seconds: float = 0.0
    backend: str = ""
    precision: str = ""
    status: str = "skipped"
    calls: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.seconds += seconds
        self.calls += n
        self.status = "ran"


def new_timings() -> dict[str, StageTiming]:
    return {s: StageTiming() for s in STAGES}


@dataclass
class Result:
    """The answer to one request.

    Attributes:
        text: the decoded answer (special tokens dropped except `<seg>`, kept in place).
        token_ids: the generated ids (ending with eos when it was reached).
        regions: per visual prompt, {"index", "kind", "bbox": [x0, y0, x1, y1] in image pixels}.
        masks: per mask, COCO RLE {"size": [H, W], "counts": str} over the original image.
        scores: per mask, the mask decoder's predicted IoU.
        timings: {stage: StageTiming} for every stage of STAGES.
        sensor: the sensor the image was read as.
        image_hw: (H, W) of the original image.
        geo: the image's georeference (GeoTIFF), else None.
        backend: {"name": ..., stage: backend} of the engine that answered.
        invalid_pixels: pixels with a NaN / Inf / nodata band (normalized as missing).
        tiles: tiles the request ran over (1 unless a large scene was tiled).
    """

    text: str
    token_ids: list[int]
    regions: list[dict] = field(default_factory=list)
    masks: list[dict] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    timings: dict[str, StageTiming] = field(default_factory=new_timings)
    sensor: str = ""
    image_hw: tuple[int, int] = (0, 0)
    geo: GeoInfo | None = None
    backend: dict = field(default_factory=dict)
    invalid_pixels: int = 0
    tiles: int = 1

    def mask(self, i: int = 0) -> np.ndarray:
        """Mask i as uint8 0/1 [H, W].

        Raises:
            IndexError: no mask i (the message says how many there are).
        """
        from earthx_sdk.ops.masks import rle_decode

        if not 0 <= i < len(self.masks):
            raise IndexError(f"Result has {len(self.masks)} mask(s), asked for mask {i}")
        return rle_decode(self.masks[i])

    def masks_array(self) -> np.ndarray:
        """All masks, uint8 [Q, H, W] (Q may be 0)."""
        if not self.masks:
            return np.zeros((0, *self.image_hw), np.uint8)
        return np.stack([self.mask(i) for i in range(len(self.masks))])

    def polygons(self, i: int = 0) -> list[np.ndarray]:
        """Outer contours of mask i in pixel-corner coordinates (x, y): float64 [K, 2] each."""
        from earthx_sdk.ops.masks import mask_to_polygons

        return mask_to_polygons(self.mask(i))

    def geo_polygons(self, i: int = 0) -> list[np.ndarray]:
        """Contours of mask i in the image's CRS.

        Raises:
            ValueError: the image has no georeference.
        """
        if self.geo is None:
            raise ValueError("Result.geo_polygons: the image has no georeference (not a "
                             "GeoTIFF); use polygons() for pixel coordinates")
        return [self.geo.to_crs(p) for p in self.polygons(i)]

    def geojson(self) -> dict:
        """A GeoJSON FeatureCollection, one MultiPolygon per mask, in the image's CRS (pixel
        coordinates, `crs` "pixel", for an image without georeference)."""
        polys = [self.polygons(i) for i in range(len(self.masks))]
        props = [{"score": float(s), "text": self.text} for s in self.scores]
        return masks_geojson(polys, self.geo, props)

    def write_geojson(self, path: str | Path) -> Path:
        """Writes `geojson()` to path (temporary name, then renamed)."""
        return write_json(path, self.geojson())

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        d = {"text": self.text, "token_ids": list(self.token_ids), "regions": self.regions,
             "masks": self.masks, "scores": [float(s) for s in self.scores],
             "timings": {k: asdict(v) for k, v in self.timings.items()}, "sensor": self.sensor,
             "image_hw": list(self.image_hw), "backend": self.backend,
             "invalid_pixels": self.invalid_pixels, "tiles": self.tiles}
        d["geo"] = self.geo.to_dict() if self.geo is not None else None
        return d
