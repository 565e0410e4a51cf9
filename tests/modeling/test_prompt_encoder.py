import dataclasses

import pytest

torch = pytest.importorskip("torch")

from earthx_sdk.modeling.config import EarthXConfig  # noqa: E402
from earthx_sdk.modeling.prompt_encoder import PROMPT_TYPES, PromptEncoder  # noqa: E402

CFG = EarthXConfig.from_name("tiny")
S = CFG.vision.image_size  # 112
DIMS = list(CFG.vision.convnext_dims[:3])  # [16, 32, 64]
SIDES = [S // 4, S // 8, S // 16]  # strides 4, 8, 16
T_DIM = CFG.vision.vit_hidden  # 64
HIDDEN = CFG.llm.hidden  # 128
M = CFG.prompt.mask_resolution  # 28


def _encoder(seed=0, **prompt_overrides):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(CFG.prompt, **prompt_overrides)
    return PromptEncoder(cfg, DIMS, T_DIM, HIDDEN, S).eval()


def _inputs(b=2, r=3, seed=0, t=16):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(b, c, s, s, generator=g) for c, s in zip(DIMS, SIDES, strict=True)]
    tokens = torch.randn(b, t, T_DIM, generator=g)
    xy0 = torch.rand(b, r, 2, generator=g) * (S - 20)
    boxes = torch.cat([xy0, xy0 + torch.rand(b, r, 2, generator=g) * 20 + 1], -1)  # [B, R, 4]
    masks = (torch.rand(b, r, M, M, generator=g) > 0.5).float()
    types = torch.randint(0, len(PROMPT_TYPES), (b, r), generator=g)
    valid = torch.ones(b, r, dtype=torch.bool)
    return feats, tokens, boxes, masks, types, valid


@pytest.mark.parametrize("b, r", [(1, 1), (2, 3), (2, 7)])
@pytest.mark.parametrize("region_tokens", [1, 3])
def test_shapes(b, r, region_tokens):
    enc = _encoder(region_tokens=region_tokens)
    region, states = enc(*_inputs(b, r))
    assert region.shape == (b, r, region_tokens, HIDDEN)
    assert states.shape == (b, r, CFG.prompt.dim)
    assert torch.isfinite(region).all() and torch.isfinite(states).all()


def test_zero_prompts():
    enc = _encoder()
    region, states = enc(*_inputs(2, 0))
    assert region.shape == (2, 0, CFG.prompt.region_tokens, HIDDEN)
    assert states.shape == (2, 0, CFG.prompt.dim)


def test_padding_prompts_do_not_change_valid_ones():
    enc = _encoder(region_tokens=2)
    feats, tokens, boxes, masks, types, valid = _inputs(2, 3)
    with torch.no_grad():
        region, states = enc(feats, tokens, boxes, masks, types, valid)
        # Two garbage padding prompts, one before and one after the valid ones.
        junk_box = torch.tensor([float("nan"), 1e9, -3.0, float("inf")]).expand(2, 1, 4)
        junk_mask = torch.full((2, 1, M, M), float("nan"))
        junk_type = torch.full((2, 1), 99)
        pad = torch.zeros(2, 1, dtype=torch.bool)
        region2, states2 = enc(feats, tokens, torch.cat([junk_box, boxes, junk_box], 1),
                               torch.cat([junk_mask, masks, junk_mask], 1),
                               torch.cat([junk_type, types, junk_type], 1),
                               torch.cat([pad, valid, pad], 1))
    torch.testing.assert_close(region2[:, 1:4], region, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(states2[:, 1:4], states, rtol=1e-5, atol=1e-6)
    assert torch.equal(region2[:, [0, 4]], torch.zeros_like(region2[:, [0, 4]]))
    assert torch.equal(states2[:, [0, 4]], torch.zeros_like(states2[:, [0, 4]]))


def test_an_image_with_only_padding_prompts_stays_finite():
    enc = _encoder()
    feats, tokens, boxes, masks, types, valid = _inputs(2, 2)
    valid[1] = False
    region, states = enc(feats, tokens, boxes, masks, types, valid)
    assert torch.isfinite(region).all()
    assert torch.equal(states[1], torch.zeros_like(states[1]))
    assert states[0].abs().sum() > 0


def test_prompts_see_each_other_and_the_image():
    # Self- and cross-attention are live: changing another prompt or the image tokens changes
    # a prompt's output.
    enc = _encoder()
    feats, tokens, boxes, masks, types, valid = _inputs(1, 2)
    with torch.no_grad():
        _, base = enc(feats, tokens, boxes, masks, types, valid)
        boxes2 = boxes.clone()
        boxes2[0, 1] = torch.tensor([0.0, 0.0, 100.0, 100.0])
        _, other = enc(feats, tokens, boxes2, masks, types, valid)
        _, image = enc(feats, tokens.roll(1, dims=-1), boxes, masks, types, valid)
    assert not torch.allclose(other[0, 0], base[0, 0])
    assert not torch.allclose(image[0, 0], base[0, 0])


def test_the_type_and_the_mask_matter():
    enc = _encoder()
    feats, tokens, boxes, masks, types, valid = _inputs(1, 1)
    with torch.no_grad():
        _, base = enc(feats, tokens, boxes, masks, types, valid)
        _, retyped = enc(feats, tokens, boxes, masks, (types + 1) % len(PROMPT_TYPES), valid)
        _, remasked = enc(feats, tokens, boxes, 1.0 - masks, types, valid)
    assert not torch.allclose(retyped, base)
    assert not torch.allclose(remasked, base)


def test_gradients_reach_all_parameters():
    enc = _encoder(region_tokens=2).train()
    region, states = enc(*_inputs(2, 3))
    (region.square().mean() + states.square().mean()).backward()
    missing = [n for n, p in enc.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_gradients_reach_the_features():
    enc = _encoder()
    feats, tokens, boxes, masks, types, valid = _inputs(1, 2)
    feats = [f.requires_grad_() for f in feats]
    region, _ = enc(feats, tokens, boxes, masks, types, valid)
    region.sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def _bad(name):
    feats, tokens, boxes, masks, types, valid = _inputs(2, 3)
    bad = {
        "features_count": dict(features=feats[:2]),
        "features_channels": dict(features=[feats[0], feats[1], feats[2][:, :5]]),
        "tokens_dim": dict(image_tokens=tokens[..., :10]),
        "tokens_batch": dict(image_tokens=tokens[:1]),
        "boxes_shape": dict(boxes=boxes[..., :3]),
        "boxes_batch": dict(boxes=boxes[:1]),
        "masks_res": dict(masks=masks[..., :10, :10]),
        "masks_r": dict(masks=masks[:, :2]),
        "types_shape": dict(types=types[:, :2]),
        "valid_shape": dict(valid=valid[:1]),
    }[name]
    args = dict(features=feats, image_tokens=tokens, boxes=boxes, masks=masks, types=types,
                valid=valid)
    args.update(bad)
    return args


@pytest.mark.parametrize("name", ["features_count", "features_channels", "tokens_dim",
                                  "tokens_batch", "boxes_shape", "boxes_batch", "masks_res",
                                  "masks_r", "types_shape", "valid_shape"])
def test_bad_shapes_raise(name):
    with pytest.raises(ValueError, match="must be"):
        _encoder()(**_bad(name))


def test_bad_dtypes_and_values_raise():
    enc = _encoder()
    feats, tokens, boxes, masks, types, valid = _inputs(1, 2)
    with pytest.raises(TypeError, match="valid must be a bool"):
        enc(feats, tokens, boxes, masks, types, valid.long())
    with pytest.raises(TypeError, match="types must be an integer"):
        enc(feats, tokens, boxes, masks, types.float(), valid)
    with pytest.raises(TypeError, match="masks must be floating"):
        enc(feats, tokens, boxes, masks.bool(), types, valid)
    with pytest.raises(ValueError, match=r"types of valid prompts.*got 7 at types\[0, 1\]"):
        enc(feats, tokens, boxes, masks, torch.tensor([[0, 7]]), valid)
    with pytest.raises(ValueError, match="boxes must be finite"):
        enc(feats, tokens, torch.full_like(boxes, float("nan")), masks, types, valid)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="divisible by cfg.heads"):
        PromptEncoder(dataclasses.replace(CFG.prompt, heads=3), DIMS, T_DIM, HIDDEN, S)
    with pytest.raises(ValueError, match="feature_dims"):
        PromptEncoder(CFG.prompt, [], T_DIM, HIDDEN, S)
    with pytest.raises(ValueError, match="llm_hidden"):
        PromptEncoder(CFG.prompt, DIMS, T_DIM, 0, S)


def test_where_bins_add_the_centres_row_and_column_embeddings():
    enc = _encoder(where_bins=4)  # bins of 28 px across the 112 px square
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0],  # centre (5, 5): bin (0, 0)
                           [100.0, 30.0, 112.0, 40.0],  # centre (106, 35): column 3, row 1
                           [56.0, 111.0, 56.0, 111.0],  # a point at (56, 111): column 2, row 3
                           [-50.0, 200.0, -10.0, 300.0]]])  # outside: clamped to (0, 3)
    want = [(0, 0), (3, 1), (2, 3), (0, 3)]
    got = enc.where(boxes)
    for k, (col, row) in enumerate(want):
        torch.testing.assert_close(got[0, k], enc.where_col.weight[col] + enc.where_row.weight[row])
    # the region tokens are the states' tokens plus that term; the states do not see it
    feats, tokens, _, masks, types, valid = _inputs(1, 4)
    plain = _encoder(where_bins=0)
    plain.load_state_dict({k: v for k, v in enc.state_dict().items()
                           if not k.startswith("where_")})
    with torch.no_grad():
        region, states = enc(feats, tokens, boxes, masks, types, valid)
        region0, states0 = plain(feats, tokens, boxes, masks, types, valid)
    torch.testing.assert_close(states, states0)
    torch.testing.assert_close(region, region0 + got[:, :, None, :].detach())
    # a padding prompt stays zero
    valid[0, 1] = False
    with torch.no_grad():
        region, _ = enc(feats, tokens, boxes, masks, types, valid)
    assert region[0, 1].abs().sum() == 0
    region, _ = enc(feats, tokens, boxes, masks, types, torch.ones(1, 4, dtype=torch.bool))
    region.sum().backward()
    assert enc.where_row.weight.grad[[0, 1, 3]].abs().sum() > 0
    assert enc.where_row.weight.grad[2].abs().sum() == 0  # no prompt in row 2
    with pytest.raises(ValueError, match="where_bins must be >= 0, got -1"):
        _encoder(where_bins=-1)
