"""The trainer: mixed sampling over sources, freezing, LoRA on the LLM (peft, merged into the saved
model), AdamW with warmup, optional bf16 autocast and gradient checkpointing, checkpoints with exact
resume, a JSONL metrics log and a progress bar.

Data parallel: under `torchrun --nproc_per_node N python -m training ...` each process takes every
N-th sample of the global batch (all draw the same batches from the seeded sampler); the loss is the
global batch's mean over answer tokens and target masks (the counts are all-reduced, see
`global_loss`), so N processes compute what one process computes on the same batch. Gradients are
averaged by DistributedDataParallel (gloo on CPU, nccl on GPUs), and rank 0 alone writes logs,
checkpoints and the model.

FSDP (`parallel="fsdp"`): parameters, gradients and optimizer state sharded with FSDP2's
`torch.distributed.fsdp.fully_shard` (works on gloo CPU and on GPUs). The older
`FullyShardedDataParallel` class refuses CPU ("FSDP needs a non-CPU accelerator device, but no
accelerator device is detected") and is not used. FSDP2 reduce-scatters the gradients of the
parameters that have one, so every process must give a gradient to the same parameters: with
fsdp every trainable parameter takes part in every step (`touch_all`: a zero-weighted term,
so a parameter the batch does not reach gets a zero gradient and AdamW moves it by its momentum
instead of skipping it). An FSDP run saves the final model (gathered); periodic checkpoints,
resume and LoRA are not implemented for it (the sharded optimizer state would need
torch.distributed.checkpoint) and are refused with an error.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import load_checkpoint, save_checkpoint

AMP_MODES = ("none", "bf16")
SCHEDULES = ("constant", "cosine")
PARALLEL_MODES = ("ddp", "fsdp")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one run.

    Attributes:
        steps: optimizer steps in total.
        batch_size: samples per step.
        lr, weight_decay, warmup_steps, max_grad_norm: AdamW with linear warmup, then the
            schedule.
        schedule: "constant" or "cosine" (from lr after warmup down to lr * min_lr_ratio at the
            last step).
        min_lr_ratio: the cosine schedule's final fraction of lr.
        lr_mult: (parameter-name prefix, factor) pairs: parameters under a prefix train at
            lr * factor (the first matching prefix wins), e.g. (("mask_decoder", 3.0),).
        mask_loss_weight: factor on the mask terms (BCE + Dice and IoU regression) of the loss.
        parallel: "ddp" or "fsdp": how processes under torchrun share the work.
        touch_all: every trainable parameter gets a gradient every step (zero where the batch
            does not reach it); always on under fsdp.
        balanced_bce: positive-weighted mask BCE (earthx_sdk.modeling.model.mask_losses).
        seed: seeds the sampler and torch.
        mixture: (source, weight) pairs; sources not named get weight 0; empty = uniform.
        freeze: parameter-name prefixes to freeze ("vision.vit", "vision.convnext", "llm", ...).
        train_only: parameter-name prefixes that alone train (every other parameter is frozen,
            as by `freeze`); empty: no such limit.
        amp: "none" or "bf16" (autocast).
        grad_checkpointing: recompute the LLM's activations in backward.
        log_every: steps between metrics lines; save_every: steps between checkpoints (0: end).
        lora_rank: > 0 trains LoRA adapters of this rank on the LLM's attention and MLP
            projections instead of its weights (peft); the saved model has them merged.
        lora_alpha: LoRA scaling numerator.
        aux_classes: K > 0 trains a training.dense_labels.DenseClassHead on the vision features
            to predict each pixel's class (0 = background, 1..K) of the samples that carry a
            "class_map" (an int [H, W] array of the image); the head is saved in checkpoints,
            not in the model. 0: off ("class_map" keys are then ignored).
        aux_weight: factor on that dense cross-entropy in the loss.
        aux_balanced: that cross-entropy averaged per class, then over the classes present
            (training.dense_labels.dense_class_loss), not over pixels.
    """

    steps: int = 100
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    seed: int = 0
    mixture: tuple[tuple[str, float], ...] = ()
    freeze: tuple[str, ...] = ()
    train_only: tuple[str, ...] = ()
    amp: str = "none"
    grad_checkpointing: bool = False
    log_every: int = 10
    save_every: int = 0
    lora_rank: int = 0
    lora_alpha: float = 16.0
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    lr_mult: tuple[tuple[str, float], ...] = ()
    mask_loss_weight: float = 1.0
    parallel: str = "ddp"
    touch_all: bool = False
    balanced_bce: bool = False
    aux_classes: int = 0
    aux_weight: float = 1.0
    aux_balanced: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.save_every < 0 or self.warmup_steps < 0 or self.lora_rank < 0:
            raise ValueError("TrainConfig.save_every, warmup_steps and lora_rank must be >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be finite and > 0, got {self.lr}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got "
                             f"{self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if any(not (f > 0 and math.isfinite(f)) for _, f in self.lr_mult):
            raise ValueError(f"TrainConfig.lr_mult factors must be finite and > 0, got "
                             f"{self.lr_mult}")
        if not (self.mask_loss_weight >= 0 and math.isfinite(self.mask_loss_weight)):
            raise ValueError(f"TrainConfig.mask_loss_weight must be finite and >= 0, got "
                             f"{self.mask_loss_weight}")
        if self.parallel not in PARALLEL_MODES:
            raise ValueError(f"TrainConfig.parallel must be one of {PARALLEL_MODES}, got "
                             f"{self.parallel!r}")
        if self.parallel == "fsdp" and (self.save_every or self.lora_rank):
            raise ValueError("TrainConfig.parallel='fsdp' saves only the final model: periodic "
                             "checkpoints (save_every) and LoRA (lora_rank) are not implemented "
                             f"with it, got save_every={self.save_every}, "
                             f"lora_rank={self.lora_rank}")
        if self.aux_classes < 0 or not (self.aux_weight >= 0 and math.isfinite(self.aux_weight)):
            raise ValueError(f"TrainConfig.aux_classes must be >= 0 and aux_weight finite and "
                             f">= 0, got {self.aux_classes} and {self.aux_weight}")
        if any(w < 0 for _, w in self.mixture):
            raise ValueError(f"TrainConfig.mixture weights must be >= 0, got {self.mixture}")


class MixedSampler:
    """Draws (source, index) pairs: a source by its weight, then an index uniformly.

    Its state (a numpy PCG64 state) is JSON-able, so a resumed run draws the same batches.
    """

    def __init__(self, sizes: dict[str, int], mixture: Sequence[tuple[str, float]], seed: int):
        if not sizes or any(n < 1 for n in sizes.values()):
            raise ValueError(f"every source needs at least one sample, got sizes {sizes}")
        weights = dict(mixture) if mixture else {k: 1.0 for k in sizes}
        unknown = sorted(set(weights) - set(sizes))
        if unknown:
            raise ValueError(f"mixture names unknown sources {unknown}; sources are "
                             f"{sorted(sizes)}")
        self.names = sorted(sizes)
        self.sizes = sizes
        w = np.array([weights.get(k, 0.0) for k in self.names], np.float64)
        if w.sum() <= 0:
            raise ValueError("mixture weights sum to 0")
        self.p = w / w.sum()
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> list[tuple[str, int]]:
        src = self.rng.choice(len(self.names), size=n, p=self.p)
        return [(self.names[s], int(self.rng.integers(self.sizes[self.names[s]]))) for s in src]

    def state_dict(self) -> dict:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def _matching(names: Sequence[str], prefix: str, what: str) -> set[str]:
    hits = {n for n in names if n == prefix or n.startswith(prefix + ".")}
    if not hits:
        tops = sorted({n.split(".")[0] for n in names} | {".".join(n.split(".")[:2])
                                                         for n in names})
        raise ValueError(f"{what}: {prefix!r} matches no parameter; components are {tops}")
    return hits


def freeze(model: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Sets requires_grad=False on parameters whose names start with a prefix.

    Raises:
        ValueError: a prefix matches no parameter (the message lists the top-level components).
    """
    names = [n for n, _ in model.named_parameters()]
    hits = set().union(*(_matching(names, prefix, "freeze") for prefix in prefixes))
    for n, p in model.named_parameters():
        if n in hits:
            p.requires_grad_(False)


def train_only(model: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Freezes every parameter whose name starts with none of `prefixes` (no-op when empty).

    Raises:
        ValueError: a prefix matches no parameter (the message lists the top-level components).
    """
    if not prefixes:
        return
    names = [n for n, _ in model.named_parameters()]
    keep = set().union(*(_matching(names, prefix, "train_only") for prefix in prefixes))
    for n, p in model.named_parameters():
        if n not in keep:
            p.requires_grad_(False)


def train(model, sources: dict[str, Sequence[dict]], cfg: TrainConfig, out: str | Path,
          resume: bool = False, progress: bool = True) -> list[dict]:
    """Trains `model` (an EarthXModel) on samples from `sources` and writes `out/`:
    `checkpoint/` (exact resume), `model/` (the final model), `metrics.jsonl`, `train_config.json`.

    Args:
        sources: name -> samples, each the keyword arguments of `Processor.encode` (plus any
            extra keys such as "task", ignored).
        resume: continue from `out/checkpoint` (the batches and results equal an uninterrupted run).
    Returns:
        The metrics rows logged by this call.
    Raises:
        FileExistsError: `out/checkpoint` exists and resume is False.
    """
    out = Path(out)
    rank, world = _init_distributed(model)
    main_proc = rank == 0
    ckpt = out / "checkpoint"
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{ckpt} exists: pass resume=True (--resume) or another --out")
    fsdp = world > 1 and cfg.parallel == "fsdp"
    if fsdp and resume:
        raise ValueError("resume is not implemented for parallel='fsdp' runs (they write no "
                         "checkpoint)")
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    freeze(model, cfg.freeze)
    train_only(model, cfg.train_only)
    if cfg.lora_rank:
        model.llm = apply_lora(model.llm, cfg.lora_rank, cfg.lora_alpha)
    if cfg.grad_checkpointing:
        model.llm.gradient_checkpointing_enable()
    aux_head = None
    if cfg.aux_classes:
        from training.dense_labels import DenseClassHead

        aux_head = DenseClassHead(model.vision.feature_dims, cfg.aux_classes).to(model.device)
    net = _Losses(model, touch_all=cfg.touch_all or cfg.parallel == "fsdp",
                  balanced_bce=cfg.balanced_bce, aux_head=aux_head,
                  aux_balanced=cfg.aux_balanced)
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        fully_shard(net)  # the parameters become sharded DTensors: the optimizer comes after
    groups = param_groups(model, cfg.lr_mult)
    if aux_head is not None:
        groups.append({"params": list(aux_head.parameters()), "lr_mult": 1.0})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = MixedSampler({k: len(v) for k, v in sources.items()}, cfg.mixture, cfg.seed)
    step = 0
    log_path = out / "metrics.jsonl"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, model, opt, extra=_extra(aux_head))
        step = state["step"]
        sampler.load_state_dict(state["sampler"])
        if main_proc:
            _truncate_log(log_path, step)
    if main_proc:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    if world > 1 and not fsdp:
        from torch.nn.parallel import DistributedDataParallel

        # not every batch reaches every part (the mask decoder needs a <seg>)
        net = DistributedDataParallel(net, find_unused_parameters=True)

    cache: dict[tuple[str, int], object] = {}
    target_cache: dict[tuple, object] = {}  # samples of one image share its class targets

    def encoded(key):
        if key not in cache:
            sample = sources[key[0]][key[1]]
            kwargs = {k: v for k, v in sample.items() if k not in ("task", "class_map")}
            enc = model.processor.encode(**kwargs)
            cmap = sample.get("class_map")
            tgt = None
            if aux_head is not None and cmap is not None:
                from training.dense_labels import class_targets

                tkey = (id(cmap), enc.info.orig_hw, enc.info.resized_hw)
                if tkey not in target_cache:
                    target_cache[tkey] = class_targets(
                        cmap, enc.info, model.processor.mask_grid, cfg.aux_classes,
                        where=f"source {key[0]!r} sample {key[1]}: class_map")
                tgt = target_cache[tkey]
            cache[key] = (enc, tgt)
        return cache[key]

    bar = _progress(cfg.steps, step, progress and main_proc)
    rows = []
    t0 = time.perf_counter()
    device_type = model.device.type
    while step < cfg.steps:
        keys = sampler.draw(cfg.batch_size)  # the same global batch on every rank
        pairs = [encoded(k) for k in keys[rank::world]]
        batch, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        lr = learning_rate(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        model.train()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            parts = net(batch, targets)
        loss, losses = global_loss(parts, world, cfg.mask_loss_weight, cfg.aux_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, "lr": lr, "grad_norm": float(_full(grad_norm)),
                   "seconds": round(time.perf_counter() - t0, 3),
                   **losses}
            rows.append(row)
            if main_proc:
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            bar(step, row)
        if main_proc and not fsdp and ((cfg.save_every and step % cfg.save_every == 0)
                                       or step == cfg.steps):
            save_checkpoint(ckpt, model, opt, {"step": step, "sampler": sampler.state_dict()},
                            extra=_extra(aux_head))
    model.eval()
    if cfg.lora_rank:
        model.llm = model.llm.merge_and_unload()  # the saved model is a plain one
    saved = _gathered(model) if fsdp else model  # every rank takes part in the gathering
    if main_proc:
        tmp = out / "model.tmp"
        saved.save(tmp)
        if (out / "model").exists():
            import shutil

            shutil.rmtree(out / "model")
        tmp.replace(out / "model")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return rows


class _Losses(torch.nn.Module):
    """model(batch, reduction="sum"), plus the dense auxiliary loss of the samples with class
    targets (when there is an aux_head), plus (touch_all) a zero-weighted sum of every trainable
    parameter, so that each one gets a gradient (FSDP's reduce-scatter needs the same set on every
    process). The root module that DDP or FSDP wraps."""

    def __init__(self, model, touch_all: bool, balanced_bce: bool = False, aux_head=None,
                 aux_balanced: bool = False):
        super().__init__()
        self.model, self.touch_all, self.balanced_bce = model, touch_all, balanced_bce
        self.aux_head, self.aux_balanced = aux_head, aux_balanced

    def forward(self, batch, targets=None):
        aux = self.aux_head is not None
        parts = self.model(batch, reduction="sum", balanced_bce=self.balanced_bce,
                           return_vision=aux)
        if aux:
            from training.dense_labels import dense_class_loss

            vis = parts.pop("vision")
            targets = [None] * len(batch) if targets is None else targets
            aux_sum, aux_n = dense_class_loss(self.aux_head, [v.features for v in vis], targets,
                                              self.aux_balanced)
            parts = {**parts, "aux_sum": aux_sum, "aux_n": aux_n}
        if self.touch_all:
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            parts = {**parts, "lm_sum": parts["lm_sum"] + zero}
        return parts


def _extra(aux_head) -> dict:
    """The modules a checkpoint holds beside the model."""
    return {} if aux_head is None else {"aux_head": aux_head}


def _full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (FSDP), else the tensor."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _gathered(model):
    """A plain copy of an FSDP-sharded EarthXModel (all ranks must call it: it all-gathers)."""
    full = {k: _full(v).detach().cpu() for k, v in model.state_dict().items()}
    plain = type(model)(model.cfg, model.tokenizer)
    plain.load_state_dict(full)
    return plain


def param_groups(model: torch.nn.Module, lr_mult: Sequence[tuple[str, float]]) -> list[dict]:
    """AdamW parameter groups of the trainable parameters: one per distinct lr factor (in the
    order of `lr_mult`, then the rest at 1.0), each with its factor under "lr_mult".

    Raises:
        ValueError: a prefix matches no trainable parameter.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    factors: dict[float, list] = {}
    for prefix, _ in lr_mult:
        if not any(n == prefix or n.startswith(prefix + ".") for n, _ in named):
            raise ValueError(f"lr_mult: {prefix!r} matches no trainable parameter")
    for n, p in named:
        f = next((f for prefix, f in lr_mult if n == prefix or n.startswith(prefix + ".")), 1.0)
        factors.setdefault(float(f), []).append(p)
    return [{"params": ps, "lr_mult": f} for f, ps in factors.items()]


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The base learning rate of optimizer step `step` (0-based): linear warmup over
    warmup_steps, then constant or cosine down to lr * min_lr_ratio at the last step."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.steps - 1 - cfg.warmup_steps)
    t = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def global_loss(parts: dict[str, torch.Tensor], world: int, mask_weight: float = 1.0,
                aux_weight: float = 1.0):
    """The loss to back-propagate on this process, and the global batch's losses to report.

    `parts` are this process's sums (EarthXModel.forward(..., reduction="sum")), with "aux_sum"
    and "aux_n" (the dense auxiliary loss summed over the samples that have class targets, and
    their count) where the trainer adds them. The token, mask and sample counts are summed over
    all processes, so the loss is the mean over the whole global batch's answer tokens (LM),
    target masks (mask terms) and labelled images (aux), whatever each process's share: the
    same loss as one process on that batch. The back-propagated loss is scaled by the world size,
    because DistributedDataParallel averages the gradients over processes.

    Returns:
        (loss to backward, {"loss", "lm_loss", "mask_loss", "iou_loss"} (+ "aux_loss" when the
        parts carry it) of the global batch, detached).
    """
    has_aux = "aux_sum" in parts
    zero = parts["lm_sum"].new_zeros(())
    aux_sum = parts.get("aux_sum", zero)
    aux_n = parts.get("aux_n", zero)
    counts = torch.stack([parts["lm_tokens"], parts["masks"], aux_n]).to(torch.float64)
    sums = torch.stack([parts["lm_sum"], parts["mask_sum"], parts["iou_sum"],
                        aux_sum]).detach().double()
    if world > 1:
        import torch.distributed as dist

        both = torch.cat([counts, sums])
        dist.all_reduce(both)
        counts, sums = both[:3], both[3:]
    n_tok, n_mask, n_aux = (float(c) for c in counts.clamp_min(1))
    local = (parts["lm_sum"] / n_tok
             + mask_weight * (parts["mask_sum"] + parts["iou_sum"]) / n_mask
             + aux_weight * aux_sum / n_aux)
    lm, mask, iou, aux = (float(v) for v in (sums[0] / n_tok, sums[1] / n_mask, sums[2] / n_mask,
                                             sums[3] / n_aux))
    report = {"loss": lm + mask_weight * (mask + iou) + aux_weight * aux, "lm_loss": lm,
              "mask_loss": mask, "iou_loss": iou}
    if has_aux:
        report["aux_loss"] = aux
    return local * world, report


def _init_distributed(model) -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            model.to(torch.device("cuda", torch.cuda.current_device()))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def apply_lora(llm, rank: int, alpha: float):
    """Wraps a Llama/Qwen2 model with LoRA adapters (peft): its own weights freeze.

    Raises:
        ImportError: peft is not installed (pip install earthx-sdk[train]).
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("LoRA needs peft: pip install 'earthx-sdk[train]'") from None
    return get_peft_model(llm, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0,
                                          target_modules=list(LORA_TARGETS), bias="none"))


def _truncate_log(path: Path, step: int) -> None:
    """Drops log lines written after the checkpoint a run resumes from."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def _progress(total: int, start: int, enabled: bool):
    """A callback(step, row) that advances a tqdm bar, or prints a line without tqdm."""
    if not enabled:
        return lambda step, row: None
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda step, row: print(f"step {step}/{total} loss {row['loss']:.4f}", flush=True)
    bar = tqdm(total=total, initial=start, desc="train", unit="step")
    last = [start]

    def update(step, row):
        bar.update(step - last[0])
        last[0] = step
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if step >= total:
            bar.close()

    return update
