"""Named training recipes: a model preset, optimization settings and where the samples come from."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from training.trainer import TrainConfig


@dataclass(frozen=True)
class SceneSpec:
    """The synthetic scenes a recipe trains on; `python -m training.eval` renders its held-out
    scenes (other seeds) the same way.

    Attributes:
        scenes: scenes rendered for training (seeds seed .. seed + scenes - 1), each in every
            sensor.
        size: side of the square scenes, in pixels.
        object_scale: training.synthetic.render_scene's object size factor.
        seed: first scene seed (held-out scenes start at training.eval.HELD_OUT_SEED).
    """

    scenes: int = 48
    size: int = 224
    object_scale: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        return {"scenes": self.scenes, "size": self.size, "object_scale": self.object_scale,
                "seed": self.seed}


@dataclass(frozen=True)
class Recipe:
    """Attributes:
        name: what `--recipe` takes.
        preset: EarthXConfig preset name.
        train: optimization settings.
        sources: builds {source name: samples} (samples are Processor.encode keyword arguments).
        description: one line for `--help`.
        scenes: the synthetic scenes of the recipe (None for one on real data only).
    """

    name: str
    preset: str
    train: TrainConfig
    sources: Callable[[], dict[str, list[dict]]] = field(compare=False)
    description: str = ""
    scenes: SceneSpec | None = None


def synthetic_sources(spec: SceneSpec = SceneSpec()) -> dict[str, list[dict]]:
    """Samples of every task from synthetic scenes in every sensor, grouped by task."""
    import numpy as np

    from training.synthetic import render_scene
    from training.templates import samples_for

    rng = np.random.default_rng(spec.seed)
    out: dict[str, list[dict]] = {}
    for s in range(spec.scenes):
        for record in render_scene(spec.seed + s, (spec.size, spec.size),
                                   object_scale=spec.object_scale).values():
            for sample in samples_for(record, rng=rng):
                out.setdefault(sample["task"], []).append(sample)
    return out


def _synthetic_sources(scenes: int = 48, seed: int = 0) -> dict[str, list[dict]]:
    """synthetic_sources of the tiny-synthetic recipe's scenes, with another count or seed."""
    return synthetic_sources(dataclasses.replace(TINY_SCENES, scenes=scenes, seed=seed))


def deepforest_sources(split: str = "train", draws: int = 24, seed: int = 0
                       ) -> dict[str, list[dict]]:
    """Region classification samples on deepforest's real NEON tree crowns, to mix into a recipe:
    OSBS_029 ("tree") and SOAP_061 ("dead tree" / "live tree"), box and point prompts on their
    boxes. `split="train"` uses the training half of each file's boxes; `"eval"` the held-out half
    (training.datasets.deepforest). Each record is drawn `draws` times (one random box per
    prompt type per draw). Source: deepforest 2.1.0 (MIT), NEON open data.

    Raises:
        FileNotFoundError: deepforest==2.1.0 is not installed (the message says how).
    """
    import numpy as np

    from training.datasets.deepforest import read_deepforest
    from training.realdata import deepforest
    from training.templates import samples_for

    rng = np.random.default_rng(seed)
    records = [r for name in ("OSBS_029.csv", "SOAP_061.xml")
               for r in read_deepforest(deepforest(name), split)]
    out: list[dict] = []
    for record in records:
        for _ in range(draws):
            out += samples_for(record, tasks=("region_class",), rng=rng,
                               prompt_types=("box", "point"))
    return {"deepforest/region_class": out}


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


# The tiny preset sees 112 px. Scenes are rendered at that size (no resampling of images or
# targets) with objects 2.5x their default size relative to the scene, so that the mask decoder's
# 28 x 28 grid sees a median tree as ~3 cells across, not the ~1 cell a 224 px scene resized to
# 112 px gives (where the masks collapsed to background).
TINY_SCENES = SceneSpec(scenes=160, size=112, object_scale=2.5)
# The evaluated tasks (region classification, referring segmentation) carry most of the weight;
# every other task still trains.
TINY_MIXTURE = (("region_class", 3.0), ("refer_seg", 4.0), ("prompt_seg", 1.0),
                ("multi_turn", 1.0), ("caption", 0.5), ("region_caption", 0.5), ("vqa", 0.5),
                ("scene", 0.5))

# Measured on 2026-12-03 (2 CPU cores, one thread, nothing else training: 18 min 19 s for the
# 5000 steps, samples included; held-out eval, 8 scenes): region classification SS optical 0.804
# / multispectral 0.830 / SAR 0.808 / infrared 0.815, referring segmentation gIoU 0.334 / 0.396 /
# 0.322 / 0.281 -- the targets (SS 0.90, gIoU 0.50) are NOT met. 2500 steps of the same recipe
# (7 min 55 s): SS 0.753 / 0.602 / 0.804 / 0.745, gIoU 0.215 / 0.181 / 0.161 / 0.192. Weight decay
# 0.05 at lr 1e-3 replaced lr 2e-3 without decay (2500 steps: gIoU 0.127 / 0.190 / 0.080 /
# 0.022). `python -m training.diagnose` says why:
# without decay the projector outputs drifted (image tokens norm 0.7 at init -> 39 -> 233 at
# 2500 -> 6000 steps, <region> tokens 2 -> 36 -> 156, text embeddings ~1) while the <region>
# tokens of different objects came to differ by 0.3-4 % of their norm, so the LLM could not tell
# regions apart, and the masks ignored the question (logits moved 0.25 % with it). With decay:
# image tokens 2.4, <region> tokens 16, objects' <region> tokens 96 % apart, mask logits move
# 32 % with the question. Still, region classification answers only "tree" or "vehicle" (the two
# commonest classes: the LLM has not learnt the region -> class mapping in 2500 steps; at 5000
# steps it answers tree 75, vehicle 60, water 20, road 5 of 160, 65 % right), and a
# LayerNorm ending both projectors (tried without decay) did not stop the collapse.
RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("tiny-synthetic", "tiny",
               TrainConfig(steps=5000, batch_size=8, lr=1e-3, weight_decay=0.05,
                           warmup_steps=100, log_every=50,
                           save_every=500, schedule="cosine", min_lr_ratio=0.05,
                           mixture=TINY_MIXTURE, balanced_bce=True, mask_loss_weight=2.0,
                           lr_mult=(("mask_decoder", 2.0),)),
               lambda: synthetic_sources(TINY_SCENES),
               "the tiny preset on synthetic optical/SAR/IR/multispectral scenes; CPU, minutes",
               TINY_SCENES),
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
