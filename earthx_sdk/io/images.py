"""Image input: file paths (PNG, JPEG, JPEG 2000, TIFF / GeoTIFF), numpy arrays and PIL images.

Torch-free. `load_image` returns a `LoadedImage`: an [H, W, C] array (a view or a memory map where
the source allows it: nothing is copied or decoded before it is needed), the GeoTIFF georeference
and nodata value when the file has them, and a cache key. The size limit is checked from the file
header (or the array's shape) before any pixel is read, so an oversized scene is refused with the
memory it would need instead of being allocated.

Formats are recognized by their first bytes, not by the file name. TIFFs are read with tifffile
(rasterio, when it is installed, reads GeoTIFFs instead: it knows every GDAL variant); the other
formats with Pillow. Pillow modes: RGB and L as they are, RGBA and LA lose their alpha band, P and
CMYK become RGB, I;16 is uint16, I is int32, F is float32.

Arrays may be HWC or CHW (`layout="auto"` tells them apart by which axis is short: at most
MAX_BANDS bands), of dtype uint8, uint16, int16, int32, float32, float64, or complex64/128 (SAR).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earthx_sdk.io.geo import GeoInfo, read_geotags
from earthx_sdk.ops.preprocess import as_hwc

MAX_BANDS = 16
DEFAULT_MAX_PIXELS = 1 << 28  # 268 MP (16384 x 16384): beyond, a scene is refused, not allocated
_HASH_LIMIT = 256 << 20  # arrays above this many bytes are not content-hashed (no feature cache)
LAYOUTS = ("auto", "hwc", "chw")
DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64", "complex64", "complex128")
_MAGIC = {b"II*\x00": "tiff", b"MM\x00*": "tiff", b"II+\x00": "tiff", b"MM\x00+": "tiff",
          b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"\x00\x00\x00\x0cjP": "jp2",
          b"\xffO\xffQ": "jp2"}


class ImageTooLargeError(ValueError):
    """A scene above the pixel limit; the message gives the memory it would need."""


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image ready for preprocessing.

    Attributes:
        pixels: [H, W, C] array (possibly a read-only view or a memory map).
        source: the file path, or "array" / "PIL image".
        geo: the georeference of a GeoTIFF, else None.
        nodata: the raster's nodata value (GDAL_NODATA), else None.
        key: a hashable identity of the content (file path + mtime + size, or the array's hash);
            None when the content is too large to hash (then nothing is cached for it).
    """

    pixels: np.ndarray
    source: str
    geo: GeoInfo | None = None
    nodata: float | None = None
    key: tuple | None = None

    @property
    def hw(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def bands(self) -> int:
        return int(self.pixels.shape[2])


def memory_needed(h: int, w: int, c: int, itemsize: int) -> int:
    """Bytes a scene needs resident: its raw pixels plus one full-size mask (uint8)."""
    return h * w * c * itemsize + h * w


def check_size(where: str, h: int, w: int, c: int, itemsize: int,
               max_pixels: int | None) -> None:
    """Raises ImageTooLargeError when h * w > max_pixels (None: no limit)."""
    if max_pixels is not None and h * w > max_pixels:
        need = memory_needed(h, w, c, itemsize)
        raise ImageTooLargeError(
            f"{where}: image of {w}x{h} pixels ({h * w / 1e6:.1f} MP, {c} band(s) of {itemsize} "
            f"byte(s)) is above the limit max_pixels={max_pixels} ({max_pixels / 1e6:.1f} MP); "
            f"it would need {need / 2**30:.2f} GiB resident ({h * w * c * itemsize / 2**30:.2f} "
            f"GiB of pixels + {h * w / 2**30:.2f} GiB per full-size mask). Pass a larger "
            f"max_pixels to run it tiled, or crop it.")


def to_hwc(array: np.ndarray, layout: str = "auto", where: str = "image") -> np.ndarray:
    """An [H, W, C] view of a 2-D or 3-D array.

    Raises:
        TypeError: an unsupported dtype.
        ValueError: an unknown layout, a wrong ndim, an empty image, a band axis that cannot be
            told apart (layout="auto" with both or neither of the outer axes <= MAX_BANDS), more
            than MAX_BANDS bands.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"{where}: layout must be one of {LAYOUTS}, got {layout!r}")
    if array.dtype.name not in DTYPES:
        raise TypeError(f"{where}: dtype must be one of {', '.join(DTYPES)}, got {array.dtype}")
    if layout == "auto":
        layout = "hwc"
        if array.ndim == 3:
            first, last = array.shape[0] <= MAX_BANDS, array.shape[2] <= MAX_BANDS
            if first == last:
                raise ValueError(f"{where}: cannot tell the band axis of an array of shape "
                                 f"{list(array.shape)} (HWC or CHW?); pass layout='hwc' or "
                                 f"'chw'")
            layout = "chw" if first else "hwc"
    array = as_hwc(array, layout, where)  # ndim, emptiness and the transpose: preprocess's rule
    if array.shape[2] > MAX_BANDS:
        raise ValueError(f"{where}: at most {MAX_BANDS} bands are supported, got "
                         f"{array.shape[2]} (shape {list(array.shape)} as HWC)")
    return array


def file_key(path: str | os.PathLike) -> tuple | None:
    """The cache key of an image file (its resolved path, modification time and size), or None
    when it is not a file."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    return ("file", str(p.resolve()), st.st_mtime_ns, st.st_size) if p.is_file() else None


def _array_key(a: np.ndarray) -> tuple | None:
    if a.nbytes > _HASH_LIMIT:
        return None
    h = hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8).reshape(-1), digest_size=16)
    return ("array", a.shape, a.dtype.str, h.hexdigest())


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(12)
    if not head:
        raise ValueError(f"image file {path} is empty (0 bytes)")
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return "other"


def _load_tiff(path: Path, layout: str, max_pixels: int | None) -> LoadedImage:
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except Exception as e:  # tifffile raises TiffFileError, struct.error, ...
        raise ValueError(f"image file {path}: not a readable TIFF ({type(e).__name__}: {e})") \
            from e
    with tf:
        if not tf.series or not tf.pages:
            raise ValueError(f"image file {path}: not a readable TIFF (no image in it)")
        series = tf.series[0]
        shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
        # GeoTIFF axes: YX, YXS (interleaved bands), SYX / IYX / CYX (planar or one page per band)
        if len(shape) == 3 and axes[0] not in "YX":
            layout_f, (h, w, c) = "chw", (shape[1], shape[2], shape[0])
        elif len(shape) == 3:
            layout_f, (h, w, c) = "hwc", shape
        elif len(shape) == 2:
            layout_f, (h, w, c) = "hwc", (shape[0], shape[1], 1)
        else:
            raise ValueError(f"image file {path}: TIFF of shape {list(shape)} (axes {axes}) is "
                             f"not a 2-D image with bands")
        check_size(f"image file {path}", h, w, c, dtype.itemsize, max_pixels)
        tags = {t.code: t.value for t in tf.pages[0].tags.values()}
        geo, nodata = read_geotags(tags, f"image file {path}")
        try:
            data = tifffile.memmap(path, mode="r") if _memmappable(tf) else series.asarray()
        except ValueError as e:
            if "imagecodecs" not in str(e):
                raise ValueError(f"image file {path}: TIFF pixel data cannot be decoded "
                                 f"({type(e).__name__}: {e})") from e
            data = _pil_tiff(path, (h, w, c), e)  # LZW etc. without imagecodecs: Pillow
        except Exception as e:
            raise ValueError(f"image file {path}: TIFF pixel data cannot be decoded "
                             f"({type(e).__name__}: {e})") from e
        if layout_f == "chw" and data.ndim == 3 and data.shape[2] == c and c != shape[0]:
            layout_f = "hwc"  # Pillow gave interleaved bands
    data = to_hwc(np.asarray(data) if not isinstance(data, np.memmap) else data,
                  layout_f if layout == "auto" else layout, f"image file {path}")
    return LoadedImage(data, str(path), geo, nodata, file_key(path))


def _pil_tiff(path: Path, hwc: tuple[int, int, int], why: Exception) -> np.ndarray:
    """Pixels of a compressed TIFF that tifffile cannot decode without the optional imagecodecs
    package (LZW, for one): Pillow decodes the common ones losslessly, the same pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as e:
        raise ValueError(f"image file {path}: TIFF pixel data cannot be decoded: tifffile says "
                         f"{why}, and Pillow cannot decode it either ({type(e).__name__}: {e}); "
                         f"pip install imagecodecs") from e
    got = arr.shape if arr.ndim == 3 else (*arr.shape, 1)
    if tuple(got) != tuple(hwc):
        raise ValueError(f"image file {path}: Pillow decoded {list(got)} pixels where the TIFF "
                         f"header says {list(hwc)} (HWC); pip install imagecodecs to read it "
                         f"with tifffile")
    return arr


def _memmappable(tf) -> bool:
    """Uncompressed, contiguous, one-series files map without reading (a lazy scene)."""
    page = tf.pages[0]
    try:
        return bool(page.is_contiguous) and len(tf.series) == 1 and len(tf.pages) == 1 \
            and page.compression == 1
    except AttributeError:
        return False


def _load_rasterio(path: Path, max_pixels: int | None) -> LoadedImage:
    """GeoTIFF through rasterio (used when it is installed)."""
    import rasterio

    with rasterio.open(path) as ds:
        check_size(f"image file {path}", ds.height, ds.width, ds.count,
                   np.dtype(ds.dtypes[0]).itemsize, max_pixels)
        data = ds.read()  # [C, H, W]
        t = ds.transform
        geo = GeoInfo((t.c, t.a, t.b, t.f, t.d, t.e),
                      ds.crs.to_epsg() if ds.crs is not None else None) if not t.is_identity \
            else None
        nodata = ds.nodata
    return LoadedImage(to_hwc(data, "chw", f"image file {path}"), str(path), geo, nodata,
                       file_key(path))


def _from_pil(im, where: str, max_pixels: int | None) -> np.ndarray:
    w, h = im.size
    bands = len(im.getbands())
    check_size(where, h, w, bands, 2 if im.mode.startswith("I;16") else 1, max_pixels)
    mode = im.mode
    if mode in ("RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA", "RGBX"):
        im = im.convert("RGB")
    elif mode == "LA":
        im = im.convert("L")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("RGB", "L", "I;16", "I;16B", "I;16L", "I", "F"):
        raise TypeError(f"{where}: Pillow mode {mode!r} is not supported (RGB, RGBA, L, LA, P, "
                        f"CMYK, I;16, I, F are)")
    try:
        arr = np.asarray(im)
    except OSError as e:  # truncated or corrupt data surfaces here, at decode time
        raise ValueError(f"{where}: pixel data cannot be decoded ({type(e).__name__}: {e})") \
            from e
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _load_pil(path: Path, max_pixels: int | None) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image file {path}: not a readable image (PNG, JPEG, JPEG 2000 or "
                         f"TIFF expected; {type(e).__name__}: {e})") from e
    with im:
        Image.MAX_IMAGE_PIXELS = None  # our own limit (checked from the header) applies
        arr = _from_pil(im, f"image file {path}", max_pixels)
    return LoadedImage(to_hwc(arr, "hwc", f"image file {path}"), str(path), None, None,
                       file_key(path))


def load_image(source, layout: str = "auto",
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Opens an image from a path, a numpy array, a PIL image (or passes a LoadedImage through).

    Args:
        source: str / os.PathLike to a PNG, JPEG, JPEG 2000 or TIFF / GeoTIFF file; a numpy
            array [H, W], [H, W, C] or [C, H, W]; a PIL.Image.Image; a LoadedImage.
        layout: "auto" | "hwc" | "chw" for arrays (files know their layout).
        max_pixels: refuse scenes with more pixels than this (None: no limit); checked before
            any pixel is read.

    Returns:
        LoadedImage.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an empty, corrupt or unrecognized file; a bad shape or layout.
        ImageTooLargeError: above max_pixels (the message gives the memory it would need).
        TypeError: an unsupported source type or dtype.
    """
    if isinstance(source, LoadedImage):
        check_size(source.source, *source.hw, source.bands, source.pixels.dtype.itemsize,
                   max_pixels)
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"image file {path} does not exist")
        if not path.is_file():
            raise ValueError(f"image file {path} is not a file")
        kind = _sniff(path)
        if kind == "tiff":
            try:
                import rasterio  # noqa: F401
            except ImportError:
                return _load_tiff(path, layout, max_pixels)
            return _load_rasterio(path, max_pixels)
        return _load_pil(path, max_pixels)
    if isinstance(source, np.ndarray):
        where = "image array"
        if source.ndim not in (2, 3):
            raise ValueError(f"{where}: image must be [H, W], [H, W, C] or [C, H, W], got shape "
                             f"{list(source.shape)}")
        arr = to_hwc(source, layout, where)
        check_size(where, arr.shape[0], arr.shape[1], arr.shape[2], arr.dtype.itemsize,
                   max_pixels)
        return LoadedImage(arr, "array", None, None, _array_key(arr))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        Image = None
    if Image is not None and isinstance(source, Image.Image):
        arr = to_hwc(_from_pil(source, "PIL image", max_pixels), "hwc", "PIL image")
        return LoadedImage(arr, "PIL image", None, None, _array_key(arr))
    raise TypeError(f"image must be a file path, a numpy array or a PIL image, got "
                    f"{type(source).__name__}")


def guess_sensor(image: LoadedImage, allowed: dict[str, list[int]]) -> str:
    """The sensor of an image for sensor="auto": complex pixels are SAR; 3 bands of uint8 are
    optical; the model's multispectral band count is multispectral; 2 bands are dual-pol SAR.

    Raises:
        ValueError: anything else (a single band could be SAR or thermal infrared, for example):
            the message asks for an explicit sensor and lists what the model takes.
    """
    px = image.pixels
    c = image.bands
    if np.iscomplexobj(px):
        guess = "sar"
    elif c == 3 and px.dtype == np.uint8:
        guess = "optical"
    elif c in allowed.get("multispectral", ()) and c > 3:
        guess = "multispectral"
    elif c == 2:
        guess = "sar"
    else:
        guess = None
    if guess is None or guess not in allowed or c not in allowed[guess]:
        raise ValueError(f"sensor='auto' cannot tell the sensor of {image.source} ({c} band(s), "
                         f"{px.dtype}): pass sensor= one of {sorted(allowed)} (this model takes "
                         f"{ {k: list(v) for k, v in allowed.items()} } bands)")
    return guess
