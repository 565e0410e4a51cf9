"""LLM quantization for the torch backend, and the error measures of quantized paths.

The ONNX graphs are quantized where they are made: `export/llm.py` asks onnxruntime-genai's
builder for int8 or int4 `MatMulNBits` weights (onnxruntime's `MatMulNBitsQuantizer`: symmetric,
per block of `block_size` input rows, LM head included; `accuracy_level=4` computes with int8
activations on CPU). This module quantizes the PyTorch model for the `torch` backend:
int8 weight-only through torchao (`Int8WeightOnlyConfig`: per-output-channel int8 weights,
dequantized inside the matmul), which runs on CPU torch (checked on torch 2.13.0+cpu with
torchao 0.18.0; torchao prints that its CUDA-only extensions did not load, which does not affect
this path).
"""

from __future__ import annotations

import numpy as np


def require_torchao() -> None:
    """Raises ImportError when torchao is not installed."""
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        raise ImportError("int8 weight-only quantization of the torch backend needs torchao "
                          "(pip install -c constraints.txt 'torchao==0.18.0', in the `export` "
                          "extra), not installed")


def int8_weight_only(model):
    """Quantizes every `nn.Linear` of `model` (the LLM's projections and its LM head) to int8
    weight-only in place, with torchao; embeddings stay as they are.

    Args:
        model: a torch module in eval mode (e.g. `EarthXModel.llm`), float32 or bfloat16.

    Returns:
        the same module.

    Raises:
        ImportError: torchao missing.
        TypeError: not a torch module.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    require_torchao()
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig())
    return model


def snr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-noise ratio in dB of `approx` against `reference` (torchao's `compute_error`):
    20 log10(||ref|| / ||ref - approx||); inf when they are equal.

    Raises:
        ValueError: shapes differ.
    """
    reference = np.asarray(reference, np.float64)
    approx = np.asarray(approx, np.float64)
    if reference.shape != approx.shape:
        raise ValueError(f"snr_db: shapes must match, got {list(reference.shape)} and "
                         f"{list(approx.shape)}")
    noise = np.linalg.norm(reference - approx)
    if noise == 0:
        return float("inf")
    return float(20 * np.log10(np.linalg.norm(reference) / noise))


def agreement(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Share of positions whose argmax token equals the reference's (logits [..., V])."""
    reference_logits, logits = np.asarray(reference_logits), np.asarray(logits)
    if reference_logits.shape != logits.shape:
        raise ValueError(f"agreement: shapes must match, got {list(reference_logits.shape)} and "
                         f"{list(logits.shape)}")
    return float((reference_logits.argmax(-1) == logits.argmax(-1)).mean())
