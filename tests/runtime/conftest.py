"""Shared fixtures of the runtime tests: one seeded tiny checkpoint and its bundle per session
(tests/runtime/fixtures.py), exported once for all runtime tests (tens of seconds), or reused from
the directory EARTHX_RUNTIME_FIXTURES names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = os.environ.get("EARTHX_RUNTIME_FIXTURES")


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    if FIXTURES:
        return Path(FIXTURES)
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="session")
def tiny_ckpt(fixture_dir):
    path = fixture_dir / "ckpt"
    if not (path / "model.safetensors").is_file():
        pytest.importorskip("torch", reason="building the tiny checkpoint needs torch")
        from tests.runtime.fixtures import build_ckpt

        build_ckpt(path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(fixture_dir, tiny_ckpt):
    out = fixture_dir / "bundle"
    if not (out / "manifest.json").is_file():
        pytest.importorskip("onnx", reason="ONNX export needs onnx (the `export` extra)")
        pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")
        from tests.runtime.fixtures import build_bundle

        build_bundle(tiny_ckpt, out)
    return out


@pytest.fixture(scope="session")
def torch_model(tiny_ckpt):
    pytest.importorskip("torch", reason="the torch backend needs torch")
    from earthx_sdk import EarthX

    return EarthX.load(tiny_ckpt, device="cpu")


@pytest.fixture(scope="session")
def ort_model(tiny_bundle):
    from earthx_sdk import EarthX

    return EarthX.load(tiny_bundle, device="cpu", threads=1)


@pytest.fixture(scope="session")
def reference(tiny_ckpt):
    pytest.importorskip("torch", reason="the reference model needs torch")
    from earthx_sdk.modeling.model import EarthXModel

    return EarthXModel.load(tiny_ckpt)
