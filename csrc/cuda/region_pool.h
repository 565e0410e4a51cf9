// CUDA region_pool: multi-scale, mask-weighted ROI-Align means (spec: region_pool_ref in
// earthx_sdk/ops/region_pool.py), reading the caller's feature maps in place (any strides).
// Plain C types only: this header is shared by nvcc and the host compiler.
#pragma once

#include <cstdint>

namespace earthx {
namespace cuda {

constexpr int kPoolMaxScales = 8;   // feature maps per call
constexpr int kPoolThreads = 128;   // threads per block = channels per block (one per thread)
constexpr int kPoolChunk = 128;     // sample points per shared-memory pass (any K works)

// Element type of the feature maps and of the output.
enum PoolType : int { kPoolF32 = 0, kPoolF16 = 1, kPoolBF16 = 2 };

struct PoolScale {
  const void* data;            // map [B, C, H, W]
  int64_t c, h, w;
  int64_t sb, sc, sh, sw;      // strides in elements
  int64_t out_offset;          // first output channel of this scale
  int64_t tile_begin;          // first channel tile (blockIdx.y) of this scale
};

struct PoolArgs {
  PoolScale scales[kPoolMaxScales];
  int num_scales;
  int64_t num_tiles;           // sum over scales of ceil(C_s / kPoolThreads)
  int type;                    // PoolType of the maps and the output
  const float* boxes;          // float32 [B, R, 4] (x0, y0, x1, y1), contiguous
  const float* masks;          // float32 [B, R, Hm, Wm], contiguous; nullptr: weights all 1
  int64_t mask_h, mask_w;
  int64_t batch, regions;
  int64_t grid;                // K
  int64_t image_h, image_w;
  void* out;                   // [B, R, sum C] in `type`, contiguous
  int64_t out_channels;        // sum C
};

// Launches on `stream` (a cudaStream_t as an integer; 0 = legacy default). Returns an error
// string, or nullptr on success.
const char* launch_region_pool(const PoolArgs& args, uintptr_t stream);

}  // namespace cuda
}  // namespace earthx
