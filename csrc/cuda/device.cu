#include <cuda_runtime.h>

#include "device.h"

namespace earthx {

int cuda_device_count() {
  int n = 0;
  // No driver or no GPU is an answer (0 devices), not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

}  // namespace earthx
