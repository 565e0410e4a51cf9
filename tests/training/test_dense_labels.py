import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from earthx_sdk.ops.preprocess import preprocess  # noqa: E402
from training.dense_labels import DenseClassHead, class_targets, dense_class_loss  # noqa: E402


def _info(h, w, size=32):
    _, info = preprocess(np.zeros((h, w, 3), np.uint8), "optical", size)
    return info


def test_class_targets_are_area_fractions_on_the_mask_grid():
    # 32 x 32 image, model input 32 (no resize): the S/4 grid has 8 x 8 cells of 4 x 4 pixels
    cmap = np.zeros((32, 32), np.int64)
    cmap[:, :16] = 1  # left half class 1
    cmap[0:2, 16:20] = 2  # half of the cell (0, 4) class 2
    t = class_targets(cmap, _info(32, 32), grid=8, classes=2)
    assert t.shape == (3, 8, 8) and t.dtype == np.float16
    np.testing.assert_array_equal(t[1, :, :4], 1)
    np.testing.assert_array_equal(t[1, :, 4:], 0)
    assert float(t[2, 0, 4]) == 0.5 and float(t[0, 0, 4]) == 0.5
    np.testing.assert_allclose(t.astype(np.float32).sum(0), 1)


def test_class_targets_leave_the_padding_unlabelled():
    # a 16 x 32 image fills the top half of the padded 32 x 32 square
    t = class_targets(np.ones((16, 32), np.int64), _info(16, 32), grid=8, classes=1)
    np.testing.assert_array_equal(t.astype(np.float32).sum(0)[:4], 1)
    np.testing.assert_array_equal(t[:, 4:], 0)


@pytest.mark.parametrize("cmap,match", [
    (np.zeros((31, 32), np.int64), r"must have the image's shape \(32, 32\), got \(31, 32\)"),
    (np.zeros((32, 32), np.float32), "must hold integer class ids, got dtype float32"),
    (np.full((32, 32), 3, np.int64), r"class ids must be in \[0, 2\] .* got values in \[3, 3\]"),
    (np.full((32, 32), -1, np.int64), r"class ids .* got values in \[-1, -1\]"),
])
def test_class_targets_refuse_bad_maps(cmap, match):
    with pytest.raises(ValueError, match="scene 7: " + match):
        class_targets(cmap, _info(32, 32), grid=8, classes=2, where="scene 7")


def test_dense_class_loss_of_a_uniform_head_is_log_classes():
    head = DenseClassHead([4, 6], classes=4)
    for p in head.parameters():
        torch.nn.init.zeros_(p)  # equal logits: cross-entropy log(5) at every labelled pixel
    cmap = np.random.default_rng(0).integers(0, 5, (16, 32))
    tgt = class_targets(cmap, _info(16, 32), grid=8, classes=4)
    feats = [torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)]
    total, n = dense_class_loss(head, [feats, feats], [tgt, None])
    assert int(n) == 1  # the sample without targets adds nothing
    assert float(total) == pytest.approx(math.log(5), rel=1e-5)
    with pytest.raises(ValueError, match="expected 2 feature maps, got 1"):
        head(feats[:1])


def test_balanced_dense_class_loss_weighs_each_class_equally():
    """A head that always says background: plain CE is dominated by the background pixels,
    the balanced one is the mean of the per-class CEs (0 for background, the same value for
    the small object class), whatever the object's area."""
    head = DenseClassHead([3], classes=2)
    for p in head.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        head.heads[0].bias[0] = 10.0  # background logit far above the others
    p_obj = -torch.log_softmax(torch.tensor([10.0, 0.0, 0.0]), 0)[1].item()  # CE of a miss
    p_bg = -torch.log_softmax(torch.tensor([10.0, 0.0, 0.0]), 0)[0].item()  # CE of a hit
    feats = [[torch.randn(1, 3, 8, 8)]]
    for side in (4, 8):  # an object of 1 / 64 and of 4 / 64 of the grid cells
        cmap = np.zeros((32, 32), np.int64)
        cmap[:side, :side] = 1
        tgt = class_targets(cmap, _info(32, 32), grid=8, classes=2)
        frac = (side // 4) ** 2 / 64
        plain, _ = dense_class_loss(head, feats, [tgt])
        bal, n = dense_class_loss(head, feats, [tgt], balanced=True)
        assert int(n) == 1
        assert float(plain) == pytest.approx(frac * p_obj + (1 - frac) * p_bg, rel=1e-4)
        # class 2 is absent and does not count; background and class 1 count once each
        assert float(bal) == pytest.approx((p_obj + p_bg) / 2, rel=1e-4)
    # the balanced loss trains: its gradient reaches the object's logit
    cmap = np.zeros((32, 32), np.int64)
    cmap[:4, :4] = 1
    tgt = class_targets(cmap, _info(32, 32), grid=8, classes=2)
    bal, _ = dense_class_loss(head, feats, [tgt], balanced=True)
    bal.backward()
    assert head.heads[0].bias.grad[1] < 0  # raising class 1's logit lowers the loss
