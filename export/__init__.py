"""Host-side export: ONNX graphs of the vision, prompt-encoder and mask-decoder components,
their validation against the PyTorch reference, and the bundle manifest.

Run as `python -m export --checkpoint DIR --out BUNDLE`. The LLM component is exported by a
later step ("llm: exported by a later step").
"""

from earthx_sdk.bundle import BundleManifest, Component, TensorSpec, verify
from export.validate import ParityError, check_parity

__all__ = ["BundleManifest", "Component", "ParityError", "TensorSpec", "check_parity", "verify"]
