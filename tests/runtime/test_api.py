"""EarthX on the torch backend: the reference's answers, feature caching, streaming, chat,
segmentation, the trained phrasings, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble
from earthx_sdk.result import STAGES
from tests.runtime.cases import CASES, SENSOR_OF, images, run_case

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def imgs():
    return images()


def _reference(reference, img, sensor, text, prompts, n):
    s = reference.processor.encode(img, sensor, text, prompts=prompts)
    return reference.generate(s, max_new_tokens=n)


@pytest.mark.parametrize("name", ["opt_box", "opt_two_regions", "ms_scene", "ir_describe",
                                  "sar_describe"])
def test_torch_backend_reproduces_generate(torch_model, reference, imgs, name):
    """The shared decode loop on the torch backend = EarthXModel.generate: tokens, text and the
    mask of every <seg> (the model is seg-prone: optical answers are <seg>s)."""
    _, key, _, text, prompts, n = next(c for c in CASES if c[0] == name)
    img, sensor = imgs[key], SENSOR_OF[key]
    want = _reference(reference, img, sensor, text, prompts, n)
    got = torch_model.ask(img, text, prompts, sensor=sensor, max_new_tokens=n)
    assert got.token_ids == want.token_ids
    assert got.text == want.text
    assert len(got.masks) == want.mask_logits.shape[0]
    if got.masks:
        from earthx_sdk.ops.masks import postprocess_masks

        s = reference.processor.encode(img, sensor, text, prompts=prompts)
        info = s.info
        ref_masks = postprocess_masks(want.mask_logits.numpy(), info.size, info.resized_hw,
                                      info.orig_hw, 0.0)
        np.testing.assert_array_equal(got.masks_array(), ref_masks)
        np.testing.assert_allclose(got.scores, want.iou.numpy(), atol=1e-5)


def test_some_cases_answer_with_seg(torch_model, imgs):
    """The fixture model is seg-prone for some requests and not for others (else the parity
    tests would compare only one kind of answer)."""
    seg = torch_model.engine.tokenizer.seg_id
    kinds = set()
    for c in CASES:
        if c[2] == "ask":
            kinds.add(seg in run_case(torch_model, c, imgs)[0])
    assert kinds == {True, False}


def test_second_prompt_skips_vision(ort_model, imgs):
    img = imgs["optical"].copy()  # a fresh array: not in the cache yet
    img[0, 0] = 7
    first = ort_model.ask(img, "Describe this image.", sensor="optical", max_new_tokens=2)
    second = ort_model.ask(img, "What is in <region>?", [Box(3, 4, 20, 30)], sensor="optical",
                           max_new_tokens=2)
    assert first.timings["vision"].status == "ran" and first.timings["vision"].seconds > 0
    assert first.timings["vision"].calls == 1
    assert second.timings["vision"].status == "cached"
    assert second.timings["vision"].seconds == 0.0 and second.timings["vision"].calls == 0
    assert second.timings["fusion"].status == "ran"
    assert set(second.timings) == set(STAGES)
    assert second.timings["prefill"].backend.startswith("onnxruntime:")
    assert second.timings["fusion"].backend == "native:_C"


def test_predictor_set_image_once(torch_model, imgs):
    p = torch_model.predictor()
    p.set_image(imgs["infrared"], sensor="infrared")
    a = p.ask("Describe this image.", max_new_tokens=2)
    b = p.classify_region(Box(1, 1, 30, 30), max_new_tokens=2)
    assert a.timings["vision"].status == "cached"  # set_image ran it
    assert b.timings["vision"].status == "cached"
    assert a.sensor == "infrared" and a.image_hw == (60, 90)


def test_stream_yields_before_the_answer_is_complete(ort_model, imgs):
    calls = []
    llm = ort_model.engine.llm
    forward = llm.forward

    def counting(embeds, state):
        calls.append(embeds.shape[0])
        return forward(embeds, state)

    llm.forward = counting
    try:
        st = ort_model.stream(imgs["multispectral"], "What kind of scene is this?",
                              sensor="multispectral", max_new_tokens=6)
        it = iter(st)
        first = next(it)
        assert len(calls) == 1  # only the prefill has run when the first piece arrives
        assert st.result is None and len(st.token_ids) == 1
        rest = list(it)
    finally:
        llm.forward = forward
    assert len(calls) == 6  # prefill + 5 steps (the 6th token needs no forward)
    assert first + "".join(rest) == st.result.text
    assert len(st.result.token_ids) == 6


def test_stream_text_equals_ask(torch_model, imgs):
    st = torch_model.stream(imgs["optical"], "Describe this image.", sensor="optical",
                            max_new_tokens=3)
    pieces = list(st)
    r = torch_model.ask(imgs["optical"], "Describe this image.", sensor="optical",
                        max_new_tokens=3)
    assert "".join(pieces) == r.text == st.result.text
    assert st.result.token_ids == r.token_ids


def test_sampling_is_seeded(ort_model, imgs):
    args = dict(sensor="infrared", max_new_tokens=5, temperature=1.5)
    a = ort_model.ask(imgs["infrared"], "Describe this image.", seed=1, **args)
    b = ort_model.ask(imgs["infrared"], "Describe this image.", seed=1, **args)
    outs = {tuple(ort_model.ask(imgs["infrared"], "Describe this image.", seed=s,
                                **args).token_ids) for s in range(6)}
    assert a.token_ids == b.token_ids
    assert len(outs) > 1  # sampling explores


def test_chat_keeps_history_and_prompts(ort_model, imgs):
    img = imgs["optical"]
    chat = ort_model.chat(img, sensor="optical")
    r1 = chat.ask("What is in <region>?", [Box(10, 8, 50, 40)], max_new_tokens=2)
    r2 = chat.ask("Describe <region> too.", [Point(70, 50)], max_new_tokens=2)
    assert chat.history == [("What is in <region>?", r1.text), ("Describe <region> too.",
                                                                  r2.text)]
    assert "<seg>" in r1.text  # an earlier answer with masks is history like any other
    assert r2.timings["vision"].status == "cached"
    # the second turn is the whole conversation asked at once
    want = ort_model.ask(img, "Describe <region> too.", [Box(10, 8, 50, 40), Point(70, 50)],
                         sensor="optical", max_new_tokens=2,
                         history=[("What is in <region>?", r1.text)])
    assert r2.token_ids == want.token_ids and r2.masks == want.masks
    assert [g["kind"] for g in r2.regions] == ["box", "point"]
    chat.reset()
    assert chat.history == [] and chat.prompts == []


def test_segment_forms(torch_model, imgs):
    img = imgs["optical"]
    seg = torch_model.engine.tokenizer.seg_id
    a = torch_model.segment(img, "the ships", sensor="optical")
    assert a.token_ids == [seg] and a.text == "<seg>" and len(a.masks) == 1
    assert a.masks[0]["size"] == [72, 96] and isinstance(a.masks[0]["counts"], str)
    b = torch_model.segment(img, prompts=[Box(0, 0, 40, 40), Point(70, 50)], sensor="optical")
    assert len(b.masks) == 2 and len(b.scores) == 2
    assert [r["kind"] for r in b.regions] == ["box", "point"]
    c = torch_model.segment(img, prompts=[Box(0, 0, 40, 40)], sensor="optical")
    np.testing.assert_array_equal(c.mask(0), b.mask(0))  # one request per prompt
    with pytest.raises(ValueError, match="needs a referring text, prompts, or both"):
        torch_model.segment(img, sensor="optical")
    with pytest.raises(ValueError, match="must say where each prompt belongs"):
        torch_model.segment(img, "the ship", [Box(0, 0, 4, 4)], sensor="optical")


def test_mask_result_helpers(torch_model, imgs):
    r = torch_model.segment(imgs["optical"], prompts=[Box(0, 0, 60, 60)], sensor="optical")
    m = r.mask(0)
    assert m.dtype == np.uint8 and m.shape == (72, 96)
    with pytest.raises(IndexError, match="has 1 mask"):
        r.mask(3)
    gj = r.geojson()
    assert gj["crs"]["properties"]["name"] == "pixel"  # no georeference: pixel coordinates
    assert len(gj["features"]) == 1
    d = r.to_dict()
    import json

    assert json.loads(json.dumps(d))["masks"] == r.masks


def test_phrasing_is_trained():
    """Every question the runtime asks on its own is one of the training templates."""
    from earthx_sdk.runtime import phrasing
    from training.templates import PHRASINGS

    assert phrasing.REGION_CLASS in PHRASINGS["region_class"]
    assert phrasing.REGION_CAPTION in PHRASINGS["region_caption"]
    assert phrasing.PROMPT_SEG in PHRASINGS["prompt_seg"]
    assert phrasing.REFER_SEG in PHRASINGS["refer_seg"]
    assert phrasing.SEG_ANSWER in PHRASINGS["seg_answer"]


def test_classify_and_caption_use_the_phrasing(ort_model, reference, imgs):
    img, p = imgs["multispectral"], Mask(np.pad(np.ones((10, 10), bool), ((5, 65), (5, 49))))
    r = ort_model.classify_region(img, p, sensor="multispectral", max_new_tokens=2)
    want = _reference(reference, img, "multispectral", "What is the object in <region>?", [p], 2)
    assert r.token_ids == want.token_ids
    sc = Scribble(((3, 3), (30, 40)))
    r = ort_model.caption_region(img, sc, sensor="multispectral", max_new_tokens=2)
    want = ort_model.ask(img, "Describe the region <region>.", [sc], sensor="multispectral",
                         max_new_tokens=2)
    assert r.token_ids == want.token_ids


def _threads(model, imgs, n_threads=8, per_thread=25, cases=CASES):
    seq = [run_case(model.with_options(), c, imgs)[:2] for c in cases]
    model = model.with_options()  # an empty feature cache: the threads race to fill it
    out: dict = {}
    errors = []
    barrier = threading.Barrier(n_threads)

    def work(t):
        try:
            barrier.wait()
            for i in range(per_thread):
                k = (t * per_thread + i) % len(cases)
                out[(t, i)] = (k, run_case(model, cases[k], imgs)[:2])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert len(out) == n_threads * per_thread
    for k, (tokens, masks) in out.values():
        assert tokens == seq[k][0], cases[k][0]
        np.testing.assert_array_equal(masks, seq[k][1], err_msg=cases[k][0])


def test_threads_onnxruntime(ort_model, imgs):
    """8 threads x 25 requests on one loaded model = the sequential results, exactly."""
    _threads(ort_model, imgs)


def test_threads_torch(torch_model, imgs):
    """The torch backend too (fewer requests: it is the slow reference)."""
    cases = [c for c in CASES if c[0] in ("opt_box", "ms_scene", "ir_point_seg", "sar2_box_class")]
    _threads(torch_model, imgs, n_threads=8, per_thread=2, cases=cases)


def test_polygon_prompt_partly_outside_is_clipped(torch_model, imgs):
    r = torch_model.ask(imgs["optical"], "What is in <region>?",
                        [Polygon(((-20, -20), (40, -10), (30, 30)))], sensor="optical",
                        max_new_tokens=1)
    assert r.regions[0]["bbox"][:2] == [0.0, 0.0]


def test_stream_refuses_bad_input_at_the_call(ort_model, imgs):
    with pytest.raises(ValueError, match="wholly outside"):
        ort_model.stream(imgs["optical"], "What is in <region>?", [Box(300, 300, 400, 400)],
                         sensor="optical")


def test_mask_threshold_comes_from_the_model_unless_given(torch_model, imgs):
    """Options.mask_threshold=None takes the model's calibrated threshold (config
    mask.threshold, in ModelSpec); an explicit one wins; a bad one is refused by name."""
    import dataclasses

    from earthx_sdk import EarthX
    from earthx_sdk.predictor import Options, Predictor

    engine = torch_model.engine
    assert engine.spec.mask_threshold == 0.0  # the fixture's config: never calibrated
    assert torch_model.options.mask_threshold == 0.0
    low = dataclasses.replace(engine, spec=dataclasses.replace(engine.spec, mask_threshold=-1e9))
    everything = EarthX(low)
    assert everything.options.mask_threshold == -1e9
    assert Predictor(low).options.mask_threshold == -1e9
    assert EarthX(low, Options(mask_threshold=0.0)).options.mask_threshold == 0.0
    img, box = imgs["optical"], [Box(0, 0, 40, 40)]
    at_zero = EarthX(low, Options(mask_threshold=0.0)).segment(img, prompts=box,
                                                                sensor="optical")
    np.testing.assert_array_equal(at_zero.mask(0),
                                  torch_model.segment(img, prompts=box, sensor="optical").mask(0))
    # below every logit: the model's threshold paints the whole image
    assert everything.segment(img, prompts=box, sensor="optical").mask(0).all()
    with pytest.raises(ValueError, match="Options.mask_threshold: threshold must not be NaN"):
        Options(mask_threshold=float("nan"))
    with pytest.raises(TypeError, match="Options.mask_threshold: threshold must be a real"):
        Options(mask_threshold="low")


def test_model_spec_reads_the_threshold():
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.runtime.sessions import ModelSpec

    d = EarthXConfig.from_name("tiny").to_dict()
    assert ModelSpec.from_config(d, {}, {}).mask_threshold == 0.0
    d["mask"]["threshold"] = -3.5
    assert ModelSpec.from_config(d, {}, {}).mask_threshold == -3.5
    del d["mask"]["threshold"]  # a bundle exported before the field: 0.0
    assert ModelSpec.from_config(d, {}, {}).mask_threshold == 0.0


def test_torch_prompt_stage_adds_the_where_bins_term(tmp_path, imgs, monkeypatch):
    """The torch backend's prompt stage gives PromptEncoder's region tokens, the prompt-position
    embeddings of where_bins included (it once left them out: the LLM never saw the place)."""
    import dataclasses

    from earthx_sdk import EarthX
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    cfg = EarthXConfig.from_name("tiny")
    torch.manual_seed(0)
    model = EarthXModel(dataclasses.replace(cfg, prompt=dataclasses.replace(cfg.prompt,
                                                                            where_bins=3))).eval()
    with torch.no_grad():  # a term far larger than the rest, so leaving it out shows
        model.prompt_encoder.where_row.weight.normal_(std=3.0)
        model.prompt_encoder.where_col.weight.normal_(std=3.0)
    model.save(tmp_path / "m")
    m = EarthX.load(tmp_path / "m", backend="torch", device="cpu")
    seen = []
    run = m.engine.prompt.run

    def record(*args):
        seen.append(run(*args))
        return seen[-1]

    monkeypatch.setattr(m.engine.prompt, "run", record)
    text, prompts = "Describe the region <region>.", [Box(4, 60, 30, 100)]
    m.ask(imgs["optical"], text, prompts, sensor="optical", max_new_tokens=1)
    s = model.processor.encode(imgs["optical"], "optical", text, prompts=prompts)
    with torch.no_grad():
        want, _ = model.encode_prompts(model.encode_images([s])[0], s)
        where = model.prompt_encoder.where(torch.from_numpy(s.boxes)[None])[0]
    np.testing.assert_allclose(np.asarray(seen[0][0]), want.numpy(), atol=1e-4)
    assert float(where.abs().max()) > 1.0
