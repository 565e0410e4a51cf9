"""Runtime backends behind one session interface per component (vision, fusion, prompt encoder,
LLM, mask decoder), and the decode loop every backend shares.

Nothing heavy is imported here: `torch_backend` needs torch, `ort_backend` needs onnxruntime, and
each is imported only by `earthx_sdk.api.EarthX.load` for the backend it builds.
"""
