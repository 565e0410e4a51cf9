"""The tiny model learns: a fixed batch of 8 samples (all tasks, all sensors) overfit on CPU."""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from earthx_sdk.modeling.config import EarthXConfig  # noqa: E402
from earthx_sdk.modeling.model import EarthXModel  # noqa: E402
from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble  # noqa: E402


def _batch(model, rng):
    def rect_mask(hw, y0, y1, x0, x1):
        m = np.zeros(hw, bool)
        m[y0:y1, x0:x1] = True
        return m

    optical = rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)
    sar = rng.gamma(1.0, 0.1, (80, 80)).astype(np.float32)
    thermal = rng.integers(8000, 12000, (100, 90), dtype=np.uint16)
    ms = rng.integers(0, 4000, (64, 64, 4), dtype=np.uint16)
    dual = rng.gamma(1.0, 0.1, (72, 72, 2)).astype(np.float32)
    items = [
        dict(image=optical, sensor="optical", question="Describe the image.",
             answer="two buildings beside a road."),
        dict(image=ms, sensor="multispectral", question="How many storage tanks are there?",
             answer="three."),
        dict(image=sar, sensor="sar", question="What is in <region>?", answer="a ship.",
             prompts=[Box(10, 12, 40, 30)]),
        dict(image=dual, sensor="sar", question="Describe <region>.", answer="calm water.",
             prompts=[Point(30, 40)]),
        dict(image=thermal, sensor="infrared", question="Segment the warm roof in <region>.",
             answer="<seg>", prompts=[Polygon([(30, 20), (70, 20), (70, 60), (30, 60)])],
             target_masks=[rect_mask(thermal.shape, 20, 60, 30, 70)]),
        dict(image=optical, sensor="optical", question="Segment the road.", answer="<seg>",
             target_masks=[rect_mask(optical.shape[:2], 40, 56, 0, 120)]),
        dict(image=sar, sensor="sar", question="What does <region> follow?", answer="a road.",
             prompts=[Scribble([(5, 70), (75, 70)], width=4)]),
        dict(image=ms, sensor="multispectral", question="Segment the field in <region>.",
             answer="<seg>", prompts=[Mask(rect_mask(ms.shape[:2], 8, 40, 8, 30))],
             target_masks=[rect_mask(ms.shape[:2], 8, 40, 8, 30)]),
    ]
    enc = model.processor.encode
    train = [enc(**it) for it in items]
    # the same questions without answers, for generation
    infer = [enc(**{k: v for k, v in it.items() if k not in ("answer", "target_masks")})
             for it in items]
    return train, infer, items


def _mask_iou(model, train, infer) -> float:
    """Smallest IoU over the segmentation samples of the masks `generate` returns (0 when it does
    not emit exactly one <seg> for a sample)."""
    ious = []
    with torch.no_grad():
        for s, q in zip(train, infer, strict=True):
            if s.target_masks is None:
                continue
            g = model.generate(q, max_new_tokens=4)
            if g.mask_logits.shape[0] != len(s.target_masks):
                return 0.0
            pred = g.mask_logits > 0
            t = torch.from_numpy(s.target_masks) > 0.5
            ious.append(float((pred & t).sum() / (pred | t).sum()))
    return min(ious)


@pytest.mark.slow
def test_tiny_overfits_a_mixed_batch():
    torch.manual_seed(0)
    model = EarthXModel(EarthXConfig.from_name("tiny"))
    batch, infer, items = _batch(model, np.random.default_rng(0))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    t0 = time.perf_counter()
    lm = iou = None
    for step in range(1, 601):
        model.train()
        losses = model(batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        lm = float(losses["lm_loss"].detach())
        if step % 25 == 0:
            model.eval()
            iou = _mask_iou(model, batch, infer)
            mask_loss = float(losses["mask_loss"].detach())
            print(f"step {step}: lm_loss {lm:.4f} mask_loss {mask_loss:.4f} "
                  f"min mask IoU {iou:.3f} ({time.perf_counter() - t0:.1f} s)")
            if lm < 0.05 and iou > 0.9:
                break
    print(f"overfit: {step} steps in {time.perf_counter() - t0:.1f} s")
    assert lm < 0.05 and iou > 0.9, (lm, iou)
    # and the answers are the trained ones, decoded greedily with the KV cache
    model.eval()
    for q, it in zip(infer, items, strict=True):
        assert model.generate(q, max_new_tokens=16).text == it["answer"]
