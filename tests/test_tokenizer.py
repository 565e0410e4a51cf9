"""The torch-free tokenizer: byte-level BPE with atomic special tokens and ChatML."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from earthx_sdk.tokenizer import (
    IM_END,
    IM_START,
    SPECIAL_TOKENS,
    EarthXTokenizer,
    tiny_tokenizer,
    tokenizer_corpus,
    train_tokenizer,
)

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "",
    "a",
    "How many storage tanks are in the image? There are 12.",
    "  two leading spaces, a tab\tand\n\nblank lines, trailing space ",
    "Box [0, 17, 448, 999] at 0.5 m GSD; 100% cloud-free!",
    "Gebäude, Straße, café, naïve",
    "港口的船只 と 飛行機 — удобно",
    "emoji 🛰️🌍 and combining e\u0301 and \x00 control",
    "<regio> <region <seg >",  # near-misses of special tokens are plain text
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_plain_text_round_trips(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_tiny_tokenizer_fills_the_tiny_preset_vocabulary(tok):
    assert tok.vocab_size == 2048
    # Trained tokenizers put the special tokens first.
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.bos_id is None
    assert tok.eos_id == tok.token_id(IM_END)
    ids = {tok.image_id, tok.region_id, tok.seg_id, tok.pad_id, tok.eos_id}
    assert len(ids) == 5


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
@pytest.mark.parametrize("context", ["{t}", "x{t}y", "{t}{t}{t}", " {t} ", "\n{t}\n",
                                     "word{t}word", "1{t}2", "é{t}ü", "<{t}>", "{t}s"])
def test_special_tokens_are_atomic(tok, token, context):
    text = context.format(t=token)
    ids = tok.encode(text)
    tid = tok.token_id(token)
    assert ids.count(tid) == text.count(token)
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert token not in tok.decode(ids)  # skipped by default


def test_region_encodes_to_exactly_region_id(tok):
    assert tok.encode("<region>") == [tok.region_id]
    ids = tok.encode("What is in <region>? And <region><region>.")
    assert ids.count(tok.region_id) == 3
    # Neighbouring text is tokenized as if the special token were a boundary.
    assert tok.encode("in <region>?") == tok.encode("in ") + [tok.region_id] + tok.encode("?")


def test_chat_template_exact_string(tok):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "<image>\nWhat is in <region>?"},
                {"role": "assistant", "content": "A ship."}]
    expected = ("<|im_start|>system\nBe brief.<|im_end|>\n"
                "<|im_start|>user\n<image>\nWhat is in <region>?<|im_end|>\n"
                "<|im_start|>assistant\nA ship.<|im_end|>\n")
    assert tok.apply_chat(messages, add_generation_prompt=False) == expected
    prompt = tok.apply_chat(messages[:2], add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.encode(prompt)
    assert ids.count(tok.token_id(IM_START)) == 3
    assert ids.count(tok.image_id) == 1 and ids.count(tok.region_id) == 1
    assert tok.decode(ids, skip_special_tokens=False) == prompt


@pytest.mark.parametrize("messages, error, words", [
    ([{"role": "tool", "content": "x"}], ValueError, "role"),
    ([{"role": "User", "content": "x"}], ValueError, "'User'"),
    ([{"content": "x"}], ValueError, "role"),
    (["hello"], TypeError, "messages[0]"),
    ([{"role": "user", "content": ["x"]}], TypeError, "content"),
])
def test_bad_chat_messages_raise(tok, messages, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[")):
        tok.apply_chat(messages, add_generation_prompt=True)


def test_encode_rejects_non_text(tok):
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode([1, 2])


def test_save_load_gives_the_same_ids(tok, tmp_path):
    tok.save(tmp_path / "t")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["tokenizer.json",
                                                                   "tokenizer_config.json"]
    loaded = EarthXTokenizer.from_dir(tmp_path / "t")
    assert loaded.to_str() == tok.to_str()
    assert loaded.vocab_size == tok.vocab_size
    for text in tokenizer_corpus(seed=7, n=20) + TEXTS:
        assert loaded.encode(text) == tok.encode(text)
    assert loaded.bos_id is None
    assert EarthXTokenizer.from_file(tmp_path / "t" / "tokenizer.json").to_str() == tok.to_str()


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        EarthXTokenizer.from_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="must exist"):
        EarthXTokenizer.from_file(tmp_path / "nope.json")


def _smollm_like(tmp_path) -> Path:
    """A pretrained-LLM-style tokenizer that has only some of our special tokens."""
    raw = Tokenizer(models.BPE())
    own = [AddedToken(t, special=True, normalized=False)
           for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")]
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog"] * 10,
        trainers.BpeTrainer(vocab_size=300, special_tokens=own, show_progress=False,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    raw.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|endoftext|>"}))
    return tmp_path


def test_pretrained_tokenizer_gets_only_the_missing_special_tokens(tmp_path):
    directory = _smollm_like(tmp_path)
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    old = raw.get_vocab_size(with_added_tokens=True)
    tok = EarthXTokenizer.from_dir(directory)
    assert tok.token_id("<|im_start|>") == raw.token_to_id("<|im_start|>")
    assert tok.eos_id == raw.token_to_id("<|im_end|>")
    assert tok.bos_id == raw.token_to_id("<|endoftext|>")
    assert [tok.pad_id, tok.image_id, tok.region_id, tok.seg_id] == [old, old + 1, old + 2, old + 3]
    assert tok.vocab_size == old + 4
    text = "the lazy fox"
    assert tok.encode(text) == raw.encode(text, add_special_tokens=False).ids
    assert tok.encode("fox<seg>dog").count(tok.seg_id) == 1
    # Wrapping an already complete tokenizer adds nothing.
    assert EarthXTokenizer(Tokenizer.from_str(tok.to_str())).vocab_size == tok.vocab_size


def test_bos_token_must_exist():
    with pytest.raises(ValueError, match="bos_token"):
        EarthXTokenizer(Tokenizer.from_str(tiny_tokenizer().to_str()), bos_token="<s>")
    with pytest.raises(TypeError, match="tokenizers.Tokenizer"):
        EarthXTokenizer("tokenizer.json")


def test_training_is_deterministic_across_processes():
    texts = tokenizer_corpus(seed=3, n=300)
    first = train_tokenizer(texts, 700).to_str()
    assert train_tokenizer(texts, 700).to_str() == first
    # A fresh process has different hash seeds (Python's and the Rust trainer's).
    code = ("import sys; from earthx_sdk.tokenizer import *; "
            "sys.stdout.write(train_tokenizer(tokenizer_corpus(seed=3, n=300), 700).to_str())")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == first


def test_corpus_is_seeded_chatml():
    a = tokenizer_corpus(seed=0, n=50)
    assert a == tokenizer_corpus(seed=0, n=50)
    assert a != tokenizer_corpus(seed=1, n=50)
    assert len(a) == 50
    assert all(t.startswith(IM_START) and "<image>" in t for t in a)
    joined = "".join(tokenizer_corpus(seed=0, n=400))
    for word in ("<region>", "<seg>", "storage tank", "SAR", "multispectral", "dead tree"):
        assert word in joined


def test_vocab_too_small_raises():
    with pytest.raises(ValueError, match="vocab_size must be at least 263"):
        train_tokenizer(["abc"], 100)
