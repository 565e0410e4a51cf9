"""The bundle loader: integrity (sha256 of every file), required components, format version and
malformed manifests, each refused with a message that names the part and what to do."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from earthx_sdk.bundle import (
    FORMAT_VERSION,
    MANIFEST,
    BundleError,
    BundleFileMissing,
    BundleFormatError,
    BundleManifest,
    Component,
    TensorSpec,
    load_bundle,
    sha256,
    verify,
)

TOKENIZER = "tokenizer.json"


def _component(root: Path, name: str, payload: bytes, extra: dict | None = None,
               fmt: str = "onnx") -> Component:
    file = f"{name}.{fmt}"
    (root / file).write_bytes(payload)
    spec = TensorSpec("x", "float32", (1, "R", 4))
    return Component(file, fmt, "fp32", (spec,), (spec,), sha256(root / file), extra or {})


def make_bundle(root: Path, names=("vision_optical_3", "prompt_encoder", "mask_decoder"),
                **overrides) -> BundleManifest:
    """A small bundle on disk (files of arbitrary bytes: the loader only hashes them)."""
    root.mkdir(parents=True, exist_ok=True)
    comps = {}
    for i, n in enumerate(names):
        fmt = "safetensors" if n == "llm_embed" else "onnx"
        extra = {"num_layers": 2, "kv_heads": 2} if n == "llm" else None
        comps[n] = _component(root, n, f"graph {i} of {n}".encode(), extra, fmt)
    (root / TOKENIZER).write_text('{"model": {}}')
    fields = dict(format_version=FORMAT_VERSION, model_config={"name": "tiny"},
                  sensors={"optical": {"channels": [3]}}, chat_template="chatml",
                  tokenizer_file=TOKENIZER, components=comps,
                  files={TOKENIZER: sha256(root / TOKENIZER)})
    manifest = BundleManifest(**{**fields, **overrides})
    manifest.save(root)
    return manifest


def _edit_manifest(root: Path, edit) -> None:
    d = json.loads((root / MANIFEST).read_text())
    edit(d)
    (root / MANIFEST).write_text(json.dumps(d))


def test_load_round_trip_keeps_extra(tmp_path):
    names = ("vision_optical_3", "vision_sar_1", "prompt_encoder", "mask_decoder", "llm",
             "llm_embed")
    manifest = make_bundle(tmp_path, names)
    loaded = load_bundle(tmp_path)
    assert loaded == manifest
    assert loaded.components["llm"].extra == {"num_layers": 2, "kv_heads": 2}
    assert loaded.components["mask_decoder"].extra == {}
    assert loaded.components["prompt_encoder"].inputs[0].shape == (1, "R", 4)
    assert not list(tmp_path.glob("*.tmp"))  # written under a temporary name, then renamed


def test_tampered_component_is_named(tmp_path):
    make_bundle(tmp_path)
    with open(tmp_path / "mask_decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"component 'mask_decoder' file mask_decoder\.onnx "
                                          r"was modified.*re-export or restore it"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="mask_decoder"):
        verify(tmp_path)  # integrity alone, the same refusal


def test_tampered_tokenizer_is_named(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / TOKENIZER).write_text('{"model": {"x": 1}}')
    with pytest.raises(BundleError, match=r"file tokenizer\.json was modified"):
        load_bundle(tmp_path)


def test_tokenizer_without_hash_is_refused(tmp_path):
    make_bundle(tmp_path, files={})
    with pytest.raises(BundleError, match="no sha256 of the tokenizer file 'tokenizer.json'"):
        load_bundle(tmp_path)


def test_missing_component_file(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "prompt_encoder.onnx").unlink()
    with pytest.raises(BundleFileMissing, match=r"component 'prompt_encoder' file "
                                                r"prompt_encoder\.onnx is missing.*restore"):
        load_bundle(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path)


@pytest.mark.parametrize("names, missing", [
    (("prompt_encoder", "mask_decoder"), "vision_*"),
    (("vision_optical_3", "mask_decoder"), "prompt_encoder"),
    (("vision_optical_3", "prompt_encoder"), "mask_decoder"),
])
def test_missing_required_component(tmp_path, names, missing):
    make_bundle(tmp_path, names)
    pattern = rf"no component '{re.escape(missing)}'.*re-export the bundle"
    with pytest.raises(BundleError, match=pattern):
        load_bundle(tmp_path)
    assert load_bundle(tmp_path, require=()).components.keys() == set(names)


def test_require_is_a_parameter(tmp_path):
    make_bundle(tmp_path)
    with pytest.raises(BundleError, match="no component 'llm'"):
        load_bundle(tmp_path, require=("llm",))
    assert load_bundle(tmp_path, require=("vision_optical_*",))


@pytest.mark.parametrize("present, lacking", [("llm", "llm_embed"), ("llm_embed", "llm")])
def test_llm_and_embedding_come_together(tmp_path, present, lacking):
    make_bundle(tmp_path, ("vision_optical_3", "prompt_encoder", "mask_decoder", present))
    with pytest.raises(BundleError, match=f"component '{present}' needs '{lacking}'"):
        load_bundle(tmp_path)


def test_newer_format_version(tmp_path):
    make_bundle(tmp_path)

    def newer(d):
        d["format_version"] = FORMAT_VERSION + 1
        d["a_key_of_the_future"] = {}  # a newer format may add keys: the version is read first

    _edit_manifest(tmp_path, newer)
    with pytest.raises(BundleFormatError,
                       match=rf"reads bundle format {FORMAT_VERSION}; the bundle is format "
                             rf"{FORMAT_VERSION + 1}: upgrade earthx-sdk"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format_version=0), "format 0, which no release wrote"),
    (lambda d: d.update(format_version="1"), "format_version must be an integer"),
    (lambda d: d.update(components=[]), r"components: must be a JSON dict, got list"),
    (lambda d: d.update(surprise=1), r"unknown key\(s\) \['surprise'\]"),
    (lambda d: d.pop("sensors"), r"missing key\(s\) \['sensors'\]"),
    (lambda d: d["components"]["mask_decoder"].update(extra=[1]),
     "components.mask_decoder.extra: must be a JSON dict, got list"),
    (lambda d: d["components"]["mask_decoder"].update(format="pickle"),
     "format must be one of"),
    (lambda d: d["components"]["mask_decoder"].update(file="../../etc/passwd"),
     "must be a relative path inside the bundle"),
    (lambda d: d["components"]["mask_decoder"]["inputs"][0].update(shape=[1, 2.5]),
     r"inputs\[0\].shape: dims must be integers or dim names"),
    (lambda d: d["components"]["mask_decoder"]["outputs"][0].update(layout="nchw"),
     r"outputs\[0\]: unknown key"),
    (lambda d: d["files"].update({"/abs/x": "00"}), "must be a relative path"),
])
def test_malformed_manifest(tmp_path, edit, message):
    make_bundle(tmp_path)
    _edit_manifest(tmp_path, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path)


def test_not_json_and_not_a_bundle(tmp_path):
    with pytest.raises(BundleFileMissing, match="no such directory"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleFileMissing, match="is not a bundle: manifest.json missing"):
        load_bundle(tmp_path)
    make_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text('{"format_version": 1,')
    with pytest.raises(BundleError, match="not valid JSON.*re-export"):
        load_bundle(tmp_path)


def test_component_extra_must_be_json():
    spec = TensorSpec("x", "float32", (1,))
    with pytest.raises(ValueError, match="extra must be a JSON object"):
        Component("a.onnx", "onnx", "fp32", (spec,), (spec,), "0" * 64, [1])
    with pytest.raises(ValueError, match="extra must be JSON-serializable"):
        Component("a.onnx", "onnx", "fp32", (spec,), (spec,), "0" * 64, {"f": object()})


def test_bundle_module_is_torch_free():
    code = ("import sys, earthx_sdk.bundle; "
            "bad = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_exported_tiny_bundle_loads_and_refuses_tampering(tiny_bundle, tmp_path):
    root, manifest = tiny_bundle
    assert load_bundle(root) == manifest
    assert manifest.files == {TOKENIZER: sha256(root / TOKENIZER)}
    copy = tmp_path / "bundle"
    shutil.copytree(root, copy)
    vision = manifest.components["vision_optical_3"].file
    data = bytearray((copy / vision).read_bytes())
    data[len(data) // 2] ^= 1  # one flipped bit in the middle of the graph
    (copy / vision).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"component 'vision_optical_3' file {vision}"):
        load_bundle(copy)


@pytest.mark.slow
def test_large_graph_weights_are_named_after_the_graph(tmp_path, monkeypatch):
    """Graphs over 1.5 GB of weights (base scale) get external data from the exporter; the file
    must be named after the final graph (not its temporary name) so the bundle can list it."""
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (the `export` extra)")
    import torch
    from torch.onnx._internal.exporter import _onnx_program

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel
    from export.onnx_export import component_specs, export_onnx, external_data_file
    from export.validate import check_parity

    monkeypatch.setattr(_onnx_program, "_LARGE_MODEL_THRESHOLD", 0)  # the tiny graph is "large"
    torch.manual_seed(0)
    model = EarthXModel(EarthXConfig.from_name("tiny")).eval()
    spec = component_specs(model, "optical", 3)[1]  # prompt_encoder: the smallest graph
    path = export_onnx(spec, tmp_path / "prompt_encoder.onnx")
    data = external_data_file(path)
    assert data.name == "prompt_encoder.onnx.data" and data.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, data.name]  # no temp left
    assert all(p.ok for p in check_parity(spec.name, path, spec.module, spec.inputs))
    monkeypatch.setattr(_onnx_program, "_LARGE_MODEL_THRESHOLD", 1536 * 1024 * 1024)
    export_onnx(spec, path)  # inline this time: the stale data file must go
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
