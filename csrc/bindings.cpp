// earthx_sdk._C: every function the native core exports, one line each. The ABI is torch-free:
// numpy arrays on the CPU, raw device pointers on the GPU.
#include "common.h"
#include "cpu/preprocess.h"
#include "cpu/rasterize.h"
#include "cpu/masks.h"
#include "cpu/region_pool.h"
#include "cpu/tiling.h"
#include "cuda/device.h"

namespace py = pybind11;

namespace earthx {
// csrc/region_pool_cuda.cpp (declared here: its argument types are pybind11's, and
// csrc/cuda/region_pool.h is shared with nvcc).
void region_pool_cuda(py::sequence features, const std::string& dtype, uintptr_t boxes,
                      uintptr_t masks, std::vector<int64_t> mask_hw, int64_t batch,
                      int64_t regions, int64_t grid, std::vector<int64_t> image_hw, uintptr_t out,
                      uintptr_t stream);
#ifdef EARTHX_WITH_TENSORRT
// csrc/tensorrt/engine_runner.cpp: the _C.tensorrt submodule (Engine, version).
void register_tensorrt(py::module_& m);
#endif
}  // namespace earthx

static py::dict build_info() {
  py::dict d;
#ifdef EARTHX_WITH_CUDA
  d["cuda_compiled"] = true;
#else
  d["cuda_compiled"] = false;
#endif
#ifdef EARTHX_WITH_TENSORRT
  d["tensorrt_compiled"] = true;
#else
  d["tensorrt_compiled"] = false;
#endif
#ifdef EARTHX_OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["threads"] = earthx::num_threads();
  return d;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "EarthX native core: preprocess, prompt rasterization, mask postprocess, tiling";

  // Build facts: cuda_compiled, tensorrt_compiled, openmp, threads.
  m.def("build_info", &build_info);
  // Sets the number of CPU threads the ops use (OpenMP); returns the previous value.
  m.def("set_num_threads", &earthx::set_num_threads, py::arg("n"));

  // --- preprocess (csrc/cpu/preprocess.cpp) -----------------------------------------------------
  // Per-sensor normalization of an HWC image -> (float32 [H, W, C], invalid count).
  m.def("normalize", &earthx::normalize, py::arg("image"), py::arg("kind"), py::arg("params"),
        py::arg("nodata") = py::none());
  // Separable resize of a float32 HWC image; mode "auto", "bilinear" or "area".
  m.def("resize", &earthx::resize, py::arg("image"), py::arg("out_h"), py::arg("out_w"),
        py::arg("mode"));
  // normalize + resize + pad -> (float32 [C, size, size], invalid count), one fused pass.
  m.def("preprocess", &earthx::preprocess, py::arg("image"), py::arg("kind"), py::arg("params"),
        py::arg("nodata"), py::arg("out_h"), py::arg("out_w"), py::arg("size"), py::arg("mode"));

  // The fused preprocess on a CUDA device buffer (csrc/preprocess_cuda.cpp, csrc/cuda/
  // preprocess.cu; raw pointers; RuntimeError without CUDA).
  m.def("preprocess_cuda", &earthx::preprocess_cuda, py::arg("src"), py::arg("shape"),
        py::arg("strides"), py::arg("typestr"), py::arg("kind"), py::arg("params"),
        py::arg("bounds"), py::arg("nodata"), py::arg("dst"), py::arg("out_h"), py::arg("out_w"),
        py::arg("size"), py::arg("mode"), py::arg("stream"));

  // --- region_pool (csrc/region_pool_cuda.cpp, csrc/cuda/region_pool.cu) -----------------------
  // Mask-weighted multi-scale ROI-Align means on CUDA device buffers (raw pointers; maps of any
  // strides, float32 boxes/masks, contiguous out [B, R, sum C]); RuntimeError without CUDA.
  m.def("region_pool_cuda", &earthx::region_pool_cuda, py::arg("features"), py::arg("dtype"),
        py::arg("boxes"), py::arg("masks"), py::arg("mask_hw"), py::arg("batch"),
        py::arg("regions"), py::arg("grid"), py::arg("image_hw"), py::arg("out"),
        py::arg("stream"));

  // --- prompt rasterization (csrc/cpu/rasterize.cpp) --------------------------------------------
  // Disk of a point prompt: centers within radius of (cx, cy); uint8 [out_h, out_w].
  m.def("raster_disk", &earthx::raster_disk, py::arg("cx"), py::arg("cy"), py::arg("radius"),
        py::arg("out_h"), py::arg("out_w"));
  // Closed box [x0, y0, x1, y1] of a box prompt; uint8 [out_h, out_w].
  m.def("raster_box", &earthx::raster_box, py::arg("x0"), py::arg("y0"), py::arg("x1"),
        py::arg("y1"), py::arg("out_h"), py::arg("out_w"));
  // Even-odd polygon of float64 [N, 2] vertices (N >= 3); uint8 [out_h, out_w].
  m.def("raster_polygon", &earthx::raster_polygon, py::arg("vertices"), py::arg("out_h"),
        py::arg("out_w"));
  // Scribble: capsules of the given width along float64 [N, 2] points (N >= 1); uint8 mask.
  m.def("raster_polyline", &earthx::raster_polyline, py::arg("points"), py::arg("width"),
        py::arg("out_h"), py::arg("out_w"));
  // Nearest-neighbour resampling of a bool/uint8 [h, w] mask prompt through (kx, ky).
  m.def("resample_mask", &earthx::resample_mask, py::arg("mask"), py::arg("out_h"),
        py::arg("out_w"), py::arg("kx"), py::arg("ky"));

  // --- mask postprocess (csrc/cpu/masks.cpp, rle.cpp, contours.cpp) -----------------------------
  // Mask logits [N, h, w] over the padded square -> float32 [N, H, W] (unpad + resize, bilinear).
  m.def("upsample_logits", &earthx::upsample_logits, py::arg("logits"), py::arg("size"),
        py::arg("resized_hw"), py::arg("orig_hw"));
  // upsample_logits(...) > threshold -> uint8 [N, H, W], fused (no float image).
  m.def("postprocess_masks", &earthx::postprocess_masks, py::arg("logits"), py::arg("size"),
        py::arg("resized_hw"), py::arg("orig_hw"), py::arg("threshold"));
  // Mask [H, W] (or [N, H, W]) -> COCO compressed RLE {"size", "counts"} (or a list of them).
  m.def("rle_encode", &earthx::rle_encode, py::arg("mask"));
  // COCO RLE (compressed bytes / str or int64 runs) -> uint8 [H, W].
  m.def("rle_decode", &earthx::rle_decode, py::arg("rle"));
  // Foreground pixel count of a COCO RLE.
  m.def("rle_area", &earthx::rle_area, py::arg("rle"));
  // Mask [H, W] -> outer contours (float64 [K, 2] x, y) of its 8-connected components.
  m.def("mask_to_polygons", &earthx::mask_to_polygons, py::arg("mask"));

  // --- tiling (csrc/cpu/tiling.cpp) -------------------------------------------------------------
  // Weighted blend of float32 tiles [N, (C,) th, tw] at boxes [N, 4] -> [(C,) H, W].
  m.def("stitch", &earthx::stitch, py::arg("tiles"), py::arg("boxes"), py::arg("height"),
        py::arg("width"), py::arg("overlap"));
  // Weighted vote of masks [N, th, tw] uint8|bool at boxes [N, 4] -> uint8 [H, W] (vote >= 0.5).
  m.def("stitch_masks", &earthx::stitch_masks, py::arg("masks"), py::arg("boxes"),
        py::arg("height"), py::arg("width"), py::arg("overlap"));

  // --- region_pool (csrc/cpu/region_pool.cpp) ---------------------------------------------------
  // Mask-weighted K x K bilinear region means of float32 [B, C_s, H_s, W_s] -> [B, R, sum C_s].
  m.def("region_pool", &earthx::region_pool, py::arg("features"), py::arg("boxes"),
        py::arg("masks"), py::arg("grid"), py::arg("image_h"), py::arg("image_w"));

  // --- CUDA (csrc/cuda) -------------------------------------------------------------------------
  // Number of visible CUDA devices (0 without a driver or GPU); -1 when CUDA was not compiled.
  m.def("cuda_device_count", &earthx::cuda_device_count);

#ifdef EARTHX_WITH_TENSORRT
  // --- TensorRT (csrc/tensorrt/engine_runner.cpp): _C.tensorrt.Engine, _C.tensorrt.version ---
  earthx::register_tensorrt(m);
#endif
}
