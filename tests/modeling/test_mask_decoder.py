"""MaskDecoder (the pixel perception module) at the `tiny` preset's sizes."""

import math

import pytest

torch = pytest.importorskip("torch")

from earthx_sdk.modeling.config import EarthXConfig  # noqa: E402
from earthx_sdk.modeling.mask_decoder import MaskDecoder, hires_sizes  # noqa: E402
from earthx_sdk.modeling.transformer import Attention, sincos_pe_2d  # noqa: E402

CFG = EarthXConfig.from_name("tiny")
LLM, DENSE, PROMPT, HIRES = CFG.llm.hidden, 64, CFG.prompt.dim, CFG.vision.convnext_dims[:2]
GRID, SIZE = CFG.vision.grid, CFG.vision.image_size  # 8, 112
S4, S8 = 28, 14


def make_decoder(seed=0):
    torch.manual_seed(seed)
    return MaskDecoder(CFG.mask, LLM, DENSE, PROMPT, HIRES, GRID, SIZE)


def make_inputs(b=2, q=3, r=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randn(b, q, LLM, generator=g)
    dense = torch.randn(b, DENSE, GRID, GRID, generator=g)
    hires = [torch.randn(b, HIRES[0], S4, S4, generator=g),
             torch.randn(b, HIRES[1], S8, S8, generator=g)]
    prompts = None if r is None else torch.randn(b, r, PROMPT, generator=g)
    return seg, dense, hires, prompts


def test_tiny_sizes_are_what_the_tests_assume():
    assert (LLM, PROMPT, tuple(HIRES), GRID, SIZE) == (128, 64, (16, 32), 8, 112)
    assert hires_sizes(SIZE) == (S4, S8)


@pytest.mark.parametrize("b,q,r", [(1, 1, 1), (2, 3, 4), (3, 7, 2)])
def test_shapes(b, q, r):
    dec = make_decoder()
    seg, dense, hires, prompts = make_inputs(b, q, r)
    valid = torch.ones(b, r, dtype=torch.bool)
    logits, iou = dec(seg, dense, hires, prompts, valid)
    assert logits.shape == (b, q, S4, S4)
    assert iou.shape == (b, q)
    assert torch.isfinite(logits).all() and torch.isfinite(iou).all()


@pytest.mark.parametrize("r", [None, 0, 3])
def test_no_seg_queries_gives_empty_outputs(r):
    dec = make_decoder()
    seg, dense, hires, prompts = make_inputs(2, 0, r)
    logits, iou = dec(seg, dense, hires, prompts)
    assert logits.shape == (2, 0, S4, S4)
    assert iou.shape == (2, 0)


def test_no_prompts_none_and_empty_agree():
    dec = make_decoder()
    seg, dense, hires, _ = make_inputs(2, 3, None)
    none = dec(seg, dense, hires, None, None)
    empty = dec(seg, dense, hires, torch.zeros(2, 0, PROMPT), torch.zeros(2, 0, dtype=torch.bool))
    for a, e in zip(none, empty, strict=True):
        torch.testing.assert_close(a, e)


def test_padding_prompts_are_ignored_but_valid_prompts_matter():
    dec = make_decoder()
    seg, dense, hires, prompts = make_inputs(2, 3, 2)
    ref = dec(seg, dense, hires, prompts)  # all valid

    # Two padding tokens with large random values, placed between and after the valid ones.
    pad = torch.randn(2, 2, PROMPT) * 100
    padded = torch.stack([pad[:, 0], prompts[:, 0], pad[:, 1], prompts[:, 1]], 1)  # [B, 4, P]
    valid = torch.tensor([[False, True, False, True]] * 2)
    out = dec(seg, dense, hires, padded, valid)
    for a, e in zip(out, ref, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)

    # The same prompts marked valid must change the result (the mask is what hides them).
    changed = dec(seg, dense, hires, padded, torch.ones(2, 4, dtype=torch.bool))
    assert (changed[0] - ref[0]).abs().max() > 1e-3


def test_queries_are_decoded_independently():
    dec = make_decoder()
    seg, dense, hires, prompts = make_inputs(2, 4, 3)
    logits, iou = dec(seg, dense, hires, prompts)
    one_logits, one_iou = dec(seg[:, 2:3], dense, hires, prompts)
    torch.testing.assert_close(one_logits[:, 0], logits[:, 2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_iou[:, 0], iou[:, 2], atol=1e-5, rtol=1e-5)
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 1e-3  # different <seg> states differ


def test_gradients_reach_every_parameter():
    dec = make_decoder()
    seg, dense, hires, prompts = make_inputs(2, 2, 3)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    logits, iou = dec(seg, dense, hires, prompts, valid)
    (logits.square().mean() + iou.square().mean()).backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    # The positional code is fixed and not part of the state dict.
    assert "image_pe" not in dec.state_dict()


def _bad(which):
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    valid = torch.ones(2, 4, dtype=torch.bool)
    args = {"seg_hidden": seg, "dense": dense, "hires": hires, "prompt_states": prompts,
            "prompt_valid": valid}
    if which == "seg_width":
        args["seg_hidden"] = torch.randn(2, 3, LLM + 1)
    elif which == "seg_rank":
        args["seg_hidden"] = torch.randn(3, LLM)
    elif which == "dense_grid":
        args["dense"] = torch.randn(2, DENSE, GRID * 2, GRID * 2)
    elif which == "dense_batch":
        args["dense"] = torch.randn(1, DENSE, GRID, GRID)
    elif which == "hires4_size":
        args["hires"] = [torch.randn(2, HIRES[0], S4 + 1, S4 + 1), hires[1]]
    elif which == "hires_swapped":
        args["hires"] = [hires[1], hires[0]]
    elif which == "prompt_width":
        args["prompt_states"] = torch.randn(2, 4, PROMPT + 2)
    elif which == "valid_len":
        args["prompt_valid"] = torch.ones(2, 5, dtype=torch.bool)
    elif which == "prompt_rank":
        args["prompt_states"] = torch.randn(2, PROMPT)
    elif which == "valid_without_states":
        args["prompt_states"] = None
    return args


@pytest.mark.parametrize("which,match", [
    ("seg_width", "seg_hidden must be"), ("seg_rank", "seg_hidden must be"),
    ("dense_grid", "dense must be"), ("dense_batch", "dense must be"),
    ("hires4_size", r"hires\[0\] must be"), ("hires_swapped", r"hires\[0\] must be"),
    ("prompt_width", "prompt_states must be"), ("prompt_rank", "prompt_states must be"),
    ("valid_len", "prompt_valid must be"),
    ("valid_without_states", "prompt_valid needs prompt_states"),
])
def test_bad_shapes_raise_value_error(which, match):
    with pytest.raises(ValueError, match=match):
        make_decoder()(**_bad(which))


def test_bad_types_raise_type_error():
    dec = make_decoder()
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    with pytest.raises(TypeError, match="hires must be a list"):
        dec(seg, dense, hires[0], prompts)
    with pytest.raises(TypeError, match="dense must be a torch.Tensor"):
        dec(seg, dense.numpy(), hires, prompts)
    with pytest.raises(TypeError, match="prompt_valid must be bool"):
        dec(seg, dense, hires, prompts, torch.ones(2, 4))


def test_constructor_rejects_bad_sizes():
    from earthx_sdk.modeling.config import MaskDecoderConfig
    with pytest.raises(ValueError, match="multiple of 8"):
        MaskDecoder(MaskDecoderConfig(dim=60, depth=1, heads=2, mlp=64), LLM, DENSE, PROMPT,
                    HIRES, GRID, SIZE)
    with pytest.raises(ValueError, match="heads must divide"):
        MaskDecoder(MaskDecoderConfig(dim=64, depth=1, heads=3, mlp=64), LLM, DENSE, PROMPT,
                    HIRES, GRID, SIZE)
    with pytest.raises(ValueError, match="heads must divide"):
        Attention(64, 5)


def test_sincos_pe_is_distinct_per_position():
    pe = sincos_pe_2d(64, GRID).flatten(1).T  # [g*g, 64]
    assert pe.shape == (GRID * GRID, 64)
    dist = torch.cdist(pe, pe) + torch.eye(GRID * GRID) * 1e3
    assert dist.min() > 0.1


@pytest.mark.parametrize("size", [112, 114, 118])
def test_hires_sizes_match_convnext(size):
    transformers = pytest.importorskip("transformers")
    conf = transformers.ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                       num_channels=3)
    model = transformers.ConvNextModel(conf).eval()
    with torch.no_grad():
        hs = model(torch.zeros(1, 3, size, size), output_hidden_states=True).hidden_states
    # hidden_states[0] is the stem output (stride 4), [1] stage 1 (stride 4), [2] stage 2 (stride 8)
    assert hires_sizes(size) == (hs[1].shape[-1], hs[2].shape[-1])


def test_overfits_a_disk():
    """200 Adam steps on BCE + Dice against one fixed disk reach IoU > 0.9."""
    dec = make_decoder(seed=3)
    seg, dense, hires, prompts = make_inputs(1, 1, 2, seed=4)
    yy, xx = torch.meshgrid(torch.arange(S4), torch.arange(S4), indexing="ij")
    target = (((yy - 12.5) ** 2 + (xx - 15.5) ** 2) < 7.5 ** 2).float()[None, None]  # [1,1,S4,S4]
    opt = torch.optim.Adam(dec.parameters(), lr=1e-3)
    iou = 0.0
    for step in range(200):
        logits, _ = dec(seg, dense, hires, prompts)
        prob = logits.sigmoid()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
        loss = bce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        pred = logits.detach() > 0
        iou = ((pred & (target > 0)).sum() / (pred | (target > 0)).sum()).item()
        if step % 25 == 0 or step == 199:
            print(f"step {step:3d} loss {loss.item():.4f} IoU {iou:.3f}")
    assert iou > 0.9


def test_exports_with_a_dynamic_number_of_queries():
    dec = make_decoder().eval()
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    valid = torch.tensor([[True, True, False, True], [True, False, False, False]])
    q = torch.export.Dim("Q", max=64)
    ep = torch.export.export(dec, (seg, dense, hires, prompts, valid),
                             dynamic_shapes=({1: q}, None, [None, None], None, None))
    seg5 = torch.randn(2, 5, LLM)
    for got, want in zip(ep.module()(seg5, dense, hires, prompts, valid),
                         dec(seg5, dense, hires, prompts, valid), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _variant(seed=0, **fields):
    """A decoder at the tiny sizes with MaskDecoderConfig `fields` set."""
    import dataclasses

    torch.manual_seed(seed)
    return MaskDecoder(dataclasses.replace(CFG.mask, **fields), LLM, DENSE, PROMPT, HIRES, GRID,
                       SIZE)


def _text_decoder(seed=0):
    return _variant(seed, text_tokens=True)


def test_text_tokens_need_text_states_and_others_refuse_them():
    seg, dense, hires, prompts = make_inputs(1, 2, 3)
    with pytest.raises(ValueError, match="text_states .* is required"):
        _text_decoder()(seg, dense, hires, prompts)
    with pytest.raises(ValueError, match="built without cfg.text_tokens"):
        make_decoder()(seg, dense, hires, prompts, None, torch.randn(1, 5, LLM))
    with pytest.raises(ValueError, match=r"text_states must be \[B, T >= 1"):
        _text_decoder()(seg, dense, hires, prompts, None, torch.randn(1, 0, LLM))
    with pytest.raises(ValueError, match="text_states must be"):
        _text_decoder()(seg, dense, hires, prompts, None, torch.randn(1, 5, LLM + 1))


def test_text_tokens_shapes_and_gradients():
    dec = _text_decoder()
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    text = torch.randn(2, 7, LLM, requires_grad=True)
    valid = torch.ones(2, 4, dtype=torch.bool)
    logits, iou = dec(seg, dense, hires, prompts, valid, text)
    assert logits.shape == (2, 3, S4, S4) and iou.shape == (2, 3)
    (logits.sum() + iou.sum()).backward()
    assert text.grad is not None and text.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in dec.text_proj.parameters())


def test_position_basis_spans_the_quadratics_of_the_position():
    from earthx_sdk.modeling.mask_decoder import position_basis

    basis = position_basis(4)
    assert basis.shape == (6, 4, 4) and basis.dtype == torch.float32
    t = torch.tensor([-0.75, -0.25, 0.25, 0.75])  # pixel centres over [-1, 1]
    torch.testing.assert_close(basis[0], torch.ones(4, 4))
    torch.testing.assert_close(basis[1], t[None].expand(4, 4))  # u: the column
    torch.testing.assert_close(basis[2], t[:, None].expand(4, 4))  # v: the row
    torch.testing.assert_close(basis[4], t[:, None] * t[None])
    # A Gaussian log-bump centred at the top-left pixel is one weighted sum of the channels.
    u0, v0 = -0.75, -0.75
    bump = -((basis[1] - u0) ** 2 + (basis[2] - v0) ** 2)
    w = torch.tensor([-(u0 * u0 + v0 * v0), 2 * u0, 2 * v0, -1.0, 0.0, -1.0])
    torch.testing.assert_close((w[:, None, None] * basis).sum(0), bump)
    assert (w[:, None, None] * basis).sum(0).argmax() == 0
    with pytest.raises(ValueError, match="size must be >= 1"):
        position_basis(0)


def test_position_prior_keeps_the_interface_and_moves_the_mask_by_position():
    dec = _variant(position_prior=True)
    assert not any("position_basis" in k for k in dec.state_dict())  # rebuilt, never saved
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    logits, iou = dec(seg, dense, hires, prompts)
    assert logits.shape == (2, 3, S4, S4) and iou.shape == (2, 3)
    # the hypernetwork's last six weights multiply the basis: a bias on the u channel alone tilts
    # every mask from left to right by the same amount
    last = dec.hyper_mlp.layers[-1]
    with torch.no_grad():
        last.bias[-5] += 1.0  # the u channel
        tilted, _ = dec(seg, dense, hires, prompts)
    diff = tilted - logits  # [B, Q, S4, S4]: equal to u on every query
    u = dec.position_basis[1]
    torch.testing.assert_close(diff, u.expand_as(diff), atol=1e-5, rtol=1e-5)
    logits.sum().backward()
    assert last.weight.grad[-6:].abs().sum() > 0


def test_text_embeddings_need_text_tokens_and_twice_the_width():
    with pytest.raises(ValueError, match="text_embeddings needs cfg.text_tokens"):
        _variant(text_embeddings=True)
    dec = _variant(text_tokens=True, text_embeddings=True)
    assert dec.text_width == 2 * LLM
    seg, dense, hires, prompts = make_inputs(1, 2, 3)
    with pytest.raises(ValueError, match=rf"text_states must be \[B, T, text_width\] = "
                                         rf"\[1, 5, {2 * LLM}\]"):
        dec(seg, dense, hires, prompts, None, torch.randn(1, 5, LLM))
    with pytest.raises(ValueError, match=rf"text_states \[B, T, {2 * LLM}\] is required"):
        dec(seg, dense, hires, prompts)


def test_text_embeddings_half_moves_the_mask_and_trains():
    """Equal last-layer states, other token embeddings: other masks (the tiny LLM's states at
    " top" and " bottom" were nearly equal, so the embedding half is what names the word)."""
    dec = _variant(text_tokens=True, text_embeddings=True)
    seg, dense, hires, prompts = make_inputs(1, 2, 3)
    states = torch.randn(1, 6, LLM)
    a = torch.cat([states, torch.randn(1, 6, LLM)], -1)
    b = torch.cat([states, torch.randn(1, 6, LLM)], -1).requires_grad_()
    la, _ = dec(seg, dense, hires, prompts, None, a)
    lb, _ = dec(seg, dense, hires, prompts, None, b)
    assert (la - lb).abs().max() > 1e-3
    lb.sum().backward()
    assert b.grad[..., LLM:].abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.embed_proj.parameters())


def test_position_prior_with_text_adds_each_words_term():
    """With text tokens, each token's text_prior term is summed into the prior's weights: a word
    whose term is a u weight of 1 tilts the mask by u once per occurrence, on every query."""
    dec = _variant(text_tokens=True, text_embeddings=True, position_prior=True)
    head = dec.text_prior[1]
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0  # starts neutral
    seg, dense, hires, prompts = make_inputs(1, 2, 3)
    text = torch.randn(1, 5, 2 * LLM)
    logits, _ = dec(seg, dense, hires, prompts, None, text)
    with torch.no_grad():
        head.bias[1] = 1.0  # every token adds 1 to the u weight
        tilted, _ = dec(seg, dense, hires, prompts, None, text)
    u = dec.position_basis[1]
    torch.testing.assert_close(tilted - logits, 5 * u.expand_as(logits), atol=1e-4, rtol=1e-4)
    again, _ = dec(seg, dense, hires, prompts, None, text)
    again.sum().backward()
    assert head.weight.grad.abs().sum() > 0


def test_cell_basis_has_one_bump_per_ninth():
    from earthx_sdk.modeling.mask_decoder import CELL_GAIN, cell_basis

    side = 27  # ninths of 9 x 9 pixels, each centred on a pixel centre
    cells = cell_basis(side)
    assert cells.shape == (9, side, side) and cells.dtype == torch.float32
    for k in range(9):
        row, col = divmod(k, 3)
        peak = divmod(int(cells[k].argmax()), side)
        assert (peak[0] // 9, peak[1] // 9) == (row, col)
        # near CELL_GAIN at the ninth's centre, exp(-2) of it at the neighbouring centres
        assert cells[k, row * 9 + 4, col * 9 + 4] == pytest.approx(CELL_GAIN)
        if col < 2:
            assert cells[k, row * 9 + 4, col * 9 + 13] == pytest.approx(
                CELL_GAIN * math.exp(-2))
    torch.testing.assert_close(cells[0], cells[8].flip(0, 1))  # symmetric layout
    with pytest.raises(ValueError, match="cell_basis: size must be >= 1, got 0"):
        cell_basis(0)


def test_position_cells_extend_the_prior_and_need_it():
    with pytest.raises(ValueError, match="position_cells needs cfg.position_prior"):
        _variant(position_cells=True)
    dec = _variant(text_tokens=True, text_embeddings=True, position_prior=True,
                   position_cells=True, prompt_map=True)
    assert dec.n_basis == 15 and dec.position_basis.shape == (15, S4, S4)
    assert dec.text_prior[1].out_features == 15
    assert not any("position_basis" in k for k in dec.state_dict())
    seg, dense, hires, prompts = make_inputs(1, 2, 3)
    text = torch.randn(1, 5, 2 * LLM)
    logits, _ = dec(seg, dense, hires, prompts, None, text)
    assert logits.shape == (1, 2, S4, S4)
    with torch.no_grad():
        dec.text_prior[1].bias[6 + 4] = 1.0  # every token adds 1 to the centre ninth's weight
        lifted, _ = dec(seg, dense, hires, prompts, None, text)
    centre = dec.position_basis[6 + 4]
    torch.testing.assert_close(lifted - logits, 5 * centre.expand_as(logits), atol=1e-4,
                               rtol=1e-4)
    again, _ = dec(seg, dense, hires, prompts, None, text)
    again.sum().backward()
    assert dec.text_prior[1].weight.grad[6:].abs().sum() > 0


def _disk_masks(b, r, side=S4, seed=3):
    """[B, R, side, side] float masks: one disk per prompt at a random centre."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    c = torch.rand(b, r, 2, generator=g) * side
    d2 = (xx - c[..., 0, None, None]) ** 2 + (yy - c[..., 1, None, None]) ** 2
    return (d2 < (side / 6) ** 2).float()


def test_prompt_map_adds_the_union_of_the_prompt_masks_times_its_weight():
    """With cfg.prompt_map the prompts' region masks reach the logits only through one channel:
    the logits move by (the map channel's weight) x GAIN x (union of the valid masks), per query;
    no masks, or masks of padding prompts only, give the zero map."""
    from earthx_sdk.modeling.mask_decoder import PROMPT_MAP_GAIN

    dec = _variant(text_tokens=True, text_embeddings=True, position_prior=True, prompt_map=True)
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    text = torch.randn(2, 5, 2 * LLM)
    masks = _disk_masks(2, 4)
    base, iou0 = dec(seg, dense, hires, prompts, None, text)
    got, iou1 = dec(seg, dense, hires, prompts, None, text, masks)
    torch.testing.assert_close(iou1, iou0)  # the map feeds the mask logits only
    last = dec.hyper_mlp.layers[-1]
    union = masks.sum(1).clamp(max=1)  # [B, S4, S4]
    diff = got - base  # [B, Q, S4, S4]: w_q x GAIN x union_b
    for b in range(2):  # each image's logits move inside its own union only
        assert torch.all(diff[b][:, union[b] == 0] == 0)
        assert diff[b][:, union[b] > 0].abs().min() > 0
    # one more unit of the map channel's bias adds GAIN x union to every query's logits
    with torch.no_grad():
        last.bias[-1] += 1.0
        shifted, _ = dec(seg, dense, hires, prompts, None, text, masks)
    torch.testing.assert_close(shifted - got, PROMPT_MAP_GAIN * union[:, None].expand_as(got),
                               atol=1e-4, rtol=1e-4)
    # padding prompts' masks are ignored; no masks is the zero map
    valid = torch.tensor([[True, False, False, False], [False, False, False, False]])
    only0, _ = dec(seg, dense, hires, prompts, valid, text, masks)
    one = masks[:, :1].clone()
    one[1] = 0
    want, _ = dec(seg, dense, hires, prompts[:, :1], None, text, one)
    torch.testing.assert_close(only0[0], want[0], atol=1e-4, rtol=1e-4)
    none, _ = dec(seg, dense, hires, prompts, None, text)
    zero, _ = dec(seg, dense, hires, prompts, None, text, torch.zeros_like(masks))
    torch.testing.assert_close(none, zero)
    # the word prior still lands on the six position weights, not on the map's
    head = dec.text_prior[1]
    with torch.no_grad():
        head.bias[1] = 1.0
        tilted, _ = dec(seg, dense, hires, prompts, None, text, masks)
    u = dec.position_basis[1]
    torch.testing.assert_close(tilted - shifted, 5 * u.expand_as(got), atol=1e-4, rtol=1e-4)
    again, _ = dec(seg, dense, hires, prompts, None, text, masks)
    again.sum().backward()
    assert last.weight.grad[-1].abs().sum() > 0  # the map's weight trains


def test_prompt_map_resizes_masks_of_another_side():
    dec = _variant(prompt_map=True)
    seg, dense, hires, prompts = make_inputs(1, 2, 2)
    masks = _disk_masks(1, 2, side=2 * S4)
    small = torch.nn.functional.avg_pool2d(masks, 2)  # the same masks at the grid's side
    a, _ = dec(seg, dense, hires, prompts, None, None, masks)
    b, _ = dec(seg, dense, hires, prompts, None, None, small)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_prompt_masks_are_checked():
    seg, dense, hires, prompts = make_inputs(1, 2, 3)
    masks = _disk_masks(1, 3)
    with pytest.raises(ValueError, match="without cfg.prompt_map"):
        _variant()(seg, dense, hires, prompts, None, None, masks)
    dec = _variant(prompt_map=True)
    with pytest.raises(ValueError, match="prompt_masks needs prompt_states"):
        dec(seg, dense, hires, None, None, None, masks)
    with pytest.raises(ValueError, match=r"prompt_masks must be \[B, R, M, M\] = \[1, 3, 28, 28\]"):
        dec(seg, dense, hires, prompts, None, None, masks[:, :2])
    with pytest.raises(ValueError, match=r"prompt_masks must be \[B, R, M, M\], got"):
        dec(seg, dense, hires, prompts, None, None, masks[..., :20])
    with pytest.raises(TypeError, match="prompt_masks must be floating"):
        dec(seg, dense, hires, prompts, None, None, masks.bool())


def _stem(b=2, seed=5):
    return torch.randn(b, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_refine_starts_as_a_bilinear_upsampling_of_the_quarter_grid():
    """A decoder with cfg.refine gives S/2 masks; before training its residual is zero, so they
    are the S/4 logits of the same weights upsampled (what lets a trained model gain the head
    without changing its masks)."""
    plain, refined = _variant(0), _variant(0, refine=True)
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refiner.") for k in missing)
    seg, dense, hires, prompts = make_inputs(2, 3, 4)
    with torch.no_grad():
        coarse, iou0 = plain(seg, dense, hires, prompts)
        fine, iou1 = refined(seg, dense, hires + [_stem()], prompts)
    assert refined.out_size == SIZE // 2 and fine.shape == (2, 3, SIZE // 2, SIZE // 2)
    up = torch.nn.functional.interpolate(coarse, size=(SIZE // 2, SIZE // 2), mode="bilinear",
                                         align_corners=False)
    torch.testing.assert_close(fine, up)
    torch.testing.assert_close(iou1, iou0)


def test_refine_reads_the_stem_image_locally_and_trains():
    dec = _variant(0, refine=True)
    torch.nn.init.normal_(dec.refiner.out.weight, std=0.1)
    seg, dense, hires, prompts = make_inputs(1, 2, 2)
    stem = _stem(1)
    other = stem.clone()
    other[..., :16, :16] += 3.0  # the top-left 16 x 16 input pixels only
    with torch.no_grad():
        a, _ = dec(seg, dense, hires + [stem], prompts)
        b, _ = dec(seg, dense, hires + [other], prompts)
    diff = (a - b).abs()[0]  # [Q, S/2, S/2]
    # stride 2 and four 3 x 3 convolutions: the change reaches at most 8 + 4 cells
    assert diff[:, :8, :8].min() > 0 and diff[:, 13:, :].max() == 0 and diff[:, :, 13:].max() == 0
    logits, _ = dec(seg, dense, hires + [stem], prompts)
    logits.square().mean().backward()
    for name, p in dec.refiner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_refine_checks_its_stem_input():
    dec = _variant(0, refine=True)
    seg, dense, hires, prompts = make_inputs(2, 1, 1)
    with pytest.raises(TypeError, match=r"stem image\] \(cfg.refine\).*length 2"):
        dec(seg, dense, hires, prompts)
    with pytest.raises(ValueError, match=r"hires\[2\] must be \[B, 3, S, S\] \(stem\) = "
                                         r"\[2, 3, 112, 112\], got \[2, 3, 56, 56\]"):
        dec(seg, dense, hires + [torch.zeros(2, 3, 56, 56)], prompts)
    with pytest.raises(TypeError, match=r"length 3"):
        _variant(0)(seg, dense, hires + [_stem()], prompts)
    import dataclasses
    with pytest.raises(ValueError, match="even image_size, got 113"):
        MaskDecoder(dataclasses.replace(CFG.mask, refine=True), LLM, DENSE, PROMPT, HIRES, GRID,
                    113)
