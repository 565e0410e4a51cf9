"""ONNX export of the tiny model: parity, dynamic R/Q, fp16, the manifest and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from earthx_sdk.bundle import BundleManifest, verify
from earthx_sdk.modeling.config import EarthXConfig
from earthx_sdk.modeling.model import EarthXModel
from earthx_sdk.ops.region_pool import region_pool
from export.wrappers import PromptEncoderOnnx


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EarthXModel(EarthXConfig.from_name("tiny")).eval()


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory):
    """A tiny checkpoint and its fp32 bundle (optical vision only: exports are slow)."""
    pytest.importorskip("onnx", reason="ONNX export needs onnx (the `export` extra)")
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (the `export` extra)")
    from export.pipeline import export_bundle

    root = tmp_path_factory.mktemp("export")
    model.save(root / "ckpt")
    manifest = export_bundle(root / "ckpt", root / "bundle", "fp32", sensors=["optical"])
    return root, manifest


def _inputs(model, r, q, seed=1):
    g = torch.Generator().manual_seed(seed)
    size = model.cfg.vision.image_size
    with torch.no_grad():
        v = model.vision(torch.randn(1, 3, size, size, generator=g), "optical")
    boxes = torch.sort(torch.rand(1, r, 4, generator=g) * size, dim=-1).values
    masks = (torch.rand(1, r, 28, 28, generator=g) > 0.5).float()
    types = torch.randint(0, 5, (1, r), generator=g)
    seg = torch.randn(1, q, model.mask_decoder.llm_hidden, generator=g)
    return v, boxes, masks, types, seg


@pytest.mark.parametrize("where_bins", [0, 8])
def test_prompt_wrapper_matches_the_encoder(model, where_bins):
    v, boxes, masks, types, _ = _inputs(model, 4, 1)
    pe = model.prompt_encoder
    if where_bins:  # the encoder with the prompt-position embeddings, the rest shared
        import dataclasses

        from earthx_sdk.modeling.prompt_encoder import PromptEncoder

        torch.manual_seed(1)
        pe2 = PromptEncoder(dataclasses.replace(pe.cfg, where_bins=where_bins),
                            pe.feature_dims, pe.image_token_dim, pe.llm_hidden, pe.image_size)
        pe2.load_state_dict(pe.state_dict(), strict=False)
        pe = pe2.eval()
    valid = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        region, states = pe(v.features, v.image_tokens, boxes, masks, types, valid)
        pooled = region_pool(v.features, boxes, masks, grid=pe.cfg.pool_grid,
                             image_size=pe.image_size)
        r2, s2 = PromptEncoderOnnx(pe)(pooled, boxes, types, v.image_tokens)
    torch.testing.assert_close(r2, region, rtol=0, atol=1e-6)
    torch.testing.assert_close(s2, states, rtol=0, atol=1e-6)


def test_bundle_components_and_parity(bundle):
    root, manifest = bundle
    assert set(manifest.components) == {"vision_optical_3", "prompt_encoder", "mask_decoder"}
    assert "llm" not in manifest.components  # exported by a later step
    assert manifest.parity and all(p["max_abs_err"] <= p["tolerance"] for p in manifest.parity)
    assert all(p["tolerance"] <= 1e-3 for p in manifest.parity)
    pe = manifest.components["prompt_encoder"]
    assert [t.name for t in pe.inputs] == ["pooled", "boxes", "types", "image_tokens"]
    assert pe.inputs[0].shape[1] == "R" and pe.inputs[2].dtype == "int64"
    md = manifest.components["mask_decoder"]
    assert md.inputs[0].shape[1] == "Q" and md.outputs[0].shape == (1, "Q", 28, 28)
    assert manifest.sensors["optical"]["channels"] == [3]
    assert manifest.exporter["onnxruntime"] != "missing"
    verify(root / "bundle")


@pytest.mark.parametrize("r,q", [(1, 3), (5, 1)])
def test_dynamic_prompts_and_queries(bundle, model, r, q):
    from export.validate import check_parity
    from export.wrappers import MaskDecoderOnnx

    root, _ = bundle
    v, boxes, masks, types, seg = _inputs(model, r, q, seed=r)
    pe = model.prompt_encoder
    pooled = region_pool(v.features, boxes, masks, grid=pe.cfg.pool_grid, image_size=112)
    check_parity("prompt_encoder", root / "bundle" / "prompt_encoder.onnx", PromptEncoderOnnx(pe),
                 {"pooled": pooled, "boxes": boxes, "types": types,
                  "image_tokens": v.image_tokens}, tolerance=1e-4)
    states = torch.randn(1, r, pe.cfg.dim)
    check_parity("mask_decoder", root / "bundle" / "mask_decoder.onnx",
                 MaskDecoderOnnx(model.mask_decoder),
                 {"seg_hidden": seg, "dense": v.dense, "hires_s4": v.hires[0],
                  "hires_s8": v.hires[1], "prompt_states": states}, tolerance=1e-4)


def test_parity_failures_are_collected(bundle, model):
    from export.validate import ParityError, check_parity
    from export.wrappers import MaskDecoderOnnx

    root, _ = bundle
    v, _, _, _, seg = _inputs(model, 2, 2)
    wrong = MaskDecoderOnnx(EarthXModel(EarthXConfig.from_name("tiny")).mask_decoder)
    with pytest.raises(ParityError, match=r"2 output.*mask_logits: max abs error.*iou_pred"):
        check_parity("mask_decoder", root / "bundle" / "mask_decoder.onnx", wrong,
                     {"seg_hidden": seg, "dense": v.dense, "hires_s4": v.hires[0],
                      "hires_s8": v.hires[1], "prompt_states": torch.randn(1, 2, 64)})


def test_fp16_mask_decoder(bundle, model, tmp_path):
    from export.onnx_export import component_specs, to_fp16
    from export.validate import check_parity

    root, _ = bundle
    half = to_fp16(root / "bundle" / "mask_decoder.onnx", tmp_path / "md.fp16.onnx")
    spec = component_specs(model, "optical", 3)[2]
    report = check_parity("mask_decoder.fp16", half, spec.module, spec.inputs, "fp16")
    assert all(p.ok for p in report)


def test_manifest_round_trip_and_verify(bundle, tmp_path):
    root, manifest = bundle
    assert BundleManifest.from_json(manifest.to_json()) == manifest
    d = json.loads(manifest.to_json())
    d["surprise"] = 1
    with pytest.raises(ValueError, match="unknown key.*surprise"):
        BundleManifest.from_json(json.dumps(d))
    d = json.loads(manifest.to_json())
    d["components"]["mask_decoder"]["surprise"] = 0
    with pytest.raises(ValueError, match="components.mask_decoder: unknown key"):
        BundleManifest.from_json(json.dumps(d))
    copy = tmp_path / "bundle"
    shutil.copytree(root / "bundle", copy)
    with open(copy / "prompt_encoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="component 'prompt_encoder'.*modified"):
        verify(copy)


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    from export.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "b")])
    assert e.value.code == 2 and "no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"), "--precision", "int3"])
    assert e.value.code == 2 and "invalid choice: 'int3'" in capsys.readouterr().err


def test_cli_bad_checkpoint(tmp_path, capsys, bundle):
    from export.__main__ import main

    root, _ = bundle
    rc = main(["--checkpoint", str(root / "ckpt"), "--out", str(tmp_path / "b"),
               "--resolution", "224"])
    assert rc == 2 and "built for 112 px" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "not an EarthX model directory" in capsys.readouterr().err


def test_mask_decoder_without_prompts(bundle, model):
    """R = 0 (no visual prompts) runs in the graph and equals the reference without prompts."""
    from export.validate import run_onnx

    root, _ = bundle
    v, _, _, _, seg = _inputs(model, 1, 2)
    feeds = {"seg_hidden": seg, "dense": v.dense, "hires_s4": v.hires[0], "hires_s8": v.hires[1],
             "prompt_states": torch.zeros(1, 0, 64)}
    got = run_onnx(root / "bundle" / "mask_decoder.onnx", {k: t.numpy() for k, t in feeds.items()})
    with torch.no_grad():
        logits, iou = model.mask_decoder(seg, v.dense, v.hires, None, None)
    torch.testing.assert_close(torch.from_numpy(got["mask_logits"]), logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(got["iou_pred"]), iou, rtol=0, atol=1e-4)
