// region_pool: the prompt-feature fusion op on the CPU; see csrc/bindings.cpp for the export.
#pragma once

#include <optional>
#include <vector>

#include "common.h"

namespace earthx {

// Mask-weighted mean of each region's features over a K x K grid of bilinear samples,
// concatenated over the scales: the semantics of region_pool_ref (earthx_sdk/ops/region_pool.py).
// features: 1 or more float32 [B, C_s, H_s, W_s] (any strides, read in place); boxes: float32
// [B, R, 4] (x0, y0, x1, y1) in image pixels, finite; masks: None or float32 [B, R, Hm, Wm];
// grid: K >= 1; the image is image_h x image_w pixels. Returns float32 [B, R, sum C_s].
py::array_t<float> region_pool(const std::vector<py::array>& features, const py::array& boxes,
                               const std::optional<py::array>& masks, int64_t grid,
                               int64_t image_h, int64_t image_w);

}  // namespace earthx
