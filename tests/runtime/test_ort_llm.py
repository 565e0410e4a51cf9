"""OrtLLM (onnxruntime decoder, KV cache bound as I/O) against the PyTorch LLM of `tiny`."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime_genai", reason="the LLM export needs onnxruntime-genai")

from earthx_sdk.bundle import FORMAT_VERSION, BundleManifest  # noqa: E402
from earthx_sdk.modeling.config import PRESETS  # noqa: E402
from earthx_sdk.modeling.model import EarthXModel  # noqa: E402
from earthx_sdk.runtime.ort_llm import OrtLLM  # noqa: E402
from export.llm import export_llm  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = EarthXModel(PRESETS["tiny"]).eval()
    out = tmp_path_factory.mktemp("llm_bundle")
    exp = export_llm(model.llm, model.tokenizer, out, "fp32")
    manifest = BundleManifest(format_version=FORMAT_VERSION, model_config={}, sensors={},
                              chat_template="chatml", tokenizer_file="tokenizer.json",
                              components=exp.components)
    return model, out, manifest


def torch_greedy(llm, ids: np.ndarray, steps: int):
    """Greedy tokens, last logits per step and hidden states of every position (HF, no cache)."""
    seq = list(ids)
    logits, hidden = [], None
    with torch.no_grad():
        for _ in range(steps):
            o = llm(input_ids=torch.tensor([seq]), output_hidden_states=True, use_cache=False)
            logits.append(o.logits[0, -1].numpy())
            hidden = o.hidden_states[-1][0].numpy()  # [len(seq), hidden]
            seq.append(int(o.logits[0, -1].argmax()))
    return seq[len(ids):], np.stack(logits), hidden


@pytest.mark.parametrize("capacity", [4, 256])
def test_greedy_matches_torch(tiny, capacity):
    model, out, manifest = tiny
    llm = OrtLLM.from_bundle(out, manifest, threads=1)
    assert (llm.hidden_size, llm.vocab_size, llm.num_layers) == (128, 2048, 2)
    ids = np.random.default_rng(1).integers(5, 2048, 9)
    steps = 12
    want_tokens, want_logits, want_hidden = torch_greedy(model.llm, ids, steps)
    state = llm.new_state(capacity=capacity)
    logits, hidden = llm.forward(llm.embed(ids), state)
    tokens, all_logits, all_hidden = [int(logits.argmax())], [logits], [hidden]
    for _ in range(steps - 1):
        logits, hidden = llm.forward(llm.embed(np.array([tokens[-1]])), state)
        assert hidden.shape == (1, 128)
        tokens.append(int(logits.argmax()))
        all_logits.append(logits)
        all_hidden.append(hidden)
    assert state.length == len(ids) + steps - 1
    assert tokens == want_tokens
    np.testing.assert_allclose(np.stack(all_logits), want_logits, atol=TOL, rtol=0)
    # the hidden states of every position seen, HF's hidden_states[-1]
    np.testing.assert_allclose(np.concatenate(all_hidden), want_hidden[: state.length],
                               atol=TOL, rtol=0)
    # the cache holds the real keys: its first position equals a fresh prefill's
    fresh = llm.new_state()
    llm.forward(llm.embed(ids[:1]), fresh)
    np.testing.assert_array_equal(fresh.keys(0)[:, 0], state.keys(0)[:, 0])


def test_states_are_independent(tiny):
    _, out, manifest = tiny
    llm = OrtLLM.from_bundle(out, manifest)
    a_ids, b_ids = np.arange(10, 20), np.arange(500, 507)
    a, b = llm.new_state(), llm.new_state()
    la, _ = llm.forward(llm.embed(a_ids), a)
    llm.forward(llm.embed(b_ids), b)  # interleaved: must not disturb a
    la2, _ = llm.forward(llm.embed(np.array([7])), a)
    c = llm.new_state()
    llm.forward(llm.embed(a_ids), c)
    lc2, _ = llm.forward(llm.embed(np.array([7])), c)
    np.testing.assert_array_equal(la2, lc2)
    assert not np.array_equal(la, la2)


def test_embed_matches_table(tiny):
    model, out, manifest = tiny
    llm = OrtLLM.from_bundle(out, manifest)
    ids = np.array([0, 1, 2047, 5])
    want = model.llm.get_input_embeddings().weight.detach().numpy()[ids]
    np.testing.assert_array_equal(llm.embed(ids), want)
    assert llm.embed(np.array([], np.int64)).shape == (0, 128)


def test_bad_inputs_are_refused(tiny):
    _, out, manifest = tiny
    llm = OrtLLM.from_bundle(out, manifest)
    other = OrtLLM.from_bundle(out, manifest)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 2048\)"):
        llm.embed(np.array([2048]))
    with pytest.raises(ValueError, match="1-D integer"):
        llm.embed(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"embeds must be \[S >= 1, 128\], got \[3, 64\]"):
        llm.forward(np.zeros((3, 64), np.float32), llm.new_state())
    with pytest.raises(ValueError, match=r"embeds must be"):
        llm.forward(np.zeros((0, 128), np.float32), llm.new_state())
    with pytest.raises(ValueError, match="this OrtLLM"):
        llm.forward(np.zeros((1, 128), np.float32), other.new_state())
    with pytest.raises(ValueError, match="exceeds the LLM's max_positions 512"):
        llm.forward(np.zeros((513, 128), np.float32), llm.new_state())
    with pytest.raises(ValueError, match="providers must be"):
        OrtLLM.from_bundle(out, manifest, providers=["CUDAExecutionProvider"])
    with pytest.raises(ValueError, match="threads must be"):
        OrtLLM.from_bundle(out, manifest, threads=0)


def test_missing_components_are_named(tiny):
    _, out, manifest = tiny
    import dataclasses

    no_embed = dataclasses.replace(manifest, components={"llm": manifest.components["llm"]})
    with pytest.raises(ValueError, match="no 'llm_embed' component"):
        OrtLLM.from_bundle(out, no_embed)
    bad = dataclasses.replace(manifest.components["llm"], extra={"num_layers": 2})
    with pytest.raises(ValueError, match=r"missing key\(s\)"):
        OrtLLM.from_bundle(out, dataclasses.replace(
            manifest, components={**manifest.components, "llm": bad}))
