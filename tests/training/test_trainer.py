import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from earthx_sdk.modeling.config import EarthXConfig  # noqa: E402
from earthx_sdk.modeling.model import EarthXModel  # noqa: E402
from earthx_sdk.prompts import Box  # noqa: E402
from training.trainer import (  # noqa: E402
    MixedSampler,
    TrainConfig,
    freeze,
    train,
    train_only,
)


def _sources():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    sar = rng.gamma(1.0, 0.1, (40, 40)).astype(np.float32)
    seg = np.zeros((48, 64), bool)
    seg[10:30, 20:40] = True
    return {
        "captions": [dict(image=img, sensor="optical", question="Describe the image.",
                          answer="a field.", task="caption")],
        "regions": [dict(image=sar, sensor="sar", question="What is <region>?", answer="a ship.",
                         prompts=[Box(5, 5, 20, 20)], task="region")],
        "seg": [dict(image=img, sensor="optical", question="Segment the roof.", answer="<seg>",
                     target_masks=[seg], task="seg")],
    }


def _model():
    torch.manual_seed(0)
    return EarthXModel(EarthXConfig.from_name("tiny"))


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _aux_sources():
    """_sources with dense class labels on the optical images (the SAR one has none)."""
    src = _sources()
    cmap = np.zeros((48, 64), np.int64)
    cmap[10:30, 20:40] = 1
    cmap[35:, :10] = 2
    for name in ("captions", "seg"):
        for s in src[name]:
            s["class_map"] = cmap
    return src


@pytest.mark.parametrize("aux", [False, True], ids=["plain", "aux-head"])
def test_resume_equals_an_uninterrupted_run(tmp_path, aux):
    cfg = TrainConfig(steps=4, batch_size=2, lr=1e-3, log_every=1, save_every=2, seed=3,
                      aux_classes=2 if aux else 0)
    sources = _aux_sources if aux else _sources
    a = _model()
    rows_a = train(a, sources(), cfg, tmp_path / "a", progress=False)
    if aux:
        assert all(r["aux_loss"] > 0 for r in rows_a)
        assert (tmp_path / "a" / "checkpoint" / "aux_head.safetensors").is_file()
        assert not (tmp_path / "a" / "model" / "aux_head.safetensors").exists()
    b = _model()
    train(b, sources(), TrainConfig(**{**cfg.__dict__, "steps": 2}), tmp_path / "b",
          progress=False)
    b = _model()  # a new process would start from a fresh model too
    train(b, sources(), cfg, tmp_path / "b", resume=True, progress=False)
    pa, pb = _params(a), _params(b)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    log_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]
    assert [r["loss"] for r in log_b] == [r["loss"] for r in rows_a]
    assert (tmp_path / "a" / "model" / "model.safetensors").is_file()
    with pytest.raises(FileExistsError, match="pass resume=True"):
        train(_model(), _sources(), cfg, tmp_path / "a", progress=False)


def test_frozen_components_do_not_move(tmp_path):
    model = _model()
    before = _params(model)
    train(model, _sources(), TrainConfig(steps=2, batch_size=2, lr=1e-2, freeze=("vision.vit",
                                                                                    "llm")),
          tmp_path, progress=False)
    after = _params(model)
    for n in before:
        moved = not torch.equal(before[n], after[n])
        if n.startswith(("vision.vit.", "llm.")):
            assert not moved, n
    assert any(not torch.equal(before[n], after[n]) for n in before
               if n.startswith("vision.projector"))


def test_train_only_moves_nothing_else(tmp_path):
    model = _model()
    before = _params(model)
    train(model, _sources(), TrainConfig(steps=2, batch_size=2, lr=1e-2,
                                         train_only=("vision.projector", "mask_decoder.iou_head")),
          tmp_path, progress=False)
    after = _params(model)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(n.startswith(("vision.projector.", "mask_decoder.iou_head."))
                         for n in moved), sorted(moved)
    assert any(n.startswith("vision.projector.") for n in moved)
    with pytest.raises(ValueError, match="train_only: 'mask_decoder.refiner' matches no "
                                         "parameter; components are"):
        train_only(_model(), ["mask_decoder.refiner"])


def test_freeze_of_an_unknown_component():
    with pytest.raises(ValueError, match="'visoin' matches no parameter; components are"):
        freeze(_model(), ["visoin"])


def test_mixture_weights():
    s = MixedSampler({"a": 3, "b": 5}, [("a", 1.0), ("b", 0.0)], seed=0)
    assert {src for src, _ in s.draw(50)} == {"a"}
    state = s.state_dict()
    x = s.draw(10)
    s.load_state_dict(state)
    assert s.draw(10) == x
    with pytest.raises(ValueError, match=r"mixture names unknown sources \['c'\]"):
        MixedSampler({"a": 3}, [("c", 1.0)], seed=0)
    with pytest.raises(ValueError, match="TrainConfig.amp must be one of"):
        TrainConfig(amp="fp8")


def test_lora_trains_adapters_and_saves_a_merged_model(tmp_path):
    pytest.importorskip("peft")
    model = _model()
    llm_before = {n: p.detach().clone() for n, p in model.llm.named_parameters()}
    cfg = TrainConfig(steps=4, batch_size=2, lr=1e-2, lora_rank=4, save_every=2, log_every=1)
    train(model, _sources(), cfg, tmp_path / "a", progress=False)
    # merged: plain parameter names again, and the LLM weights moved by the merged adapters
    after = dict(model.llm.named_parameters())
    assert set(after) == set(llm_before)
    assert any(not torch.equal(llm_before[n], after[n]) for n in after if "q_proj" in n)
    loaded = EarthXModel.load(tmp_path / "a" / "model")
    for n, p in loaded.llm.named_parameters():
        assert torch.equal(p, after[n]), n
    # resuming a LoRA run from its checkpoint gives the same result
    b = _model()
    train(b, _sources(), TrainConfig(**{**cfg.__dict__, "steps": 2}), tmp_path / "b",
          progress=False)
    b = _model()
    train(b, _sources(), cfg, tmp_path / "b", resume=True, progress=False)
    for n, p in b.llm.named_parameters():
        assert torch.equal(p, after[n]), n


# 3 steps on a global batch of 4: the sources' samples differ in answer length and only "seg" has
# a mask, so the two ranks' shares hold different token and mask counts
DDP_CONFIG = TrainConfig(steps=3, batch_size=4, lr=1e-3, log_every=1, seed=1)


def _torchrun(tmp_path, mode):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", str(root / "tests/training/ddp_worker.py"),
                        str(tmp_path / "run"), mode], env=env, capture_output=True, text=True,
                       timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    d0 = json.loads((tmp_path / "digest0.json").read_text())
    d1 = json.loads((tmp_path / "digest1.json").read_text())
    if mode == "ddp":
        assert d0["sha"] == d1["sha"]  # the ranks end with identical parameters
    else:
        assert d0["sha"] != d1["sha"]  # each rank holds other shards
    log = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in log] == [1, 2, 3]  # one writer
    return d0["rows"], d1["rows"]


def _same_as_one_process(tmp_path, rows0, rows1, cfg):
    """Each step's losses (both ranks) and the final parameters equal one process's run on the
    same global batches (to float rounding)."""
    single = _model()
    rows = train(single, _sources(), cfg, tmp_path / "single", progress=False)
    for one, r0, r1 in zip(rows, rows0, rows1, strict=True):
        for k in ("lm_loss", "mask_loss", "iou_loss", "loss"):
            assert r0[k] == r1[k], (k, r0, r1)
            assert abs(r0[k] - one[k]) <= 1e-5 * max(1.0, abs(one[k])), (k, r0[k], one[k])
    assert any(r["mask_loss"] > 0 for r in rows)  # the mask terms were exercised
    ddp = EarthXModel.load(tmp_path / "run/model")
    ref = dict(single.named_parameters())
    for n, p in ddp.named_parameters():
        torch.testing.assert_close(p, ref[n], rtol=1e-4, atol=1e-5, msg=n)


def test_ddp_on_two_cpu_processes(tmp_path):
    """torchrun with 2 processes (gloo): ranks stay identical, each step's loss is the one process
    computes on the same global batch (and so are the parameters), rank 0 alone writes."""
    rows0, rows1 = _torchrun(tmp_path, "ddp")
    assert (tmp_path / "run/checkpoint/model.safetensors").is_file()
    _same_as_one_process(tmp_path, rows0, rows1, DDP_CONFIG)


def test_fsdp_on_two_cpu_processes(tmp_path):
    """FSDP2 (fully_shard, gloo): the same, against one process that also gives every parameter a
    gradient every step (touch_all, which fsdp implies); the gathered model is saved."""
    rows0, rows1 = _torchrun(tmp_path, "fsdp")
    assert not (tmp_path / "run/checkpoint").exists()
    _same_as_one_process(tmp_path, rows0, rows1,
                         dataclasses.replace(DDP_CONFIG, touch_all=True))


def test_fsdp_refusals():
    with pytest.raises(ValueError, match="periodic checkpoints"):
        TrainConfig(parallel="fsdp", save_every=10)
    with pytest.raises(ValueError, match="parallel must be one of"):
        TrainConfig(parallel="zero3")


def test_sum_reduction_gives_the_global_token_mean():
    """The sums of two shares of a batch, divided by their summed counts, are the batch's mean
    losses; the mean of the two shares' means is not (their token counts differ)."""
    from training.trainer import global_loss

    model = _model()
    src = _sources()
    enc = [model.processor.encode(**{k: v for k, v in s[0].items() if k != "task"})
           for s in src.values()]
    with torch.no_grad():
        whole = model(enc)
        a, b = model(enc[:1], reduction="sum"), model(enc[1:], reduction="sum")
        both = {k: a[k] + b[k] for k in a}
        loss, report = global_loss(both, 1)
        mean_a, mean_b = model(enc[:1]), model(enc[1:])
    assert a["lm_tokens"] != b["lm_tokens"]
    torch.testing.assert_close(loss, whole["loss"])
    for k in ("loss", "lm_loss", "mask_loss", "iou_loss"):
        assert abs(report[k] - float(whole[k])) < 1e-5, k
    naive = (mean_a["lm_loss"] + mean_b["lm_loss"]) / 2
    assert abs(float(naive) - float(whole["lm_loss"])) > 1e-3
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        model(enc, reduction="none")


def test_balanced_bce_weighs_the_few_positive_pixels():
    from earthx_sdk.modeling.model import mask_losses

    target = torch.zeros(1, 10, 10)
    target[0, :1, :4] = 1  # 4 of 100 pixels
    empty = torch.full((1, 10, 10), -3.0)  # predicts nothing
    plain, dice, _ = mask_losses(empty, torch.zeros(1), target)
    balanced, dice_b, _ = mask_losses(empty, torch.zeros(1), target, balanced_bce=True)
    w = (96 / 4) ** 0.5
    bce_pos, bce_neg = torch.nn.functional.softplus(torch.tensor(3.0)), \
        torch.nn.functional.softplus(torch.tensor(-3.0))
    assert float(plain) == pytest.approx(float(4 * bce_pos + 96 * bce_neg) / 100, rel=1e-5)
    assert float(balanced) == pytest.approx(float(4 * w * bce_pos + 96 * bce_neg) / 100, rel=1e-5)
    assert float(dice) == float(dice_b)
    all_on = torch.ones(1, 10, 10)  # no negatives: the weight clamps to 1
    assert float(mask_losses(empty, torch.zeros(1), all_on, balanced_bce=True)[0]) == \
        pytest.approx(float(bce_pos), rel=1e-5)


def test_aux_head_moves_the_vision_features_and_checks_class_maps(tmp_path):
    """The dense auxiliary loss reaches the vision encoder (its gradient is not zero) and a class
    map that does not fit its image is refused with the source and sample named."""
    from training.dense_labels import DenseClassHead, class_targets, dense_class_loss

    model = _model()
    src = _aux_sources()
    s = src["seg"][0]
    enc = model.processor.encode(**{k: v for k, v in s.items() if k not in ("task", "class_map")})
    tgt = class_targets(s["class_map"], enc.info, model.processor.mask_grid, 2)
    head = DenseClassHead(model.vision.feature_dims, 2)
    parts = model([enc], reduction="sum", return_vision=True)
    total, n = dense_class_loss(head, [v.features for v in parts["vision"]], [tgt])
    assert int(n) == 1
    total.backward()
    g = model.vision.convnext.embeddings.patch_embeddings.weight.grad
    assert g is not None and float(g.abs().sum()) > 0

    bad = _aux_sources()
    bad["seg"][0]["class_map"] = np.zeros((10, 10), np.int64)
    cfg = TrainConfig(steps=2, batch_size=4, aux_classes=2, mixture=(("seg", 1.0),))
    with pytest.raises(ValueError, match=r"source 'seg' sample 0: class_map: must have the "
                                         r"image's shape \(48, 64\), got \(10, 10\)"):
        train(_model(), bad, cfg, tmp_path / "bad", progress=False)


def test_aux_balanced_reaches_the_logged_dense_loss(tmp_path):
    """Same model, seed and batches: the first step's dense loss is the per-pixel mean with
    aux_balanced off and the per-class mean with it on, so the two differ."""
    first = {}
    for bal in (False, True):
        cfg = TrainConfig(steps=1, batch_size=2, log_every=1, seed=3, aux_classes=2,
                          aux_balanced=bal, mixture=(("seg", 1.0),))
        rows = train(_model(), _aux_sources(), cfg, tmp_path / str(bal), progress=False)
        first[bal] = rows[0]["aux_loss"]
    assert first[False] > 0 and first[True] > 0
    assert first[True] != pytest.approx(first[False], rel=1e-3)
