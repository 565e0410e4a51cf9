"""Named training recipes: a model preset, optimization settings and where the samples come from."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from training.trainer import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """Attributes:
        name: what `--recipe` takes.
        preset: EarthXConfig preset name.
        train: optimization settings.
        sources: builds {source name: samples} (samples are Processor.encode keyword arguments).
        description: one line for `--help`.
    """

    name: str
    preset: str
    train: TrainConfig
    sources: Callable[[], dict[str, list[dict]]] = field(compare=False)
    description: str = ""


def _synthetic_sources(scenes: int = 48, seed: int = 0) -> dict[str, list[dict]]:
    """Samples of every task from synthetic scenes in every sensor, grouped by task."""
    import numpy as np

    from training.synthetic import render_scene
    from training.templates import samples_for

    rng = np.random.default_rng(seed)
    out: dict[str, list[dict]] = {}
    for s in range(scenes):
        for record in render_scene(seed + s).values():
            for sample in samples_for(record, rng=rng):
                out.setdefault(sample["task"], []).append(sample)
    return out


def _real_sources() -> dict[str, list[dict]]:
    """Samples from the real public datasets under $EARTHX_DATA (one folder per dataset, named as
    training.datasets.READERS)."""
    import numpy as np

    from training.datasets import READERS, read_dataset
    from training.templates import samples_for

    root = os.environ.get("EARTHX_DATA")
    if not root or not os.path.isdir(root):
        raise FileNotFoundError("the base recipe reads the public datasets from $EARTHX_DATA (one "
                                f"folder per dataset: {sorted(READERS)}); it is not set or not a "
                                "directory")
    rng = np.random.default_rng(0)
    out: dict[str, list[dict]] = {}
    for name in sorted(READERS):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        for record in read_dataset(name, path, split="train"):
            for sample in samples_for(record, rng=rng):
                out.setdefault(f"{name}/{sample['task']}", []).append(sample)
    if not out:
        raise FileNotFoundError(f"no dataset folder found under {root}; expected some of "
                                f"{sorted(READERS)}")
    return out


RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("tiny-synthetic", "tiny",
               TrainConfig(steps=300, batch_size=8, lr=1e-3, warmup_steps=20, log_every=10,
                           save_every=100),
               _synthetic_sources,
               "the tiny preset on synthetic optical/SAR/IR/multispectral scenes; CPU, minutes"),
        Recipe("base", "base",
               TrainConfig(steps=20000, batch_size=16, lr=2e-5, warmup_steps=500, amp="bf16",
                           grad_checkpointing=True, log_every=50, save_every=1000,
                           freeze=("vision.vit", "vision.convnext")),
               _real_sources,
               "EarthGPT-X scale on the public datasets under $EARTHX_DATA; GPUs"),
    )
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {name!r}")
    return RECIPES[name]
