// tiling ops; see csrc/bindings.cpp for the exported list.
#pragma once

#include "common.h"

namespace earthx {

// Blends tiles [N, C, th, tw] or [N, th, tw] (float32, any strides) placed at boxes [N, 4] int64
// (y0, x0, y1, x1) into float32 [C, H, W] or [H, W]: per pixel sum(w * v) / sum(w) over the tiles
// that cover it, w the ramp weights of earthx_sdk/ops/tiling.py; 0.0 where no tile covers it.
py::array_t<float> stitch(const py::array& tiles, const py::array& boxes, int64_t height,
                          int64_t width, int64_t overlap);

// The same weighted blend of masks [N, th, tw] (uint8 or bool, nonzero = foreground), thresholded:
// uint8 [H, W] with 1 where the blended vote is >= 0.5, else 0 (also where no tile covers it).
py::array_t<uint8_t> stitch_masks(const py::array& masks, const py::array& boxes, int64_t height,
                                  int64_t width, int64_t overlap);

}  // namespace earthx
