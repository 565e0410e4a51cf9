"""Sensors and their normalization: how raw pixels of each source become model inputs.

Every sensor maps its raw values to a float32 value per band in three steps, the first chosen by
`kind`, the last always a per-band standardization `(v - mean) / std`:

- "linear" (optical, multispectral): v = x * gain. Optical uint8 RGB uses gain 1/255 and the
  ImageNet mean/std the DINOv2 and ConvNeXt experts were trained with; multispectral (any number
  of bands, typically uint16 reflectance x 10000) uses gain 1e-4 and statistics in reflectance
  units: one mean/std for all bands by default, per band with `with_stats` (for example from
  `estimate_band_stats` of images scaled by the gain).
- "sar_db" (SAR): intensity I from amplitude (a**2), intensity, or complex (re**2 + im**2) input;
  dB = 10 * log10(max(I, 1e-10)) clipped to [db_min, db_max]; v = (dB - db_min) / (db_max - db_min).
- "percentile" (thermal infrared, 16-bit): per band, lo/hi = the p_low/p_high percentiles of the
  valid pixels of this image (linear interpolation between order statistics, numpy's default
  method); v = clip((x - lo) / (hi - lo), 0, 1), and v = 0 where hi == lo (a constant band).

Invalid samples: NaN, +-Inf (float inputs), complex values with a non-finite part, and values
equal to the optional `nodata` are never propagated. They are left out of percentile statistics,
and their normalized value is 0.0 (the band mean, the neutral input the model also sees in the
padding); the other bands of the pixel keep their values. `preprocess` reports how many pixels had
at least one invalid band (`PreprocessInfo.invalid_pixels`). A band with no valid sample at all
cannot be scaled by percentiles and raises ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

KINDS = ("linear", "sar_db", "percentile")
SAR_INPUTS = ("amplitude", "intensity", "complex")

# ImageNet RGB statistics (of x / 255), used by the DINOv2 and ConvNeXt pretraining recipes.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Multispectral digital numbers are reflectance x 10000 (Sentinel-2's quantification value), so
# the default gain maps them to reflectance, and one mean / std for every band brings land
# reflectances (about 0.02 to 0.5) to roughly unit scale. Left unscaled (gain 1), 16-bit values of
# thousands entered the network: their gradients dwarfed every other sensor's under global
# gradient clipping, and the tiny model learnt almost nothing in thousands of steps.
MS_GAIN = 1e-4
MS_REFLECTANCE_MEAN = (0.15,)
MS_REFLECTANCE_STD = (0.10,)


@dataclass(frozen=True)
class SensorSpec:
    """How one sensor's raw pixels are normalized.

    Attributes:
        name: sensor name, as a bundle manifest records it.
        kind: "linear" | "sar_db" | "percentile" (see the module docstring).
        bands: required band count, or None for any (then mean/std hold one value for all bands).
        mean, std: per-band standardization after the kind's scaling (length `bands`, or 1).
        gain: "linear" only: factor applied to raw values; None means by dtype (uint8 1/255,
            uint16 1/65535, floats 1) for optical, 1 otherwise.
        sar_input: "sar_db" only: "amplitude", "intensity" or "complex".
        db_range: "sar_db" only: (db_min, db_max) clipping range in dB.
        percentiles: "percentile" only: (p_low, p_high), 0 <= p_low < p_high <= 100.
    """

    name: str
    kind: str
    bands: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    gain: float | None = None
    sar_input: str = "amplitude"
    db_range: tuple[float, float] = (-30.0, 10.0)
    percentiles: tuple[float, float] = (2.0, 98.0)
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SensorSpec {self.name!r}: kind must be one of {KINDS}, "
                             f"got {self.kind!r}")
        if self.bands is not None and self.bands < 1:
            raise ValueError(f"SensorSpec {self.name!r}: bands must be >= 1 or None, "
                             f"got {self.bands}")
        if len(self.mean) != len(self.std) or len(self.mean) == 0:
            raise ValueError(f"SensorSpec {self.name!r}: mean and std must have the same non-zero "
                             f"length, got {len(self.mean)} and {len(self.std)}")
        if self.bands is not None and len(self.mean) not in (1, self.bands):
            raise ValueError(f"SensorSpec {self.name!r}: mean/std must have 1 or bands="
                             f"{self.bands} values, got {len(self.mean)}")
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"SensorSpec {self.name!r}: mean must be finite, got {self.mean}")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"SensorSpec {self.name!r}: std must be finite and > 0, "
                             f"got {self.std}")
        if self.gain is not None and not (math.isfinite(self.gain) and self.gain > 0):
            raise ValueError(f"SensorSpec {self.name!r}: gain must be finite and > 0, "
                             f"got {self.gain}")
        if self.sar_input not in SAR_INPUTS:
            raise ValueError(f"SensorSpec {self.name!r}: sar_input must be one of {SAR_INPUTS}, "
                             f"got {self.sar_input!r}")
        lo, hi = self.db_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"SensorSpec {self.name!r}: db_range must be finite with "
                             f"db_min < db_max, got {self.db_range}")
        plo, phi = self.percentiles
        if not (0.0 <= plo < phi <= 100.0):
            raise ValueError(f"SensorSpec {self.name!r}: percentiles must satisfy "
                             f"0 <= p_low < p_high <= 100, got {self.percentiles}")

    def band_stats(self, bands: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-band (mean, std) float64 arrays for an image with `bands` bands.

        Raises:
            ValueError: the band count does not match the sensor.
        """
        if self.bands is not None and bands != self.bands:
            raise ValueError(f"image: sensor {self.name!r} expects {self.bands} band(s), "
                             f"got an image with {bands}")
        if len(self.mean) not in (1, bands):
            raise ValueError(f"image: sensor {self.name!r} has statistics for {len(self.mean)} "
                             f"bands, got an image with {bands}")
        mean = np.broadcast_to(np.asarray(self.mean, np.float64), (bands,))
        std = np.broadcast_to(np.asarray(self.std, np.float64), (bands,))
        return mean, std

    def with_stats(self, mean, std) -> SensorSpec:
        """A copy with per-band statistics (for example from `estimate_band_stats`)."""
        mean = tuple(float(m) for m in np.ravel(mean))
        std = tuple(float(s) for s in np.ravel(std))
        return replace(self, mean=mean, std=std, bands=len(mean) if self.bands is None
                       else self.bands)


SENSORS: dict[str, SensorSpec] = {
    "optical": SensorSpec("optical", "linear", 3, IMAGENET_MEAN, IMAGENET_STD,
                          description="RGB, uint8 (or uint16 / float in [0, 1])"),
    "multispectral": SensorSpec("multispectral", "linear", None, MS_REFLECTANCE_MEAN,
                                MS_REFLECTANCE_STD, gain=MS_GAIN,
                                description="N bands of surface reflectance x 10000 (Sentinel-2 "
                                            "L1C/L2A, the synthetic scenes); statistics in "
                                            "reflectance units, per band with with_stats()"),
    "sar": SensorSpec("sar", "sar_db", None, (0.5,), (0.5,),
                      description="1 (single-pol) or 2 (dual-pol) bands; amplitude, intensity "
                                  "or complex; dB clipped to db_range, mapped to [-1, 1]"),
    "infrared": SensorSpec("infrared", "percentile", None, (0.5,), (0.5,),
                           description="thermal IR, 16-bit; per-image 2-98 percentile scaling "
                                       "mapped to [-1, 1]"),
}


def get_sensor(sensor: str | SensorSpec) -> SensorSpec:
    """Looks up a sensor by name, or passes a SensorSpec through.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: neither a name nor a SensorSpec.
    """
    if isinstance(sensor, SensorSpec):
        return sensor
    if isinstance(sensor, str):
        if sensor not in SENSORS:
            raise ValueError(f"sensor must be one of {sorted(SENSORS)} or a SensorSpec, "
                             f"got {sensor!r}")
        return SENSORS[sensor]
    raise TypeError(f"sensor must be a name or a SensorSpec, got {type(sensor).__name__}")


def estimate_band_stats(images, nodata: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std of the valid pixels of HWC images (for multispectral sensors).

    Args:
        images: one [H, W, C] array or a sequence of them with the same C.
    Returns:
        (mean [C], std [C]) float64.
    Raises:
        ValueError: band counts differ, or a band has no valid pixel or zero spread.
    """
    if isinstance(images, np.ndarray):
        images = [images]
    total = None
    for k, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise ValueError(f"images[{k}] must be [H, W, C], got shape {list(img.shape)}")
        x = img.reshape(-1, img.shape[-1]).astype(np.float64)
        valid = np.isfinite(x)
        if nodata is not None:
            valid &= x != nodata
        x = np.where(valid, x, 0.0)
        stats = np.stack([valid.sum(0), x.sum(0), (x * x).sum(0)])
        if total is not None and total.shape != stats.shape:
            raise ValueError(f"images[{k}] has {img.shape[-1]} bands, the first had "
                             f"{total.shape[1]}")
        total = stats if total is None else total + stats
    if total is None:
        raise ValueError("images must hold at least one image")
    n, s, ss = total
    if np.any(n == 0):
        raise ValueError(f"estimate_band_stats: bands {np.flatnonzero(n == 0).tolist()} have no "
                         "valid pixel")
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    if np.any(std == 0):
        raise ValueError(f"estimate_band_stats: bands {np.flatnonzero(std == 0).tolist()} are "
                         "constant (std 0)")
    return mean, std
