"""`earthx demo`: the embedded model answers four visual-prompt questions about each sample scene.

On each sample scene (optical, SAR, thermal infrared; `earthx_sdk/assets/samples/`) or on a given
image, it asks:

- region classification of a box ("What is the object in <region>?"),
- a region caption of a point ("Describe the region <region>."),
- the mask of the object inside a free-form polygon ("Segment the object in <region>."),
- referring segmentation of a phrase ("Please segment the airplane at the top."),

prints each answer (for a sample, next to its ground truth from samples.json: the class name for
classification, the class word and the place for the caption, the mask IoU for the two masks), the
latency of every stage, and writes an overlay PNG per image (earthx_sdk.overlay: masks filled,
prompts drawn; with the answers written below).

Torch-free: it runs on whatever backend `EarthX.load` picks for the bundle (onnxruntime for the
embedded one).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from earthx_sdk.prompts import Box, Point, Polygon
from earthx_sdk.result import STAGES, Result
from earthx_sdk.runtime import phrasing

QUESTIONS = ("box", "point", "polygon", "refer")


@dataclass
class Answer:
    """One demo question and what came back.

    Attributes:
        kind: one of QUESTIONS.
        question: the text asked (with <region> where the prompt is).
        prompt: the visual prompt (None for the referring question).
        text: the model's answer text.
        mask: uint8 [H, W] mask for the polygon / referring questions, else None.
        expected: the ground truth (class name, class word, or referring target), if known.
        iou: IoU of the mask with the ground-truth mask (mask questions on a sample).
        correct: whether the answer matches the ground truth (None without one).
        timings: {stage: seconds} of this request (0 for cached / skipped stages).
        total_s: wall time of the request.
    """

    kind: str
    question: str
    prompt: object
    text: str
    mask: np.ndarray | None = None
    expected: str | None = None
    iou: float | None = None
    correct: bool | None = None
    timings: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "question": self.question, "text": self.text,
                "prompt": _prompt_dict(self.prompt), "expected": self.expected,
                "iou": self.iou, "correct": self.correct, "timings": self.timings,
                "total_s": self.total_s,
                "mask_pixels": None if self.mask is None else int(self.mask.sum())}


@dataclass
class SceneReport:
    """The demo on one image: its answers and where its overlay went."""

    name: str
    image: str
    sensor: str
    answers: list[Answer]
    overlay: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "image": self.image, "sensor": self.sensor,
                "overlay": self.overlay, "answers": [a.to_dict() for a in self.answers]}


def _prompt_dict(p) -> dict | None:
    if p is None:
        return None
    if isinstance(p, Box):
        return {"box": [p.x0, p.y0, p.x1, p.y1]}
    if isinstance(p, Point):
        return {"point": [p.x, p.y]}
    if isinstance(p, Polygon):
        return {"polygon": [list(v) for v in p.vertices]}
    raise TypeError(f"demo prompts are Box, Point or Polygon, got {type(p).__name__}")


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two binary masks (1.0 when both are empty).

    Raises:
        ValueError: different shapes.
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"mask_iou: the prediction has shape {pred.shape}, the ground truth "
                         f"{truth.shape}")
    union = np.count_nonzero(pred | truth)
    return float(np.count_nonzero(pred & truth) / union) if union else 1.0


def class_matches(answer: str, expected: str) -> bool:
    """A classification answer names the class: "ship", "Ship.", "a ship" all match "ship"."""
    words = answer.strip().lower().rstrip(".").split()
    if words[:1] in (["a"], ["an"], ["the"]):
        words = words[1:]
    return " ".join(words) == expected.lower()


def caption_mentions(answer: str, expected: str) -> bool:
    """A region caption mentions the class ("The storage tank at the top." for "storage tank")."""
    return f" {expected.lower()} " in f" {answer.lower().replace('.', ' ').replace(',', ' ')} "


# The places region captions name: the ninth of the image the object's centre is in
# (training.templates.position_name), longest first so "top left" is not read as "top".
PLACES = ("top left", "top right", "bottom left", "bottom right", "top", "bottom", "left",
          "right", "center")


def place_of(caption: str) -> str | None:
    """The place a region caption names ("The tree in the top left." -> "top left"; "The second
    vehicle from the left at the bottom." -> "bottom"), or None. "from the left" is an ordinal's
    direction, not a place."""
    words = f" {caption.lower().replace('.', ' ').replace(',', ' ')} "
    words = words.replace(" from the left ", " ").replace(" from the right ", " ")
    return next((p for p in PLACES if f" {p} " in words), None)


def caption_matches(answer: str, expected: str, cls: str) -> bool:
    """A region caption names the class and the place of the ground truth's caption."""
    return caption_mentions(answer, cls) and place_of(answer) == place_of(expected)


def _times(r: Result) -> dict[str, float]:
    return {s: float(r.timings[s].seconds) for s in STAGES}


def ask_all(model, image, sensor: str, prompts: dict, truth: dict | None = None,
            max_new_tokens: int = 24) -> list[Answer]:
    """Asks the four demo questions about one image.

    Args:
        model: an earthx_sdk.EarthX.
        image: path or array.
        sensor: its sensor.
        prompts: {"box": Box, "point": Point, "polygon": Polygon, "refer": str}.
        truth: a samples.json entry (ground truth), or None.
        max_new_tokens: the longest answer.

    Returns:
        one Answer per question, in QUESTIONS order.
    """
    from earthx_sdk.ops.masks import rle_decode

    out = []
    for kind in QUESTIONS:
        t0 = time.perf_counter()
        if kind == "box":
            q, p = phrasing.REGION_CLASS, prompts["box"]
            r = model.classify_region(image, p, sensor=sensor, max_new_tokens=max_new_tokens)
        elif kind == "point":
            q, p = phrasing.REGION_CAPTION, prompts["point"]
            r = model.caption_region(image, p, sensor=sensor, max_new_tokens=max_new_tokens)
        elif kind == "polygon":
            q, p = phrasing.PROMPT_SEG, prompts["polygon"]
            r = model.segment(image, prompts=[p], sensor=sensor)
        else:
            q, p = phrasing.refer_seg(prompts["refer"]), None
            r = model.segment(image, prompts["refer"], sensor=sensor)
        total = time.perf_counter() - t0
        a = Answer(kind, q, p, r.text.strip(), timings=_times(r), total_s=total)
        if kind in ("polygon", "refer"):
            a.mask = r.mask(0) if r.masks else np.zeros(r.image_hw, np.uint8)
        if truth is not None:
            t = truth[kind]
            if kind == "box":
                a.expected = t["class"]
                a.correct = class_matches(a.text, t["class"])
            elif kind == "point":
                a.expected = t["caption"]
                a.correct = caption_matches(a.text, t["caption"], t["class"])
            else:
                a.expected = t["text"] if kind == "refer" else t["class"]
                a.iou = mask_iou(a.mask, rle_decode(t["mask"]))
                a.correct = a.iou >= 0.5
        out.append(a)
    return out


# -------------------------------------------------------------------------------------------
# overlays
# -------------------------------------------------------------------------------------------

def draw_overlay(pixels: np.ndarray, answers: list[Answer], scale: int | None = None,
                 title: str = ""):
    """The image as earthx_sdk.overlay renders it (masks filled and outlined in its palette,
    prompts in red), enlarged `scale` times (None: to about 448 px, never shrunk), with a legend
    of the questions and answers below.

    Returns:
        a PIL.Image (RGB).
    """
    from PIL import Image, ImageDraw

    from earthx_sdk.overlay import PALETTE, PROMPT_COLOR, render

    px = np.asarray(pixels)
    if px.ndim == 2:
        px = px[..., None]
    h, w = px.shape[:2]
    if scale is None:
        scale = max(1, round(448 / max(h, w)))
    with_mask = [a for a in answers if a.mask is not None]
    masks = (np.stack([a.mask for a in with_mask]) if with_mask
             else np.zeros((0, h, w), np.uint8))
    prompts = [a.prompt for a in answers if a.prompt is not None]
    img = Image.fromarray(render(px, masks, prompts)).resize((w * scale, h * scale),
                                                             Image.NEAREST)
    line_h = 12
    legend = 4 + line_h * (len(answers) + (1 if title else 0))
    canvas = Image.new("RGB", (w * scale, h * scale + legend), (0, 0, 0))
    canvas.paste(img, (0, 0))
    d = ImageDraw.Draw(canvas)
    y = h * scale + 2
    if title:
        d.text((4, y), title + " (prompts in red)", fill=(255, 255, 255))
        y += line_h
    for a in answers:
        colour = (PALETTE[with_mask.index(a) % len(PALETTE)] if a.mask is not None
                  else PROMPT_COLOR)
        mark = "" if a.correct is None else (" [ok]" if a.correct else " [differs]")
        iou = "" if a.iou is None else f" IoU {a.iou:.2f}"
        text = "mask" if a.mask is not None else (a.text or "(empty)")
        label = f"{a.kind}: {text}{iou}{mark}"
        d.text((4, y), label[: max(20, w * scale // 6)], fill=colour)
        y += line_h
    return canvas


def write_overlay(path: Path, image_pixels: np.ndarray, answers: list[Answer],
                  title: str = "") -> Path:
    """Writes the overlay PNG (temporary name, then renamed)."""
    im = draw_overlay(image_pixels, answers, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    im.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


# -------------------------------------------------------------------------------------------
# the command
# -------------------------------------------------------------------------------------------

def sample_prompts(entry: dict) -> dict:
    """The demo prompts of a samples.json entry."""
    return {"box": Box(*entry["box"]["box"]), "point": Point(*entry["point"]["point"]),
            "polygon": Polygon(tuple(map(tuple, entry["polygon"]["polygon"]))),
            "refer": entry["refer"]["text"]}


def image_prompts(hw: tuple[int, int], box=None, point=None, polygon=None,
                  refer: str | None = None) -> dict:
    """Prompts for a user image: the given ones, else a box over the central ninth, a point at
    the centre, a diamond around the centre, and "all buildings"."""
    h, w = hw
    return {
        "box": Box(*box) if box is not None else Box(w / 3, h / 3, 2 * w / 3, 2 * h / 3),
        "point": Point(*point) if point is not None else Point(w / 2, h / 2),
        "polygon": Polygon(tuple(map(tuple, polygon))) if polygon is not None else Polygon(
            ((w / 2, h / 3), (2 * w / 3, h / 2), (w / 2, 2 * h / 3), (w / 3, h / 2))),
        "refer": refer or "all buildings"}


def _prompt_text(p) -> str:
    if isinstance(p, Box):
        return f"box ({p.x0:g}, {p.y0:g}, {p.x1:g}, {p.y1:g}): "
    if isinstance(p, Point):
        return f"point ({p.x:g}, {p.y:g}): "
    if isinstance(p, Polygon):
        x0, y0, x1, y1 = p.bbox()
        return (f"polygon of {len(p.vertices)} vertices in ({x0:.0f}, {y0:.0f}, {x1:.0f}, "
                f"{y1:.0f}): ")
    return ""


def _fmt_ms(s: float) -> str:
    return f"{s * 1e3:.1f}"


def print_answers(report: SceneReport, emit: Callable[[str], None]) -> None:
    emit(f"== {report.name} ({report.sensor}): {report.image}")
    for a in report.answers:
        emit(f"  [{a.kind}] {_prompt_text(a.prompt)}{a.question}")
        line = f"    -> {a.text!r}"
        if a.mask is not None:
            line += f" (mask of {int(a.mask.sum())} px)"
        if a.expected is not None:
            line += f"; expected {a.expected!r}"
        if a.iou is not None:
            line += f", IoU {a.iou:.2f}"
        if a.correct is not None:
            line += ", matches" if a.correct else ", DIFFERS"
        emit(line)
        emit("    ms: " + ", ".join(f"{s} {_fmt_ms(a.timings[s])}" for s in STAGES
                                    if a.timings.get(s)) + f"; total {_fmt_ms(a.total_s)}")


def run(bundle: str = "default", image: str | None = None, sensor: str = "auto",
        out: str | os.PathLike = "earthx_demo", backend: str = "auto", device: str = "auto",
        threads: int | None = None, prompts: dict | None = None,
        emit: Callable[[str], None] = print) -> list[SceneReport]:
    """The demo: loads the model, asks the questions, prints, writes overlays.

    Args:
        bundle: a bundle / checkpoint directory, or "default" (the embedded model).
        image: an image file; None runs on the sample scenes.
        sensor: the image's sensor ("auto" guesses; a single-band image needs it).
        out: folder for the overlay PNGs and demo.json.
        backend, device, threads: as EarthX.load.
        prompts: for `image`: keyword arguments of image_prompts (box, point, polygon, refer).
        emit: where the printed lines go.

    Returns:
        one SceneReport per image.

    Raises:
        FileNotFoundError: no such image / bundle; the embedded model or samples missing.
        ValueError: a bad sensor, prompt or bundle.
    """
    from earthx_sdk.api import EarthX
    from earthx_sdk.io.images import guess_sensor, load_image

    t0 = time.perf_counter()
    model = EarthX.load(bundle, backend=backend, device=device, threads=threads)
    load_s = time.perf_counter() - t0
    info = model.info()
    emit(f"model: {info['source']} (loaded in {_fmt_ms(load_s)} ms); backends: "
         + ", ".join(f"{k} {v}" for k, v in info["backend"].items() if k != "name"))
    jobs = []
    if image is None:
        from earthx_sdk.defaults import samples

        for e in samples():
            jobs.append((e["name"], e["path"], e["sensor"], sample_prompts(e), e))
    else:
        loaded = load_image(image)
        jobs.append((Path(image).stem, str(image), sensor,
                     image_prompts(loaded.hw, **(prompts or {})), None))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for name, path, sens, ps, truth in jobs:
        loaded = load_image(path)
        if sens == "auto":
            sens = guess_sensor(loaded, model.engine.spec.channels)
        answers = ask_all(model, path, sens, ps, truth)
        rep = SceneReport(name, path, sens, answers)
        rep.overlay = str(write_overlay(out / f"{name}_overlay.png", loaded.pixels, answers,
                                        title=f"{name} ({sens})"))
        print_answers(rep, emit)
        emit(f"  overlay: {rep.overlay}")
        reports.append(rep)
    totals = {s: sum(a.timings[s] for r in reports for a in r.answers) for s in STAGES}
    n = sum(len(r.answers) for r in reports)
    emit(f"latency over {n} requests (ms, summed per stage): "
         + ", ".join(f"{s} {_fmt_ms(v)}" for s, v in totals.items() if v))
    checked = [a for r in reports for a in r.answers if a.correct is not None]
    if checked:
        emit(f"answers matching the ground truth: {sum(a.correct for a in checked)}/"
             f"{len(checked)}")
    doc = {"model": info, "load_s": load_s, "scenes": [r.to_dict() for r in reports]}
    tmp = out / "demo.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / "demo.json")
    return reports


# -------------------------------------------------------------------------------------------
# earthx demo
# -------------------------------------------------------------------------------------------

def _pairs(option: str):
    def parse(text: str) -> list[float]:
        import argparse

        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes comma-separated numbers, got "
                                             f"{text!r}") from None
    return parse


def add_parser(sub) -> None:
    """Registers `earthx demo` on the CLI's subparsers."""
    p = sub.add_parser("demo", help="the embedded model answers visual-prompt questions about "
                                    "the sample scenes (or --image), with overlays and latency")
    p.add_argument("--image", help="run on this image instead of the sample scenes")
    p.add_argument("--sensor", default="auto",
                   choices=("auto", "optical", "multispectral", "sar", "infrared"),
                   help="the sensor of --image (a single-band image needs it)")
    p.add_argument("--out", default="earthx_demo", help="folder for the overlay PNGs and "
                                                        "demo.json (default ./earthx_demo)")
    p.add_argument("--bundle", default="default",
                   help="bundle or checkpoint directory, or 'default' (the embedded model)")
    p.add_argument("--backend", default="auto",
                   choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--box", type=_pairs("--box"), metavar="X0,Y0,X1,Y1",
                   help="--image: the box to classify (default: the central ninth)")
    p.add_argument("--point", type=_pairs("--point"), metavar="X,Y",
                   help="--image: the point to describe (default: the centre)")
    p.add_argument("--polygon", type=_pairs("--polygon"), metavar="X,Y,X,Y,...",
                   help="--image: the polygon to segment (default: a diamond at the centre)")
    p.add_argument("--refer", metavar="TEXT",
                   help="--image: what to segment (default: 'all buildings')")
    p.set_defaults(run=main)


def main(args) -> int:
    """`earthx demo` (args from add_parser's parser)."""
    import sys

    prompts = {}
    if args.image is None and any(v is not None for v in (args.box, args.point, args.polygon,
                                                          args.refer)):
        print("earthx demo: error: --box / --point / --polygon / --refer go with --image (the "
              "sample scenes bring their own prompts)", file=sys.stderr)
        return 2
    for key, n in (("box", 4), ("point", 2)):
        v = getattr(args, key)
        if v is not None:
            if len(v) != n:
                print(f"earthx demo: error: --{key} takes {n} numbers, got {len(v)}",
                      file=sys.stderr)
                return 2
            prompts[key] = v
    if args.polygon is not None:
        v = args.polygon
        if len(v) < 6 or len(v) % 2:
            print(f"earthx demo: error: --polygon takes >= 3 x,y pairs, got {len(v)} numbers",
                  file=sys.stderr)
            return 2
        prompts["polygon"] = list(zip(v[0::2], v[1::2], strict=True))
    if args.refer is not None:
        prompts["refer"] = args.refer
    try:
        run(args.bundle, args.image, args.sensor, args.out, args.backend, args.device,
            args.threads, prompts)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as e:
        print(f"earthx demo: error: {e}", file=sys.stderr)
        return 2
    return 0
