// CUDA facts for earthx info; declared for every build, defined by device.cu or the fallback below.
#pragma once

namespace earthx {

#ifdef EARTHX_WITH_CUDA
int cuda_device_count();
#else
inline int cuda_device_count() { return -1; }
#endif

}  // namespace earthx
