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
  // MASKS-SECTION

  // --- tiling (csrc/cpu/tiling.cpp) -------------------------------------------------------------
  // Weighted blend of float32 tiles [N, (C,) th, tw] at boxes [N, 4] -> [(C,) H, W].
  m.def("stitch", &earthx::stitch, py::arg("tiles"), py::arg("boxes"), py::arg("height"),
        py::arg("width"), py::arg("overlap"));
  // Weighted vote of masks [N, th, tw] uint8|bool at boxes [N, 4] -> uint8 [H, W] (vote >= 0.5).
  m.def("stitch_masks", &earthx::stitch_masks, py::arg("masks"), py::arg("boxes"),
        py::arg("height"), py::arg("width"), py::arg("overlap"));

  // --- CUDA (csrc/cuda) -------------------------------------------------------------------------
  // Number of visible CUDA devices (0 without a driver or GPU); -1 when CUDA was not compiled.
  m.def("cuda_device_count", &earthx::cuda_device_count);
}
