// Python glue of the CUDA region_pool (csrc/cuda/region_pool.cu): checks the arguments and
// launches. Always compiled, so the ABI is the same with or without CUDA; without it the call
// raises. Every check runs before any device work.
#include <climits>
#include <string>
#include <vector>

#include "common.h"
#include "cuda/region_pool.h"

namespace earthx {

namespace {

std::string list_str(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

// features[i] = (pointer, [B, C, H, W], strides in elements) -> its fields, or a ValueError that
// names the entry.
void parse_feature(const char* fn, size_t i, const py::handle& item, uintptr_t& ptr,
                   std::vector<int64_t>& shape, std::vector<int64_t>& strides) {
  const char* form = " must be (pointer, [B, C, H, W], strides in elements)";
  if (!py::isinstance<py::sequence>(item) || py::isinstance<py::str>(item) ||
      py::len(item) != 3)
    fail_value(fn, ": features[", i, "]", form, ", got ", py::repr(item).cast<std::string>());
  auto seq = py::reinterpret_borrow<py::sequence>(item);
  try {
    ptr = seq[0].cast<uintptr_t>();
    shape = seq[1].cast<std::vector<int64_t>>();
    strides = seq[2].cast<std::vector<int64_t>>();
  } catch (const py::cast_error&) {
    fail_value(fn, ": features[", i, "]", form, ", got ", py::repr(item).cast<std::string>());
  }
}

}  // namespace

void region_pool_cuda(py::sequence features, const std::string& dtype, uintptr_t boxes,
                      uintptr_t masks, std::vector<int64_t> mask_hw, int64_t batch,
                      int64_t regions, int64_t grid, std::vector<int64_t> image_hw, uintptr_t out,
                      uintptr_t stream) {
  const char* fn = "region_pool_cuda";
#ifndef EARTHX_WITH_CUDA
  (void)features, (void)dtype, (void)boxes, (void)masks, (void)mask_hw, (void)batch;
  (void)regions, (void)grid, (void)image_hw, (void)out, (void)stream;
  throw std::runtime_error(std::string(fn) + ": this earthx_sdk._C was built without CUDA "
                           "(EARTHX_CUDA=OFF or no nvcc)");
#else
  using namespace cuda;
  int type = -1;
  if (dtype == "float32") type = kPoolF32;
  if (dtype == "float16") type = kPoolF16;
  if (dtype == "bfloat16") type = kPoolBF16;
  if (type < 0)
    fail_type(fn, ": dtype must be 'float32', 'float16' or 'bfloat16', got '", dtype, "'");
  check_positive(batch, fn, "batch");
  check_positive(regions, fn, "regions");
  check_positive(grid, fn, "grid");
  if (regions > INT_MAX / batch)  // checked without forming the product, which may overflow
    fail_value(fn, ": batch * regions must be <= ", INT_MAX, " (one block each), got ", batch,
               " * ", regions);
  if (image_hw.size() != 2 || image_hw[0] < 1 || image_hw[1] < 1)
    fail_value(fn, ": image_hw must be (H, W) >= 1, got ", list_str(image_hw));
  if (boxes == 0 || out == 0)
    fail_value(fn, ": boxes and out must be device pointers, got ", boxes, " and ", out);
  if (masks != 0 && (mask_hw.size() != 2 || mask_hw[0] < 1 || mask_hw[1] < 1))
    fail_value(fn, ": mask_hw must be (Hm, Wm) >= 1 with masks, got ", list_str(mask_hw));

  const size_t n_scales = py::len(features);
  if (n_scales < 1 || n_scales > static_cast<size_t>(kPoolMaxScales))
    fail_value(fn, ": features must hold 1 to ", kPoolMaxScales, " maps, got ", n_scales);
  PoolArgs a{};
  a.num_scales = static_cast<int>(n_scales);
  int64_t channels = 0, tiles = 0;
  for (size_t i = 0; i < n_scales; ++i) {
    uintptr_t ptr = 0;
    std::vector<int64_t> shape, strides;
    parse_feature(fn, i, features[i], ptr, shape, strides);
    if (ptr == 0) fail_value(fn, ": features[", i, "] must be a device pointer, got 0");
    if (shape.size() != 4 || strides.size() != 4)
      fail_value(fn, ": features[", i, "] must have a shape [B, C, H, W] and 4 strides, got ",
                 list_str(shape), " and ", list_str(strides));
    if (shape[0] != batch)
      fail_value(fn, ": features[", i, "] must be [B, C, H, W] with B = batch = ", batch, ", got ",
                 list_str(shape));
    if (shape[1] < 1 || shape[2] < 1 || shape[3] < 1)
      fail_value(fn, ": features[", i, "] must have C, H, W >= 1, got ", list_str(shape));
    PoolScale& s = a.scales[i];
    s.data = reinterpret_cast<const void*>(ptr);
    s.c = shape[1], s.h = shape[2], s.w = shape[3];
    s.sb = strides[0], s.sc = strides[1], s.sh = strides[2], s.sw = strides[3];
    s.out_offset = channels;
    s.tile_begin = tiles;
    channels += s.c;
    tiles += (s.c + kPoolThreads - 1) / kPoolThreads;
  }
  if (tiles > 65535)
    fail_value(fn, ": at most ", 65535 * kPoolThreads, " channels in all (65535 tiles of ",
               kPoolThreads, "), got ", channels);
  a.num_tiles = tiles;
  a.type = type;
  a.boxes = reinterpret_cast<const float*>(boxes);
  a.masks = reinterpret_cast<const float*>(masks);  // nullptr without masks
  a.mask_h = masks != 0 ? mask_hw[0] : 0;
  a.mask_w = masks != 0 ? mask_hw[1] : 0;
  a.batch = batch, a.regions = regions, a.grid = grid;
  a.image_h = image_hw[0], a.image_w = image_hw[1];
  a.out = reinterpret_cast<void*>(out);
  a.out_channels = channels;
  const char* err = launch_region_pool(a, stream);
  if (err) throw std::runtime_error(std::string(fn) + ": kernel launch failed: " + err);
#endif
}

}  // namespace earthx
