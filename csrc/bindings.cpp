// earthx_sdk._C: every function the native core exports, one line each. The ABI is torch-free:
// numpy arrays on the CPU, raw device pointers on the GPU.
#include "common.h"
#include "cpu/preprocess.h"
#include "cpu/rasterize.h"
#include "cpu/masks.h"
#include "cpu/tiling.h"
#include "cuda/device.h"

namespace py = pybind11;

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
  // PREPROCESS-SECTION

  // --- prompt rasterization (csrc/cpu/rasterize.cpp) --------------------------------------------
  // RASTERIZE-SECTION

  // --- mask postprocess (csrc/cpu/masks.cpp) ----------------------------------------------------
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
  // TILING-SECTION

  // --- CUDA (csrc/cuda) -------------------------------------------------------------------------
  // Number of visible CUDA devices (0 without a driver or GPU); -1 when CUDA was not compiled.
  m.def("cuda_device_count", &earthx::cuda_device_count);
}
