"""A mask decoder that reads the prompt's text tokens with their embeddings
(MaskDecoderConfig.text_tokens, text_embeddings), adds a position prior (position_prior) and reads
the prompts' region masks (prompt_map), as the earthx-tiny recipe trains it: the reference, the
torch backend and the onnxruntime bundle give the same masks, and the masks depend on the
question's words through the text path."""

from __future__ import annotations

import numpy as np
import pytest

from earthx_sdk.prompts import Box
from tests.runtime.cases import images, iou

torch = pytest.importorskip("torch")

QUESTION = "What is in <region>?"


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    from tests.runtime.fixtures import build_ckpt

    return build_ckpt(tmp_path_factory.mktemp("text") / "ckpt",
                      mask=dict(text_tokens=True, position_prior=True, text_embeddings=True,
                                prompt_map=True))


def _reference_masks(model, img, question, prompts):
    from earthx_sdk.ops.masks import postprocess_masks

    s = model.processor.encode(img, "optical", question, prompts=prompts)
    g = model.generate(s, max_new_tokens=4)
    assert model.tokenizer.seg_id in g.token_ids  # the request decodes a mask
    return g, postprocess_masks(g.mask_logits.numpy(), s.info.size, s.info.resized_hw,
                                s.info.orig_hw, 0.0)


@pytest.fixture(scope="module")
def text_bundle(text_ckpt, tmp_path_factory):
    from tests.runtime.fixtures import optical_bundle

    return optical_bundle(text_ckpt, tmp_path_factory.mktemp("text") / "bundle")


def test_text_tokens_round_trip_torch_and_onnxruntime(text_ckpt, text_bundle):
    import onnx

    from earthx_sdk import EarthX
    from earthx_sdk.modeling.model import EarthXModel

    bundle = text_bundle
    graph = onnx.load(str(bundle / "mask_decoder.onnx"), load_external_data=False)
    inputs = {i.name: i for i in graph.graph.input}
    assert "text_hidden" in inputs  # [1, T, hidden] with a dynamic T
    assert inputs["text_hidden"].type.tensor_type.shape.dim[1].dim_param
    hidden = EarthXModel.load(text_ckpt).cfg.llm.hidden
    assert inputs["text_hidden"].type.tensor_type.shape.dim[2].dim_value == 2 * hidden
    side = EarthXModel.load(text_ckpt).cfg.prompt.mask_resolution
    dims = inputs["prompt_masks"].type.tensor_type.shape.dim  # [1, R, M, M], R shared
    assert dims[1].dim_param == inputs["prompt_states"].type.tensor_type.shape.dim[1].dim_param
    assert [d.dim_value for d in dims[2:]] == [side, side]

    ref = EarthXModel.load(text_ckpt)
    img, p = images()["optical"], [Box(10, 8, 50, 40)]
    want, ref_masks = _reference_masks(ref, img, QUESTION, p)
    for model in (EarthX.load(text_ckpt, device="cpu"),
                  EarthX.load(bundle, device="cpu", threads=1)):
        got = model.ask(img, QUESTION, p, sensor="optical", max_new_tokens=4)
        assert got.token_ids == want.token_ids
        assert got.masks_array().shape == ref_masks.shape
        for a, b in zip(got.masks_array(), ref_masks, strict=True):
            assert iou(a, b) >= 0.99
        np.testing.assert_allclose(got.scores, want.iou.numpy(), atol=1e-3)


def test_exported_prompt_map_matches_the_reference_and_moves_only_inside(text_ckpt,
                                                                         text_bundle):
    """The exported decoder's prompt_masks input: its logits equal the torch decoder's for the
    same masks, move only inside the masks' union, and R = 0 runs (the zero map)."""
    import onnxruntime as ort

    from earthx_sdk.modeling.model import EarthXModel

    model = EarthXModel.load(text_ckpt)
    dec = model.mask_decoder
    sess = ort.InferenceSession(str(text_bundle / "mask_decoder.onnx"),
                                providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    s4, s8 = dec.size4, dec.size8
    side = model.cfg.prompt.mask_resolution
    feed = {"seg_hidden": torch.randn(1, 2, dec.llm_hidden, generator=g),
            "dense": torch.randn(1, dec.dense_dim, dec.grid, dec.grid, generator=g),
            "hires_s4": torch.randn(1, dec.hires_dims[0], s4, s4, generator=g),
            "hires_s8": torch.randn(1, dec.hires_dims[1], s8, s8, generator=g),
            "prompt_states": torch.randn(1, 2, dec.prompt_dim, generator=g),
            "text_hidden": torch.randn(1, 6, dec.text_width, generator=g)}
    masks = torch.zeros(1, 2, side, side)
    masks[0, 0, 2:9, 3:12] = 1.0
    masks[0, 1, 15:22, 14:20] = 1.0
    outs = []
    for m in (masks, torch.zeros_like(masks)):
        got = sess.run(None, {**{k: v.numpy() for k, v in feed.items()},
                              "prompt_masks": m.numpy()})[0]
        with torch.no_grad():
            want, _ = dec(feed["seg_hidden"], feed["dense"], [feed["hires_s4"], feed["hires_s8"]],
                          feed["prompt_states"], None, feed["text_hidden"], m)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
        outs.append(got)
    union = masks[0].amax(0).numpy() > 0  # side == s4 at the tiny preset
    assert side == s4
    diff = np.abs(outs[0] - outs[1])[0]  # [Q, s4, s4]
    assert diff[:, ~union].max() == 0 and diff[:, union].min() > 0
    empty = {**{k: v.numpy() for k, v in feed.items()},
             "prompt_states": np.zeros((1, 0, dec.prompt_dim), np.float32),
             "prompt_masks": np.zeros((1, 0, side, side), np.float32)}
    got = sess.run(None, empty)[0]
    with torch.no_grad():
        want, _ = dec(feed["seg_hidden"], feed["dense"], [feed["hires_s4"], feed["hires_s8"]],
                      None, None, feed["text_hidden"])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)


def test_text_states_move_the_mask(text_ckpt):
    """Same image and <seg> state, other question words: other mask logits (the text path is
    live), while a decoder without it would give identical ones for an identical <seg> state."""
    from earthx_sdk.modeling.model import EarthXModel

    model = EarthXModel.load(text_ckpt)
    img = images()["optical"]
    outs = []
    for q in ("Please segment all ships.", "Please segment the tree on the left."):
        enc = model.processor.encode(img, "optical", q, answer="<seg>",
                                     target_masks=[np.zeros(img.shape[:2], bool)])
        with torch.no_grad():
            vis, embeds, states = model._prepare([enc])
            last = model.llm(inputs_embeds=embeds[0][None],
                             output_hidden_states=True).hidden_states[-1][0]
            text = model._text_states(last, enc, with_labels=True)
            seg = torch.ones(1, 1, last.shape[-1])  # the same <seg> state for both questions
            logits, _ = model.decode_masks(vis[0], seg, states[0], text)
        outs.append(logits)
    assert (outs[0] - outs[1]).abs().max() > 1e-4


def test_text_states_carry_each_tokens_embedding_after_its_state(text_ckpt):
    from earthx_sdk.modeling.model import EarthXModel
    from earthx_sdk.processor import text_positions

    model = EarthXModel.load(text_ckpt)
    enc = model.processor.encode(images()["optical"], "optical", "Please segment all ships.")
    tok = model.tokenizer
    pos = text_positions(enc.input_ids, None, tok.image_id, tok.region_id)
    last = torch.randn(len(enc.input_ids), model.cfg.llm.hidden)
    with torch.no_grad():
        text = model._text_states(last, enc, with_labels=False)[0]
        emb = model.llm.get_input_embeddings()(torch.from_numpy(enc.input_ids[pos]))
    assert text.shape == (len(pos), 2 * model.cfg.llm.hidden)
    torch.testing.assert_close(text[:, : model.cfg.llm.hidden], last[torch.from_numpy(pos)])
    torch.testing.assert_close(text[:, model.cfg.llm.hidden:], emb)
