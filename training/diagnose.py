"""How much the question and the image move the <seg> state and the mask it decodes.

    python -m training.diagnose --checkpoint DIR [--scenes 2] [--probe N] [--json PATH]

For each held-out synthetic scene and each referring question (teacher-forced answer "<seg>"),
it takes the LLM's last hidden state at <seg> and the decoded mask logits, then reports the mean
relative change ||a - b|| / ||a|| of both between two questions on the same image and between two
images with the same question. A model that segments what it is asked shows a large question
term for the logits; one that paints a single mask per image shows a question term near 0 and a
large image term.

It also reports, for box prompts on different objects of one image, how far apart their
`<region>` tokens, prompt states and next-token logits are (`region_sensitivity`), and the norms
of image, region and text-token embeddings: a model whose region tokens differ by ~1 % of their
norm answers region questions from the class prior (seen on tiny-synthetic: only "tree" and
"vehicle"). With `--probe N`, a linear probe fitted on N training scenes says how well region_pool's
features and the <region> tokens carry the class (region_probe).
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

QUESTIONS = ("Please segment the tree on the right.", "Please segment the building on the left.",
             "Please segment the ship in the top left.", "Please segment all vehicles.")


def seg_sensitivity(model, images: list, sensor: str = "optical",
                    questions: tuple[str, ...] = QUESTIONS) -> dict:
    """Relative changes of the <seg> hidden state and of the mask logits.

    Args:
        model: an EarthXModel in eval mode.
        images: at least two images of `sensor` at the model's input size.
        questions: at least two referring questions.

    Returns:
        {"hidden": {"question": q, "image": i}, "logits": {"question": q, "image": i}}: mean
        relative change across question pairs (same image) and across image pairs (same question).

    Raises:
        ValueError: fewer than two images or questions.
    """
    import torch

    if len(images) < 2 or len(questions) < 2:
        raise ValueError(f"seg_sensitivity needs >= 2 images and >= 2 questions, got "
                         f"{len(images)} and {len(questions)}")
    size = model.cfg.vision.image_size
    seg_id = model.tokenizer.seg_id
    states: dict[tuple[int, int], tuple] = {}
    with torch.no_grad():
        for (i, img), (j, q) in itertools.product(enumerate(images), enumerate(questions)):
            enc = model.processor.encode(img, sensor, q, answer="<seg>",
                                         target_masks=[np.zeros((size, size), bool)])
            vis, embeds, prompt_states = model._prepare([enc])
            out = model.llm(inputs_embeds=embeds[0][None], output_hidden_states=True)
            pos = int(np.flatnonzero(enc.input_ids == seg_id)[0])
            h = out.hidden_states[-1][0, pos]  # [hidden]
            text = model._text_states(out.hidden_states[-1][0], enc, with_labels=True)
            logits, _ = model.decode_masks(vis[0], h[None, None], prompt_states[0], text)
            states[i, j] = (h, logits[0, 0])

    def rel(a, b) -> float:
        return float((a - b).norm() / a.norm().clamp_min(1e-12))

    out: dict = {}
    for k, name in enumerate(("hidden", "logits")):
        by_q = [rel(states[i, a][k], states[i, b][k]) for i in range(len(images))
                for a, b in itertools.combinations(range(len(questions)), 2)]
        by_i = [rel(states[a, j][k], states[b, j][k]) for j in range(len(questions))
                for a, b in itertools.combinations(range(len(images)), 2)]
        out[name] = {"question": float(np.mean(by_q)), "image": float(np.mean(by_i))}
    return out


def region_sensitivity(model, image, boxes, sensor: str = "optical",
                       question: str = "What is the object in <region>?") -> dict:
    """How much the prompted region moves what the LLM sees and says.

    Args:
        model: an EarthXModel in eval mode.
        image: one image of `sensor` at the model's input size.
        boxes: at least two earthx_sdk.prompts.Box prompts (on different objects).

    Returns:
        {"region": r, "states": s, "logits": l}: mean relative change ||a - b|| / ||a|| of the
        `<region>` tokens, the prompt states and the next-token logits over pairs of boxes, and
        {"norms": {"image_tokens", "region_tokens", "text_tokens"}}: mean L2 norms.

    Raises:
        ValueError: fewer than two boxes.
    """
    import torch

    if len(boxes) < 2:
        raise ValueError(f"region_sensitivity needs >= 2 boxes, got {len(boxes)}")
    tok = model.tokenizer
    got = []
    with torch.no_grad():
        for box in boxes:
            enc = model.processor.encode(image, sensor, question, prompts=[box])
            vis, embeds, _ = model._prepare([enc])
            region, states = model.encode_prompts(vis[0], enc)
            ids = torch.from_numpy(enc.input_ids)
            text = model.llm.get_input_embeddings()(ids[(ids != tok.image_id)
                                                        & (ids != tok.region_id)])
            logits = model.llm(inputs_embeds=embeds[0][None]).logits[0, -1].float()
            got.append((region[0], states[0], logits, vis[0].tokens[0], text))

    def rel(a, b) -> float:
        return float((a - b).norm() / a.norm().clamp_min(1e-12))

    pairs = list(itertools.combinations(range(len(got)), 2))
    out = {name: float(np.mean([rel(got[a][k], got[b][k]) for a, b in pairs]))
           for k, name in enumerate(("region", "states", "logits"))}
    out["norms"] = {"image_tokens": float(got[0][3].norm(dim=-1).mean()),
                    "region_tokens": float(np.mean([g[0].norm(dim=-1).mean() for g in got])),
                    "text_tokens": float(got[0][4].norm(dim=-1).mean())}
    return out


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 steps: int = 300, seed: int = 0) -> np.ndarray:
    """Predicted classes of x_test [N, D] from a multinomial logistic regression fitted on
    (x_train [M, D], integer y_train [M]), features standardized by the training statistics."""
    import torch

    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mu) / sd, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Linear(xt.shape[1], int(yt.max()) + 1)
    with torch.no_grad():
        w.weight.normal_(0.0, 0.01, generator=gen)
        w.bias.zero_()
    opt = torch.optim.Adam(w.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(w(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return w(torch.tensor((x_test - mu) / sd, dtype=torch.float32)).argmax(1).numpy()


def region_probe(model, train_records: list, test_records: list) -> dict:
    """How much of a region's class its features carry, read by a linear probe: box prompts on
    every annotated object, region_pool's pooled features and the `<region>` token, probe fitted
    on `train_records` and scored on `test_records` (per sensor). A model whose LLM answers about
    as well as the probe on its <region> tokens is bound by its features, not by the LLM.

    Returns:
        {"pooled": {sensor: accuracy}, "region_token": {sensor: accuracy}, "n_train", "n_test"}.
    """
    import torch

    from earthx_sdk.ops.region_pool import region_pool
    from earthx_sdk.prompts import Box
    from training.synthetic import CLASSES

    def features(records):
        pooled, tokens, labels, sensors = [], [], [], []
        with torch.no_grad():
            for rec in records:
                for ann in rec.annotations:
                    enc = model.processor.encode(rec.image, rec.sensor, "What is <region>?",
                                                 prompts=[Box(*ann.box)])
                    vis = model.encode_images([enc])[0]
                    region, _ = model.encode_prompts(vis, enc)
                    p = region_pool(vis.features, torch.from_numpy(enc.boxes)[None],
                                    torch.from_numpy(enc.prompt_masks)[None],
                                    grid=model.cfg.prompt.pool_grid,
                                    image_size=model.cfg.vision.image_size)
                    pooled.append(p[0, 0].numpy())
                    tokens.append(region[0].flatten().numpy())
                    labels.append(CLASSES.index(ann.category))
                    sensors.append(rec.sensor)
        return np.array(pooled), np.array(tokens), np.array(labels), np.array(sensors)

    ptr, ttr, ytr, _ = features(train_records)
    pte, tte, yte, ste = features(test_records)
    out: dict = {"n_train": len(ytr), "n_test": len(yte)}
    for name, xtr, xte in (("pooled", ptr, pte), ("region_token", ttr, tte)):
        pred = linear_probe(xtr, ytr, xte)
        out[name] = {s: float(np.mean(pred[ste == s] == yte[ste == s])) for s in sorted(set(ste))}
    return out


def _object_boxes(record, k: int = 3):
    """Box prompts on up to k annotated objects of different classes (largest first)."""
    from earthx_sdk.prompts import Box
    from training.templates import image_size, region_mask

    hw = image_size(record)
    seen, boxes = set(), []
    anns = sorted(record.annotations, key=lambda a: -region_mask(a, hw, record).sum())
    for a in anns:
        if a.category in seen:
            continue
        ys, xs = np.nonzero(region_mask(a, hw, record))
        boxes.append(Box(float(xs.min()), float(ys.min()), float(xs.max() + 1),
                         float(ys.max() + 1)))
        seen.add(a.category)
        if len(boxes) == k:
            break
    return boxes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.diagnose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a training output or model directory")
    p.add_argument("--scenes", type=int, default=2, help="held-out scenes (>= 2)")
    p.add_argument("--probe", type=int, default=0, metavar="N",
                   help="also fit a linear probe of region class on N training scenes and score "
                        "it on the held-out ones (region_probe)")
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args(argv)

    from pathlib import Path

    from earthx_sdk.modeling.model import EarthXModel
    from training.eval import HELD_OUT_SEED
    from training.synthetic import render_scene

    ckpt = Path(a.checkpoint)
    model = EarthXModel.load(ckpt / "model" if (ckpt / "model").is_dir() else ckpt).eval()
    size = model.cfg.vision.image_size
    recipe = ckpt / "recipe.json"  # the scene spec the model was trained on, when known
    scale = (json.loads(recipe.read_text()).get("scenes", {}).get("object_scale", 1.0)
             if recipe.is_file() else 1.0)
    records = [render_scene(HELD_OUT_SEED + s, (size, size), object_scale=scale)["optical"]
               for s in range(a.scenes)]
    r = seg_sensitivity(model, [rec.image for rec in records])
    for name, v in r.items():
        print(f"{name:7s} relative change: other question {v['question']:.4f}, "
              f"other image {v['image']:.4f}")
    boxes = _object_boxes(records[0])
    if len(boxes) >= 2:
        reg = region_sensitivity(model, records[0].image, boxes)
        print(f"region  relative change between {len(boxes)} objects' boxes: <region> tokens "
              f"{reg['region']:.4f}, prompt states {reg['states']:.4f}, next-token logits "
              f"{reg['logits']:.4f}")
        n = reg["norms"]
        print(f"norms   image tokens {n['image_tokens']:.2f}, <region> tokens "
              f"{n['region_tokens']:.2f}, text embeddings {n['text_tokens']:.2f}")
        r["region"] = reg
    if a.probe:
        train = [rec for s in range(a.probe)
                 for rec in render_scene(s, (size, size), object_scale=scale).values()]
        test = [rec for s in range(a.scenes) for rec in
                render_scene(HELD_OUT_SEED + s, (size, size), object_scale=scale).values()]
        probe = region_probe(model, train, test)
        for name in ("pooled", "region_token"):
            print(f"probe   {name} -> class, held-out accuracy (fitted on {probe['n_train']}, "
                  f"scored on {probe['n_test']} boxes): " + ", ".join(
                      f"{k} {v:.2f}" for k, v in probe[name].items()))
        r["probe"] = probe
    if a.json:
        tmp = Path(a.json + ".tmp")
        tmp.write_text(json.dumps(r, indent=2))
        tmp.replace(a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
