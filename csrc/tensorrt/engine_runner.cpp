// The TensorRT engine runner behind _C.tensorrt (TensorRT 10 C++ API): deserializes an engine,
// sets the input shapes of one inference, binds raw device pointers and enqueues it on a CUDA
// stream (enqueueV3). Torch-free: callers pass `__cuda_array_interface__` / DLPack pointers.
// Compiled only where CMake finds NvInfer.h and libnvinfer (EARTHX_TENSORRT); see README.md.
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"

namespace earthx {

namespace {

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[TensorRT] %s\n", msg);
  }
};

Logger& logger() {
  static Logger instance;
  return instance;
}

const char* dtype_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kBF16: return "bfloat16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kBOOL: return "bool";
    case nvinfer1::DataType::kUINT8: return "uint8";
    default: return "other";
  }
}

std::vector<int64_t> to_vector(const nvinfer1::Dims& d) {
  return std::vector<int64_t>(d.d, d.d + (d.nbDims > 0 ? d.nbDims : 0));
}

}  // namespace

class TrtEngine {
 public:
  explicit TrtEngine(const py::bytes& plan) {
    std::string blob = plan;  // the serialized engine
    if (blob.empty()) fail_value("TrtEngine: plan must be a serialized engine, got 0 bytes");
    runtime_.reset(nvinfer1::createInferRuntime(logger()));
    if (!runtime_) throw std::runtime_error("TrtEngine: createInferRuntime failed");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_)
      throw std::runtime_error("TrtEngine: the plan does not deserialize (built by another "
                               "TensorRT version or for another GPU?): rebuild the engine");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw std::runtime_error("TrtEngine: createExecutionContext failed");
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      bool input = engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
      (input ? inputs_ : outputs_).push_back(name);
    }
  }

  std::vector<std::string> inputs() const { return inputs_; }
  std::vector<std::string> outputs() const { return outputs_; }

  // (dtype, shape with -1 for dynamic dims) of an I/O tensor as the engine declares it.
  py::tuple tensor(const std::string& name) const {
    check_name(name);
    return py::make_tuple(dtype_name(engine_->getTensorDataType(name.c_str())),
                          to_vector(engine_->getTensorShape(name.c_str())));
  }

  void set_input_shape(const std::string& name, const std::vector<int64_t>& shape) {
    check_name(name);
    nvinfer1::Dims d{};
    if (shape.size() > static_cast<size_t>(nvinfer1::Dims::MAX_DIMS))
      fail_value("TrtEngine.set_input_shape: ", name, " has ", shape.size(), " dims, at most ",
                 nvinfer1::Dims::MAX_DIMS);
    d.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) d.d[i] = shape[i];
    if (!context_->setInputShape(name.c_str(), d))
      fail_value("TrtEngine.set_input_shape: ", name, " shape is outside the engine's "
                 "optimization profile or of the wrong rank (see the TensorRT message above)");
  }

  // The shape of a tensor for the input shapes set so far (outputs: after all inputs are set).
  std::vector<int64_t> shape(const std::string& name) const {
    check_name(name);
    return to_vector(context_->getTensorShape(name.c_str()));
  }

  // Binds every I/O tensor to a device pointer and enqueues the inference on `stream`.
  void run(const std::map<std::string, uintptr_t>& buffers, uintptr_t stream) {
    if (!context_->allInputDimensionsSpecified())
      fail_value("TrtEngine.run: set the shape of every dynamic input first");
    for (const auto* names : {&inputs_, &outputs_})
      for (const auto& n : *names) {
        auto it = buffers.find(n);
        if (it == buffers.end() || it->second == 0)
          fail_value("TrtEngine.run: buffers must hold a device pointer for every input and "
                     "output; missing ", n);
        if (!context_->setTensorAddress(n.c_str(), reinterpret_cast<void*>(it->second)))
          fail_value("TrtEngine.run: TensorRT refused the address of ", n, " (misaligned?)");
      }
    for (const auto& kv : buffers)
      if (!is_io(kv.first)) fail_value("TrtEngine.run: unknown tensor ", kv.first);
    bool ok;
    {
      py::gil_scoped_release release;
      ok = context_->enqueueV3(reinterpret_cast<cudaStream_t>(stream));
    }
    if (!ok) throw std::runtime_error("TrtEngine.run: enqueueV3 failed (see the TensorRT log)");
  }

 private:
  bool is_io(const std::string& name) const {
    for (const auto* names : {&inputs_, &outputs_})
      for (const auto& n : *names)
        if (n == name) return true;
    return false;
  }
  void check_name(const std::string& name) const {
    if (!is_io(name)) fail_value("TrtEngine: no tensor named ", name);
  }

  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::vector<std::string> inputs_, outputs_;
};

// _C.tensorrt: a submodule, so the .pyi stub of the functions every build has stays exact.
void register_tensorrt(py::module_& m) {
  auto t = m.def_submodule("tensorrt", "TensorRT engine runner (built with TensorRT)");
  // The TensorRT version this module was built against ("10.3.0").
  t.def("version", [] {
    return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
           std::to_string(NV_TENSORRT_PATCH);
  });
  py::class_<TrtEngine>(t, "Engine")
      .def(py::init<const py::bytes&>(), py::arg("plan"))
      .def_property_readonly("inputs", &TrtEngine::inputs)
      .def_property_readonly("outputs", &TrtEngine::outputs)
      .def("tensor", &TrtEngine::tensor, py::arg("name"))
      .def("set_input_shape", &TrtEngine::set_input_shape, py::arg("name"), py::arg("shape"))
      .def("shape", &TrtEngine::shape, py::arg("name"))
      .def("run", &TrtEngine::run, py::arg("buffers"), py::arg("stream") = 0);
}

}  // namespace earthx
