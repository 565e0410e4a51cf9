"""Caption metrics as coco-caption computes them, on lowercased words with punctuation removed
(coco-caption runs the Stanford PTB tokenizer, a Java program not available here).

`predictions` is one caption per image, `references` a list of captions per image.
- BLEU-1..4: corpus-level, clipped n-gram precision with coco-caption's smoothing (1e-15 / 1e-9),
  brevity penalty against the reference length closest to each prediction's.
- ROUGE-L: LCS-based F-measure with beta 1.2 per image (precision and recall each the max over the
  references), averaged.
- CIDEr-D: tf-idf vectors of 1..4-grams (document frequency over the references of the whole set),
  clipped similarity, a Gaussian length penalty with sigma 6, averaged over references and n, x 10.
- METEOR, exact-match variant: unigram matches aligned greedily left to right, Fmean with alpha 0.9,
  fragmentation penalty 0.5 * (chunks / matches) ** 3, best reference per image, averaged. WordNet
  synonyms, stemming and paraphrase tables are not available offline, so the figures are NOT
  comparable with the Java METEOR 1.5 that papers report.
- SPICE needs a Java parser and models fetched at run time: `spice` raises.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np


def tokenize(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]], what: str):
    if len(predictions) != len(references):
        raise ValueError(f"{what}: predictions and references must have the same length, got "
                         f"{len(predictions)} and {len(references)}")
    if not predictions:
        raise ValueError(f"{what}: needs at least one image")
    for k, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"{what}: references[{k}] must be a non-empty list of captions")
    return [tokenize(p) for p in predictions], [[tokenize(r) for r in refs] for refs in references]


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """[BLEU-1, BLEU-2, BLEU-3, BLEU-4] of the corpus."""
    hyps, refs = _check(predictions, references, "bleu")
    correct, total = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for h, rs in zip(hyps, refs, strict=True):
        hyp_len += len(h)
        # the reference length closest to the hypothesis' (the shorter on a tie)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, 5):
            hc = _ngrams(h, n)
            maxref: Counter = Counter()
            for r in rs:
                maxref |= _ngrams(r, n)
            correct[n - 1] += sum(min(c, maxref[g]) for g, c in hc.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    tiny, small = 1e-15, 1e-9
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / max(hyp_len, tiny))
    scores, log_sum = [], 0.0
    for n in range(4):
        log_sum += math.log((correct[n] + tiny) / (total[n] + small))
        scores.append(bp * math.exp(log_sum / (n + 1)))
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]],
            beta: float = 1.2) -> float:
    hyps, refs = _check(predictions, references, "rouge_l")
    scores = []
    for h, rs in zip(hyps, refs, strict=True):
        lcs = [_lcs(h, r) for r in rs]
        prec = max(x / len(h) if h else 0.0 for x in lcs)
        rec = max(x / len(r) if r else 0.0 for x, r in zip(lcs, rs, strict=True))
        scores.append((1 + beta**2) * prec * rec / (rec + beta**2 * prec) if prec and rec else 0.0)
    return float(np.mean(scores))


def cider_d(predictions: Sequence[str], references: Sequence[Sequence[str]],
            sigma: float = 6.0) -> float:
    hyps, refs = _check(predictions, references, "cider_d")
    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for n in range(1, 5) for g in _ngrams(r, n)})
    log_n = math.log(float(len(refs)))

    def vec(tokens):
        out, norms = [], []
        for n in range(1, 5):
            tf = _ngrams(tokens, n)
            v = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in tf.items()}
            out.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return out, norms, len(tokens)

    scores = []
    for h, rs in zip(hyps, refs, strict=True):
        vh, nh, lh = vec(h)
        total = np.zeros(4)
        for r in rs:
            vr, nr, lr = vec(r)
            for n in range(4):
                val = sum(min(x, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, x in vh[n].items())
                if nh[n] and nr[n]:
                    val /= nh[n] * nr[n]
                total[n] += val * math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
        scores.append(float(np.mean(total)) / len(rs) * 10.0)
    return float(np.mean(scores))


def _meteor_one(h: list[str], r: list[str], alpha=0.9, beta=3.0, gamma=0.5) -> float:
    used = [False] * len(r)
    align = []  # (hyp index, ref index), greedy left to right on exact matches
    for i, w in enumerate(h):
        for j, x in enumerate(r):
            if not used[j] and x == w:
                used[j] = True
                align.append((i, j))
                break
    m = len(align)
    if m == 0:
        return 0.0
    p, rec = m / len(h), m / len(r)
    fmean = p * rec / (alpha * p + (1 - alpha) * rec)
    chunks = 1 + sum(1 for (i0, j0), (i1, j1) in zip(align, align[1:], strict=False)
                     if not (i1 == i0 + 1 and j1 == j0 + 1))
    return fmean * (1 - gamma * (chunks / m) ** beta)


def meteor_exact(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    hyps, refs = _check(predictions, references, "meteor_exact")
    return float(np.mean([max(_meteor_one(h, r) for r in rs) for h, rs in
                          zip(hyps, refs, strict=True)]))


def spice(*_args, **_kwargs) -> float:
    raise RuntimeError("SPICE is not available: it runs a Java scene-graph parser with models "
                       "fetched at run time, which this project cannot download")


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    b = bleu(predictions, references)
    return {"BLEU-1": b[0], "BLEU-2": b[1], "BLEU-3": b[2], "BLEU-4": b[3],
            "ROUGE-L": rouge_l(predictions, references),
            "CIDEr": cider_d(predictions, references),
            "METEOR(exact)": meteor_exact(predictions, references)}
