"""EarthXModel on the tiny preset: losses and gradients, decoding, persistence, bad input."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from earthx_sdk.modeling.config import EarthXConfig  # noqa: E402
from earthx_sdk.modeling.model import EarthXModel  # noqa: E402
from earthx_sdk.prompts import Box, Point, Polygon, Scribble  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EarthXModel(EarthXConfig.from_name("tiny"))


def _images(rng):
    optical = rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)
    sar = rng.gamma(1.0, 0.1, (80, 80)).astype(np.float32)  # amplitude, single-pol
    dual = rng.gamma(1.0, 0.1, (80, 80, 2)).astype(np.float32)  # dual-pol
    thermal = rng.integers(8000, 12000, (100, 90), dtype=np.uint16)
    ms = rng.integers(0, 4000, (64, 64, 4), dtype=np.uint16)
    return optical, sar, dual, thermal, ms


def mixed_batch(model, rng):
    optical, sar, dual, thermal, ms = _images(rng)
    seg_target = np.zeros(thermal.shape, bool)
    seg_target[20:60, 30:70] = True
    enc = model.processor.encode
    return [
        enc(optical, "optical", "Describe the image.", "a few buildings next to a road."),
        enc(sar, "sar", "What is in <region>?", "a ship.", prompts=[Box(10, 12, 40, 30)]),
        enc(thermal, "infrared", "Segment the warm roof in <region>.", "<seg>",
            prompts=[Polygon([(30, 20), (70, 20), (70, 60), (30, 60)])],
            target_masks=[seg_target]),
        enc(ms, "multispectral", "How many storage tanks are there?", "three."),
        enc(dual, "sar", "Classify <region>.", "water.", prompts=[Point(40, 40)]),
    ]


def test_mixed_batch_losses_are_finite_and_every_parameter_learns(model):
    rng = np.random.default_rng(0)
    model.train()
    model.zero_grad()
    losses = model(mixed_batch(model, rng))
    for k, v in losses.items():
        assert torch.isfinite(v), (k, v)
    assert losses["mask_loss"] > 0 and losses["lm_loss"] > 0
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and
               (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any())]
    assert not missing, f"parameters without a gradient: {missing}"


def test_kv_cache_greedy_equals_full_recomputation(model):
    rng = np.random.default_rng(1)
    optical, sar, *_ = _images(rng)
    model.eval()
    for img, sensor, q, prompts in ((optical, "optical", "Describe the image.", []),
                                    (sar, "sar", "What is <region>?", [Box(5, 5, 30, 30)])):
        s = model.processor.encode(img, sensor, q, prompts=prompts)
        a = model.generate(s, max_new_tokens=24, use_cache=True)
        b = model.generate(s, max_new_tokens=24, use_cache=False)
        assert a.token_ids == b.token_ids and len(a.token_ids) > 0
        assert a.mask_logits.shape[0] == a.token_ids.count(model.tokenizer.seg_id)


def test_sampling_is_seeded_and_checks_arguments(model):
    rng = np.random.default_rng(2)
    s = model.processor.encode(_images(rng)[0], "optical", "Describe the image.")
    g1 = model.generate(s, 8, temperature=1.0, generator=torch.Generator().manual_seed(3))
    g2 = model.generate(s, 8, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert g1.token_ids == g2.token_ids
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        model.generate(s, 0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate(s, 4, temperature=-1.0)


def test_save_and_load_round_trip(model, tmp_path):
    rng = np.random.default_rng(3)
    model.eval()
    batch = mixed_batch(model, rng)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    loaded = EarthXModel.load(tmp_path / "m")
    with torch.no_grad():
        a = model(batch)
        b = loaded(batch)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(FileNotFoundError, match="model.safetensors missing"):
        (tmp_path / "m" / "model.safetensors").unlink()
        EarthXModel.load(tmp_path / "m")


# --- bad input: one test per rule ----------------------------------------------------------------

def test_prompt_outside_the_image(model):
    img = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match=r"prompts\[0\]: box .* wholly outside the image of 60x50"):
        model.processor.encode(img, "optical", "What is <region>?", prompts=[Box(70, 0, 80, 10)])


def test_degenerate_polygon():
    with pytest.raises(ValueError, match="degenerate"):
        Polygon([(0, 0), (5, 5), (10, 10)])


def test_channel_count_that_does_not_fit_the_sensor(model):
    with pytest.raises(ValueError, match=r"sensor 'optical' expects 3 band\(s\), got .* 4"):
        model.processor.encode(np.zeros((20, 20, 4), np.uint8), "optical", "Describe.")
    s = model.processor.encode(np.zeros((20, 20, 3), np.float32), "sar", "Describe.")
    with pytest.raises(ValueError, match="sar"):
        model.generate(s, 2)


def test_more_region_placeholders_than_prompts(model):
    img = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match=r"2 <region> placeholder\(s\) but only 1 prompt"):
        model.processor.encode(img, "optical", "Compare <region> and <region>.",
                               prompts=[Scribble([(5, 5), (20, 20)])])


def test_seg_count_must_match_target_masks(model):
    img = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match=r"1 <seg> token\(s\) but 0 target mask"):
        model.processor.encode(img, "optical", "Segment the road.", "<seg>")


def test_model_from_pretrained_directories(tmp_path):
    """Tiny Dinov2 / ConvNext / Llama saved with save_pretrained: EarthXModel built from those
    paths runs the same experts (bit-identical) and the same LLM (same logits on the old
    vocabulary)."""
    import dataclasses

    from tests.modeling.test_llm import _pretrained_dir
    from tests.modeling.test_vision import _images as vision_images
    from tests.modeling.test_vision import _save_tiny_experts

    vit, conv, vcfg = _save_tiny_experts(tmp_path, EarthXConfig.from_name("tiny").vision.image_size)
    (tmp_path / "llm").mkdir()
    llm, _, vocab = _pretrained_dir(tmp_path / "llm", tie=True)
    base = EarthXConfig.from_name("tiny")
    cfg = dataclasses.replace(
        base, vision=vcfg,
        llm=dataclasses.replace(base.llm, llm_path=str(tmp_path / "llm"), hidden=64))
    model = EarthXModel(cfg).eval()
    x = vision_images(3, b=2, seed=7)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        tokens, stages = model.vision.expert_features(model.vision.stems["3"](x))
        assert torch.equal(tokens, vit(pixel_values=x).last_hidden_state[:, 1:])
        ref = conv(pixel_values=x, output_hidden_states=True).hidden_states[1:4]
        assert all(torch.equal(a, b) for a, b in zip(stages, ref, strict=True))
        ours = model.llm(input_ids=ids).logits[..., :vocab]
        torch.testing.assert_close(ours, llm(input_ids=ids).logits, rtol=0, atol=0)


def test_summary_counts_the_base_experts(capsys):
    from earthx_sdk.modeling import summary

    assert summary.main(["base", "--json"]) == 0
    import json

    counts = json.loads(capsys.readouterr().out)
    assert abs(counts["vision.vit"] / 304e6 - 1) < 0.02
    assert abs(counts["vision.convnext"] / 198e6 - 1) < 0.02
    assert 1e9 <= counts["llm"] <= 8e9
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_refine_model_trains_on_half_resolution_targets(tmp_path):
    """With MaskDecoderConfig.refine the processor's targets and the generated masks are S/2 on
    a side, the loss reaches the refiner, and save / load keeps the head."""
    import dataclasses

    cfg = EarthXConfig.from_name("tiny")
    cfg = dataclasses.replace(cfg, mask=dataclasses.replace(cfg.mask, refine=True))
    torch.manual_seed(0)
    m = EarthXModel(cfg)
    half = cfg.vision.image_size // 2
    assert m.processor.mask_grid == m.mask_decoder.out_size == half
    batch = mixed_batch(m, np.random.default_rng(0))
    seg = [s for s in batch if s.target_masks is not None]
    assert [s.target_masks.shape for s in seg] == [(1, half, half)]
    m.zero_grad()
    m(batch)["mask_loss"].backward()
    # its last convolution starts at zero, so only it gets a gradient on the first step
    assert m.mask_decoder.refiner.out.weight.grad.any()
    m.save(tmp_path / "ckpt")
    back = EarthXModel.load(tmp_path / "ckpt")
    assert back.mask_decoder.refine
    torch.testing.assert_close(back.mask_decoder.refiner.out.weight,
                               m.mask_decoder.refiner.out.weight)


def test_processor_mask_grid_is_checked(model):
    from earthx_sdk.processor import Processor

    p = model.processor
    with pytest.raises(ValueError, match=r"mask_grid must be in \[1, image_size 112\], got 0"):
        Processor(p.tokenizer, p.image_size, p.num_image_tokens, p.region_tokens,
                  p.mask_resolution, mask_grid=0)
    assert p.mask_grid == p.image_size // 4
