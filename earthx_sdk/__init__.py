"""EarthX SDK: a compiled, edge-optimized runtime for a spatial multi-modal remote-sensing LLM.

Importing the package loads only numpy and the native core (when it was built); optional heavy
dependencies (torch, onnxruntime, Triton, TensorRT) are imported by the functions that need them.
"""

from earthx_sdk._version import __version__

__all__ = ["__version__"]
