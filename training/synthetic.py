"""Synthetic multi-sensor scenes: one layout of objects rendered as optical, multispectral, SAR and
thermal infrared images with shared annotations, captions and QA.

A scene is a label map (0 = open land, k = instance k) built from polygons that never overlap, so
every instance's mask is exactly its polygon rasterized (pixel centers inside, the SDK's rule; a
lake's mask excludes the ships on it, its polygon is the shoreline) and its box is the mask's
extent (x0, y0, x1, y1) with exclusive ends. Rendering follows simple physics so that models (and
tests) can rely on it:

- Optical / multispectral: one reflectance field [H, W, 4] (B, G, R, NIR) per scene: soil/grass
  background, per-class spectra (vegetation bright in NIR, water dark), roof shading, cast shadows,
  texture. Multispectral = reflectance x 10000 as uint16; optical = gamma-encoded RGB as uint8.
- SAR: backscatter sigma0 (linear intensity) per class, flat over open land (`SAR_LAND`), bright
  double-bounce rings at the walls of buildings, ships and airplanes, radar shadow at the far-range
  side, dark water; multiplicative speckle: intensity = sigma0 * G with G ~ Gamma(L, 1/L) (unit
  mean, variance 1/L, L = `SAR_LOOKS`); stored as float32 amplitude sqrt(intensity).
- Thermal infrared: a temperature field (smooth background, cool water and vegetation, warm roofs,
  hot engines), blurred by the optics, plus NETD noise; uint16 in centi-kelvin (`IR_SCALE`).

Everything is drawn from `numpy.random.default_rng(seed)`: the same seed gives bit-identical arrays.
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import numpy as np

from earthx_sdk.ops.rasterize import raster_polygon
from training.records import Annotation, ImageRecord
from training.templates import article, number_word, plural, position_name, position_phrase

CLASSES = ("building", "storage tank", "ship", "airplane", "vehicle", "road", "tree", "water")
SAR_LOOKS = 4  # equivalent number of looks of the speckle
SAR_LAND = 0.05  # sigma0 of open land, linear intensity (-13 dB)
IR_SCALE = 100.0  # infrared digital numbers per kelvin
MS_SCALE = 10000.0  # multispectral digital numbers per unit reflectance

# Reflectance (B, G, R, NIR) per class; land mixes soil and grass.
_REFL = {
    "soil": (0.10, 0.13, 0.17, 0.26), "grass": (0.04, 0.09, 0.06, 0.38),
    "building": (0.20, 0.19, 0.19, 0.24), "storage tank": (0.32, 0.33, 0.33, 0.36),
    "ship": (0.16, 0.16, 0.17, 0.19), "airplane": (0.40, 0.41, 0.42, 0.44),
    "vehicle": (0.12, 0.12, 0.14, 0.16), "road": (0.12, 0.125, 0.13, 0.15),
    "tree": (0.03, 0.07, 0.04, 0.48), "water": (0.06, 0.06, 0.035, 0.01),
}
_ROOFS = ((0.16, 0.17, 0.30, 0.33), (0.22, 0.22, 0.22, 0.26), (0.12, 0.14, 0.18, 0.22),
          (0.30, 0.30, 0.29, 0.33))  # red tile, concrete, dark, light metal
_SIGMA0 = {"building": 0.15, "storage tank": 0.2, "ship": 0.4, "airplane": 0.3, "vehicle": 0.8,
           "road": 0.01, "tree": 0.12, "water": 0.002}
_WALL = {"building": 2.0, "storage tank": 1.5, "ship": 3.0, "airplane": 2.0}  # double bounce
_TEMP = {"land": 296.0, "water": 287.0, "road": 304.0, "building": 316.0, "storage tank": 306.0,
         "ship": 293.0, "airplane": 301.0, "vehicle": 318.0, "tree": 292.0}
_HEIGHT = {"building": 4, "storage tank": 3, "tree": 3, "airplane": 1, "vehicle": 1}  # shadow px


def _rot(pts: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + pts[:, 0] * c - pts[:, 1] * s, cy + pts[:, 0] * s + pts[:, 1] * c], 1)


def _circle(r: np.ndarray) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, len(r), endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _shape(cat: str, rng: np.random.Generator, s: float) -> np.ndarray:
    """Outline of one object centred on (0, 0), in pixels, before rotation."""
    if cat == "building":
        w, h = rng.uniform(14, 32, 2) * s
        return np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    if cat == "storage tank":
        return _circle(np.full(24, rng.uniform(6, 12) * s))
    if cat == "tree":
        return _circle(rng.uniform(4, 8) * s * (1 + 0.12 * rng.standard_normal(12)))
    if cat == "vehicle":
        w, h = max(10.0, 12 * s), max(5.0, 6 * s)
        return np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    if cat == "ship":
        n, w = rng.uniform(22, 40) * s / 2, rng.uniform(6, 10) * s / 2
        return np.array([[-n, -w], [0.6 * n, -w], [n, 0], [0.6 * n, w], [-n, w]])
    span = rng.uniform(26, 44) * s / 2  # airplane: fuselage, wings, tail plane
    f, b = span * 0.12, span * 0.95
    return np.array([[b, 0], [0.8 * b, f], [0.15 * b, f], [0.05 * b, span], [-0.15 * b, span],
                     [-0.2 * b, f], [-0.7 * b, f], [-0.85 * b, 0.35 * span],
                     [-b, 0.35 * span], [-0.95 * b, 0], [-b, -0.35 * span],
                     [-0.85 * b, -0.35 * span], [-0.7 * b, -f], [-0.2 * b, -f],
                     [-0.15 * b, -span], [0.05 * b, -span], [0.15 * b, -f], [0.8 * b, -f]])


def _clip(poly: np.ndarray, w: float, h: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon to the image rectangle [0, w] x [0, h]."""
    pts = [tuple(p) for p in poly]
    for axis, bound, keep_below in ((0, 0.0, False), (0, w, True), (1, 0.0, False),
                                    (1, h, True)):
        out, n = [], len(pts)
        for i in range(n):
            a, b = pts[i - 1], pts[i]
            ina = (a[axis] <= bound) if keep_below else (a[axis] >= bound)
            inb = (b[axis] <= bound) if keep_below else (b[axis] >= bound)
            if ina != inb:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                out.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
            if inb:
                out.append(b)
        pts = out
    return np.asarray(pts, np.float64).reshape(-1, 2)


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(m, r)
    out = np.zeros_like(m)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= p[dy: dy + m.shape[0], dx: dx + m.shape[1]]
    return out


def _erode(m: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~m, r)


def _smooth(rng: np.random.Generator, hw: tuple[int, int], cells: int) -> np.ndarray:
    """A smooth random field in [0, 1]: a coarse grid, bilinearly upsampled."""
    g = rng.random((cells + 1, cells + 1))
    ys, xs = np.linspace(0, cells, hw[0]), np.linspace(0, cells, hw[1])
    rows = np.stack([np.interp(xs, np.arange(cells + 1), r) for r in g])  # [cells+1, W]
    return np.stack([np.interp(ys, np.arange(cells + 1), c) for c in rows.T], 1)  # [H, W]


class _Layout:
    """Places non-overlapping instances into a label map."""

    def __init__(self, hw: tuple[int, int], rng: np.random.Generator, object_scale: float = 1.0):
        self.hw, self.rng, self.object_scale = hw, rng, object_scale
        self.labels = np.zeros(hw, np.int32)
        self.items: list[tuple[str, np.ndarray, float]] = []  # (category, polygon, angle)

    def add(self, cat: str, poly: np.ndarray, allowed: np.ndarray, margin: int,
            angle: float = 0.0) -> bool:
        m = raster_polygon(poly, self.hw).astype(bool)
        if m.sum() < 8 or not allowed[_dilate(m, margin)].all():
            return False
        self.labels[m] = len(self.items) + 1
        self.items.append((cat, poly, angle))
        return True

    def place(self, cat: str, count: int, allowed_fn, margin: int = 2, tries: int = 40) -> None:
        h, w = self.hw
        s = min(h, w) / 224 * self.object_scale
        for _ in range(count):
            for _ in range(tries):
                angle = float(self.rng.uniform(0, math.pi))
                local = _shape(cat, self.rng, s)
                cx, cy = self.rng.uniform(0.05, 0.95) * w, self.rng.uniform(0.05, 0.95) * h
                poly = _rot(local, cx, cy, angle)
                if (poly.min() < 1 or poly[:, 0].max() > w - 1 or poly[:, 1].max() > h - 1):
                    continue
                if self.add(cat, poly, allowed_fn(), margin, angle):
                    break


def _layout(rng: np.random.Generator, hw: tuple[int, int], object_scale: float) -> _Layout:
    h, w = hw
    s = min(h, w) / 224
    lay = _Layout(hw, rng, object_scale)
    free = lambda: lay.labels == 0  # noqa: E731
    if rng.random() < 0.65:  # a lake, possibly cut by the image border
        r = rng.uniform(35, 60) * s * (1 + 0.15 * np.sin(np.arange(48) * 2 * math.pi / 48 * 3
                                                         + rng.uniform(0, 6)))
        poly = _clip(_circle(r) + rng.uniform(0.1, 0.9, 2) * (w, h), w, h)
        if len(poly) >= 3:
            lay.add("water", poly, np.ones(hw, bool), 0)
    if rng.random() < 0.7:  # a straight road across the scene
        for _ in range(30):
            half, ang = rng.uniform(4, 7) * s, rng.uniform(0, math.pi)
            big = 2 * (h + w)
            band = _rot(np.array([[-big, -half], [big, -half], [big, half], [-big, half]]),
                        rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, ang)
            if lay.add("road", _clip(band, w, h), free(), 3, ang):
                break
    water_ids = [k + 1 for k, it in enumerate(lay.items) if it[0] == "water"]
    if water_ids:
        lay.place("ship", int(rng.integers(1, 4)), lambda: np.isin(lay.labels, water_ids), 2)
    lay.place("airplane", int(rng.integers(1, 3)) if rng.random() < 0.4 else 0, free, 3)
    lay.place("storage tank", int(rng.integers(1, 5)) if rng.random() < 0.5 else 0, free, 2)
    lay.place("building", int(rng.integers(0, 7)), free, 3)
    lay.place("vehicle", int(rng.integers(0, 6)), free, 1)
    lay.place("tree", int(rng.integers(2, 11)), free, 1)
    return lay


def _reflectance(lay: _Layout, rng: np.random.Generator) -> np.ndarray:
    hw, labels = lay.hw, lay.labels
    t = _smooth(rng, hw, 5)[..., None]
    refl = (1 - t) * np.array(_REFL["soil"]) + t * np.array(_REFL["grass"])  # [H, W, 4]
    ys, xs = np.mgrid[0: hw[0], 0: hw[1]] + 0.5
    shadow = np.zeros(hw, bool)
    for k, (cat, poly, angle) in enumerate(lay.items, start=1):
        m = labels == k
        base = np.array(_ROOFS[rng.integers(len(_ROOFS))] if cat in ("building", "vehicle")
                        else _REFL[cat]) * (1 + 0.08 * rng.standard_normal(4))
        shade = np.ones(hw)
        cx, cy = poly.mean(0)
        if cat == "building":  # gable roof: the half facing the sun is brighter
            side = (xs - cx) * -math.sin(angle) + (ys - cy) * math.cos(angle)
            shade = np.where(side < 0, 1.12, 0.82)
        elif cat in ("storage tank", "tree"):  # domes and crowns: lit from the top left
            r = max(1.0, float(np.abs(poly - (cx, cy)).max()))
            shade = 1 - 0.35 * ((xs - cx) + (ys - cy)) / (2 * r)
        refl[m] = base * shade[m][:, None]
        d = _HEIGHT.get(cat, 0)
        if d:
            sh = np.zeros(hw, bool)
            sh[d:, d:] = m[:-d, :-d]
            shadow |= sh
    shadow &= np.isin(labels, [0] + [k for k, it in enumerate(lay.items, 1) if it[0] == "road"])
    refl[shadow] *= 0.45
    refl *= (1 + 0.05 * rng.standard_normal(refl.shape[:2]))[..., None]
    refl *= 1 + 0.02 * rng.standard_normal(refl.shape)
    return np.clip(refl, 0.0, 1.0)


def _sar(lay: _Layout, rng: np.random.Generator) -> np.ndarray:
    labels = lay.labels
    sigma = np.full(lay.hw, SAR_LAND)
    for k, (cat, _, _) in enumerate(lay.items, start=1):
        m = labels == k
        sigma[m] = _SIGMA0[cat]
        if cat in _WALL:
            sigma[m & ~_erode(m, 1)] = _WALL[cat]
            if cat != "ship":  # radar shadow behind the object (the sensor looks from the left)
                sh = np.zeros_like(m)
                sh[:, 3:] = m[:, :-3]
                sigma[sh & ~m & (labels == 0)] = 0.003
    intensity = sigma * rng.gamma(SAR_LOOKS, 1.0 / SAR_LOOKS, lay.hw)
    return np.sqrt(intensity).astype(np.float32)


def _infrared(lay: _Layout, rng: np.random.Generator) -> np.ndarray:
    labels = lay.labels
    temp = _TEMP["land"] + 4.0 * (_smooth(rng, lay.hw, 3) - 0.5)
    ys, xs = np.mgrid[0: lay.hw[0], 0: lay.hw[1]] + 0.5
    for k, (cat, poly, angle) in enumerate(lay.items, start=1):
        m = labels == k
        temp[m] = _TEMP[cat] + (rng.uniform(-4, 6) if cat == "building" else 0.0)
        if cat in ("airplane", "ship"):  # engines on the wings, a funnel at the stern
            span = float(np.abs(poly - poly.mean(0)).max())
            c, s = math.cos(angle), math.sin(angle)
            spots = ((0.1, 0.4), (0.1, -0.4)) if cat == "airplane" else ((-0.5, 0.0),)
            for u, v in spots:
                px, py = poly.mean(0) + span * np.array([u * c - v * s, u * s + v * c])
                hot = m & ((xs - px) ** 2 + (ys - py) ** 2 <= max(2.0, span * 0.12) ** 2)
                temp[hot] = 335.0
    for _ in range(2):  # optics blur: separable [1, 2, 1] / 4
        p = np.pad(temp, 1, mode="edge")
        temp = (p[:-2, 1:-1] + 2 * p[1:-1, 1:-1] + p[2:, 1:-1]) / 4
        p = np.pad(temp, 1, mode="edge")
        temp = (p[1:-1, :-2] + 2 * p[1:-1, 1:-1] + p[1:-1, 2:]) / 4
    temp = temp + 0.05 * rng.standard_normal(lay.hw)  # NETD 50 mK
    return np.clip(np.rint(temp * IR_SCALE), 0, 65535).astype(np.uint16)


def _describe(anns: list[Annotation], positions: dict[int, str]):
    """(captions by sensor word, scene class, qa) derived from the layout."""
    counts = Counter(a.category for a in anns)
    objs = [c for c in CLASSES if c not in ("road", "water") and counts[c]]
    parts = [f"{number_word(counts[c])} {plural(c) if counts[c] > 1 else c}" for c in objs]
    listing = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] \
        if parts else "open land"
    if counts["airplane"]:
        scene = "airport"
    elif counts["ship"]:
        scene = "harbor"
    elif counts["storage tank"] >= 2:
        scene = "industrial area"
    elif counts["building"] >= 3:
        scene = "residential area"
    elif counts["water"]:
        scene = "lake"
    else:
        scene = "meadow"
    extra = []
    for c, word in (("water", "a lake"), ("road", "a road")):
        for a in anns:
            if a.category == c:
                extra.append(f"{word} {position_phrase(positions[id(a)])}")
                break
    where = "; ".join(f"{a.phrase}" for a in anns[:4])
    captions = [f"{{sensor}} image of {article(scene)} with {listing}"
                + (" next to " + " and ".join(extra) if extra else "") + ".",
                f"This {{sensor}} scene shows {listing}; {where}."]
    qa = []
    for c in CLASSES:
        n = counts[c]
        qa.append((f"Is there {'any water' if c == 'water' else 'a ' + c} in the image?",
                   "yes" if n else "no"))
        if c not in ("road", "water"):
            qa.append((f"How many {plural(c)} are there in the image?", str(n)))
        if n == 1:
            a = next(a for a in anns if a.category == c)
            qa.append((f"Where is the {c}?", positions[id(a)]))
    return captions, scene, qa


def render_scene(seed: int, size: tuple[int, int] = (224, 224), split: str = "train",
                 object_scale: float = 1.0) -> dict[str, ImageRecord]:
    """Renders one synthetic scene in every sensor.

    Args:
        seed: the scene; the same seed gives bit-identical images and annotations.
        size: (H, W) in pixels, each >= 64 (objects are sized for 224 and scale with min(H, W)).
        split: recorded in each ImageRecord.
        object_scale: multiplies the size of every object (not the lake or the road), e.g. 2 for
            scenes seen closer: fewer, larger objects (placements that no longer fit are dropped).

    Returns:
        {"optical": uint8 [H, W, 3], "multispectral": uint16 [H, W, 4] (B, G, R, NIR),
        "sar": float32 [H, W] amplitude, "infrared": uint16 [H, W] centi-kelvin} as ImageRecords
        that share the same Annotation objects (masks are lazy views of one label map).

    Raises:
        ValueError: size not two integers >= 64; object_scale not in [0.5, 4].
    """
    if (len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 64 for v in size)):
        raise ValueError(f"render_scene: size must be (H, W) with integers >= 64, got {size!r}")
    if not (isinstance(object_scale, (int, float)) and 0.5 <= object_scale <= 4):
        raise ValueError(f"render_scene: object_scale must be a number in [0.5, 4], got "
                         f"{object_scale!r}")
    hw = (int(size[0]), int(size[1]))
    lay = _layout(np.random.default_rng(seed), hw, float(object_scale))
    lay.labels.setflags(write=False)
    anns = []
    for k, (cat, poly, _) in enumerate(lay.items, start=1):
        ys, xs = np.nonzero(lay.labels == k)
        anns.append(Annotation(cat, (float(xs.min()), float(ys.min()), float(xs.max() + 1),
                                     float(ys.max() + 1)),
                               [(float(x), float(y)) for x, y in poly],
                               functools.partial(np.equal, lay.labels, k),
                               position_name(xs.mean() + 0.5, ys.mean() + 0.5, hw)))
    positions = {id(a): a.phrase for a in anns}
    _phrases(anns)
    captions, scene, qa = _describe(anns, positions)
    refl = _reflectance(lay, np.random.default_rng([seed, 1]))
    rgb = np.clip((refl[..., [2, 1, 0]] * 1.8) ** (1 / 2.2) * 255 + 0.5, 0, 255)
    ms = np.rint(refl * MS_SCALE + 30 * np.random.default_rng([seed, 2]).standard_normal(
        refl.shape))
    images = {"optical": rgb.astype(np.uint8),
              "multispectral": np.clip(ms, 0, 65535).astype(np.uint16),
              "sar": _sar(lay, np.random.default_rng([seed, 3])),
              "infrared": _infrared(lay, np.random.default_rng([seed, 4]))}
    words = {"optical": "An optical", "multispectral": "A multispectral", "sar": "A SAR",
             "infrared": "A thermal infrared"}
    out = {}
    for sensor, img in images.items():
        w = words[sensor]
        caps = [captions[0].format(sensor=w), captions[1].format(sensor=w.split(" ", 1)[1])]
        out[sensor] = ImageRecord("synthetic", split, sensor, image=img, size=hw,
                                  annotations=list(anns), captions=caps, scene=scene,
                                  qa=list(qa))
    return out


def class_map(record: ImageRecord) -> np.ndarray:
    """int64 [H, W] class id of every pixel of a synthetic scene: 0 open land, k + 1 for
    CLASSES[k] (a ship on a lake is a ship: instances never overlap).

    Raises:
        ValueError: an annotation of a class outside CLASSES, or without a mask.
    """
    out = np.zeros(record.size, np.int64)
    for ann in record.annotations:
        if ann.category not in CLASSES or ann.mask is None:
            raise ValueError(f"class_map: annotations must be masks of {CLASSES}, got "
                             f"{ann.category!r}" + (" without a mask" if ann.mask is None else ""))
        out[np.asarray(ann.mask(), bool)] = CLASSES.index(ann.category) + 1
    return out


def _phrases(anns: list[Annotation]) -> None:
    """Turns each annotation's phrase (its position word) into a referring expression."""
    groups: dict[tuple[str, str], list[Annotation]] = {}
    for a in anns:
        groups.setdefault((a.category, a.phrase), []).append(a)
    ordinals = ("first", "second", "third", "fourth", "fifth", "sixth")
    for (cat, pos), group in groups.items():
        group.sort(key=lambda a: a.box[0])
        for i, a in enumerate(group):
            where = position_phrase(pos)
            if len(group) > 1:
                a.phrase = f"the {ordinals[min(i, 5)]} {cat} from the left {where}"
            else:
                a.phrase = f"the {cat} {where}"
