"""Instruction templates: turn an ImageRecord into training samples for every task.

A sample is a dict with exactly the keyword arguments of `earthx_sdk.processor.Processor.encode`
(image, sensor, question, answer, prompts, target_masks, history) plus `task`. Visual prompts are
built from an annotation's region (its mask, else its polygon rasterized, else its box):
point = a pixel centre inside the region, box = the annotation's box (else the region's extent),
polygon = its outline (else the hull of the region's pixels), scribble = a polyline through the
region along its long axis, mask = the region. Each task has several phrasings, chosen by `rng`.
"""

from __future__ import annotations

import numpy as np

from earthx_sdk.ops.rasterize import raster_box, raster_polygon
from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble
from training.records import Annotation, ImageRecord

TASKS = ("caption", "vqa", "scene", "region_class", "region_caption", "refer_seg", "prompt_seg",
         "multi_turn")
PROMPT_TYPES = ("point", "box", "polygon", "scribble", "mask")
_POSITIONS = (("top left", "top", "top right"), ("left", "center", "right"),
              ("bottom left", "bottom", "bottom right"))
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve")

PHRASINGS = {
    "caption": ("Describe this image.", "Write a short caption for this image.",
                "What does this image show? Answer in one sentence.",
                "Give a brief description of the scene."),
    "scene": ("What kind of scene is this?", "Classify the scene of this image.",
              "Which scene category does this image belong to? Answer with a phrase."),
    "region_class": ("What is the object in <region>?", "Classify the region <region>.",
                     "What category does <region> belong to? Answer with a word or phrase.",
                     "Identify the object marked by <region>."),
    "region_caption": ("Describe the region <region>.", "Give a short description of <region>.",
                       "What can you tell about <region>?"),
    "refer_seg": ("Please segment {target}.", "Segment {target} in this image.",
                  "Where is {target}? Answer with a segmentation mask.",
                  "Give the mask of {target}."),
    "prompt_seg": ("Segment the object in <region>.", "Please give the mask of <region>.",
                   "Segment <region>."),
    "seg_answer": ("<seg>", "Sure, it is <seg>.", "Here is the mask: <seg>."),
    "follow_seg": ("Now segment it.", "Please segment that object.", "Give its mask."),
}


def number_word(n: int) -> str:
    """'one', 'two', ... for 0..12, digits beyond."""
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def plural(noun: str) -> str:
    """Plural of a class name ('storage tanks', 'vehicles'); 'water' stays."""
    if noun == "water":
        return noun
    return noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")


def article(noun: str) -> str:
    """'a ship', 'an airplane'."""
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def position_name(x: float, y: float, hw: tuple[int, int]) -> str:
    """Which ninth of an (H, W) image holds (x, y): 'top left', 'top', ..., 'center', ..."""
    h, w = hw
    col = min(2, max(0, int(3 * x / w)))
    row = min(2, max(0, int(3 * y / h)))
    return _POSITIONS[row][col]


def position_phrase(pos: str) -> str:
    """'in the top left', 'on the left', 'at the top', 'in the center', ... for a position_name."""
    if pos in ("left", "right"):
        return f"on the {pos}"
    return f"at the {pos}" if pos in ("top", "bottom") else f"in the {pos}"


def image_size(record: ImageRecord) -> tuple[int, int]:
    """(H, W) of a record: its `size`, its pixels, or the image file's header."""
    if record.size is not None:
        return (int(record.size[0]), int(record.size[1]))
    if record.image is not None:
        return record.image.shape[:2]
    from PIL import Image

    with Image.open(record.image_path) as im:
        return (im.height, im.width)


def region_mask(ann: Annotation, hw: tuple[int, int], record: ImageRecord) -> np.ndarray:
    """bool [H, W] region of an annotation (mask, else polygon, else box).

    Raises:
        ValueError: the annotation has no geometry, its mask has the wrong shape, or its region
            is empty inside the image.
    """
    where = f"record from {record.source} ({record.image_path or 'in memory'}), {ann.category!r}"
    if ann.mask is not None:
        m = np.asarray(ann.mask()).astype(bool)
        if m.shape != tuple(hw):
            raise ValueError(f"{where}: mask must have the image's shape {tuple(hw)}, got "
                             f"{m.shape}")
    elif ann.polygon is not None:
        m = raster_polygon(ann.polygon, hw).astype(bool)
    elif ann.box is not None:
        m = raster_box(ann.box, hw).astype(bool)
    else:
        raise ValueError(f"{where}: annotation has no mask, polygon or box")
    if not m.any():
        raise ValueError(f"{where}: annotation covers no pixel of the {hw[1]}x{hw[0]} image")
    return m


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain) of [N, 2] points, counter-clockwise."""
    pts = np.unique(pts, axis=0)

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-1] - out[-2], p - out[-2]
                if ax * by - ay * bx > 0:  # a left turn: keep
                    break
                out.pop()
            out.append(p)
        return out

    lo, hi = half(pts), half(pts[::-1])
    return np.asarray(lo[:-1] + hi[:-1])


def make_prompt(kind: str, ann: Annotation, mask: np.ndarray, rng: np.random.Generator):
    """A visual prompt of `kind` (PROMPT_TYPES) for an annotation whose region is `mask`."""
    ys, xs = np.nonzero(mask)
    if kind == "point":
        i = int(rng.integers(len(xs)))
        return Point(float(xs[i]) + 0.5, float(ys[i]) + 0.5)
    if kind == "box":
        if ann.box is not None:
            return Box(*ann.box)
        return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    if kind == "polygon":
        if ann.polygon is not None and len(ann.polygon) >= 3:
            try:
                return Polygon(tuple(ann.polygon))
            except ValueError:
                pass  # degenerate outline: fall back to the region's hull below
        corners = np.concatenate([np.stack([xs + dx, ys + dy], 1)
                                  for dx in (0, 1) for dy in (0, 1)]).astype(np.float64)
        return Polygon(tuple(map(tuple, _hull(corners))))
    if kind == "scribble":
        pts = np.stack([xs, ys], 1) + 0.5
        c = pts.mean(0)
        _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
        t = (pts - c) @ vt[0]
        lo, hi = np.quantile(t, [0.15, 0.85])
        n = int(rng.integers(3, 7))
        line = c + np.linspace(lo, hi, n)[:, None] * vt[0] + rng.normal(0, 0.5, (n, 2))
        # snap each point to the nearest pixel centre of the region, so it stays inside
        snapped = [pts[int(np.argmin(((pts - q) ** 2).sum(1)))] for q in line]
        width = float(np.clip(min(np.ptp(xs), np.ptp(ys)) / 3, 1.0, 3.0))
        return Scribble(tuple(map(tuple, snapped)), width)
    if kind == "mask":
        return Mask(mask)
    raise ValueError(f"prompt kind must be one of {PROMPT_TYPES}, got {kind!r}")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _sample(record: ImageRecord, task: str, question: str, answer: str, prompts=(),
            target_masks=None, history=()) -> dict:
    return {"image": record.image if record.image is not None else record.image_path,
            "sensor": record.sensor, "question": question, "answer": answer,
            "prompts": list(prompts), "target_masks": target_masks, "history": list(history),
            "task": task}


def _region_caption(ann: Annotation, mask: np.ndarray, hw: tuple[int, int]) -> str:
    if ann.phrase:
        text = ann.phrase
    else:
        ys, xs = np.nonzero(mask)
        pos = position_name(xs.mean() + 0.5, ys.mean() + 0.5, hw)
        text = f"{article(ann.category)} {position_phrase(pos)} of the image"
    return text[:1].upper() + text[1:] + "."


def samples_for(record: ImageRecord, tasks=TASKS, rng: np.random.Generator | None = None,
                prompt_types=PROMPT_TYPES) -> list[dict]:
    """Training samples of one record.

    Image-level tasks give one sample each (when the record has captions / qa / a scene);
    region_class, region_caption and prompt_seg give one per prompt type (on a random object);
    refer_seg gives one from the object's phrase (when known) and one from its category (target:
    every instance of it); multi_turn gives a region classification followed by its segmentation.

    Args:
        record: the image and its annotations.
        tasks: a subset of TASKS.
        rng: source of all random choices (default: a fresh default_rng(0)).
        prompt_types: a subset of PROMPT_TYPES.

    Returns:
        dicts with keys image, sensor, question, answer, prompts, target_masks, history, task.

    Raises:
        ValueError: an unknown task or prompt type; a malformed annotation (see region_mask).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"samples_for: task must be one of {TASKS}, got {t!r}")
    for k in prompt_types:
        if k not in PROMPT_TYPES:
            raise ValueError(f"samples_for: prompt type must be one of {PROMPT_TYPES}, got {k!r}")
    hw = image_size(record)
    out: list[dict] = []
    anns = list(record.annotations)
    masks = [region_mask(a, hw, record) for a in anns]
    for task in tasks:
        if task == "caption" and record.captions:
            out.append(_sample(record, task, _pick(rng, PHRASINGS[task]),
                               _pick(rng, record.captions)))
        elif task == "vqa" and record.qa:
            q, a = record.qa[int(rng.integers(len(record.qa)))]
            out.append(_sample(record, task, q, a))
        elif task == "scene" and record.scene:
            out.append(_sample(record, task, _pick(rng, PHRASINGS[task]), record.scene))
        elif task in ("region_class", "region_caption", "prompt_seg") and anns:
            for kind in prompt_types:
                i = int(rng.integers(len(anns)))
                p = make_prompt(kind, anns[i], masks[i], rng)
                q = _pick(rng, PHRASINGS[task])
                if task == "region_class":
                    out.append(_sample(record, task, q, anns[i].category, [p]))
                elif task == "region_caption":
                    out.append(_sample(record, task, q, _region_caption(anns[i], masks[i], hw),
                                       [p]))
                else:
                    out.append(_sample(record, task, q, _pick(rng, PHRASINGS["seg_answer"]),
                                       [p], [masks[i]]))
        elif task == "refer_seg" and anns:
            i = int(rng.integers(len(anns)))
            ans = _pick(rng, PHRASINGS["seg_answer"])
            if anns[i].phrase:
                q = _pick(rng, PHRASINGS[task]).format(target=anns[i].phrase)
                out.append(_sample(record, task, q, ans, (), [masks[i]]))
            cat = anns[i].category
            union = np.logical_or.reduce([m for a, m in zip(anns, masks, strict=True)
                                          if a.category == cat])
            q = _pick(rng, PHRASINGS[task]).format(target=f"all {plural(cat)}"
                                                   if cat != "water" else "the water")
            out.append(_sample(record, task, q, ans, (), [union]))
        elif task == "multi_turn" and anns:
            i = int(rng.integers(len(anns)))
            p = make_prompt(_pick(rng, prompt_types), anns[i], masks[i], rng)
            first = (_pick(rng, PHRASINGS["region_class"]), anns[i].category)
            history = [first]
            if record.captions and rng.random() < 0.5:
                history.insert(0, (_pick(rng, PHRASINGS["caption"]),
                                   _pick(rng, record.captions)))
            out.append(_sample(record, task, _pick(rng, PHRASINGS["follow_seg"]),
                               _pick(rng, PHRASINGS["seg_answer"]), [p], [masks[i]], history))
    return out
