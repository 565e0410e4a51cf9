// CUDA region_pool: the mask-weighted ROI-Align mean of region_pool_ref, fused over the K x K
// samples, the bilinear taps and the mask weights, reading the maps in place (any strides).
//
// Grid: blockIdx.x = region (b * R + r), blockIdx.y = a tile of kPoolThreads channels of one
// scale; one thread per channel. Each block computes its region's sample points, bilinear taps
// and mask weights once per chunk of kPoolChunk samples into shared memory, then every thread
// walks the chunk for its channel, accumulating in float32.
//
// Memory access: threads of a warp read 32 consecutive channels at the same pixel. That is one
// coalesced transaction for channels-last maps (stride_c == 1) and 32 separate sectors for
// channels-first maps (stride_c == H * W); the latter relies on L1/L2 to reuse the sectors across
// the taps of neighbouring samples. A layout-specific variant (a warp per sample over contiguous
// channels, or lanes over samples of one channel plane) is the next step once profiled on a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "region_pool.h"

namespace earthx {
namespace cuda {
namespace {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Sample point i (row j = i / K, column k = i % K) of the region's box as grid_sample's
// normalized coordinates, in the reference's float32 operation order:
// x = x0 + ((k + 0.5) * (x1 - x0)) / K, gx = 2 x / W - 1 (likewise y).
__device__ __forceinline__ void sample_point(const float* box, int64_t i, int64_t k_grid,
                                             float image_w, float image_h, float& gx, float& gy) {
  const float k = static_cast<float>(i % k_grid) + 0.5f;
  const float j = static_cast<float>(i / k_grid) + 0.5f;
  const float kf = static_cast<float>(k_grid);
  const float x = box[0] + (k * (box[2] - box[0])) / kf;
  const float y = box[1] + (j * (box[3] - box[1])) / kf;
  gx = 2.0f * x / image_w - 1.0f;
  gy = 2.0f * y / image_h - 1.0f;
}

// Bilinear taps of normalized point (gx, gy) on an h x w grid (align_corners=False, zeros
// outside): the top-left tap (x0, y0) and the weights (nw, ne, sw, se), 0 for taps outside.
struct Taps {
  int64_t x0, y0;
  float nw, ne, sw, se;
};

__device__ __forceinline__ Taps bilinear_taps(float gx, float gy, int64_t w, int64_t h) {
  // Map pixel coordinates with half-pixel centers: (g + 1) * size / 2 - 0.5.
  const float ix = (gx + 1.0f) * (static_cast<float>(w) * 0.5f) - 0.5f;
  const float iy = (gy + 1.0f) * (static_cast<float>(h) * 0.5f) - 0.5f;
  const float fx = floorf(ix), fy = floorf(iy);
  const float tx = ix - fx, ty = iy - fy;
  // Far outside (or infinite), both taps of an axis are outside: clamp before the integer
  // conversion so that it cannot overflow; the weights of outside taps are 0 below.
  const float cx = fminf(fmaxf(fx, -2.0f), static_cast<float>(w) + 1.0f);
  const float cy = fminf(fmaxf(fy, -2.0f), static_cast<float>(h) + 1.0f);
  Taps t;
  t.x0 = static_cast<int64_t>(cx);
  t.y0 = static_cast<int64_t>(cy);
  const bool x0_in = t.x0 >= 0 && t.x0 < w, x1_in = t.x0 + 1 >= 0 && t.x0 + 1 < w;
  const bool y0_in = t.y0 >= 0 && t.y0 < h, y1_in = t.y0 + 1 >= 0 && t.y0 + 1 < h;
  t.nw = (y0_in && x0_in) ? (1.0f - ty) * (1.0f - tx) : 0.0f;
  t.ne = (y0_in && x1_in) ? (1.0f - ty) * tx : 0.0f;
  t.sw = (y1_in && x0_in) ? ty * (1.0f - tx) : 0.0f;
  t.se = (y1_in && x1_in) ? ty * tx : 0.0f;
  return t;
}

// The region mask sampled at (gx, gy): its own Hm x Wm grid over the image extent.
__device__ __forceinline__ float mask_weight(const PoolArgs& a, int64_t region, float gx,
                                             float gy) {
  const Taps t = bilinear_taps(gx, gy, a.mask_w, a.mask_h);
  const float* m = a.masks + region * a.mask_h * a.mask_w;
  const int64_t p = t.y0 * a.mask_w + t.x0;  // only read where the tap's weight is nonzero
  float v = 0.0f;
  if (t.nw != 0.0f) v += t.nw * m[p];
  if (t.ne != 0.0f) v += t.ne * m[p + 1];
  if (t.sw != 0.0f) v += t.sw * m[p + a.mask_w];
  if (t.se != 0.0f) v += t.se * m[p + a.mask_w + 1];
  return v;
}

// Sum of `v` over the block; every thread gets the result. `scratch` holds one float per warp.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < kPoolThreads / 32; ++i) total += scratch[i];  // same order in every thread
  return total;
}

// 8 blocks of 128 threads per SM leave 64 registers a thread: no spills on sm_87 or sm_90 (with
// the bare thread bound ptxas picks 40 registers and spills on sm_90).
template <typename T>
__global__ void __launch_bounds__(kPoolThreads, 8)
    region_pool_kernel(const __grid_constant__ PoolArgs a) {
  __shared__ int64_t s_base[kPoolChunk];  // element offset of each sample's top-left tap
  __shared__ float4 s_w[kPoolChunk];      // its tap weights (nw, ne, sw, se) x mask weight
  __shared__ float s_scratch[kPoolThreads / 32];

  const int64_t region = blockIdx.x;
  const int64_t b = region / a.regions;
  int s = 0;  // the scale of this channel tile
  while (s + 1 < a.num_scales && static_cast<int64_t>(blockIdx.y) >= a.scales[s + 1].tile_begin)
    ++s;
  const PoolScale& sc = a.scales[s];
  const int64_t c = (static_cast<int64_t>(blockIdx.y) - sc.tile_begin) * kPoolThreads + threadIdx.x;
  const bool active = c < sc.c;

  const float* box = a.boxes + region * 4;
  const int64_t n = a.grid * a.grid;
  const float image_w = static_cast<float>(a.image_w), image_h = static_cast<float>(a.image_h);

  // 1. The denominator: the mask weights' sum, or K * K without masks.
  float den = static_cast<float>(n);
  if (a.masks != nullptr) {
    float part = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += kPoolThreads) {
      float gx, gy;
      sample_point(box, i, a.grid, image_w, image_h, gx, gy);
      part += mask_weight(a, region, gx, gy);
    }
    den = block_sum(part, s_scratch);
  }

  // 2. The weighted sum of this thread's channel over the samples, a chunk at a time.
  const T* plane = nullptr;
  if (active) plane = static_cast<const T*>(sc.data) + b * sc.sb + c * sc.sc;
  float acc = 0.0f;
  for (int64_t start = 0; start < n; start += kPoolChunk) {
    const int count = static_cast<int>(n - start < kPoolChunk ? n - start : kPoolChunk);
    for (int i = threadIdx.x; i < count; i += kPoolThreads) {
      float gx, gy;
      sample_point(box, start + i, a.grid, image_w, image_h, gx, gy);
      const float m = a.masks != nullptr ? mask_weight(a, region, gx, gy) : 1.0f;
      const Taps t = bilinear_taps(gx, gy, sc.w, sc.h);
      s_base[i] = t.y0 * sc.sh + t.x0 * sc.sw;
      s_w[i] = make_float4(t.nw * m, t.ne * m, t.sw * m, t.se * m);
    }
    __syncthreads();
    if (active) {
      for (int i = 0; i < count; ++i) {
        const T* p = plane + s_base[i];
        const float4 w = s_w[i];
        // Taps outside the map, and samples the mask zeroes, have weight 0 and are not read.
        if (w.x != 0.0f) acc += w.x * to_float(p[0]);
        if (w.y != 0.0f) acc += w.y * to_float(p[sc.sw]);
        if (w.z != 0.0f) acc += w.z * to_float(p[sc.sh]);
        if (w.w != 0.0f) acc += w.w * to_float(p[sc.sh + sc.sw]);
      }
    }
    __syncthreads();  // the chunk is read before the next one overwrites it
  }
  if (active) {
    T* out = static_cast<T*>(a.out) + region * a.out_channels + sc.out_offset + c;
    *out = from_float<T>(den == 0.0f ? 0.0f : acc / den);  // an empty mask gives exactly 0
  }
}

}  // namespace

const char* launch_region_pool(const PoolArgs& args, uintptr_t stream) {
  const dim3 block(kPoolThreads);
  const dim3 grid(static_cast<unsigned>(args.batch * args.regions),
                  static_cast<unsigned>(args.num_tiles));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (args.type) {
    case kPoolF32: region_pool_kernel<float><<<grid, block, 0, s>>>(args); break;
    case kPoolF16: region_pool_kernel<__half><<<grid, block, 0, s>>>(args); break;
    case kPoolBF16: region_pool_kernel<__nv_bfloat16><<<grid, block, 0, s>>>(args); break;
    default: return "unsupported feature type";
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace cuda
}  // namespace earthx
