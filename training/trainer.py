"""The trainer: mixed sampling over sources, freezing, LoRA on the LLM (peft, merged into the saved
model), AdamW with warmup, optional bf16 autocast and gradient checkpointing, checkpoints with exact
resume, a JSONL metrics log and a progress bar.

Data parallel: under `torchrun --nproc_per_node N python -m training ...` each process takes every
N-th sample of the global batch (all draw the same batches from the seeded sampler), gradients are
averaged by DistributedDataParallel (gloo on CPU, nccl on GPUs), and rank 0 alone writes logs,
checkpoints and the model. FSDP (sharded parameters) is not implemented.
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


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one run.

    Attributes:
        steps: optimizer steps in total.
        batch_size: samples per step.
        lr, weight_decay, warmup_steps, max_grad_norm: AdamW with linear warmup, then constant.
        seed: seeds the sampler and torch.
        mixture: (source, weight) pairs; sources not named get weight 0; empty = uniform.
        freeze: parameter-name prefixes to freeze ("vision.vit", "vision.convnext", "llm", ...).
        amp: "none" or "bf16" (autocast).
        grad_checkpointing: recompute the LLM's activations in backward.
        log_every: steps between metrics lines; save_every: steps between checkpoints (0: end).
        lora_rank: > 0 trains LoRA adapters of this rank on the LLM's attention and MLP
            projections instead of its weights (peft); the saved model has them merged.
        lora_alpha: LoRA scaling numerator.
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
    amp: str = "none"
    grad_checkpointing: bool = False
    log_every: int = 10
    save_every: int = 0
    lora_rank: int = 0
    lora_alpha: float = 16.0

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


def freeze(model: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Sets requires_grad=False on parameters whose names start with a prefix.

    Raises:
        ValueError: a prefix matches no parameter (the message lists the top-level components).
    """
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in names} | {".".join(n.split(".")[:2])
                                                             for n in names})
            raise ValueError(f"freeze: {prefix!r} matches no parameter; components are {tops}")
        for n, p in model.named_parameters():
            if n in hits:
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
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    freeze(model, cfg.freeze)
    if cfg.lora_rank:
        model.llm = apply_lora(model.llm, cfg.lora_rank, cfg.lora_alpha)
    if cfg.grad_checkpointing:
        model.llm.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = MixedSampler({k: len(v) for k, v in sources.items()}, cfg.mixture, cfg.seed)
    step = 0
    log_path = out / "metrics.jsonl"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, model, opt)
        step = state["step"]
        sampler.load_state_dict(state["sampler"])
        if main_proc:
            _truncate_log(log_path, step)
    if main_proc:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # not every batch reaches every part (the mask decoder needs a <seg>)
        net = DistributedDataParallel(model, find_unused_parameters=True)

    cache: dict[tuple[str, int], object] = {}

    def encoded(key):
        if key not in cache:
            kwargs = {k: v for k, v in sources[key[0]][key[1]].items() if k != "task"}
            cache[key] = model.processor.encode(**kwargs)
        return cache[key]

    bar = _progress(cfg.steps, step, progress and main_proc)
    rows = []
    t0 = time.perf_counter()
    device_type = model.device.type
    while step < cfg.steps:
        keys = sampler.draw(cfg.batch_size)  # the same global batch on every rank
        batch = [encoded(k) for k in keys[rank::world]]
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            losses = net(batch)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, "lr": lr, "grad_norm": float(grad_norm),
                   "seconds": round(time.perf_counter() - t0, 3),
                   **{k: float(v.detach()) for k, v in losses.items()}}
            rows.append(row)
            if main_proc:
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            bar(step, row)
        if main_proc and ((cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps):
            save_checkpoint(ckpt, model, opt, {"step": step, "sampler": sampler.state_dict()})
    model.eval()
    if cfg.lora_rank:
        model.llm = model.llm.merge_and_unload()  # the saved model is a plain one
    if main_proc:
        tmp = out / "model.tmp"
        model.save(tmp)
        if (out / "model").exists():
            import shutil

            shutil.rmtree(out / "model")
        tmp.replace(out / "model")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return rows


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
