"""Overlay PNG: the image with its masks (translucent fills, outlined) and prompts drawn over it.

Torch-free (Pillow). Non-RGB imagery is shown as a picture first: each band stretched between its
2nd and 98th percentiles to 0..255 (one band: grey; two: the first as grey; three or more: the
first three as RGB), complex SAR as amplitude in dB. The file is written to a temporary name and
renamed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# colour-blind-safe palette (Okabe-Ito) for masks, one per mask in turn
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167))
PROMPT_COLOR = (255, 0, 0)


def display_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] picture of an [H, W, C] image of any supported dtype."""
    px = np.asarray(pixels)
    if np.iscomplexobj(px):
        px = 10 * np.log10(np.maximum(np.abs(px.astype(np.complex64)) ** 2, 1e-10))
    if px.dtype == np.uint8 and px.shape[2] >= 3:
        return np.ascontiguousarray(px[:, :, :3])
    bands = px[:, :, :3] if px.shape[2] >= 3 else px[:, :, :1]
    out = np.zeros(bands.shape, np.uint8)
    for c in range(bands.shape[2]):
        b = bands[:, :, c].astype(np.float64)
        ok = np.isfinite(b)
        if not ok.any():
            continue
        lo, hi = np.percentile(b[ok], [2, 98])
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out[:, :, c] = np.clip((np.where(ok, b, lo) - lo) * scale, 0, 255).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out


def _draw_prompt(draw, p, width: int) -> None:
    from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble

    if isinstance(p, Point):
        r = max(p.radius, 3.0 * width + 2)  # visible at any scale
        draw.ellipse([p.x - r, p.y - r, p.x + r, p.y + r], outline=PROMPT_COLOR, width=width)
    elif isinstance(p, Box):
        draw.rectangle([p.x0, p.y0, p.x1, p.y1], outline=PROMPT_COLOR, width=width)
    elif isinstance(p, Polygon):
        pts = [tuple(v) for v in p.vertices]
        draw.line(pts + [pts[0]], fill=PROMPT_COLOR, width=width)
    elif isinstance(p, Scribble):
        pts = [tuple(v) for v in p.points]
        if len(pts) == 1:
            pts = pts * 2
        draw.line(pts, fill=PROMPT_COLOR, width=max(width, int(p.width)))
    elif isinstance(p, Mask):
        from earthx_sdk.ops.masks import mask_to_polygons

        for poly in mask_to_polygons(p.mask.astype(np.uint8)):
            pts = [tuple(v) for v in poly]
            draw.line(pts + [pts[0]], fill=PROMPT_COLOR, width=width)


def render(pixels: np.ndarray, masks: np.ndarray | None = None, prompts=(),
           alpha: float = 0.45) -> np.ndarray:
    """uint8 [H, W, 3]: the image with masks [Q, H, W] filled (alpha) and outlined, and the
    prompts drawn in red.

    Raises:
        ValueError: masks not of the image's size, alpha outside [0, 1].
    """
    from PIL import Image, ImageDraw

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    rgb = display_rgb(pixels).astype(np.float32)
    h, w = rgb.shape[:2]
    masks = np.zeros((0, h, w), np.uint8) if masks is None else np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != (h, w):
        raise ValueError(f"overlay: masks must be [Q, {h}, {w}], got {list(masks.shape)}")
    for k, m in enumerate(masks):
        color = np.asarray(PALETTE[k % len(PALETTE)], np.float32)
        on = m.astype(bool)
        rgb[on] = (1 - alpha) * rgb[on] + alpha * color
    im = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(h, w) / 300))
    from earthx_sdk.ops.masks import mask_to_polygons

    for k, m in enumerate(masks):
        if m.any():
            for poly in mask_to_polygons(m.astype(np.uint8)):
                pts = [tuple(v) for v in poly]
                draw.line(pts + [pts[0]], fill=PALETTE[k % len(PALETTE)], width=width)
    for p in prompts:
        _draw_prompt(draw, p, width)
    return np.asarray(im)


def write_overlay(path: str | Path, pixels: np.ndarray, masks: np.ndarray | None = None,
                  prompts=(), alpha: float = 0.45) -> Path:
    """Writes `render(...)` as a PNG (temporary name, then renamed)."""
    from PIL import Image

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(render(pixels, masks, prompts, alpha)).save(tmp, format="PNG")
    tmp.replace(path)
    return path
