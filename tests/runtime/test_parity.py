"""torch and onnxruntime backends on the same 20 requests, and the checkpoint -> bundle round
trip against the reference model."""

from __future__ import annotations

import numpy as np
import pytest

from earthx_sdk.prompts import Box
from tests.runtime.cases import CASES, SENSOR_OF, images, iou, run_case

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def imgs():
    return images()


def test_twenty_requests_same_tokens_and_masks(torch_model, ort_model, imgs):
    """All prompt types, all sensors: the same greedy tokens, masks with IoU >= 0.99."""
    sensors, kinds, n_masks = set(), set(), 0
    worst = 1.0
    for case in CASES:
        t_tok, t_masks, t_text, t_res = run_case(torch_model, case, imgs)
        o_tok, o_masks, o_text, o_res = run_case(ort_model, case, imgs)
        assert o_tok == t_tok, case[0]
        assert o_text == t_text, case[0]
        assert o_masks.shape == t_masks.shape, case[0]
        for a, b in zip(o_masks, t_masks, strict=True):
            worst = min(worst, iou(a, b))
        np.testing.assert_allclose(o_res.scores, t_res.scores, atol=1e-3, err_msg=case[0])
        assert o_res.timings["vision"].backend.startswith("onnxruntime:")
        assert t_res.timings["vision"].backend == "torch:cpu"
        sensors.add(SENSOR_OF[case[1]])
        kinds.update(p.kind for p in case[4])
        n_masks += len(t_masks)
    print(f"20 requests: {n_masks} masks, worst IoU torch vs onnxruntime {worst:.4f}")
    assert worst >= 0.99
    assert sensors == {"optical", "multispectral", "sar", "infrared"}
    assert kinds == {"point", "box", "polygon", "scribble", "mask"}
    assert n_masks >= 10


def test_round_trip_checkpoint_bundle_reference(tiny_bundle, ort_model, reference, imgs):
    """tiny checkpoint -> export_bundle -> EarthX.load(bundle) answers as EarthXModel.generate:
    the same greedy tokens and the same mask (IoU >= 0.99)."""
    from earthx_sdk.ops.masks import postprocess_masks

    img, p = imgs["optical"], [Box(10, 8, 50, 40)]
    s = reference.processor.encode(img, "optical", "What is in <region>?", prompts=p)
    want = reference.generate(s, max_new_tokens=4)
    got = ort_model.ask(img, "What is in <region>?", p, sensor="optical", max_new_tokens=4)
    assert got.token_ids == want.token_ids
    assert reference.tokenizer.seg_id in want.token_ids  # the answer holds masks
    ref_masks = postprocess_masks(want.mask_logits.numpy(), s.info.size, s.info.resized_hw,
                                  s.info.orig_hw, 0.0)
    assert got.masks_array().shape == ref_masks.shape
    for a, b in zip(got.masks_array(), ref_masks, strict=True):
        assert iou(a, b) >= 0.99
    np.testing.assert_allclose(got.scores, want.iou.numpy(), atol=1e-3)
    assert got.backend["name"] == "onnxruntime"
