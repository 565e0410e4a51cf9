"""Synthetic multi-sensor scenes: one layout of labelled instances rendered as optical RGB, SAR,
thermal infrared and 4-band multispectral images, with the same annotations in every sensor.

Physics, simplified but in the right direction:
- SAR: each class has a mean backscatter (intensity); buildings, ships and airplanes add a
  double-bounce term on their outline; fully developed speckle multiplies the intensity by a
  unit-mean Gamma(L, 1/L) variable (L looks); the image is the amplitude sqrt(I), float32.
- Thermal IR: a temperature per class (warm roofs, hot vehicle engines, cool water), smoothed,
  with sensor noise; stored as uint16 centi-kelvin.
- Multispectral (B, G, R, NIR): reflectance per class (vegetation bright in NIR, water dark),
  uint16 reflectance x 10000.
Deterministic per seed (numpy PCG64).
"""

from __future__ import annotations

import numpy as np

from training.records import Annotation, ImageRecord

CLASSES = ("water", "road", "tree", "building", "storage tank", "ship", "airplane", "vehicle")
SAR_LOOKS = 4
# mean backscatter intensity, temperature (K), optical RGB, reflectance B, G, R, NIR
_LAND = dict(sar=0.08, temp=300.0, rgb=(150, 140, 110), refl=(0.08, 0.10, 0.12, 0.25))
_PROPS = {
    "water": dict(sar=0.005, temp=290.0, rgb=(40, 70, 110), refl=(0.06, 0.05, 0.03, 0.01)),
    "road": dict(sar=0.03, temp=306.0, rgb=(90, 90, 95), refl=(0.10, 0.11, 0.12, 0.15)),
    "tree": dict(sar=0.20, temp=297.0, rgb=(40, 100, 40), refl=(0.03, 0.08, 0.04, 0.45)),
    "building": dict(sar=0.35, temp=316.0, rgb=(180, 80, 60), refl=(0.15, 0.12, 0.20, 0.22)),
    "storage tank": dict(sar=0.45, temp=305.0, rgb=(225, 225, 220), refl=(0.40, 0.40, 0.40, 0.40)),
    "ship": dict(sar=0.60, temp=303.0, rgb=(200, 200, 205), refl=(0.30, 0.30, 0.30, 0.28)),
    "airplane": dict(sar=0.55, temp=309.0, rgb=(235, 235, 240), refl=(0.45, 0.45, 0.45, 0.42)),
    "vehicle": dict(sar=0.50, temp=322.0, rgb=(30, 60, 160), refl=(0.10, 0.12, 0.15, 0.18)),
}
_DOUBLE_BOUNCE = ("building", "ship", "airplane")


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r


def _rect(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return m


def _layout(rng: np.random.Generator, h: int, w: int):
    """Instances as (category, mask) in drawing order; later ones cover earlier ones."""
    inst = []
    # water: a band along one edge, ships on it
    side = int(rng.integers(4))
    depth = int(rng.integers(h // 6, h // 4))
    water = np.zeros((h, w), bool)
    if side == 0:
        water[:depth] = True
    elif side == 1:
        water[-depth:] = True
    elif side == 2:
        water[:, :depth] = True
    else:
        water[:, -depth:] = True
    inst.append(("water", water))
    # a road across the scene, perpendicular to the shore
    road = np.zeros((h, w), bool)
    width = max(3, h // 28)
    if side in (0, 1):
        x = int(rng.integers(w // 4, 3 * w // 4))
        road[:, x:x + width] = True
    else:
        y = int(rng.integers(h // 4, 3 * h // 4))
        road[y:y + width] = True
    road &= ~water
    inst.append(("road", road))
    free = ~(water | road)

    def place(make, tries=40):
        for _ in range(tries):
            m = make()
            if m.any() and (m & ~free).sum() == 0:
                return m
        return None

    s = min(h, w)
    def building():
        bh, bw = int(rng.integers(s // 14, s // 7)), int(rng.integers(s // 14, s // 7))
        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        return _rect(h, w, y, x, y + bh, x + bw)

    for _ in range(int(rng.integers(2, 5))):
        m = place(building)
        if m is not None:
            inst.append(("building", m))
            free &= ~m
    for cat, count, radius in (("storage tank", (1, 3), (s // 24, s // 14)),
                               ("tree", (2, 6), (s // 40, s // 22))):
        for _ in range(int(rng.integers(*count))):
            r = float(rng.uniform(*radius))
            m = place(lambda r=r: _disk(h, w, rng.uniform(r, h - r), rng.uniform(r, w - r), r))
            if m is not None:
                inst.append((cat, m))
                free &= ~m
    # an airplane (a cross) on land, a vehicle on the road, a ship on the water
    span = s // 8
    m = place(lambda: (lambda cy, cx: _rect(h, w, cy - 2, cx - span, cy + 2, cx + span)
                       | _rect(h, w, cy - span, cx - 2, cy + span // 2, cx + 2))(
        int(rng.integers(span, h - span)), int(rng.integers(span, w - span))))
    if m is not None:
        inst.append(("airplane", m))
        free &= ~m
    ys, xs = np.nonzero(road)
    k = int(rng.integers(len(ys)))
    inst.append(("vehicle", _rect(h, w, ys[k] - 2, xs[k] - 2, ys[k] + 2, xs[k] + 2) & road))
    ys, xs = np.nonzero(water)
    k = int(rng.integers(len(ys)))
    inst.append(("ship", _rect(h, w, ys[k] - 3, xs[k] - 6, ys[k] + 3, xs[k] + 6) & water))
    return inst


def _smooth(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Box blur along both axes (edge-replicated), for thermal diffusion."""
    pad = k // 2
    p = np.pad(x, pad, mode="edge")
    c = np.cumsum(np.cumsum(p, 0), 1)
    c = np.pad(c, ((1, 0), (1, 0)))
    h, w = x.shape
    return (c[k:k + h, k:k + w] - c[:h, k:k + w] - c[k:k + h, :w] + c[:h, :w]) / (k * k)


def _outline(m: np.ndarray) -> np.ndarray:
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def render_scene(seed: int, size: tuple[int, int] = (224, 224)) -> dict[str, ImageRecord]:
    """One scene in four sensors: {"optical", "sar", "infrared", "multispectral"} -> ImageRecord,
    with the same annotations (category, box, polygon of the box, lazy mask), captions and QA."""
    h, w = size
    rng = np.random.default_rng(seed)
    inst = _layout(rng, h, w)
    label = np.full((h, w), -1, np.int32)  # instance index per pixel, -1 = open land
    for i, (_, m) in enumerate(inst):
        label[m] = i
    visible = [(i, cat, label == i) for i, (cat, _) in enumerate(inst)]
    visible = [(i, cat, m) for i, cat, m in visible if m.sum() >= 4]

    def per_class(key, default):
        out = np.empty((h, w) + np.shape(default), np.float64)
        out[...] = default
        for _, cat, m in visible:
            out[m] = _PROPS[cat][key]
        return out

    rgb = per_class("rgb", _LAND["rgb"]) * rng.uniform(0.85, 1.15, (h, w, 1))
    rgb += rng.normal(0, 6, (h, w, 3))
    optical = np.clip(rgb, 0, 255).astype(np.uint8)

    sigma0 = per_class("sar", _LAND["sar"])
    for _, cat, m in visible:
        if cat in _DOUBLE_BOUNCE:
            sigma0[_outline(m)] *= 6.0
    speckle = rng.gamma(SAR_LOOKS, 1.0 / SAR_LOOKS, (h, w))
    sar = np.sqrt(sigma0 * speckle).astype(np.float32)

    temp = _smooth(per_class("temp", _LAND["temp"]), 3) + rng.normal(0, 0.3, (h, w))
    infrared = np.round(temp * 100).astype(np.uint16)

    refl = per_class("refl", _LAND["refl"]) + rng.normal(0, 0.005, (h, w, 4))
    multispectral = np.round(np.clip(refl, 0, 1) * 10000).astype(np.uint16)

    annotations = []
    for i, cat, m in visible:
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        annotations.append(Annotation(category=cat, box=(x0, y0, x1, y1),
                                      polygon=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
                                      mask=(lambda i=i: label == i)))
    counts = {c: sum(a.category == c for a in annotations) for c in CLASSES}
    parts = [f"{n} {c}s" if n > 1 else ("an " if c[0] in "aeiou" else "a ") + c
             for c, n in counts.items() if n and c not in ("water", "road")]
    caption = "an area with " + ", ".join(parts) + " beside a road and water."
    qa = [(f"How many {c}s are there?", str(n)) for c, n in counts.items()
          if c in ("building", "storage tank", "tree")]
    qa.append(("Is there a ship?", "yes" if counts["ship"] else "no"))
    records = {}
    for sensor, img in (("optical", optical), ("sar", sar), ("infrared", infrared),
                        ("multispectral", multispectral)):
        records[sensor] = ImageRecord(source="synthetic", split="train", sensor=sensor, image=img,
                                      size=(h, w), annotations=annotations, captions=[caption],
                                      scene="residential area by water", qa=list(qa))
    return records
