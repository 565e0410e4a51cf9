"""Instruction templates: an ImageRecord -> training samples for every task and prompt type.

A sample is a dict of `earthx_sdk.processor.Processor.encode` keyword arguments (image, sensor,
question, answer, prompts, target_masks, history) plus `task`. Tasks: caption, vqa, scene,
region_class and region_caption (with point, box, polygon, scribble and mask prompts), seg_text
(referring segmentation from words), seg_prompt (from a visual prompt), multiturn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble
from training.records import Annotation, ImageRecord

TASKS = ("caption", "vqa", "scene", "region_class", "region_caption", "seg_text", "seg_prompt",
         "multiturn")
PROMPT_KINDS = ("point", "box", "polygon", "scribble", "mask")

_CAPTION_Q = ("Describe the image.", "Write a short caption of this image.",
              "What does this image show?")
_SCENE_Q = ("What kind of scene is this?", "Classify the scene.")
_CLASS_Q = ("What is <region>?", "What object is in <region>?", "Classify <region>.")
_REGION_CAPTION_Q = ("Describe <region>.", "Write a caption of <region>.")
_SEG_TEXT_Q = ("Segment the {}.", "Give the mask of the {}.", "Where is the {}? Segment it.")
_SEG_PROMPT_Q = ("Segment the object in <region>.", "Give the mask of <region>.")


def _where(box: tuple[float, float, float, float], hw: tuple[int, int]) -> str:
    x = (box[0] + box[2]) / 2 / hw[1]
    y = (box[1] + box[3]) / 2 / hw[0]
    v = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    u = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "center"
    return "center" if (v, u) == ("middle", "center") else f"{v} {u}"


def make_prompt(ann: Annotation, kind: str, rng: np.random.Generator):
    """A visual prompt of `kind` for an annotation: a point inside its mask, its box, its
    polygon, a scribble along a row inside it, or its mask."""
    m = ann.mask() if ann.mask is not None else None
    if kind == "box":
        return Box(*ann.box)
    if kind == "polygon":
        return Polygon(ann.polygon)
    if kind == "mask":
        return Mask(m)
    ys, xs = np.nonzero(m)
    if kind == "point":
        k = int(rng.integers(len(ys)))
        return Point(float(xs[k]) + 0.5, float(ys[k]) + 0.5, radius=2.0)
    if kind == "scribble":
        row = int(np.median(ys))
        cols = xs[ys == row]
        return Scribble([(float(cols.min()) + 0.5, row + 0.5), (float(cols.max()) + 0.5,
                                                                row + 0.5)], width=2.0)
    raise ValueError(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")


def samples_for(record: ImageRecord, tasks: Sequence[str] = TASKS,
                rng: np.random.Generator | None = None, max_regions: int = 3) -> list[dict]:
    """Training samples of `record` for `tasks` (phrasings and prompt kinds drawn from `rng`).

    Raises:
        ValueError: an unknown task (the message lists them).
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"tasks {unknown} unknown; tasks are {list(TASKS)}")
    rng = rng or np.random.default_rng(0)
    hw = record.size or (record.image.shape[0], record.image.shape[1])
    base = {"image": record.image if record.image is not None else record.image_path,
            "sensor": record.sensor}
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    out: list[dict] = []

    def add(task, question, answer, prompts=(), target_masks=None, history=()):
        out.append({**base, "task": task, "question": question, "answer": answer,
                    "prompts": list(prompts), "target_masks": target_masks,
                    "history": list(history)})

    if "caption" in tasks and record.captions:
        add("caption", pick(_CAPTION_Q), pick(record.captions))
    if "vqa" in tasks:
        for q, a in record.qa:
            add("vqa", q, a)
    if "scene" in tasks and record.scene:
        add("scene", pick(_SCENE_Q), record.scene + ".")
    anns = [a for a in record.annotations if a.box is not None and a.mask is not None]
    chosen = [anns[i] for i in rng.permutation(len(anns))[:max_regions]]
    for ann in chosen:
        kind = pick(PROMPT_KINDS)
        if "region_class" in tasks:
            add("region_class", pick(_CLASS_Q), f"{ann.category}.",
                [make_prompt(ann, kind, rng)])
        if "region_caption" in tasks:
            add("region_caption", pick(_REGION_CAPTION_Q),
                f"a {ann.category} in the {_where(ann.box, hw)} of the image.",
                [make_prompt(ann, pick(PROMPT_KINDS), rng)])
        if "seg_prompt" in tasks:
            add("seg_prompt", pick(_SEG_PROMPT_Q), "<seg>", [make_prompt(ann, kind, rng)],
                [ann.mask()])
    if "seg_text" in tasks:
        counts: dict[str, int] = {}
        for a in anns:
            counts[a.category] = counts.get(a.category, 0) + 1
        for ann in anns:  # only unambiguous references: the class occurs once
            if counts[ann.category] == 1 or ann.phrase:
                what = ann.phrase or ann.category
                add("seg_text", pick(_SEG_TEXT_Q).format(what), "<seg>", (), [ann.mask()])
    if "multiturn" in tasks and record.captions and chosen:
        ann = chosen[0]
        add("multiturn", pick(_CLASS_Q), f"{ann.category}.", [make_prompt(ann, "box", rng)],
            history=[(pick(_CAPTION_Q), record.captions[0])])
    return out
