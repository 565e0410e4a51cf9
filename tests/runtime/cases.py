"""The 20 fixed requests the backend parity and thread tests run (all prompt types, all sensors).

Each case is (name, image key, call, text, prompts, max_new_tokens); `run_case` runs one on an
EarthX object and returns what the tests compare: (token ids, masks uint8 [Q, H, W], text).
"""

from __future__ import annotations

import numpy as np

from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble


def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    z = rng.normal(size=(64, 70)) + 1j * rng.normal(size=(64, 70))
    return {
        "optical": (rng.random((72, 96, 3)) * 255).astype(np.uint8),
        "multispectral": (rng.random((80, 64, 4)) * 4000).astype(np.uint16),
        "sar": rng.random((64, 64)).astype(np.float32) * 0.5,  # amplitude, single-pol
        "sar2": rng.random((2, 64, 70)).astype(np.float32),  # dual-pol, CHW
        "sar_complex": z.astype(np.complex64),  # single-look complex
        "infrared": (rng.random((60, 90)) * 5000 + 10000).astype(np.uint16),
    }


SENSOR_OF = {"optical": "optical", "multispectral": "multispectral", "sar": "sar", "sar2": "sar",
             "sar_complex": "sar", "infrared": "infrared"}


def _mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


CASES = [
    ("opt_describe", "optical", "ask", "Describe this image.", [], 4),
    ("opt_box", "optical", "ask", "What is in <region>?", [Box(10, 8, 50, 40)], 4),
    ("opt_point_class", "optical", "classify", None, [Point(60, 30)], 3),
    ("opt_polygon_caption", "optical", "caption", None,
     [Polygon(((5, 5), (40, 10), (30, 50), (8, 35)))], 3),
    ("opt_refer_seg", "optical", "segment", "the ships", [], 1),
    ("opt_scribble_seg", "optical", "segment", None, [Scribble(((10, 60), (30, 55), (50, 62)))],
     1),
    ("opt_mask_seg", "optical", "segment", None, [Mask(_mask(72, 96, 20, 40, 30, 70))], 2),
    ("opt_two_regions", "optical", "ask", "Compare <region> with <region>.",
     [Box(0, 0, 30, 30), Point(80, 60, 3)], 4),
    ("ms_scene", "multispectral", "ask", "What kind of scene is this?", [], 4),
    ("ms_box_seg", "multispectral", "segment", None, [Box(5, 10, 40, 60)], 1),
    ("ms_mask_class", "multispectral", "classify", None, [Mask(_mask(80, 64, 0, 30, 0, 30))], 3),
    ("sar_describe", "sar", "ask", "Describe this image.", [], 4),
    ("sar_refer_seg", "sar", "segment", "all ships", [], 1),
    ("sar2_box_class", "sar2", "classify", None, [Box(20, 20, 44, 50)], 3),
    ("sar_complex_polygon", "sar_complex", "classify", None,
     [Polygon(((10, 10), (60, 12), (35, 55)))], 3),
    ("ir_describe", "infrared", "ask", "Describe this image.", [], 4),
    ("ir_point_seg", "infrared", "segment", None, [Point(45, 30)], 1),
    ("ir_scribble_caption", "infrared", "caption", None, [Scribble(((5, 5), (60, 40)), 4)], 3),
    ("ir_refer_seg", "infrared", "segment", "the hot spots", [], 2),
    ("opt_box_seg_text", "optical", "segment", "Segment the object in <region>.",
     [Box(40, 20, 90, 70)], 1),
]


def run_case(model, case, imgs):
    """Runs one case; returns (token ids, masks uint8 [Q, H, W], text, Result)."""
    _, key, call, text, prompts, n = case
    img, sensor = imgs[key], SENSOR_OF[key]
    if call == "ask":
        r = model.ask(img, text, prompts, sensor=sensor, max_new_tokens=n)
    elif call == "classify":
        r = model.classify_region(img, prompts[0], sensor=sensor, max_new_tokens=n)
    elif call == "caption":
        r = model.caption_region(img, prompts[0], sensor=sensor, max_new_tokens=n)
    else:
        r = model.segment(img, text, prompts, sensor=sensor, max_new_tokens=n)
    return list(r.token_ids), r.masks_array(), r.text, r


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(inter / union)
