"""The predictor: one image's features computed once, then many prompts (SAM's SamPredictor).

`Predictor.set_image` reads and preprocesses the image and runs the vision stage; `ask`, `stream`,
`segment`, `classify_region` and `caption_region` then run only the prompt-dependent stages. The
per-request machinery (`ImageState`, `run_request`) is shared with `earthx_sdk.api.EarthX`, whose
calls take the image each time and find its features in a cache.

Large scenes: `segment` on an image whose longer side exceeds `Options.tile_size` runs tiled
(`earthx_sdk.tiled`); `ask` sees the whole scene resized to the model input.

Thread safety: an ImageState serves many threads (its views are computed under a lock, once);
a request's LLM state is its own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from earthx_sdk.io.images import DEFAULT_MAX_PIXELS, LoadedImage, guess_sensor, load_image
from earthx_sdk.ops.masks import check_threshold
from earthx_sdk.processor import text_positions
from earthx_sdk.prompts import (
    PROMPT_CLASSES,
    Prompt,
)
from earthx_sdk.result import Result, StageTiming, new_timings
from earthx_sdk.runtime import phrasing
from earthx_sdk.runtime.decode import DecodeStats, check_sampling, decode
from earthx_sdk.runtime.sessions import Engine, ImageFeatures

SENSOR_NAMES = ("optical", "multispectral", "sar", "infrared")


@dataclass(frozen=True)
class Options:
    """Runtime settings.

    Attributes:
        max_pixels: scenes with more pixels are refused (with the memory they would need) before
            any pixel is read; None for no limit.
        tile_size: `segment` runs tiled when the image's longer side exceeds this.
        tile_overlap: pixels shared by neighbouring tiles.
        cache_size: images (and tiles per image) whose features are kept.
        allow_invalid: NaN / Inf pixels are an error unless True (then they are normalized as
            missing, like nodata, and counted in Result.invalid_pixels).
        mask_threshold: a mask pixel is on where its upsampled logit exceeds this; None: the
            model's calibrated threshold (its config's mask.threshold, 0.0 where it has none).
    """

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    tile_size: int = 1024
    tile_overlap: int = 128
    cache_size: int = 8
    allow_invalid: bool = False
    mask_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.mask_threshold is not None:
            object.__setattr__(self, "mask_threshold",
                               check_threshold("Options.mask_threshold", self.mask_threshold))
        if self.tile_size < 16:
            raise ValueError(f"tile_size must be >= 16, got {self.tile_size}")
        if not 0 <= self.tile_overlap < self.tile_size:
            raise ValueError(f"tile_overlap must be in [0, tile_size={self.tile_size}), got "
                             f"{self.tile_overlap}")
        if self.cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {self.cache_size}")


@dataclass
class View:
    """One encoded view of an image: the whole scene, or one tile of it."""

    pixels: np.ndarray
    info: object  # ops.preprocess.PreprocessInfo
    feats: ImageFeatures
    preprocess_s: float
    vision_s: float
    offset: tuple[int, int] = (0, 0)  # (x0, y0) of the tile in the image
    reported: bool = False


def _count_nonfinite(px: np.ndarray) -> int:
    if np.iscomplexobj(px):
        bad = ~(np.isfinite(px.real) & np.isfinite(px.imag))
    elif np.issubdtype(px.dtype, np.floating):
        bad = ~np.isfinite(px)
    else:
        return 0
    return int(np.count_nonzero(bad.any(axis=2)))


class ImageState:
    """An image, its sensor, and its encoded views (the whole scene, tiles), computed once each.

    Raises (construction):
        ValueError: a band count the sensor / the loaded model does not take; an unknown sensor.
    """

    def __init__(self, engine: Engine, image: LoadedImage, sensor: str, options: Options) -> None:
        spec = engine.spec
        if sensor == "auto":
            sensor = guess_sensor(image, spec.channels)
        elif sensor not in SENSOR_NAMES:
            raise ValueError(f"sensor must be 'auto' or one of {list(SENSOR_NAMES)}, got "
                             f"{sensor!r}")
        if sensor not in spec.channels:
            raise ValueError(f"sensor {sensor!r}: this model ({engine.source or engine.name}) "
                             f"has no vision encoder for it; it takes {sorted(spec.channels)}")
        if image.bands not in spec.channels[sensor]:
            raise ValueError(f"image {image.source}: sensor {sensor!r} takes "
                             f"{list(spec.channels[sensor])} band(s) in this model, the image has "
                             f"{image.bands} (shape {list(image.pixels.shape)} as HWC)")
        self.engine, self.image, self.sensor, self.options = engine, image, sensor, options
        self._views: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._busy: dict = {}

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.hw

    def tiled(self) -> bool:
        return max(self.hw) > self.options.tile_size

    def tiles(self) -> np.ndarray:
        from earthx_sdk.ops.tiling import tile_grid

        return tile_grid(*self.hw, self.options.tile_size, self.options.tile_overlap)

    def view(self, box: tuple[int, int, int, int] | None = None) -> tuple[View, bool]:
        """The encoded view of the whole image (box None) or of a tile (y0, x0, y1, x1).

        Returns:
            (view, fresh): fresh is True for the first request that uses it (which reports its
            preprocess and vision time; later ones report the stage as cached).
        """
        key = None if box is None else tuple(int(v) for v in box)
        while True:
            with self._lock:
                v = self._views.get(key)
                if v is not None:
                    self._views.move_to_end(key)
                    fresh, v.reported = not v.reported, True
                    return v, fresh
                ev = self._busy.get(key)
                if ev is None:
                    ev = self._busy[key] = threading.Event()
                    break
            ev.wait()  # another thread is encoding this view: use its result
        try:
            v = self._encode(key)
            with self._lock:
                self._views[key] = v
                while len(self._views) > self.options.cache_size:
                    self._views.popitem(last=False)
                v.reported = True
        finally:
            with self._lock:
                self._busy.pop(key).set()
        return v, True

    def _encode(self, box) -> View:
        from earthx_sdk.ops.preprocess import preprocess

        px = self.image.pixels
        off = (0, 0)
        if box is not None:
            y0, x0, y1, x1 = box
            px, off = px[y0:y1, x0:x1], (x0, y0)
        t0 = time.perf_counter()
        nonfinite = _count_nonfinite(px)
        if nonfinite and not self.options.allow_invalid:
            raise ValueError(f"image {self.image.source}: {nonfinite} pixel(s) hold NaN or Inf "
                             f"(of {px.shape[0] * px.shape[1]}); fill them, or pass "
                             f"allow_invalid=True to treat them as missing (normalized to the "
                             f"band mean, counted in Result.invalid_pixels)")
        eng = self.engine
        spec = eng.spec.sensors.get(self.sensor, self.sensor)
        if np.iscomplexobj(px) and getattr(spec, "kind", "") == "sar_db":
            # complex SAR (single-look complex): intensity re^2 + im^2, the same dB scale as
            # the amplitude the sensor otherwise takes (a^2)
            spec = replace(spec, sar_input="complex")
        pixels, info = preprocess(px, spec, eng.spec.image_size, nodata=self.image.nodata)
        t1 = time.perf_counter()
        feats = eng.vision.run(pixels, self.sensor)
        t2 = time.perf_counter()
        return View(pixels, info, feats, t1 - t0, t2 - t1, off)


# ------------------------------------------------------------------------------------------------
# one request
# ------------------------------------------------------------------------------------------------

def _check_prompts(prompts) -> list:
    if prompts is None:
        return []
    if isinstance(prompts, PROMPT_CLASSES):
        prompts = [prompts]
    out = list(prompts)
    for k, p in enumerate(out):
        if not isinstance(p, PROMPT_CLASSES):
            raise TypeError(f"prompts[{k}] must be a Point, Box, Polygon, Scribble or Mask, got "
                            f"{type(p).__name__}")
    return out


def _check_regions(question: str, history, prompts: list) -> None:
    n = question.count("<region>") + sum(q.count("<region>") + (a or "").count("<region>")
                                         for q, a in history)
    if n != len(prompts):
        hint = (' (write "<region>" where each prompt belongs, e.g. "What is in <region>?")'
                if len(prompts) > n else "")
        raise ValueError(f"the text has {n} <region> placeholder(s) for {len(prompts)} "
                         f"prompt(s): each prompt needs exactly one <region>{hint}")


def regions(prompts: list, hw: tuple[int, int]) -> list[dict]:
    """Result.regions of a request's prompts on an (H, W) image."""
    h, w = hw
    out = []
    for k, p in enumerate(prompts):
        x0, y0, x1, y1 = p.bbox()
        out.append({"index": k, "kind": p.kind,
                    "bbox": [min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w),
                             min(max(y1, 0.0), h)]})
    return out


@dataclass
class _Partial:
    """A request's outputs before the masks are turned into RLE over the full image."""

    token_ids: list[int]
    mask_logits: np.ndarray | None  # [Q, g, g]
    scores: np.ndarray | None  # [Q]
    view: View
    timings: dict[str, StageTiming] = field(default_factory=new_timings)


def run_request(state: ImageState, question: str, prompts: list, *,
                history: Sequence[tuple[str, str]] = (), max_new_tokens: int = 64,
                temperature: float = 0.0, seed: int | None = 0, forced: Sequence[int] = (),
                box=None) -> Iterator[int]:
    """Runs a request up to the LLM (validation, encoding, fusion, prompt encoder: at once, so
    bad input raises here) and returns the decode as a generator: it yields the generated token
    ids and returns (StopIteration.value) a `_Partial`.

    Raises:
        ValueError: bad sampling settings, a <region> count that differs from the prompts, a
            prompt outside the image, a prompt longer than the LLM's context.
    """
    check_sampling(max_new_tokens, temperature)
    if not isinstance(question, str):
        raise TypeError(f"text must be a str, got {type(question).__name__}")
    _check_regions(question, history, prompts)
    eng = state.engine
    tok = eng.tokenizer
    view, fresh = state.view(box)
    tm = new_timings()
    vis_backend = eng.vision.backend
    vis_prec = eng.vision.precision(state.sensor, state.image.bands)
    status = "ran" if fresh else "cached"
    tm["preprocess"] = StageTiming(view.preprocess_s if fresh else 0.0, "native:_C", "fp32",
                                   status, 1 if fresh else 0)
    tm["vision"] = StageTiming(view.vision_s if fresh else 0.0, vis_backend, vis_prec, status,
                               1 if fresh else 0)

    t0 = time.perf_counter()
    from earthx_sdk.processor import Processor

    sp = eng.spec
    proc = Processor(tok, sp.image_size, sp.num_image_tokens, sp.region_tokens,
                     sp.mask_resolution)
    enc = proc.encode(None, state.sensor, question, prompts=prompts, history=history,
                      preprocessed=(view.pixels, view.info))
    tm["preprocess"].add(time.perf_counter() - t0, 0)
    tm["preprocess"].status = "ran"
    if len(enc.input_ids) + max_new_tokens + 1 > sp.max_positions:
        raise ValueError(f"the prompt is {len(enc.input_ids)} tokens and max_new_tokens is "
                         f"{max_new_tokens}: together above the LLM's context of "
                         f"{sp.max_positions} positions; shorten the text or the history")

    region = states = None
    if len(prompts):
        t0 = time.perf_counter()
        pooled = eng.fusion.run(view.feats, enc.boxes, enc.prompt_masks)
        t1 = time.perf_counter()
        tm["fusion"] = StageTiming(t1 - t0, eng.fusion.backend, eng.fusion.precision, "ran", 1)
        region, states = eng.prompt.run(view.feats, pooled, enc.boxes, enc.prompt_types)
        tm["prompt_encoder"] = StageTiming(time.perf_counter() - t1, eng.prompt.backend,
                                           eng.prompt.precision, "ran", 1)

    ids = enc.input_ids
    emb = eng.llm.embed(ids)  # [L, hidden]
    img_pos = np.flatnonzero(ids == tok.image_id)
    if img_pos.size != view.feats.tokens.shape[0]:
        raise RuntimeError(f"the prompt holds {img_pos.size} <image> slots, the vision stage "
                           f"gave {view.feats.tokens.shape[0]} tokens")
    emb[img_pos] = view.feats.tokens
    reg_pos = np.flatnonzero(ids == tok.region_id)
    if reg_pos.size:
        flat = region.reshape(-1, region.shape[-1])  # [R * n, hidden]
        emb[reg_pos] = flat[: reg_pos.size]

    text_pos = text_positions(ids, None, tok.image_id, tok.region_id)
    # the text tokens' input embeddings, for a decoder that reads them (cfg.text_embeddings)
    text_emb = emb[text_pos].copy() if eng.mask.reads_embeddings else None  # [T, hidden]
    return _decode_phase(eng, view, emb, states, tm, max_new_tokens=max_new_tokens,
                         temperature=temperature, seed=seed, forced=forced, text_pos=text_pos,
                         text_emb=text_emb,
                         prompt_masks=enc.prompt_masks if states is not None else None)


def _decode_phase(eng: Engine, view: View, emb: np.ndarray, states, tm: dict, *,
                  max_new_tokens: int, temperature: float, seed: int | None,
                  forced: Sequence[int], text_pos: np.ndarray,
                  text_emb: np.ndarray | None = None,
                  prompt_masks: np.ndarray | None = None) -> Iterator[int]:
    tok = eng.tokenizer
    stats = DecodeStats()
    yield from decode(eng.llm, emb, eos_id=tok.eos_id, seg_id=tok.seg_id,
                      max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                      forced=forced, stats=stats)
    tm["prefill"] = StageTiming(stats.prefill_s, eng.llm.backend, eng.llm.precision, "ran", 1)
    tm["decode"] = StageTiming(stats.decode_s, eng.llm.backend, eng.llm.precision, "ran",
                               stats.steps)
    logits = scores = None
    if stats.seg_hidden is not None:
        t0 = time.perf_counter()
        text = stats.prompt_hidden[text_pos] if eng.mask.reads_text else None  # [T, hidden]
        if text is not None and text_emb is not None:
            text = np.concatenate([text, text_emb.astype(text.dtype)], -1)  # [T, 2 x hidden]
        logits, scores = eng.mask.run(view.feats, stats.seg_hidden, states, text, prompt_masks)
        tm["mask_decoder"] = StageTiming(time.perf_counter() - t0, eng.mask.backend,
                                         eng.mask.precision, "ran", 1)
    return _Partial(list(stats.token_ids), logits, scores, view, tm)


def finish(state: ImageState, part: _Partial, prompts: list, threshold: float) -> Result:
    """Masks over the original image (RLE), regions, text: the Result of an untiled request."""
    from earthx_sdk.ops.masks import postprocess_masks, rle_encode

    tok = state.engine.tokenizer
    tm = part.timings
    masks, scores = [], []
    t0 = time.perf_counter()
    if part.mask_logits is not None:
        info = part.view.info
        binary = postprocess_masks(part.mask_logits, info.size, info.resized_hw, info.orig_hw,
                                   threshold)  # [Q, H, W]
        masks = [rle_str(r) for r in rle_encode(binary)]
        scores = [float(s) for s in part.scores]
        tm["postprocess"] = StageTiming(time.perf_counter() - t0, "native:_C", "fp32", "ran", 1)
    return Result(tok.decode_answer(part.token_ids), part.token_ids, regions(prompts, state.hw),
                  masks, scores, tm, state.sensor, state.hw, state.image.geo,
                  backend_info(state.engine), int(part.view.info.invalid_pixels or 0))


def rle_str(rle: dict) -> dict:
    """A COCO RLE with JSON-able fields (counts as str)."""
    c = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": c.decode("ascii") if isinstance(c, bytes) else c}


def backend_info(eng: Engine) -> dict:
    """Result.backend: the engine's name and what each of its stages runs on."""
    return {"name": eng.name, **eng.describe()}


def accumulate(total: dict[str, StageTiming], part: dict[str, StageTiming]) -> None:
    """Adds one request's stage timings into a total (a stage ran if it ran in any)."""
    for k, t in part.items():
        acc = total[k]
        if t.status != "skipped":
            acc.backend, acc.precision = t.backend, t.precision
            acc.status = "ran" if "ran" in (acc.status, t.status) else t.status
            acc.seconds += t.seconds
            acc.calls += t.calls


def drain(gen: Iterator[int]):
    """Runs a request generator to its end; returns its value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


# ------------------------------------------------------------------------------------------------
# the predictor
# ------------------------------------------------------------------------------------------------

class Stream:
    """Iterates over the answer's text pieces as they are decoded; `result` once it is done."""

    def __init__(self, tokenizer, gen: Iterator[int], done: Callable) -> None:
        self._tok, self._gen, self._done = tokenizer, gen, done
        self.result: Result | None = None
        self.token_ids: list[int] = []

    def __iter__(self) -> Iterator[str]:
        tok = self._tok
        chunk: list[int] = []
        shown = ""
        while True:
            try:
                t = next(self._gen)
            except StopIteration as stop:
                self.result = self._done(stop.value)
                break
            self.token_ids.append(t)
            if t == tok.eos_id:
                continue
            if t == tok.seg_id:
                rest = tok.decode(chunk)[len(shown):]
                chunk, shown = [], ""
                yield rest + "<seg>"
                continue
            chunk.append(t)
            text = tok.decode(chunk)
            if text.endswith("\ufffd"):
                continue  # an incomplete UTF-8 sequence: wait for its next bytes
            piece, shown = text[len(shown):], text
            if piece:
                yield piece
        rest = tok.decode(chunk)[len(shown):] if chunk else ""
        if rest:
            yield rest


def segment_jobs(text: str | None, prompts: list) -> list[tuple[str, list]]:
    """The (question, prompts) requests of a segment call (see Predictor.segment)."""
    if text is None and not prompts:
        raise ValueError("segment needs a referring text, prompts, or both")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"segment: text must be a str, got {type(text).__name__}")
    if text is not None and "<region>" in text:
        return [(text, prompts)]
    if text is not None and prompts:
        raise ValueError("segment: with prompts, the text must say where each prompt belongs "
                         "with <region> (or pass the prompts alone)")
    if text is not None:
        return [(phrasing.refer_seg(text), [])]
    return [(phrasing.PROMPT_SEG, [p]) for p in prompts]


def resolve_options(options: Options | None, engine: Engine) -> Options:
    """`options` (default Options()) with mask_threshold=None replaced by the engine's model's
    calibrated threshold."""
    options = options or Options()
    if options.mask_threshold is None:
        options = replace(options, mask_threshold=engine.spec.mask_threshold)
    return options


class Predictor:
    """Set an image once, ask many times.

    Args:
        engine: the loaded sessions (earthx_sdk.api.EarthX.engine).
        options: runtime settings.
    """

    def __init__(self, engine: Engine, options: Options | None = None) -> None:
        self.engine = engine
        self.options = resolve_options(options, engine)
        self.state: ImageState | None = None

    def set_image(self, image, sensor: str = "auto", layout: str = "auto") -> ImageState:
        """Reads the image and encodes it (the whole scene; tiles lazily when segmenting a large
        one).

        Raises:
            FileNotFoundError, ValueError, TypeError: see `earthx_sdk.io.images.load_image` and
                `ImageState`; NaN pixels without allow_invalid.
        """
        loaded = load_image(image, layout, self.options.max_pixels)
        st = ImageState(self.engine, loaded, sensor, self.options)
        if not st.tiled():
            st.view()
        self.state = st
        return st

    def _st(self) -> ImageState:
        if self.state is None:
            raise RuntimeError("Predictor: call set_image(image) first")
        return self.state

    def ask(self, text: str, prompts=None, *, max_new_tokens: int = 64,
            temperature: float = 0.0, seed: int | None = 0,
            history: Sequence[tuple[str, str]] = ()) -> Result:
        """Answers `text` about the image; `<region>` in it refers to prompts[k] in order."""
        st, prompts = self._st(), _check_prompts(prompts)
        part = drain(run_request(st, text, prompts, history=history,
                                 max_new_tokens=max_new_tokens, temperature=temperature,
                                 seed=seed))
        return finish(st, part, prompts, self.options.mask_threshold)

    def stream(self, text: str, prompts=None, *, max_new_tokens: int = 64,
               temperature: float = 0.0, seed: int | None = 0,
               history: Sequence[tuple[str, str]] = ()) -> Stream:
        """Like ask, but iterating the returned Stream yields text pieces as they are decoded;
        `Stream.result` holds the Result once the iteration is done. Bad input raises here,
        before the Stream is returned."""
        st, prompts = self._st(), _check_prompts(prompts)
        gen = run_request(st, text, prompts, history=history, max_new_tokens=max_new_tokens,
                          temperature=temperature, seed=seed)
        return Stream(self.engine.tokenizer, gen,
                      lambda part: finish(st, part, prompts, self.options.mask_threshold))

    def segment(self, text: str | None = None, prompts=None, *, max_new_tokens: int = 1,
                temperature: float = 0.0, seed: int | None = 0,
                progress: Callable[[int, int], None] | None = None) -> Result:
        """Masks for a referring text ("the ships"), for each prompt, or for a text with
        `<region>` placeholders and its prompts.

        The answer is constrained to begin with `<seg>` (the trained answer form), so a mask
        comes back for each request; max_new_tokens > 1 lets the model go on after it. A text
        without `<region>` is the target of "Please segment {text}."; prompts alone give one
        request (and one mask) per prompt, asked "Segment the object in <region>.". A scene
        larger than Options.tile_size runs tiled.
        """
        st, prompts = self._st(), _check_prompts(prompts)
        jobs = segment_jobs(text, prompts)
        forced = [self.engine.tokenizer.seg_id]
        if st.tiled():
            if text is not None and "<region>" in text:
                raise ValueError("segment: a large scene runs tiled, where a text with <region> "
                                 "cannot follow its prompts from tile to tile; pass the prompts "
                                 "alone, or a referring text alone")
            from earthx_sdk.tiled import segment_tiled

            return segment_tiled(st, jobs, max_new_tokens=max_new_tokens,
                                 temperature=temperature, seed=seed, forced=forced,
                                 progress=progress)
        results = []
        for question, ps in jobs:
            part = drain(run_request(st, question, ps, max_new_tokens=max_new_tokens,
                                     temperature=temperature, seed=seed, forced=forced))
            results.append(finish(st, part, ps, self.options.mask_threshold))
        return merge(results, prompts)

    def classify_region(self, prompt: Prompt, *, max_new_tokens: int = 16) -> Result:
        """The class of the prompted region ("What is the object in <region>?")."""
        return self.ask(phrasing.REGION_CLASS, [prompt], max_new_tokens=max_new_tokens)

    def caption_region(self, prompt: Prompt, *, max_new_tokens: int = 48) -> Result:
        """A short description of the prompted region ("Describe the region <region>.")."""
        return self.ask(phrasing.REGION_CAPTION, [prompt], max_new_tokens=max_new_tokens)


def merge(results: list[Result], prompts: list) -> Result:
    """One Result from the per-prompt requests of a segment call (stage times summed)."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    tm = new_timings()
    for r in results:
        accumulate(tm, r.timings)
    return Result(" ".join(r.text for r in results), [i for r in results for i in r.token_ids],
                  regions(prompts, first.image_hw), [m for r in results for m in r.masks],
                  [s for r in results for s in r.scores], tm, first.sensor, first.image_hw,
                  first.geo, first.backend, first.invalid_pixels, 1)
