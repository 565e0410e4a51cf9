#include "common.h"

namespace earthx {

int set_num_threads(int n) {
  check_positive(n, "set_num_threads", "n");
  int previous = num_threads();
#ifdef EARTHX_OPENMP
  omp_set_num_threads(n);
#endif
  return previous;
}

}  // namespace earthx
