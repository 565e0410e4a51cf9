"""EarthX SDK: a compiled, edge-optimized runtime for a spatial multi-modal remote-sensing LLM.

Importing the package loads only numpy and the native core (when it was built); optional heavy
dependencies (torch, onnxruntime, Triton, TensorRT) are imported by the functions that need them.
`earthx_sdk.EarthX` (the API, earthx_sdk/api.py) is imported on first access.
"""

from earthx_sdk._version import __version__

__all__ = ["EarthX", "__version__"]


def __getattr__(name: str):
    if name == "EarthX":
        from earthx_sdk.api import EarthX

        return EarthX
    raise AttributeError(f"module 'earthx_sdk' has no attribute {name!r}")
