import numpy as np
import pytest

from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble, check_in_image


def test_valid_prompts_and_their_boxes():
    assert Point(3, 4).bbox() == (3, 4, 3, 4)
    assert Box(1, 2, 5, 6).bbox() == (1, 2, 5, 6)
    assert Polygon([(0, 0), (4, 0), (0, 3)]).bbox() == (0, 0, 4, 3)
    assert Scribble([(2, 2), (6, 2)], width=2).bbox() == (1, 1, 7, 3)
    m = np.zeros((10, 10), bool)
    m[2:4, 5:9] = True
    assert Mask(m).bbox() == (5, 2, 9, 4)
    # a bow-tie (self-intersecting) is allowed
    Polygon([(0, 0), (4, 4), (4, 0), (0, 4)])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Point(float("nan"), 1), ValueError, r"Point \(x, y, radius\) must be finite"),
    (lambda: Point(1, 1, radius=-1), ValueError, "radius must be >= 0"),
    (lambda: Box(5, 0, 1, 3), ValueError, "x0 <= x1 and y0 <= y1"),
    (lambda: Box(0, 0, float("inf"), 3), ValueError, "must be finite"),
    (lambda: Polygon([(0, 0), (1, 1)]), ValueError, r"N >= 3, got shape \[2, 2\]"),
    (lambda: Polygon([]), ValueError, "N >= 3"),
    (lambda: Polygon([(0, 0), (1, 1), (2, 2), (3, 3)]), ValueError, "degenerate"),
    (lambda: Polygon([(1, 1), (1, 1), (1, 1)]), ValueError, "degenerate"),
    (lambda: Polygon([(0, 0), (1, float("nan")), (2, 0)]), ValueError, "must be finite"),
    (lambda: Scribble([(0, 0)], width=0), ValueError, "width must be > 0"),
    (lambda: Mask(np.zeros((4, 4), bool)), ValueError, "no foreground"),
    (lambda: Mask(np.ones((4, 4), np.float32)), TypeError, "bool or uint8"),
    (lambda: Mask(np.ones(4, bool)), ValueError, r"\[H, W\]"),
])
def test_bad_prompts(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_check_in_image():
    check_in_image(Box(-5, -5, 3, 3), (10, 10))  # partly outside: clipped, fine
    check_in_image(Point(10, 10), (10, 10))  # on the far corner
    with pytest.raises(ValueError, match=r"prompts\[2\]: box .* wholly outside the image of 10x8"):
        check_in_image(Box(20, 0, 30, 5), (8, 10), 2)
    with pytest.raises(ValueError, match="point .* wholly outside"):
        check_in_image(Point(-1, 3), (8, 10))
    with pytest.raises(ValueError, match=r"must have the image's shape \(8, 10\)"):
        check_in_image(Mask(np.ones((4, 4), bool)), (8, 10))
    with pytest.raises(TypeError, match="must be a Point, Box, Polygon, Scribble or Mask"):
        check_in_image((1, 2, 3, 4), (8, 10))


def test_rasterize_through_a_scale():
    m = Box(0, 0, 4, 4).rasterize((4, 4), scale=(0.5, 0.5))
    assert m[:2, :2].all() and m.sum() == 4
