"""Turns (image, sensor, prompts, text) into model-ready arrays: one place for the geometry.

Torch-free: the training path, the reference model and the runtime backends all consume `Encoded`.
The image goes through `ops.preprocess`; prompts are validated against the image, their boxes mapped
into model-input pixels and their masks rasterized onto the prompt-mask grid through the same
geometry (`PreprocessInfo.grid_scale`); the text is rendered with the tokenizer's chat template, and
the single `<image>` placeholder and every `<region>` placeholder are expanded into the number of
embedding slots the model fills (visual tokens, region tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earthx_sdk.ops.preprocess import PreprocessInfo, preprocess
from earthx_sdk.ops.rasterize import resample_mask
from earthx_sdk.prompts import TYPE_IDS, Prompt, check_in_image

IGNORE_INDEX = -100  # labels that carry no loss


def text_positions(input_ids: np.ndarray, labels: np.ndarray | None, image_id: int,
                   region_id: int) -> np.ndarray:
    """Positions of the prompt's text tokens: those before the answer (the first label that is
    not IGNORE_INDEX; all of `input_ids` when `labels` is None, as at inference) that are not
    `<image>` or `<region>` slots. The mask decoder reads the LLM's last-layer states there.

    Returns:
        int64 [T] positions in increasing order.
    """
    ids = np.asarray(input_ids)
    n = len(ids)
    if labels is not None:
        answer = np.flatnonzero(np.asarray(labels) != IGNORE_INDEX)
        n = int(answer[0]) if len(answer) else n
    head = ids[:n]
    return np.flatnonzero((head != image_id) & (head != region_id)).astype(np.int64)


@dataclass
class Encoded:
    """One sample, ready for the model (numpy).

    Attributes:
        pixels: float32 [C, S, S] model input.
        sensor: sensor name.
        info: the image geometry (maps prompts in and masks out).
        input_ids: int64 [L], placeholders expanded.
        labels: int64 [L], IGNORE_INDEX except on answer tokens.
        boxes: float32 [R, 4] prompt bounding boxes in model-input pixels (x0, y0, x1, y1).
        prompt_masks: float32 [R, M, M] rasterized prompts over the padded square.
        prompt_types: int64 [R] (earthx_sdk.prompts.TYPE_IDS).
        target_masks: float32 [Q, G, G] (G = Processor.mask_grid) one per <seg> of the answer,
            or None.
    """

    pixels: np.ndarray
    sensor: str
    info: PreprocessInfo
    input_ids: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    prompt_masks: np.ndarray
    prompt_types: np.ndarray
    target_masks: np.ndarray | None = None


class Processor:
    """Encodes samples for a model of a given geometry.

    Args:
        tokenizer: an earthx_sdk.tokenizer.EarthXTokenizer.
        image_size: S, side of the square model input.
        num_image_tokens: visual tokens that replace `<image>`.
        region_tokens: tokens that replace each `<region>`.
        mask_resolution: M, side of the rasterized prompt masks.
        mask_grid: side of the target masks (the mask decoder's output); None: S / 4.

    Raises:
        ValueError: mask_grid is not between 1 and image_size.
    """

    def __init__(self, tokenizer, image_size: int, num_image_tokens: int, region_tokens: int,
                 mask_resolution: int, mask_grid: int | None = None):
        if mask_grid is not None and not 1 <= mask_grid <= image_size:
            raise ValueError(f"Processor: mask_grid must be in [1, image_size {image_size}], "
                             f"got {mask_grid}")
        self._mask_grid = image_size // 4 if mask_grid is None else int(mask_grid)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.num_image_tokens = num_image_tokens
        self.region_tokens = region_tokens
        self.mask_resolution = mask_resolution

    @property
    def mask_grid(self) -> int:
        """Side of the mask decoder's output and of the target masks (1/4 of the input unless
        given)."""
        return self._mask_grid

    def encode(self, image, sensor: str, question: str, answer: str | None = None,
               prompts: Sequence[Prompt] = (), target_masks: Sequence[np.ndarray] | None = None,
               history: Sequence[tuple[str, str]] = (), layout: str = "hwc",
               preprocessed: tuple[np.ndarray, PreprocessInfo] | None = None) -> Encoded:
        """Encodes one turn (with earlier turns in `history` as (question, answer) pairs).

        The first user turn gets the `<image>` placeholder. `<region>` in the text refers to the
        prompts in order: the k-th `<region>` (over the whole conversation) is prompts[k].
        `preprocessed`: the (pixels, info) `ops.preprocess` already gave for `image` (the runtime
        preprocesses an image once for many prompts); `image` is then not read.

        Raises:
            ValueError: more `<region>` placeholders than prompts; a prompt outside the image; a
                `<seg>` count in the answer that differs from the number of target masks; target
                masks not of the image's shape; `<image>` written by the caller.
            TypeError: a prompt that is not a Point, Box, Polygon, Scribble or Mask.
        """
        tok = self.tokenizer
        if preprocessed is None:
            pixels, info = preprocess(image, sensor, self.image_size, layout=layout)
        else:
            pixels, info = preprocessed
        h, w = info.orig_hw
        for k, p in enumerate(prompts):
            check_in_image(p, (h, w), k)
        turns = list(history) + [(question, answer)]
        text_all = " ".join(q + " " + (a or "") for q, a in turns)
        if "<image>" in text_all:
            raise ValueError("text must not contain <image>: the processor places the image")
        n_regions = text_all.count("<region>")
        if n_regions > len(prompts):
            raise ValueError(f"text has {n_regions} <region> placeholder(s) but only "
                             f"{len(prompts)} prompt(s) were given: each <region> needs a prompt")

        # Render the conversation; the answer of the last turn (if any) is the training target.
        messages = []
        for i, (q, a) in enumerate(turns):
            messages.append({"role": "user", "content": ("<image>\n" if i == 0 else "") + q})
            if a is not None and i < len(turns) - 1:
                messages.append({"role": "assistant", "content": a})
        prefix = tok.encode(tok.apply_chat(messages, add_generation_prompt=True))
        target = [] if answer is None else tok.encode(answer) + [tok.eos_id]
        ids = self._expand(prefix + target)
        n_prefix = len(self._expand(prefix))
        labels = np.full(len(ids), IGNORE_INDEX, np.int64)
        labels[n_prefix:] = ids[n_prefix:]

        boxes, masks, types = self._prompts(prompts, info)
        targets = None
        n_seg = int(np.count_nonzero(ids == tok.seg_id))
        # at inference (no answer) the <seg>s of earlier answers need no targets
        if target_masks is not None or (n_seg and answer is not None):
            target_masks = list(target_masks or [])
            if len(target_masks) != n_seg:
                raise ValueError(f"the answer has {n_seg} <seg> token(s) but {len(target_masks)} "
                                 "target mask(s) were given")
            targets = np.zeros((n_seg, self.mask_grid, self.mask_grid), np.float32)
            g = (self.mask_grid, self.mask_grid)
            for k, m in enumerate(target_masks):
                m = np.asarray(m)
                if m.shape != (h, w):
                    raise ValueError(f"target_masks[{k}] must have the image's shape {(h, w)}, "
                                     f"got {m.shape}")
                targets[k] = resample_mask(m.astype(bool), g, info.grid_scale(g))
        return Encoded(pixels, sensor, info, ids, labels, boxes, masks, types, targets)

    def _expand(self, ids: list[int]) -> np.ndarray:
        tok = self.tokenizer
        out: list[int] = []
        for t in ids:
            if t == tok.image_id:
                out.extend([t] * self.num_image_tokens)
            elif t == tok.region_id:
                out.extend([t] * self.region_tokens)
            else:
                out.append(t)
        return np.asarray(out, np.int64)

    def _prompts(self, prompts: Sequence[Prompt], info: PreprocessInfo):
        m = self.mask_resolution
        kx, ky = info.scale
        boxes = np.zeros((len(prompts), 4), np.float32)
        masks = np.zeros((len(prompts), m, m), np.float32)
        types = np.zeros(len(prompts), np.int64)
        for k, p in enumerate(prompts):
            x0, y0, x1, y1 = p.bbox()
            # clip to the image, then map into model-input pixels
            w, h = info.orig_hw[1], info.orig_hw[0]
            x0, x1 = min(max(x0, 0.0), w) * kx, min(max(x1, 0.0), w) * kx
            y0, y1 = min(max(y0, 0.0), h) * ky, min(max(y1, 0.0), h) * ky
            boxes[k] = (x0, y0, x1, y1)
            masks[k] = p.rasterize((m, m), info.grid_scale((m, m)))
            types[k] = TYPE_IDS[p.kind]
        return boxes, masks, types
