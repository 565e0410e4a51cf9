// tiling ops; see csrc/bindings.cpp for the exported list.
#pragma once

#include "common.h"

namespace earthx {}  // namespace earthx
