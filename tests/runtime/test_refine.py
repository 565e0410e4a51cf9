"""A mask decoder that refines its masks at S/2 from the vision stem's image
(MaskDecoderConfig.refine), on the settings the default model has: the vision graph gains the
`stem` output and the mask decoder the `stem` input, and the reference, the torch backend and the
onnxruntime bundle give the same S/2 logits and masks."""

from __future__ import annotations

import numpy as np
import pytest

from earthx_sdk.prompts import Box
from tests.runtime.cases import images, iou

torch = pytest.importorskip("torch")

QUESTION = "Segment <region>."


@pytest.fixture(scope="module")
def refine_ckpt(tmp_path_factory):
    from tests.runtime.fixtures import build_ckpt

    def trained_head(model):  # a trained head: its residual is not zero
        torch.nn.init.normal_(model.mask_decoder.refiner.out.weight, std=0.3)

    return build_ckpt(tmp_path_factory.mktemp("refine") / "ckpt",
                      mask=dict(text_tokens=True, text_embeddings=True, position_prior=True,
                                prompt_map=True, refine=True), tweak=trained_head)


@pytest.fixture(scope="module")
def refine_bundle(refine_ckpt, tmp_path_factory):
    from tests.runtime.fixtures import optical_bundle

    return optical_bundle(refine_ckpt, tmp_path_factory.mktemp("refine") / "bundle")


def test_refine_bundle_graphs_carry_the_stem(refine_ckpt, refine_bundle):
    import onnx

    size = 112
    vision = onnx.load(str(refine_bundle / "vision_optical_3.onnx"), load_external_data=False)
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim]
            for o in vision.graph.output}
    assert outs["stem"] == [1, 3, size, size]
    dec = onnx.load(str(refine_bundle / "mask_decoder.onnx"), load_external_data=False)
    ins = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in dec.graph.input}
    assert ins["stem"] == [1, 3, size, size]
    logits = dec.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in logits[2:]] == [size // 2, size // 2]


def test_refine_round_trip_torch_and_onnxruntime(refine_ckpt, refine_bundle):
    from earthx_sdk import EarthX
    from earthx_sdk.modeling.model import EarthXModel
    from earthx_sdk.ops.masks import postprocess_masks

    ref = EarthXModel.load(refine_ckpt)
    img, p = images()["optical"], [Box(10, 8, 50, 40)]
    s = ref.processor.encode(img, "optical", QUESTION, prompts=p)
    want = ref.generate(s, max_new_tokens=4)
    assert ref.tokenizer.seg_id in want.token_ids
    assert want.mask_logits.shape[1:] == (56, 56)
    ref_masks = postprocess_masks(want.mask_logits.numpy(), s.info.size, s.info.resized_hw,
                                  s.info.orig_hw, 0.0)
    for model in (EarthX.load(refine_ckpt, device="cpu"),
                  EarthX.load(refine_bundle, device="cpu", threads=1)):
        got = model.ask(img, QUESTION, p, sensor="optical", max_new_tokens=4)
        assert got.token_ids == want.token_ids
        assert got.masks_array().shape == ref_masks.shape
        assert ref_masks.shape[1:] == img.shape[:2]
        for a, b in zip(got.masks_array(), ref_masks, strict=True):
            assert iou(a, b) >= 0.99
        np.testing.assert_allclose(got.scores, want.iou.numpy(), atol=1e-3)


def test_exported_refiner_matches_the_reference_and_needs_the_stem(refine_ckpt, refine_bundle):
    import onnxruntime as ort

    from earthx_sdk.modeling.model import EarthXModel
    from earthx_sdk.runtime.ort_backend import OrtMask
    from earthx_sdk.runtime.sessions import ImageFeatures

    dec = EarthXModel.load(refine_ckpt).mask_decoder
    sess = ort.InferenceSession(str(refine_bundle / "mask_decoder.onnx"),
                                providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    s4, s8 = dec.size4, dec.size8
    feed = {"seg_hidden": torch.randn(1, 2, dec.llm_hidden, generator=g),
            "dense": torch.randn(1, dec.dense_dim, dec.grid, dec.grid, generator=g),
            "hires_s4": torch.randn(1, dec.hires_dims[0], s4, s4, generator=g),
            "hires_s8": torch.randn(1, dec.hires_dims[1], s8, s8, generator=g),
            "prompt_states": torch.randn(1, 1, dec.prompt_dim, generator=g),
            "text_hidden": torch.randn(1, 5, dec.text_width, generator=g),
            "prompt_masks": torch.ones(1, 1, 28, 28),
            "stem": torch.randn(1, 3, 112, 112, generator=g)}
    got = sess.run(None, {k: v.numpy() for k, v in feed.items()})[0]
    with torch.no_grad():
        want, _ = dec(feed["seg_hidden"], feed["dense"],
                      [feed["hires_s4"], feed["hires_s8"], feed["stem"]], feed["prompt_states"],
                      None, feed["text_hidden"], feed["prompt_masks"])
    assert got.shape == (1, 2, 56, 56)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)

    from earthx_sdk import EarthX

    engine = EarthX.load(refine_bundle, device="cpu", threads=1).engine
    mask = engine.mask
    assert isinstance(mask, OrtMask)
    native = {"dense": feed["dense"].numpy(), "feature_s4": feed["hires_s4"].numpy(),
              "feature_s8": feed["hires_s8"].numpy()}  # a vision graph without the stem output
    with pytest.raises(ValueError, match="reads the vision graph's stem image .* re-export"):
        mask.run(ImageFeatures(np.zeros((1, 1), np.float32), native),
                 feed["seg_hidden"].numpy()[0], feed["prompt_states"].numpy()[0],
                 feed["text_hidden"].numpy()[0], feed["prompt_masks"].numpy()[0])
