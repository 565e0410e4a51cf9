"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory holds the model (EarthXModel.save), `optimizer.safetensors` +
`optimizer.json` (the optimizer's per-parameter tensors and its param groups), `state.json`
(step, sampler and RNG states) and `<name>.safetensors` for each training-only module beside the
model (`extra`, e.g. the dense auxiliary head). Written to `<dir>.tmp` and renamed, so a crash
never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Splits an optimizer's state dict into tensors (flat names) and JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, v in tensors.items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for name, v in meta["scalars"].items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: str | Path, model, opt: torch.optim.Optimizer, state: dict,
                    extra: dict[str, torch.nn.Module] | None = None) -> None:
    """Writes model + optimizer + `state` (JSON-able: step, sampler, RNG) + the `extra` modules
    ({name: module}, each as `<name>.safetensors`) atomically."""
    from safetensors.torch import save_model

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp)
    tensors, meta = optimizer_to_files(opt)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    for name, module in (extra or {}).items():
        save_model(module, str(tmp / f"{name}.safetensors"))
    rng = {"torch": torch.get_rng_state().tolist()}
    (tmp / "state.json").write_text(json.dumps({**state, "rng": rng}))
    if path.exists():
        old = path.with_name(path.name + ".old")
        path.replace(old)
        tmp.replace(path)
        shutil.rmtree(old)
    else:
        tmp.replace(path)


def load_checkpoint(path: str | Path, model, opt: torch.optim.Optimizer,
                    extra: dict[str, torch.nn.Module] | None = None) -> dict:
    """Restores the model weights, the `extra` modules, the optimizer and torch's RNG; returns
    the saved `state`.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (named).
    """
    from safetensors.torch import load_model

    path = Path(path)
    names = ["model.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"]
    names += [f"{name}.safetensors" for name in (extra or {})]
    for name in names:
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a training checkpoint: {name} missing")
    load_model(model, str(path / "model.safetensors"))
    for name, module in (extra or {}).items():
        load_model(module, str(path / f"{name}.safetensors"))
    optimizer_from_files(opt, load_file(str(path / "optimizer.safetensors")),
                         json.loads((path / "optimizer.json").read_text()))
    state = json.loads((path / "state.json").read_text())
    torch.set_rng_state(torch.tensor(state.pop("rng")["torch"], dtype=torch.uint8))
    return state


def init_from(model, path: str | Path) -> list[str]:
    """Starts `model` from the weights of the EarthX model directory `path` (a recipe that
    continues another recipe's model). Every tensor of the file must be one of `model`'s, with
    its shape, and the tokenizers must be the same; the tensors `model` has beyond the file's
    (what the continuing recipe adds) keep their initialization.

    Returns:
        the names of those added tensors.

    Raises:
        FileNotFoundError: `path` is not an EarthX model directory (the missing file is named).
        ValueError: a tensor of the file is not the model's, or has another shape, or the
            tokenizers differ (the message names it).
    """
    path = Path(path)
    for name in ("model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not an EarthX model directory: {name} missing")
    tensors = load_file(str(path / "model.safetensors"))
    own = model.state_dict()
    foreign = sorted(set(tensors) - set(own))
    if foreign:
        raise ValueError(f"--init {path}: the model being trained has no tensor {foreign[0]!r} "
                         f"({len(foreign)} such in all); it must be a model of the recipe this "
                         f"one continues")
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(own[name].shape):
            raise ValueError(f"--init {path}: tensor {name!r} must have shape "
                             f"{tuple(own[name].shape)}, got {tuple(t.shape)}")
    from earthx_sdk.tokenizer import EarthXTokenizer

    if EarthXTokenizer.from_dir(path).to_str() != model.tokenizer.to_str():
        raise ValueError(f"--init {path}: its tokenizer.json differs from the tokenizer of the "
                         f"model being trained")
    model.load_state_dict(tensors, strict=False)
    loaded = {own[name].data_ptr() for name in tensors}  # tied tensors count as loaded
    return sorted(n for n in own if n not in tensors and own[n].data_ptr() not in loaded)
