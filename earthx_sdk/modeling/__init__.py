"""The reference model (PyTorch): the spec every exported and compiled path is measured against.

Importing `earthx_sdk.modeling` needs torch and transformers (`pip install earthx-sdk[torch]`).
"""
