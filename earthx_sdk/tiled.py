"""Large scenes, segmented tile by tile.

`Predictor.segment` and `EarthX.segment` on an image whose longer side exceeds
`Options.tile_size` come here (`ops.tiling.tile_grid`, `stitch_masks`): each tile is preprocessed
and encoded on its own, prompts are shifted into the tiles they touch (a tile no prompt touches is
not run), and the per-tile masks are stitched into one mask of the whole image per prompt (or per
referring text, run on every tile).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from earthx_sdk.predictor import (
    ImageState,
    accumulate,
    backend_info,
    drain,
    regions,
    rle_str,
    run_request,
)
from earthx_sdk.prompts import (
    PROMPT_CLASSES,
    Box,
    Mask,
    Point,
    Polygon,
    Prompt,
    Scribble,
    check_in_image,
)
from earthx_sdk.result import Result, new_timings


def shift_prompt(p: Prompt, box) -> Prompt | None:
    """Prompt p in the coordinates of tile box (y0, x0, y1, x1), or None when it does not touch
    the tile.

    Raises:
        TypeError: p is not one of earthx_sdk.prompts' prompt classes.
    """
    if not isinstance(p, PROMPT_CLASSES):
        raise TypeError(f"prompt must be a Point, Box, Polygon, Scribble or Mask, got "
                        f"{type(p).__name__}")
    y0, x0, y1, x1 = (int(v) for v in box)
    if isinstance(p, Mask):
        crop = p.mask[y0:y1, x0:x1]
        return Mask(np.ascontiguousarray(crop)) if crop.any() else None
    bx0, by0, bx1, by1 = p.bbox()
    if bx1 < x0 or by1 < y0 or bx0 > x1 or by0 > y1:
        return None
    if isinstance(p, Point):
        return replace(p, x=p.x - x0, y=p.y - y0)
    if isinstance(p, Box):
        return Box(p.x0 - x0, p.y0 - y0, p.x1 - x0, p.y1 - y0)
    if isinstance(p, Polygon):
        return Polygon(tuple((x - x0, y - y0) for x, y in p.vertices))
    return Scribble(tuple((x - x0, y - y0) for x, y in p.points), p.width)


def segment_tiled(state: ImageState, jobs: list[tuple[str, list]], *, max_new_tokens: int,
                  temperature: float, seed: int | None, forced: Sequence[int],
                  progress: Callable[[int, int], None] | None = None) -> Result:
    """Runs each (question, prompts) job on every tile it touches; stitches one mask per job.

    A job's mask is the first `<seg>` of each tile's answer; tiles that gave no mask count as
    background where they ran, and pixels no tile of the job ran on are background.
    """
    from earthx_sdk.ops.masks import postprocess_masks, rle_encode
    from earthx_sdk.ops.tiling import stitch_masks

    k = 0
    for _, prompts in jobs:  # against the whole image first: no tile would touch such a prompt
        for p in prompts:
            check_in_image(p, state.hw, k)
            k += 1
    grid = state.tiles()
    tm = new_timings()
    plan = []
    for qi, (question, prompts) in enumerate(jobs):
        for b in grid:
            shifted = [shift_prompt(p, b) for p in prompts]
            if prompts and any(s is None for s in shifted):
                continue  # the tile misses a prompt of the job
            plan.append((qi, b, question, shifted))
    h, w = state.hw
    per_job: list[list] = [[] for _ in jobs]
    texts: list[list[int]] = [[] for _ in jobs]
    for done, (qi, b, question, shifted) in enumerate(plan):
        part = drain(run_request(state, question, shifted, max_new_tokens=max_new_tokens,
                                 temperature=temperature, seed=seed, forced=forced,
                                 box=tuple(b)))
        accumulate(tm, part.timings)
        t0 = time.perf_counter()
        th, tw = int(b[2] - b[0]), int(b[3] - b[1])
        if part.mask_logits is not None:
            info = part.view.info
            m = postprocess_masks(part.mask_logits[:1], info.size, info.resized_hw, (th, tw),
                                  state.options.mask_threshold)[0]
            score = float(part.scores[0])
        else:
            m, score = np.zeros((th, tw), np.uint8), None
        per_job[qi].append((b, m, score))
        texts[qi] = part.token_ids
        tm["postprocess"].add(time.perf_counter() - t0)
        tm["postprocess"].backend, tm["postprocess"].precision = "native:_C", "fp32"
        if progress is not None:
            progress(done + 1, len(plan))
    masks, scores = [], []
    t0 = time.perf_counter()
    overlap = state.options.tile_overlap
    for runs in per_job:
        if not runs:
            full = np.zeros((h, w), np.uint8)
            score = 0.0
        else:
            boxes = np.stack([r[0] for r in runs]).astype(np.int64)
            full = stitch_masks(np.stack([r[1] for r in runs]), boxes, (h, w), overlap)
            got = [r[2] for r in runs if r[2] is not None]
            score = float(np.mean(got)) if got else 0.0
        masks.append(rle_str(rle_encode(full)))
        scores.append(score)
    tm["postprocess"].add(time.perf_counter() - t0, 0)
    tok = state.engine.tokenizer
    text = " ".join(tok.decode_answer(t) for t in texts)
    all_prompts = [p for _, ps in jobs for p in ps]
    ids = texts[0] if len(texts) == 1 else [i for t in texts for i in t]
    return Result(text, ids, regions(all_prompts, state.hw), masks, scores, tm, state.sensor,
                  state.hw, state.image.geo, backend_info(state.engine), 0, len(plan))
