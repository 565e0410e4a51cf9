"""Fixtures shared by the export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """The fp32 bundle of a seeded tiny model (optical vision only: exports are slow), exported
    once per session: (bundle directory, manifest)."""
    pytest.importorskip("onnx", reason="ONNX export needs onnx (the `export` extra)")
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (the `export` extra)")
    import torch

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel
    from export.pipeline import export_bundle

    torch.manual_seed(0)
    model = EarthXModel(EarthXConfig.from_name("tiny")).eval()
    root = tmp_path_factory.mktemp("tiny_bundle")
    model.save(root / "ckpt")
    manifest = export_bundle(root / "ckpt", root / "bundle", "fp32", sensors=["optical"])
    return root / "bundle", manifest
