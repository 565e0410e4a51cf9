"""Preprocess: per-sensor normalization, resize (bilinear / area), pad to the square model input.

The numpy functions `*_ref` are the spec; `earthx_sdk._C` implements the same arithmetic in one
fused pass (normalize -> horizontal resample -> vertical resample -> pad), multithreaded.

Geometry: an image of (H, W) is resized, keeping its aspect, to (nh, nw) with
`scale = size / max(H, W)`, `nh = max(1, floor(H * scale + 0.5))` (same for nw), then padded at the
bottom and right with 0.0 (the normalized band mean) to [C, size, size]. Prompts and masks map
through the same geometry: x_in = x * nw / W, y_in = y * nh / H (`PreprocessInfo.scale`).

Resampling, per axis, with output pixel j and s = n_in / n_out:
- "bilinear" (half-pixel centers, no antialiasing): src = clamp((j + 0.5) * s - 0.5, 0, n_in - 1),
  taps floor(src) and min(floor(src) + 1, n_in - 1) with weights 1 - f and f.
- "area" (downscaling): the mean over the source interval [j * s, (j + 1) * s), each source pixel
  weighted by its overlap; on an axis that is not shrinking, "area" is bilinear.
- "auto": area where the image shrinks, bilinear where it grows.
Weights are computed in float64 and applied in float32, the width axis first, in tap order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from earthx_sdk import _ext
from earthx_sdk.io.sensors import SensorSpec, get_sensor
from earthx_sdk.ops._checks import check_hw

RESIZE_MODES = ("auto", "bilinear", "area")

# Kind codes of the native ABI.
(_KIND_LINEAR, _KIND_SAR_AMPLITUDE, _KIND_SAR_INTENSITY, _KIND_SAR_COMPLEX,
 _KIND_PERCENTILE) = range(5)
_SAR_CODES = {"amplitude": _KIND_SAR_AMPLITUDE, "intensity": _KIND_SAR_INTENSITY,
              "complex": _KIND_SAR_COMPLEX}
_REAL_DTYPES = (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64)
_COMPLEX_DTYPES = (np.complex64, np.complex128)
_DB_FLOOR = 1e-10  # intensity floor before log10: -100 dB


@dataclass(frozen=True)
class PreprocessInfo:
    """The geometry of one preprocessed image, needed to map prompts in and masks out.

    Attributes:
        orig_hw: (H, W) of the input image.
        resized_hw: (nh, nw) of the image inside the padded square.
        size: side of the square model input.
        invalid_pixels: pixels with a NaN, Inf or nodata band (normalized to 0.0); None where the
            CUDA path ran, which does not count them.
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    size: int
    invalid_pixels: int | None = 0

    @property
    def scale(self) -> tuple[float, float]:
        """(kx, ky): image pixel coordinates times these give model-input coordinates."""
        return (self.resized_hw[1] / self.orig_hw[1], self.resized_hw[0] / self.orig_hw[0])

    def grid_scale(self, grid_hw: tuple[int, int]) -> tuple[float, float]:
        """(kx, ky) from image pixels to a grid of grid_hw covering the padded square (the model
        input itself, or a feature map such as its 1/14 or 1/4 grid): the `scale` argument of
        the `earthx_sdk.ops.rasterize` functions."""
        kx, ky = self.scale
        return (kx * grid_hw[1] / self.size, ky * grid_hw[0] / self.size)


def resized_hw(height: int, width: int, size: int) -> tuple[int, int]:
    """(nh, nw) of an (height, width) image fitted, aspect kept, into a size x size square."""
    scale = size / max(height, width)
    return max(1, math.floor(height * scale + 0.5)), max(1, math.floor(width * scale + 0.5))


# ------------------------------------------------------------------------------------------------
# Input checks, shared by both implementations
# ------------------------------------------------------------------------------------------------

def as_hwc(image, layout: str = "hwc", name: str = "image") -> np.ndarray:
    """Returns `image` as an [H, W, C] view (no copy): 2-D images get C = 1, CHW is transposed.

    Raises:
        TypeError: not an array, or an unsupported dtype.
        ValueError: wrong ndim, unknown layout, or a zero-size image.
    """
    if not isinstance(image, np.ndarray):
        if hasattr(image, "__array__") or isinstance(image, (list, tuple)):
            image = np.asarray(image)
        else:
            raise TypeError(f"{name} must be a numpy array (or array-like), got "
                            f"{type(image).__name__}")
    if image.dtype.type not in _REAL_DTYPES + _COMPLEX_DTYPES:
        raise TypeError(f"{name} must have dtype uint8, uint16, int16, int32, float32, float64, "
                        f"complex64 or complex128, got {image.dtype}")
    if layout not in ("hwc", "chw"):
        raise ValueError(f"layout must be 'hwc' or 'chw', got {layout!r}")
    if image.ndim == 2:
        image = image[:, :, None]
    elif image.ndim == 3:
        if layout == "chw":
            image = image.transpose(1, 2, 0)
    else:
        raise ValueError(f"{name} must be [H, W], [H, W, C] or [C, H, W] (ndim 2 or 3), got shape "
                         f"{list(image.shape)}")
    if image.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {list(image.shape)} ({layout})")
    return image


def _check_mode(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")


def _check_nodata(nodata, image: np.ndarray) -> float | None:
    if nodata is None:
        return None
    if np.iscomplexobj(image):
        raise ValueError("nodata is not supported for complex images (mark invalid samples with "
                         "NaN instead)")
    if isinstance(nodata, bool) or not isinstance(nodata, (int, float, np.integer, np.floating)):
        raise TypeError(f"nodata must be a real number or None, got {type(nodata).__name__}")
    if math.isnan(nodata):
        raise ValueError("nodata must not be NaN (NaN pixels are always invalid already)")
    return float(nodata)


def _native_params(spec: SensorSpec, image: np.ndarray) -> tuple[int, np.ndarray]:
    """Kind code and per-band float64 params [C, 4] of the native ABI (and of the reference)."""
    bands = image.shape[2]
    mean, std = spec.band_stats(bands)
    params = np.zeros((bands, 4), np.float64)
    if spec.kind == "linear":
        if np.iscomplexobj(image):
            raise TypeError(f"image: sensor {spec.name!r} takes real pixels, got {image.dtype}")
        gain = spec.gain
        if gain is None:
            gain = {np.uint8: 1 / 255, np.uint16: 1 / 65535}.get(image.dtype.type, 1.0)
        params[:, 0] = gain / std  # v = x * a + c
        params[:, 1] = -mean / std
        return _KIND_LINEAR, params
    if spec.kind == "sar_db":
        complex_in = np.iscomplexobj(image)
        if complex_in != (spec.sar_input == "complex"):
            raise TypeError(f"image: sensor {spec.name!r} has sar_input={spec.sar_input!r}, which "
                            f"needs a {'complex' if spec.sar_input == 'complex' else 'real'} "
                            f"dtype, got {image.dtype}")
        db_min, db_max = spec.db_range
        params[:, 0] = 1.0 / ((db_max - db_min) * std)  # v = clip(dB) * a + c
        params[:, 1] = (-db_min / (db_max - db_min) - mean) / std
        params[:, 2], params[:, 3] = db_min, db_max
        return _SAR_CODES[spec.sar_input], params
    if np.iscomplexobj(image):
        raise TypeError(f"image: sensor {spec.name!r} takes real pixels, got {image.dtype}")
    params[:, 0], params[:, 1] = spec.percentiles
    params[:, 2], params[:, 3] = mean, std
    return _KIND_PERCENTILE, params


# ------------------------------------------------------------------------------------------------
# Numpy reference
# ------------------------------------------------------------------------------------------------

def _valid_mask(x: np.ndarray, nodata: float | None) -> np.ndarray:
    if np.iscomplexobj(x):
        valid = np.isfinite(x.real) & np.isfinite(x.imag)
    elif x.dtype.kind == "f":
        valid = np.isfinite(x)
    else:
        valid = np.ones(x.shape, bool)
    if nodata is not None:
        valid &= x != nodata
    return valid


def _percentile_pair(values: np.ndarray, p_low: float, p_high: float) -> tuple[float, float]:
    """Linear interpolation between order statistics: pos = p / 100 * (n - 1)."""
    n = values.size
    out = []
    for p in (p_low, p_high):
        pos = p / 100.0 * (n - 1)
        k = min(math.floor(pos), n - 1)
        k1 = min(k + 1, n - 1)
        part = np.partition(values, (k, k1))
        a, b = float(part[k]), float(part[k1])
        out.append(a + (b - a) * (pos - k))
    return out[0], out[1]


def normalize_ref(image: np.ndarray, kind: int, params: np.ndarray,
                  nodata: float | None) -> tuple[np.ndarray, int]:
    """Normalizes a checked [H, W, C] image -> (float32 [H, W, C], invalid pixel count)."""
    valid = _valid_mask(image, nodata)
    invalid = int(np.count_nonzero(~valid.all(axis=2)))  # pixels with any invalid band
    if kind == _KIND_SAR_COMPLEX:
        x = image.real.astype(np.float64) ** 2 + image.imag.astype(np.float64) ** 2
    else:
        x = image.astype(np.float64)
    x = np.where(valid, x, 0.0)
    a, c = params[:, 0], params[:, 1]
    if kind == _KIND_LINEAR:
        v = x * a + c
    elif kind in (_KIND_SAR_AMPLITUDE, _KIND_SAR_INTENSITY, _KIND_SAR_COMPLEX):
        intensity = x * x if kind == _KIND_SAR_AMPLITUDE else x
        db = 10.0 * np.log10(np.maximum(intensity, _DB_FLOOR))
        db = np.minimum(np.maximum(db, params[:, 2]), params[:, 3])
        v = db * a + c
    elif kind == _KIND_PERCENTILE:
        v = np.empty(x.shape, np.float64)
        for b in range(x.shape[2]):
            vals = x[:, :, b][valid[:, :, b]]
            if vals.size == 0:
                raise ValueError(f"image: band {b} has no valid pixel (all NaN, Inf or nodata): "
                                 "percentile scaling needs at least one")
            lo, hi = _percentile_pair(vals, params[b, 0], params[b, 1])
            if hi > lo:
                t = np.minimum(np.maximum((x[:, :, b] - lo) / (hi - lo), 0.0), 1.0)
            else:
                t = np.zeros(x.shape[:2])
            v[:, :, b] = (t - params[b, 2]) / params[b, 3]
    else:
        raise ValueError(f"normalize: unknown kind code {kind}")
    return np.where(valid, v, 0.0).astype(np.float32), invalid


def _axis_taps(n_in: int, n_out: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices [n_out, K] and float32 weights [n_out, K] for one axis (see module doc)."""
    j = np.arange(n_out, dtype=np.float64)
    s = n_in / n_out
    if mode == "area" and n_out < n_in:
        start, end = j * s, (j + 1) * s
        k0 = np.floor(start).astype(np.int64)
        k1 = np.minimum(np.ceil(end).astype(np.int64), n_in)  # exclusive
        taps = int((k1 - k0).max())
        idx = k0[:, None] + np.arange(taps)[None, :]
        lo = np.maximum(idx, start[:, None])
        hi = np.minimum(idx + 1, end[:, None])
        w = np.where(idx < k1[:, None], (hi - lo) / s, 0.0)
        idx = np.minimum(idx, k1[:, None] - 1)
        return idx, w.astype(np.float32)
    src = np.minimum(np.maximum((j + 0.5) * s - 0.5, 0.0), n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = src - i0
    return np.stack([i0, i1], 1), np.stack([1.0 - f, f], 1).astype(np.float32)


def _resolve_mode(mode: str, n_in: int, n_out: int) -> str:
    if mode == "auto":
        return "area" if n_out < n_in else "bilinear"
    return mode


def resize_ref(image: np.ndarray, out_h: int, out_w: int, mode: str) -> np.ndarray:
    """Separable resize of a float32 [H, W, C] image -> float32 [out_h, out_w, C]."""
    h, w = image.shape[:2]
    xi, xw = _axis_taps(w, out_w, _resolve_mode(mode, w, out_w))
    yi, yw = _axis_taps(h, out_h, _resolve_mode(mode, h, out_h))
    tmp = np.zeros((h, out_w, image.shape[2]), np.float32)
    for k in range(xi.shape[1]):
        tmp += image[:, xi[:, k], :] * xw[None, :, k, None]
    out = np.zeros((out_h, out_w, image.shape[2]), np.float32)
    for k in range(yi.shape[1]):
        out += tmp[yi[:, k], :, :] * yw[:, k, None, None]
    return out


def preprocess_ref(image: np.ndarray, kind: int, params: np.ndarray, nodata: float | None,
                   out_h: int, out_w: int, size: int, mode: str) -> tuple[np.ndarray, int]:
    """normalize_ref -> resize_ref -> pad: float32 [C, size, size] and the invalid pixel count."""
    norm, invalid = normalize_ref(image, kind, params, nodata)
    resized = resize_ref(norm, out_h, out_w, mode)
    out = np.zeros((image.shape[2], size, size), np.float32)
    out[:, :out_h, :out_w] = resized.transpose(2, 0, 1)
    return out, invalid


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------

def normalize(image, sensor: str | SensorSpec, *, nodata: float | None = None,
              layout: str = "hwc", impl: str = "auto") -> tuple[np.ndarray, int]:
    """Normalizes an image per sensor (see earthx_sdk.io.sensors) at its own resolution.

    Args:
        image: [H, W], [H, W, C] (layout "hwc") or [C, H, W] (layout "chw") array.
        sensor: a sensor name ("optical", "multispectral", "sar", "infrared") or a SensorSpec.
        nodata: raw value marking missing pixels (besides NaN/Inf), or None.
    Returns:
        (float32 [H, W, C], number of invalid pixels, set to 0.0).
    Raises:
        TypeError: unsupported dtype, or real/complex input that does not match the sensor.
        ValueError: bad shape, band count that does not match the sensor, NaN nodata, a band with
            no valid pixel under percentile scaling.
    """
    spec = get_sensor(sensor)
    img = as_hwc(image, layout)
    nodata = _check_nodata(nodata, img)
    kind, params = _native_params(spec, img)
    if _ext.use_native(impl, "normalize"):
        out, invalid = _ext.native().normalize(img, kind, params, nodata)
        return out, int(invalid)
    return normalize_ref(img, kind, params, nodata)


def resize(image, out_hw: tuple[int, int], *, mode: str = "auto", impl: str = "auto") -> np.ndarray:
    """Resizes a float32 [H, W, C] (or [H, W]) image to out_hw; see the module doc for the rules.

    Raises:
        TypeError: image is not float32.
        ValueError: bad shape, out_hw with a dim < 1, unknown mode.
    """
    img = as_hwc(image)
    if img.dtype != np.float32:
        raise TypeError(f"image must have dtype float32 (normalize first), got {img.dtype}")
    _check_mode(mode)
    out_h, out_w = check_hw("resize", "out_hw", out_hw)
    if _ext.use_native(impl, "resize"):
        out = _ext.native().resize(img, out_h, out_w, mode)
    else:
        out = resize_ref(img, out_h, out_w, mode)
    return out if np.ndim(image) == 3 else out[:, :, 0]


def preprocess(image, sensor: str | SensorSpec, size: int, *, resize_mode: str = "auto",
               nodata: float | None = None, layout: str = "hwc",
               impl: str = "auto") -> tuple[np.ndarray, PreprocessInfo]:
    """Turns a raw image into the model's input: normalize, resize (aspect kept), pad.

    Args:
        image: [H, W], [H, W, C] or (layout="chw") [C, H, W]; uint8, uint16, int16, int32,
            float32, float64, or complex64/128 for SAR with sar_input="complex". Non-contiguous
            views are read in place.
        sensor: name or SensorSpec; its band count must match C.
        size: side of the square model input (e.g. 448).
        resize_mode: "auto" (area when shrinking, bilinear when growing), "bilinear" or "area".
        nodata: raw value marking missing pixels, besides NaN/Inf.
    Returns:
        (float32 [C, size, size], PreprocessInfo).
    Raises:
        TypeError / ValueError: as `normalize`, plus size < 1 and an unknown resize_mode.
    """
    spec = get_sensor(sensor)
    img = as_hwc(image, layout)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an integer, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    _check_mode(resize_mode)
    nodata = _check_nodata(nodata, img)
    kind, params = _native_params(spec, img)
    h, w = img.shape[:2]
    nh, nw = resized_hw(h, w, int(size))
    if _ext.use_native(impl, "preprocess"):
        out, invalid = _ext.native().preprocess(img, kind, params, nodata, nh, nw, int(size),
                                                resize_mode)
    else:
        out, invalid = preprocess_ref(img, kind, params, nodata, nh, nw, int(size), resize_mode)
    return out, PreprocessInfo((h, w), (nh, nw), int(size), int(invalid))


_CAI_DTYPES = {"|u1": np.uint8, "<u1": np.uint8, "<u2": np.uint16, "<i2": np.int16,
               "<i4": np.int32, "<f4": np.float32, "<f8": np.float64, "<c8": np.complex64}


def _cai_hwc(cai: dict, layout: str) -> tuple[list[int], list[int], str]:
    """Shape and byte strides of the HWC view of a __cuda_array_interface__ buffer."""
    typestr = cai["typestr"]
    if typestr not in _CAI_DTYPES:
        raise TypeError(f"image must have dtype uint8, uint16, int16, int32, float32, float64 or "
                        f"complex64 on CUDA, got typestr {typestr!r}")
    shape = list(cai["shape"])
    itemsize = np.dtype(_CAI_DTYPES[typestr]).itemsize
    strides = cai.get("strides")
    if strides is None:  # C-contiguous
        strides, step = [], itemsize
        for d in reversed(shape):
            strides.insert(0, step)
            step *= d
    strides = list(strides)
    if layout not in ("hwc", "chw"):
        raise ValueError(f"layout must be 'hwc' or 'chw', got {layout!r}")
    if len(shape) == 2:
        shape, strides = shape + [1], strides + [itemsize]
    elif len(shape) == 3 and layout == "chw":
        shape, strides = [shape[1], shape[2], shape[0]], [strides[1], strides[2], strides[0]]
    elif len(shape) != 3:
        raise ValueError(f"image must be [H, W], [H, W, C] or [C, H, W] (ndim 2 or 3), got shape "
                         f"{shape}")
    if min(shape) < 1:
        raise ValueError(f"image must not be empty, got shape {shape} ({layout})")
    return shape, strides, typestr


def preprocess_cuda(image, sensor: str | SensorSpec, size: int, *, out=None,
                    resize_mode: str = "auto", nodata: float | None = None, layout: str = "hwc",
                    stream: int | None = None):
    """`preprocess` on a CUDA device buffer, without a host round trip (Jetson, datacenter GPUs).

    Same arithmetic as `preprocess_ref` (float results within 1e-5). Percentile bounds (infrared)
    are computed on the host from a copy of the image; the other kinds never leave the device.

    Args:
        image: an object with `__cuda_array_interface__` (a torch CUDA tensor, a CuPy array),
            [H, W], [H, W, C] or (layout="chw") [C, H, W], any strides.
        out: a C-contiguous float32 [C, size, size] device buffer to write; None allocates a torch
            tensor on the image's device (needs torch).
        stream: cudaStream_t as an integer; None = torch's current stream for a torch tensor, else
            the legacy default stream. The kernel runs asynchronously on it.
    Returns:
        (out, PreprocessInfo with invalid_pixels=None).
    Raises:
        TypeError: no __cuda_array_interface__, unsupported dtype, out of the wrong kind.
        ValueError / RuntimeError: as `preprocess`; RuntimeError when _C has no CUDA.
    """
    cai = getattr(image, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(f"image must expose __cuda_array_interface__ (a CUDA tensor or array), "
                        f"got {type(image).__name__}")
    spec = get_sensor(sensor)
    shape, strides, typestr = _cai_hwc(cai, layout)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    _check_mode(resize_mode)
    probe = np.empty((0, 0, shape[2]), _CAI_DTYPES[typestr])  # dtype and band count only
    nodata = _check_nodata(nodata, probe)
    kind, params = _native_params(spec, probe)
    bounds = None
    if kind == _KIND_PERCENTILE:
        host = _to_host(image)
        host = as_hwc(host, layout)
        valid = _valid_mask(host, nodata)
        bounds = np.zeros((shape[2], 2))
        for b in range(shape[2]):
            vals = host[:, :, b][valid[:, :, b]].astype(np.float64)
            if vals.size == 0:
                raise ValueError(f"image: band {b} has no valid pixel (all NaN, Inf or nodata): "
                                 "percentile scaling needs at least one")
            bounds[b] = _percentile_pair(vals, params[b, 0], params[b, 1])
    nh, nw = resized_hw(shape[0], shape[1], int(size))
    if out is None:
        out = _torch_empty_like_device(image, (shape[2], int(size), int(size)))
    ocai = getattr(out, "__cuda_array_interface__", None)
    if ocai is None or ocai["typestr"] != "<f4" or tuple(ocai["shape"]) != (shape[2], size, size) \
            or ocai.get("strides") not in (None, (size * size * 4, size * 4, 4)):
        raise TypeError(f"out must be a C-contiguous float32 CUDA buffer of shape "
                        f"{(shape[2], size, size)}")
    if stream is None:
        stream = _torch_stream(image)
    _ext.native().preprocess_cuda(cai["data"][0], shape, strides, typestr, kind, params, bounds,
                                  nodata, ocai["data"][0], nh, nw, int(size), resize_mode,
                                  int(stream))
    return out, PreprocessInfo((shape[0], shape[1]), (nh, nw), int(size), None)


def _to_host(image) -> np.ndarray:
    if hasattr(image, "cpu"):  # torch
        return image.detach().cpu().numpy()
    if hasattr(image, "get"):  # CuPy
        return image.get()
    raise TypeError("percentile scaling on CUDA copies the image to the host: pass a torch tensor "
                    f"or a CuPy array, got {type(image).__name__}")


def _torch_empty_like_device(image, shape):
    try:
        import torch
    except ImportError:
        raise TypeError("out=None allocates with torch, which is not installed: pass out") from None
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"out=None allocates with torch: pass out for a {type(image).__name__}")
    return torch.empty(shape, dtype=torch.float32, device=image.device)


def _torch_stream(image) -> int:
    try:
        import torch
    except ImportError:
        return 0
    if isinstance(image, torch.Tensor):
        return torch.cuda.current_stream(image.device).cuda_stream
    return 0
