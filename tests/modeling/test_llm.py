"""The LLM wrapper: from sizes, from a local pretrained directory, and incremental decoding."""

import dataclasses

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from earthx_sdk.modeling.config import EarthXConfig, LLMConfig  # noqa: E402
from earthx_sdk.modeling.llm import build_llm, load_tokenizer  # noqa: E402
from earthx_sdk.tokenizer import SPECIAL_TOKENS, tokenizer_corpus  # noqa: E402

TINY = EarthXConfig.from_name("tiny").llm


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(TINY)


@pytest.mark.parametrize("family, cls", [("llama", "LlamaForCausalLM"),
                                         ("qwen2", "Qwen2ForCausalLM")])
def test_tiny_build_from_sizes(tok, family, cls):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, family=family)
    model = build_llm(cfg, tok)
    assert type(model).__name__ == cls
    assert not model.training
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.max_position_embeddings) == (128, 2, 4, 2, 256, 512)
    assert c.rope_parameters["rope_theta"] == 10_000.0
    assert (c.eos_token_id, c.pad_token_id) == (tok.eos_id, tok.pad_id)
    # The tokenizer sets the table size; the tiny tokenizer fills the preset's nominal 2048.
    assert model.get_input_embeddings().weight.shape == (tok.vocab_size, 128)
    assert tok.vocab_size == TINY.vocab_size
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_vocab_size_follows_the_tokenizer(tok):
    cfg = dataclasses.replace(TINY, vocab_size=999, tie_embeddings=False)
    model = build_llm(cfg, tok)
    assert model.get_input_embeddings().weight.shape[0] == tok.vocab_size
    assert model.get_output_embeddings().weight.shape[0] == tok.vocab_size
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight


def test_forward_with_inputs_embeds_matches_input_ids(tok):
    torch.manual_seed(0)
    model = build_llm(TINY, tok)
    texts = ["<image>\nHow many ships are in <region>?", "Describe this radar image, please."]
    ids = torch.tensor([tok.encode(t)[:8] for t in texts])  # [2, 8]
    embeds = model.get_input_embeddings()(ids)  # [2, 8, 128]
    with torch.no_grad():
        by_embeds = model(inputs_embeds=embeds).logits  # [2, 8, V]
        by_ids = model(input_ids=ids).logits
    assert by_embeds.shape == (2, 8, tok.vocab_size)
    assert torch.isfinite(by_embeds).all()
    torch.testing.assert_close(by_embeds, by_ids, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("batch, prompt", [(1, 1), (1, 9), (2, 17)])
def test_incremental_decoding_equals_full_recomputation(tok, family, batch, prompt):
    """EarthXModel.generate feeds a prompt as inputs_embeds, then one embedding per step."""
    torch.manual_seed(1)
    model = build_llm(dataclasses.replace(TINY, family=family), tok)
    hidden = model.config.hidden_size
    seq = torch.randn(batch, prompt + 4, hidden)  # [B, T, hidden]
    cache = transformers.DynamicCache()
    with torch.no_grad():
        out = model(inputs_embeds=seq[:, :prompt], past_key_values=cache, use_cache=True)
        steps = [out.logits[:, -1]]  # each [B, V]
        for t in range(prompt, seq.shape[1]):
            out = model(inputs_embeds=seq[:, t:t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits[:, -1])
        assert cache.get_seq_length() == seq.shape[1]
        for t, step in zip(range(prompt, seq.shape[1] + 1), steps, strict=True):
            full = model(inputs_embeds=seq[:, :t], use_cache=False).logits[:, -1]  # [B, V]
            torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-5)


def test_unknown_family_raises(tok):
    with pytest.raises(ValueError, match=r"family must be one of \['llama', 'qwen2'\], got 'gpt2'"):
        build_llm(dataclasses.replace(TINY, family="gpt2"), tok)


@pytest.mark.parametrize("change, words", [({"heads": 3}, "hidden must be a multiple of heads"),
                                           ({"kv_heads": 3}, "heads must be a multiple of kv")])
def test_sizes_that_do_not_divide_raise(tok, change, words):
    with pytest.raises(ValueError, match=words):
        build_llm(dataclasses.replace(TINY, **change), tok)


def _pretrained_dir(tmp_path, tie: bool):
    """A tiny SmolLM2-like checkpoint: its tokenizer has only the ChatML tokens of ours."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    own = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[:3]]
    raw.train_from_iterator(
        tokenizer_corpus(seed=5, n=300),
        trainers.BpeTrainer(vocab_size=700, special_tokens=own, show_progress=False,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    raw.save(str(tmp_path / "tokenizer.json"))
    vocab = raw.get_vocab_size(with_added_tokens=True)
    torch.manual_seed(2)
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    return model, raw, vocab


@pytest.mark.parametrize("tie", [True, False])
def test_pretrained_directory_loads_with_grown_embeddings(tmp_path, tie):
    original, raw, old = _pretrained_dir(tmp_path, tie)
    cfg = LLMConfig(family="ignored", llm_path=str(tmp_path))
    tok = load_tokenizer(cfg)
    assert tok.added_tokens == SPECIAL_TOKENS[3:]
    assert tok.vocab_size == old + 4
    model = build_llm(cfg, tok)
    emb = model.get_input_embeddings().weight  # [old + 4, 64]
    assert emb.shape == (old + 4, 64)
    assert model.config.vocab_size == old + 4
    old_emb = original.get_input_embeddings().weight
    torch.testing.assert_close(emb[:old], old_emb, rtol=0, atol=0)
    for i in (tok.pad_id, tok.image_id, tok.region_id, tok.seg_id):
        torch.testing.assert_close(emb[i], old_emb.mean(0))
    head = model.get_output_embeddings().weight
    assert (head is emb) == tie
    torch.testing.assert_close(head[old:], original.get_output_embeddings().weight.mean(0)
                               .expand(4, -1))

    ids = torch.tensor([raw.encode("How many ships are in the harbor?").ids])  # [1, T]
    with torch.no_grad():
        before = original(input_ids=ids).logits  # [1, T, old]
        after = model(input_ids=ids).logits  # [1, T, old + 4]
    assert after.shape[-1] == old + 4
    torch.testing.assert_close(after[..., :old], before, rtol=0, atol=1e-5)


def test_tokenizer_path_wins_over_llm_path(tmp_path, tok):
    tok.save(tmp_path / "tok")
    cfg = LLMConfig(llm_path=str(tmp_path / "missing"), tokenizer_path=str(tmp_path / "tok"))
    assert load_tokenizer(cfg).to_str() == tok.to_str()
    file_cfg = LLMConfig(tokenizer_path=str(tmp_path / "tok" / "tokenizer.json"))
    assert load_tokenizer(file_cfg).to_str() == tok.to_str()


def test_missing_pretrained_paths_raise(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        load_tokenizer(LLMConfig(llm_path=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="llm_path must be a local model directory"):
        build_llm(LLMConfig(llm_path=str(tmp_path / "nope")), tok)


def test_pretrained_model_of_another_family_raises(tmp_path, tok):
    transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        build_llm(LLMConfig(llm_path=str(tmp_path)), tok)
