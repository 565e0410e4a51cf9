"""The language model: a `transformers` causal LM of the Llama/Qwen2 family, and its tokenizer.

`build_llm` makes the decoder from `LLMConfig` sizes, or loads a pretrained one from a local
directory (`llm_path`, never the network). EarthXModel drives it with `inputs_embeds` (text
embeddings with `<image>`/`<region>` positions replaced by visual tokens) and a `DynamicCache`:

    out = llm(inputs_embeds=x, past_key_values=cache, use_cache=True)  # x: [B, T, hidden]
    out.logits  # [B, T, vocab_size]

Vocabulary size: a from-sizes model has max(`LLMConfig.vocab_size`, `tokenizer.vocab_size`) rows
(the tiny tokenizer fills the tiny preset's 2048 exactly; a larger preset keeps its nominal table,
rows past the tokenizer unused, as padded pretrained tables are, so its size and cost are real). A
pretrained model keeps its table and grows it when the tokenizer needs more rows.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from earthx_sdk.modeling.config import LLMConfig
from earthx_sdk.tokenizer import EarthXTokenizer, tiny_tokenizer

# family -> (config class, model class); also the model_types accepted from a pretrained directory.
FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}


def load_tokenizer(cfg: LLMConfig) -> EarthXTokenizer:
    """The tokenizer for `cfg`: `cfg.tokenizer_path` (a tokenizer.json or a directory holding one),
    else `cfg.llm_path`'s tokenizer.json, else `tiny_tokenizer(cfg.vocab_size)`. Reads local files
    only.

    Raises:
        FileNotFoundError: the named path, or `llm_path`'s tokenizer.json, does not exist.
    """
    if cfg.tokenizer_path is not None:
        path = Path(cfg.tokenizer_path)
        return EarthXTokenizer.from_file(path) if path.is_file() else EarthXTokenizer.from_dir(path)
    if cfg.llm_path is not None:
        # A pretrained LLM with a made-up tokenizer would be nonsense: no silent fallback.
        try:
            return EarthXTokenizer.from_dir(cfg.llm_path)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; set LLMConfig.tokenizer_path to the LLM's tokenizer "
                                    "directory") from None
    return tiny_tokenizer(cfg.vocab_size)


def build_llm(cfg: LLMConfig, tokenizer: EarthXTokenizer, dtype: torch.dtype = torch.float32,
              attn_implementation: str | None = None) -> PreTrainedModel:
    """The causal LM of `cfg`, sized for `tokenizer`, in eval mode.

    From sizes (`cfg.llm_path` is None): a freshly initialized `FAMILIES[cfg.family]` model (seed
    torch for reproducible weights) with max(cfg.vocab_size, tokenizer.vocab_size) rows and the
    tokenizer's bos/eos/pad ids. Pretrained: `AutoModelForCausalLM.from_pretrained(cfg.llm_path)`
    from local files; the rows of the special tokens the tokenizer appended
    (`tokenizer.added_tokens`, growing the table where needed) are set to the mean of the
    pretrained rows, so the logits of the old vocabulary are unchanged.

    Args:
        cfg: the LLM sizes, or `llm_path` (then the sizes and `family` are ignored).
        tokenizer: the model's tokenizer (see `load_tokenizer`).
        dtype: parameter dtype (fp32, the reference, by default).
        attn_implementation: "eager", "sdpa", ...; None takes transformers' default.

    Returns:
        A `LlamaForCausalLM` or `Qwen2ForCausalLM`; its `forward(inputs_embeds [B, T, cfg.hidden],
        attention_mask [B, T] | None, past_key_values, use_cache)` gives logits [B, T, V].

    Raises:
        ValueError: unknown family (the message lists the valid ones), sizes that do not divide
            (hidden by heads, heads by kv_heads), or a pretrained model of another family.
        FileNotFoundError: `cfg.llm_path` is not a directory.
    """
    if not isinstance(tokenizer, EarthXTokenizer):
        raise TypeError(f"tokenizer must be an EarthXTokenizer, got {type(tokenizer).__name__}")
    if cfg.llm_path is not None:
        return _load_pretrained(cfg.llm_path, tokenizer, dtype, attn_implementation)
    if cfg.family not in FAMILIES:
        raise ValueError(f"LLMConfig.family must be one of {sorted(FAMILIES)}, got {cfg.family!r}")
    if cfg.hidden % cfg.heads:
        raise ValueError(f"LLMConfig.hidden must be a multiple of heads, got hidden={cfg.hidden}, "
                         f"heads={cfg.heads}")
    if cfg.heads % cfg.kv_heads:
        raise ValueError(f"LLMConfig.heads must be a multiple of kv_heads, got heads={cfg.heads}, "
                         f"kv_heads={cfg.kv_heads}")
    config_cls, model_cls = FAMILIES[cfg.family]
    config = config_cls(
        vocab_size=max(cfg.vocab_size, tokenizer.vocab_size),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        attn_implementation=attn_implementation,
    )
    model = model_cls(config).to(dtype)
    return model.eval()


def _load_pretrained(path: str, tokenizer: EarthXTokenizer, dtype: torch.dtype,
                     attn_implementation: str | None) -> PreTrainedModel:
    if not Path(path).is_dir():
        raise FileNotFoundError(f"LLMConfig.llm_path must be a local model directory, got {path!r}")
    # Check the family from config.json before reading (possibly gigabytes of) weights.
    model_type = AutoConfig.from_pretrained(path, local_files_only=True).model_type
    if model_type not in FAMILIES:
        raise ValueError(f"the model in LLMConfig.llm_path must be of a family in "
                         f"{sorted(FAMILIES)}, got model_type {model_type!r} in {path!r}")
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype, **kwargs)
    added = [tokenizer.token_id(t) for t in tokenizer.added_tokens]
    _init_new_rows(model, tokenizer.vocab_size, added)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_id
    return model.eval()


@torch.no_grad()
def _init_new_rows(model: PreTrainedModel, vocab_size: int, added_ids: list[int]) -> None:
    """Grows the embedding table (and an untied LM head) to `vocab_size` rows when it is smaller,
    and sets the new rows and the rows of `added_ids` to the mean of the rows below them.

    Tables already larger than the tokenizer (vocabularies padded for speed, like Qwen2's) keep
    their size; a token added inside such padding still gets the mean row.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if vocab_size > rows:
        # mean_resizing=False: transformers would sample new rows; we set them exactly below.
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    fresh = sorted(set(added_ids) | set(range(rows, vocab_size)))
    if not fresh:
        return
    trained = min(fresh)  # rows [0, trained) are the pretrained vocabulary
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not tables[0]:
        tables.append(head.weight)
    for w in tables:  # [V, hidden]
        w[fresh] = w[:trained].float().mean(0).to(w.dtype)  # [len(fresh), hidden]
