// Mask postprocess: logit upsampling + threshold (masks.cpp), COCO RLE (rle.cpp), outer contours
// (contours.cpp).
// The spec is earthx_sdk/ops/masks.py (upsample_logits_ref, postprocess_masks_ref, rle_*_ref,
// mask_to_polygons_ref).
#pragma once

#include "common.h"

namespace earthx {

// logits float32 [N, h, w] or [h, w] (any strides) covering the padded size x size model input
// -> float32 [N, H, W] / [H, W]: pad removed and resized to orig_hw in one bilinear step.
py::array upsample_logits(py::array logits, int64_t size, py::object resized_hw,
                          py::object orig_hw);

// upsample_logits(...) > threshold -> uint8 [N, H, W] / [H, W], fused (no float image).
py::array postprocess_masks(py::array logits, int64_t size, py::object resized_hw,
                            py::object orig_hw, double threshold);

// mask bool/uint8 [H, W] -> {"size": [H, W], "counts": bytes}; [N, H, W] -> a list of them.
py::object rle_encode(py::array mask);

// {"size": [H, W], "counts": bytes | str | int64 [K]} -> uint8 [H, W].
py::array rle_decode(py::object rle);

// Foreground pixel count of an RLE (same input as rle_decode).
int64_t rle_area(py::object rle);

// mask bool/uint8 [H, W] -> list of float64 [K, 2] (x, y) outer contours, one per 8-connected
// component, in raster order of the components' first pixels.
py::list mask_to_polygons(py::array mask);

}  // namespace earthx
