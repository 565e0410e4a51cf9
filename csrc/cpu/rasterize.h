// Prompt rasterization (points, boxes, polygons, scribbles, mask prompts -> uint8 0/1 masks); see
// csrc/bindings.cpp for the exported list and earthx_sdk/ops/rasterize.py for the spec (the *_ref
// functions). Coordinates arrive already mapped to the output grid, in float64.
#pragma once

#include "common.h"

namespace earthx {

// Disk: (c + .5 - cx)^2 + (r + .5 - cy)^2 <= radius^2. Returns uint8 [out_h, out_w].
py::array_t<uint8_t> raster_disk(double cx, double cy, double radius, int64_t out_h, int64_t out_w);

// Closed box x0 <= c + .5 <= x1, y0 <= r + .5 <= y1. Returns uint8 [out_h, out_w].
py::array_t<uint8_t> raster_box(double x0, double y0, double x1, double y1, int64_t out_h,
                                int64_t out_w);

// Polygon, even-odd rule; vertices float64 [N, 2] C-contiguous, N >= 3.
py::array_t<uint8_t> raster_polygon(const py::array& vertices, int64_t out_h, int64_t out_w);

// Polyline of closed capsules of the given width; points float64 [N, 2] C-contiguous, N >= 1.
py::array_t<uint8_t> raster_polyline(const py::array& points, double width, int64_t out_h,
                                     int64_t out_w);

// Nearest-neighbour resampling of a bool/uint8 [h, w] mask (any strides) through (kx, ky).
py::array_t<uint8_t> resample_mask(const py::array& mask, int64_t out_h, int64_t out_w, double kx,
                                   double ky);

}  // namespace earthx
