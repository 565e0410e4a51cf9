import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from earthx_sdk.modeling.config import SENSORS, EarthXConfig  # noqa: E402
from earthx_sdk.modeling.vision import UNUSED_PREFIXES, VisionEncoder  # noqa: E402

TINY = EarthXConfig.from_name("tiny").vision
LLM_HIDDEN = 48


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return VisionEncoder(TINY, LLM_HIDDEN).eval()


def _images(c, b=2, size=TINY.image_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, size, size, generator=g)


CASES = [("optical", 3), ("sar", 1), ("sar", 2), ("infrared", 1),
         ("multispectral", TINY.multispectral_bands)]


@pytest.mark.parametrize("sensor,channels", CASES)
def test_shapes_per_sensor(encoder, sensor, channels):
    s, g, p = TINY.image_size, TINY.grid, TINY.token_pool
    c1, c2 = TINY.convnext_dims[:2]
    dv = TINY.vit_hidden
    with torch.no_grad():
        out = encoder(_images(channels), sensor)
    assert encoder.num_tokens == (g // p) ** 2
    assert out.tokens.shape == (2, encoder.num_tokens, LLM_HIDDEN)
    assert out.image_tokens.shape == (2, g * g, dv)
    assert out.dense.shape == (2, dv, g, g)
    assert [tuple(f.shape) for f in out.features] == [
        (2, c1, s // 4, s // 4), (2, c2, s // 8, s // 8), (2, dv, g, g)]
    assert [tuple(f.shape) for f in out.hires] == [(2, c1, s // 4, s // 4), (2, c2, s // 8, s // 8)]
    assert encoder.feature_dims == [f.shape[1] for f in out.features]
    assert encoder.hires_dims == [f.shape[1] for f in out.hires]
    assert encoder.dense_dim == dv
    # image_tokens and dense are the same fused features, in two layouts.
    assert torch.equal(out.dense.flatten(2).transpose(1, 2), out.image_tokens)
    assert all(torch.isfinite(t).all() for t in [out.tokens, out.dense, *out.hires])


def test_sensor_embedding_changes_output(encoder):
    x = _images(1)
    with torch.no_grad():
        sar = encoder(x, "sar").dense
        ir = encoder(x, "infrared").dense
    # Same stem, same experts: the difference is exactly the two sensors' embeddings.
    emb = encoder.sensor_embed.weight
    diff = (emb[SENSORS.index("sar")] - emb[SENSORS.index("infrared")]).view(1, -1, 1, 1)
    torch.testing.assert_close(sar - ir, diff.expand_as(sar), rtol=0, atol=1e-5)
    assert not torch.equal(sar, ir)


def test_stem_initialization(encoder):
    x = _images(3, b=1)
    assert torch.equal(encoder.stems["3"](x), x)
    one = _images(1, b=1)
    assert torch.equal(encoder.stems["1"](one), one.expand(-1, 3, -1, -1))
    ms = _images(TINY.multispectral_bands, b=1)
    mean = ms.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    torch.testing.assert_close(encoder.stems[str(TINY.multispectral_bands)](ms), mean)


@pytest.mark.parametrize("sensor,channels", [("optical", 1), ("optical", 4), ("sar", 3),
                                              ("infrared", 2), ("multispectral", 3)])
def test_wrong_channel_count_raises(encoder, sensor, channels):
    with pytest.raises(ValueError, match=rf"{sensor}.*channels.*got {channels}"):
        encoder(_images(channels, b=1), sensor)


def test_wrong_image_size_raises(encoder):
    with pytest.raises(ValueError, match=r"112 x 112.*got 126 x 126"):
        encoder(_images(3, b=1, size=126), "optical")
    with pytest.raises(ValueError, match=r"\[B, C, S, S\]"):
        encoder(_images(3, b=1)[0], "optical")


def test_bad_sensor_and_dtype_raise(encoder):
    with pytest.raises(ValueError, match=r"sensor must be one of.*'radar'"):
        encoder(_images(3, b=1), "radar")
    with pytest.raises(TypeError, match=r"floating-point.*torch.uint8"):
        encoder(torch.zeros(1, 3, 112, 112, dtype=torch.uint8), "optical")


def test_token_pool_must_divide_grid():
    with pytest.raises(ValueError, match=r"token_pool must divide the ViT grid 8.*got 3"):
        VisionEncoder(dataclasses.replace(TINY, token_pool=3), LLM_HIDDEN)
    with pytest.raises(ValueError, match=r"image_size must be divisible"):
        VisionEncoder(dataclasses.replace(TINY, image_size=120), LLM_HIDDEN)


def _guard_interpolate(monkeypatch):
    """Records the mode of every F.interpolate call; anything but bilinear raises."""
    modes = []
    real = torch.nn.functional.interpolate

    def guarded(*args, **kwargs):
        modes.append(kwargs.get("mode"))
        if kwargs.get("mode") != "bilinear":
            raise AssertionError(f"interpolate(mode={kwargs.get('mode')!r}) ran in forward")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "interpolate", guarded)
    return modes


@pytest.fixture
def interpolate_modes(monkeypatch):
    return _guard_interpolate(monkeypatch)


def test_no_interpolation_of_position_table_at_forward(encoder, interpolate_modes):
    with torch.no_grad():
        encoder(_images(3, b=1), "optical")
    assert interpolate_modes == ["bilinear"]  # only the ConvNeXt stage-3 resize
    table = encoder.vit.embeddings.position_embeddings
    assert table.shape == (1, 1 + TINY.grid ** 2, TINY.vit_hidden)


def test_interpolation_guard_catches_a_mismatched_table(interpolate_modes):
    # Negative control: a ViT whose table does not match the grid interpolates (bicubic) in
    # forward, and the guard above sees it.
    torch.manual_seed(0)
    enc = VisionEncoder(TINY, LLM_HIDDEN).eval()
    emb = enc.vit.embeddings
    emb.position_embeddings = torch.nn.Parameter(torch.zeros(1, 1 + 4 * 4, TINY.vit_hidden))
    with pytest.raises(AssertionError, match="bicubic"), torch.no_grad():
        enc(_images(3, b=1), "optical")


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    enc = VisionEncoder(TINY, LLM_HIDDEN)
    loss = 0.0
    for i, (sensor, channels) in enumerate(CASES):
        out = enc(_images(channels, b=1, seed=i), sensor)
        loss = loss + out.tokens.square().mean() + sum(f.square().mean() for f in out.features)
    loss.backward()
    missing = [n for n, p in enc.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    frozen = [n for n, p in enc.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(UNUSED_PREFIXES) for n in frozen)


def test_bfloat16_model_takes_float32_images():
    torch.manual_seed(0)
    enc = VisionEncoder(TINY, LLM_HIDDEN).eval().to(torch.bfloat16)
    with torch.no_grad():
        out = enc(_images(TINY.multispectral_bands, b=1), "multispectral")
    assert out.tokens.dtype == torch.bfloat16 and out.dense.dtype == torch.bfloat16
    assert torch.isfinite(out.tokens.float()).all()


def test_convnext_v2_shapes():
    torch.manual_seed(0)
    enc = VisionEncoder(dataclasses.replace(TINY, convnext_v2=True), LLM_HIDDEN).eval()
    assert type(enc.convnext).__name__ == "ConvNextV2Model"
    with torch.no_grad():
        out = enc(_images(2, b=1), "sar")
    assert out.tokens.shape == (1, enc.num_tokens, LLM_HIDDEN)
    assert out.hires[1].shape == (1, TINY.convnext_dims[1], 14, 14)


def test_base_parameter_counts_on_meta():
    base = EarthXConfig.from_name("base").vision
    with torch.device("meta"):
        enc = VisionEncoder(base, 1536)
    counts = enc.parameter_counts()
    assert set(counts) == {"vit", "convnext", "stems+fusion+projector"}
    assert abs(counts["vit"] - 304e6) / 304e6 < 0.02, counts
    assert abs(counts["convnext"] - 198e6) / 198e6 < 0.02, counts
    assert 0 < counts["stems+fusion+projector"] < 20e6, counts
    assert enc.num_tokens == 256 and enc.grid == 32


def _save_tiny_experts(tmp_path, vit_image_size):
    from transformers import ConvNextConfig, ConvNextModel, Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    vit = Dinov2Model(Dinov2Config(
        hidden_size=TINY.vit_hidden, num_hidden_layers=TINY.vit_layers,
        num_attention_heads=TINY.vit_heads, mlp_ratio=TINY.vit_mlp // TINY.vit_hidden,
        image_size=vit_image_size, patch_size=TINY.vit_patch)).eval()
    conv = ConvNextModel(ConvNextConfig(hidden_sizes=list(TINY.convnext_dims),
                                        depths=list(TINY.convnext_depths))).eval()
    # Non-trivial layer scales, so that the blocks matter in the comparison.
    with torch.no_grad():
        for name, p in conv.named_parameters():
            if "layer_scale" in name:
                p.fill_(0.5)
    vit.save_pretrained(tmp_path / "vit")
    conv.save_pretrained(tmp_path / "convnext")
    cfg = dataclasses.replace(TINY, vit_path=str(tmp_path / "vit"),
                              convnext_path=str(tmp_path / "convnext"))
    return vit, conv, cfg


def test_pretrained_experts_are_bit_identical(tmp_path):
    vit, conv, cfg = _save_tiny_experts(tmp_path, TINY.image_size)
    enc = VisionEncoder(cfg, LLM_HIDDEN).eval()
    x = _images(3, b=2, seed=5)
    with torch.no_grad():
        ref_tokens = vit(pixel_values=x).last_hidden_state[:, 1:]
        ref_stages = conv(pixel_values=x, output_hidden_states=True).hidden_states[1:4]
        tokens, stages = enc.expert_features(enc.stems["3"](x))
        out = enc(x, "optical")
    assert torch.equal(tokens, ref_tokens)
    assert len(stages) == 3
    assert all(torch.equal(a, b) for a, b in zip(stages, ref_stages, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(out.hires, ref_stages[:2], strict=True))
    assert torch.equal(enc.vit.embeddings.position_embeddings, vit.embeddings.position_embeddings)


def test_pretrained_vit_with_other_image_size_is_resampled(tmp_path, monkeypatch):
    vit, _, cfg = _save_tiny_experts(tmp_path, 224)  # a 16 x 16 table for an 8 x 8 grid
    assert vit.embeddings.position_embeddings.shape[1] == 1 + 16 * 16
    enc = VisionEncoder(cfg, LLM_HIDDEN).eval()
    modes = _guard_interpolate(monkeypatch)  # guard only the forward, not the build
    table = enc.vit.embeddings.position_embeddings
    assert table.shape == (1, 1 + TINY.grid ** 2, TINY.vit_hidden)
    assert torch.equal(table[:, 0], vit.embeddings.position_embeddings[:, 0])  # CLS kept
    assert enc.vit.config.image_size == TINY.image_size
    with torch.no_grad():
        out = enc(_images(3, b=1), "optical")
    assert modes == ["bilinear"]
    assert out.tokens.shape == (1, enc.num_tokens, LLM_HIDDEN)
    assert torch.isfinite(out.dense).all()


def test_pretrained_size_mismatch_raises(tmp_path):
    _, _, cfg = _save_tiny_experts(tmp_path, TINY.image_size)
    with pytest.raises(ValueError, match=r"convnext_path.*must match the config"):
        VisionEncoder(dataclasses.replace(cfg, convnext_dims=(16, 32, 64, 96)), LLM_HIDDEN)
    with pytest.raises(ValueError, match=r"vit_path.*must match the config"):
        VisionEncoder(dataclasses.replace(cfg, vit_layers=3), LLM_HIDDEN)
