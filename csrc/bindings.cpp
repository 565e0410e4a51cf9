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
  // Per-sensor normalization of an HWC image -> (float32 [H, W, C], invalid count).
  m.def("normalize", &earthx::normalize, py::arg("image"), py::arg("kind"), py::arg("params"),
        py::arg("nodata") = py::none());
  // Separable resize of a float32 HWC image; mode "auto", "bilinear" or "area".
  m.def("resize", &earthx::resize, py::arg("image"), py::arg("out_h"), py::arg("out_w"),
        py::arg("mode"));
  // normalize + resize + pad -> (float32 [C, size, size], invalid count), one fused pass.
  m.def("preprocess", &earthx::preprocess, py::arg("image"), py::arg("kind"), py::arg("params"),
        py::arg("nodata"), py::arg("out_h"), py::arg("out_w"), py::arg("size"), py::arg("mode"));

  // The fused preprocess on a CUDA device buffer (raw pointers; RuntimeError without CUDA).
  m.def("preprocess_cuda", &earthx::preprocess_cuda, py::arg("src"), py::arg("shape"),
        py::arg("strides"), py::arg("typestr"), py::arg("kind"), py::arg("params"),
        py::arg("bounds"), py::arg("nodata"), py::arg("dst"), py::arg("out_h"), py::arg("out_w"),
        py::arg("size"), py::arg("mode"), py::arg("stream"));

  // --- prompt rasterization (csrc/cpu/rasterize.cpp) --------------------------------------------
  // RASTERIZE-SECTION

  // --- mask postprocess (csrc/cpu/masks.cpp) ----------------------------------------------------
  // MASKS-SECTION

  // --- tiling (csrc/cpu/tiling.cpp) -------------------------------------------------------------
  // TILING-SECTION

  // --- CUDA (csrc/cuda) -------------------------------------------------------------------------
  // Number of visible CUDA devices (0 without a driver or GPU); -1 when CUDA was not compiled.
  m.def("cuda_device_count", &earthx::cuda_device_count);
}
