"""Fast implementations of the ops in earthx_sdk/ops (C++ CPU, Triton, CUDA). Each kernel module
exposes `available() -> (bool, reason)` and the op itself with the reference's semantics."""
