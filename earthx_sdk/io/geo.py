"""Georeferencing: GeoTIFF geo-tags -> an affine pixel-to-CRS transform, masks -> GeoJSON.

Torch-free. A `GeoInfo` holds the affine transform of GDAL's convention
(`x = a + col * b + row * c`, `y = d + col * e + row * f`, for pixel corner coordinates: pixel
(row r, col c) covers [c, c + 1) x [r, r + 1)) and the CRS as an EPSG code when the file names
one; `read_geotags` also gives the nodata value.

GeoTIFF tags read (tifffile gives them as plain tuples): ModelPixelScaleTag (33550) with
ModelTiepointTag (33922), or ModelTransformationTag (34264); GeoKeyDirectoryTag (34735) for
ProjectedCSTypeGeoKey (3072) / GeographicTypeGeoKey (2048) and GTRasterTypeGeoKey (1025). As
GDAL does by default, a PixelIsPoint raster's tiepoint names the centre of the pixel, so the
transform is shifted by half a pixel to address corners. GDAL_NODATA (42113) gives nodata.

Polygons come from `ops.masks.mask_to_polygons` (outer contours on pixel edges; holes are not
represented) mapped through the transform. GeoJSON output closes each ring and names the CRS with
the (pre-RFC 7946) `crs` member that GDAL/QGIS read; RFC 7946 itself assumes WGS 84 lon/lat.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# GeoTIFF tag and key codes
TAG_PIXEL_SCALE = 33550
TAG_TIEPOINT = 33922
TAG_TRANSFORMATION = 34264
TAG_GEOKEYS = 34735
TAG_GDAL_NODATA = 42113
KEY_RASTER_TYPE = 1025
KEY_GEOGRAPHIC_TYPE = 2048
KEY_PROJECTED_TYPE = 3072
RASTER_PIXEL_IS_POINT = 2
_USER_DEFINED = 32767


@dataclass(frozen=True)
class GeoInfo:
    """Where an image lies on the Earth.

    Attributes:
        transform: (a, b, c, d, e, f): x = a + col * b + row * c, y = d + col * e + row * f for
            pixel-corner coordinates (col, row), GDAL's geotransform order.
        epsg: EPSG code of the CRS, or None when the file does not name one.
    """

    transform: tuple[float, float, float, float, float, float]
    epsg: int | None = None

    def __post_init__(self) -> None:
        t = tuple(float(v) for v in self.transform)
        if len(t) != 6 or not all(math.isfinite(v) for v in t):
            raise ValueError(f"GeoInfo: transform must be 6 finite numbers, got {self.transform}")
        if t[1] * t[5] - t[2] * t[4] == 0:
            raise ValueError(f"GeoInfo: transform {t} is singular (zero pixel size)")
        object.__setattr__(self, "transform", t)

    @property
    def crs(self) -> str | None:
        """"EPSG:<code>" or None."""
        return None if self.epsg is None else f"EPSG:{self.epsg}"

    def to_crs(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates [N, 2] (x = col, y = row; corners are integers) -> CRS [N, 2]."""
        a, b, c, d, e, f = self.transform
        xy = np.asarray(xy, np.float64)
        return np.stack([a + xy[:, 0] * b + xy[:, 1] * c, d + xy[:, 0] * e + xy[:, 1] * f], 1)

    def bounds(self, hw: tuple[int, int]) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the CRS of an (H, W) image."""
        h, w = hw
        corners = self.to_crs(np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64))
        return (float(corners[:, 0].min()), float(corners[:, 1].min()),
                float(corners[:, 0].max()), float(corners[:, 1].max()))

    def to_dict(self) -> dict:
        return {"transform": list(self.transform), "crs": self.crs}


def _geokeys(directory) -> dict[int, object]:
    """GeoKeyDirectoryTag values -> {key id: value} (short values only; others by location)."""
    d = [int(v) for v in directory]
    if len(d) < 4:
        return {}
    n = d[3]
    keys = {}
    for i in range(n):
        key, loc, count, value = d[4 + 4 * i: 8 + 4 * i]
        if loc == 0 and count == 1:
            keys[key] = value
    return keys


def read_geotags(tags: dict[int, object],
                 where: str = "image") -> tuple[GeoInfo | None, float | None]:
    """(GeoInfo or None when there is no georeference, nodata or None) from GeoTIFF tag values
    ({tag code: value}).

    Raises:
        ValueError: geo-tags that are present but malformed (the message names the tag).
    """
    nodata = None
    if TAG_GDAL_NODATA in tags:
        raw = str(tags[TAG_GDAL_NODATA]).strip().strip("\x00")
        try:
            nodata = float(raw)
        except ValueError:
            raise ValueError(f"{where}: GDAL_NODATA tag must be a number, got {raw!r}") from None
        if math.isnan(nodata):
            nodata = None  # NaN pixels are invalid anyway
    keys = _geokeys(tags.get(TAG_GEOKEYS, ()))
    epsg = None
    for k in (KEY_PROJECTED_TYPE, KEY_GEOGRAPHIC_TYPE):
        v = keys.get(k)
        if v is not None and 0 < int(v) < _USER_DEFINED:
            epsg = int(v)
            break
    if TAG_TRANSFORMATION in tags:
        m = [float(v) for v in tags[TAG_TRANSFORMATION]]
        if len(m) != 16:
            raise ValueError(f"{where}: ModelTransformationTag must hold 16 values, got {len(m)}")
        transform = (m[3], m[0], m[1], m[7], m[4], m[5])
    elif TAG_PIXEL_SCALE in tags and TAG_TIEPOINT in tags:
        s = [float(v) for v in tags[TAG_PIXEL_SCALE]]
        t = [float(v) for v in tags[TAG_TIEPOINT]]
        if len(s) < 2 or len(t) < 6:
            raise ValueError(f"{where}: ModelPixelScaleTag needs >= 2 values and "
                             f"ModelTiepointTag >= 6, got {len(s)} and {len(t)}")
        i, j, x, y = t[0], t[1], t[3], t[4]
        transform = (x - i * s[0], s[0], 0.0, y + j * s[1], 0.0, -s[1])
    else:
        return None, nodata
    if keys.get(KEY_RASTER_TYPE) == RASTER_PIXEL_IS_POINT:
        a, b, c, d, e, f = transform
        transform = (a - 0.5 * (b + c), b, c, d - 0.5 * (e + f), e, f)
    return GeoInfo(transform, epsg), nodata


def polygons_to_crs(polygons: list[np.ndarray], geo: GeoInfo) -> list[np.ndarray]:
    """Pixel-corner polygons [K, 2] -> the same polygons in the CRS."""
    return [geo.to_crs(p) for p in polygons]


def _ring(xy: np.ndarray) -> list[list[float]]:
    pts = [[float(x), float(y)] for x, y in xy]
    return pts + [pts[0]]  # GeoJSON rings are closed


def masks_geojson(masks_polygons: list[list[np.ndarray]], geo: GeoInfo | None,
                  properties: list[dict] | None = None) -> dict:
    """A GeoJSON FeatureCollection with one MultiPolygon Feature per mask.

    Args:
        masks_polygons: per mask, its polygons in pixel-corner coordinates (mask_to_polygons).
        geo: maps them into the image's CRS; None leaves them in pixel coordinates (then the
            collection says so in its `crs` member: "pixel").
        properties: per mask, the Feature's properties.
    """
    feats = []
    for k, polys in enumerate(masks_polygons):
        coords = [[_ring(geo.to_crs(p) if geo is not None else p)] for p in polys if len(p) >= 3]
        props = dict(properties[k]) if properties else {}
        props.setdefault("mask", k)
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "MultiPolygon", "coordinates": coords}})
    out: dict = {"type": "FeatureCollection", "features": feats}
    if geo is not None and geo.epsg is not None:
        out["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{geo.epsg}"}}
    elif geo is None:
        out["crs"] = {"type": "name", "properties": {"name": "pixel"}}
    return out


def write_json(path: str | Path, obj: dict) -> Path:
    """Writes JSON to `path` through a temporary name and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)
    return path
