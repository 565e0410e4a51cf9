"""Shared fixtures of the runtime tests: one seeded tiny checkpoint and its bundle per session.

The bundle (ONNX vision graphs of every sensor, prompt encoder, mask decoder, LLM decoder) takes
tens of seconds to export, so it is made once for all runtime tests.

The tiny model has random weights, so it would rarely emit `<seg>`; `seg_prone` points the
`<seg>` embedding row (tied with the LM head) along the mean direction of the final hidden
states, so that greedy answers mix `<seg>` with other tokens and the reference's own `generate`
returns masks to compare against.
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="the reference backend needs torch")

SENSORS = ("optical", "multispectral", "sar", "infrared")


def seg_prone(model) -> None:
    """Makes `<seg>` a likely greedy answer of the random-weight tiny model (in place): its row
    (tied with the LM head) becomes the newline row, which random tiny models answer with,
    plus a small step along the final hidden state of an optical prompt. Greedy answers then
    hold `<seg>` for some sensors and prompts and other tokens for others."""
    from tests.runtime.cases import images

    tok = model.tokenizer
    table = model.llm.get_input_embeddings().weight
    with torch.no_grad():
        s = model.processor.encode(images()["optical"], "optical", "Describe this image.")
        _, embeds, _ = model._prepare([s])
        h = model.llm(inputs_embeds=embeds[0][None], output_hidden_states=True)
        h = h.hidden_states[-1][0, -1]  # [hidden]
        nl = tok.encode("\n")[0]
        table[tok.seg_id] = table[nl] + 0.02 * table[nl].norm() * h / h.norm()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    torch.manual_seed(0)
    model = EarthXModel(EarthXConfig.from_name("tiny")).eval()
    seg_prone(model)
    path = tmp_path_factory.mktemp("runtime") / "ckpt"
    model.save(path)
    return path


def make_bundle(ckpt, out, sensors):
    """export_bundle of a checkpoint, with the LLM graph (added here while the pipeline does
    not export it itself)."""
    from earthx_sdk.modeling.model import EarthXModel
    from export.pipeline import export_bundle

    manifest = export_bundle(ckpt, out, "fp32", sensors=list(sensors))
    if "llm" not in manifest.components:
        from export.llm import export_llm

        model = EarthXModel.load(ckpt)
        exp = export_llm(model.llm, model.tokenizer, out, "fp32")
        manifest = dataclasses.replace(manifest,
                                       components={**manifest.components, **exp.components})
        manifest.save(out)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_ckpt):
    pytest.importorskip("onnx", reason="ONNX export needs onnx (the `export` extra)")
    pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")
    return make_bundle(tiny_ckpt, tiny_ckpt.parent / "bundle", SENSORS)


@pytest.fixture(scope="session")
def torch_model(tiny_ckpt):
    from earthx_sdk import EarthX

    return EarthX.load(tiny_ckpt, device="cpu")


@pytest.fixture(scope="session")
def ort_model(tiny_bundle):
    from earthx_sdk import EarthX

    return EarthX.load(tiny_bundle, device="cpu", threads=1)


@pytest.fixture(scope="session")
def reference(tiny_ckpt):
    from earthx_sdk.modeling.model import EarthXModel

    return EarthXModel.load(tiny_ckpt)
