"""The LLM components of a bundle: the ONNX decoder (`llm`) and the embedding table (`llm_embed`).

Choice of graph: onnxruntime-genai's model builder (`python -m onnxruntime_genai.models.builder`,
run in a subprocess on a local transformers directory) with `exclude_embeds=true` (the graph takes
`inputs_embeds`, so visual and region tokens go in like text) and `include_hidden_states=true` (it
also returns the final norm's output, HF's `hidden_states[-1]`, which the mask decoder takes at
each `<seg>`). Why the builder and not a torch.onnx export of a KV-cache wrapper:
- speed: its graph fuses attention into GroupQueryAttention (rotary embedding inside, KV written
  in place when past and present share one buffer, which `earthx_sdk.runtime.ort_llm` binds),
  RMSNorm + residual into SkipSimplifiedLayerNormalization and q/k/v into one MatMul; a dynamo
  export of HF's Llama is a few hundred small ops per layer with a Concat per KV tensor per token.
- quantization: the same builder writes int8 `MatMulNBits` graphs (block size and accuracy
  level configurable; `accuracy_level=4` runs int8 activations on CPU), LM head included; int4
  is our pass over its fp32 graph (below).
- parity: fp32 logits and hidden states match PyTorch within 1e-6 on the tiny model (checked at
  every export, `check_fp32`).
The builder's output is re-saved as `llm.onnx` + one external-data file `llm.onnx.data` (named
in the component's `extra` and, with its sha256, in the manifest's `files`): onnxruntime maps the
weights from it rather than parsing them out of a protobuf, which lowers peak memory.

`llm_embed` is a safetensors file with one tensor `embed_tokens` [vocab, hidden]: float32 for an
fp32 bundle, float16 for int8/int4 bundles (half the bytes; the rows' fp16 rounding is far below
the quantization error of the graph, and the parity report measures the pair together).

Quantization (`make_graph`): int8 is the builder's MatMulNBits, block 32, asymmetric (a uint
zero point per block), `accuracy_level=4`. int4 is our own pass over the builder's fp32 graph
(`export.quantize.quantize_int4_affine`): 4-bit codes with a float offset per block (Q4_1's
scheme: exact on weights that came from a Q4_1 GGUF, plain affine int4 on others), the offset
applied as a block-sum MatMul beside each MatMulNBits, the LM head 8-bit symmetric (exact on a
Q8_0 source). Before it, with the builder's int4 alone, measured on
SmolLM2-135M-Instruct (1024 tokens of llm_eval.txt, next-token agreement with fp32 PyTorch):
int8 symmetric 95.6 % (full text), asymmetric 96.5 %, k-quant 96.5 %; int8 with fp32
activations (`accuracy_level=1`) 97.4 % but 35x slower per MatMul on this CPU (2.6 ms against
76 us for 576x1536), so activations stay int8. int4: symmetric 62 %, asymmetric + 8-bit head
72 %, k-quant 72 %, k-quant-mixed 75 % (size 0.21x), block 16 72 %. The int4 ceiling has a known
cause: the reference is SmolLM2's GGUF dequantized, its weights already lie on a Q4_1 grid
(d * q + m per 32 weights, q in 0..15, m arbitrary), and MatMulNBits' integer zero points cannot
express the fractional offset m / d, so requantizing adds a full 4-bit rounding error (weight SNR
21.8 dB against 54 dB at int8). Float zero points would be exact, but onnxruntime's CPU kernel
runs them through a slow path (3.7 ms against 49 us per MatMul measured) and refuses them at 8
bits; hence the offset term as separate ops (96.6 % agreement, perplexity +0.3 %, 0.18x size
on 1024 tokens). int8's last error is its activations: `accuracy_level=4` rounds them to
int8 per block of 32, the only fast MatMulNBits path on this CPU. `--llm-int8 affine-2pass`
removes it without a slower kernel: each MatMulNBits reads the rounded activations and, stacked
under them, what the rounding dropped (`export.quantize.quantize_affine(two_pass=...)`), and
adds the two results: 99.9 % agreement on the whole text, perplexity +0.00 %, 0.28x size, at
about 1.9x the builder int8's time per token. The figures are in benchmarks/RESULTS.md.

`python -m export.llm --report` prints the quantization report on SmolLM2-135M-Instruct
(`export.llm_report`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRECISIONS = ("fp32", "int8", "int4")
SCHEME = {"int8": "asym", "int4": "affine-head8"}  # quantization schemes (part of cache keys)
INT4_SCHEMES = ("affine", "affine-fold", "builder")
INT8_SCHEMES = ("builder", "affine", "affine-2pass")
TWO_PASS_ALL = ("/",)  # every MatMul of the builder's graph (node names start with "/")
LAYOUT = "ext"  # graph + one external-data file (save_graph; part of cache keys)
DEFAULT_BLOCK_SIZE = 32
DEFAULT_ACCURACY_LEVEL = 4  # MatMulNBits on CPU: int8 activations (fastest); 1 = fp32 activations
FP32_TOLERANCE = 1e-4  # abs, scaled by max(1, max |reference|), as export.validate does
LLM_FILE = "llm.onnx"
EMBED_FILE = "llm_embed.safetensors"
EVAL_TEXT = Path(__file__).with_name("llm_eval.txt")
AGREEMENT_FLOORS = {"int8": 0.95, "int4": 0.85}
"""Minimum teacher-forced agreement of a quantized graph at export, on a seeded random sequence:
a check against broken graphs, low because a randomly initialized model's logits are nearly flat
(the targets of a real LLM, `TARGETS`, are checked on SmolLM2 by `--report`)."""
IO_NAMES = {"past_key": "past_key_values.%d.key", "past_value": "past_key_values.%d.value",
            "present_key": "present.%d.key", "present_value": "present.%d.value"}


def require_builder() -> None:
    """Raises ImportError when onnxruntime-genai (its model builder) is not installed."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime_genai") is None:
        raise ImportError("the LLM export needs onnxruntime-genai's model builder (pip install "
                          "-c constraints.txt 'onnxruntime-genai==0.18.0', in the `export` "
                          "extra), not installed")


def save_hf_dir(llm, tokenizer, path: str | Path) -> Path:
    """Writes a transformers causal LM and its tokenizer as a local directory the builder reads.

    Args:
        llm: a `transformers` Llama/Qwen2 causal LM (e.g. `EarthXModel.llm`).
        tokenizer: an `EarthXTokenizer` (its tokenizer.json goes in with a PreTrainedTokenizerFast
            config), or a transformers tokenizer (saved with `save_pretrained`).
        path: the directory (created).

    Returns:
        path.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    llm.save_pretrained(str(path))
    if hasattr(tokenizer, "to_str"):  # EarthXTokenizer
        tokenizer.save(path)
        (path / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    else:
        tokenizer.save_pretrained(str(path))
    return path


def builder_options(precision: str, block_size: int = DEFAULT_BLOCK_SIZE,
                    accuracy_level: int = DEFAULT_ACCURACY_LEVEL) -> list[str]:
    """The builder's `--extra_options` for a precision.

    Raises:
        ValueError: unknown precision, block size not a power of two in [16, 256], accuracy level
            not in 1..4.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"llm precision must be one of {PRECISIONS}, got {precision!r}")
    if block_size not in (16, 32, 64, 128, 256):
        raise ValueError(f"block_size must be one of 16, 32, 64, 128, 256, got {block_size}")
    if accuracy_level not in (1, 2, 3, 4):
        raise ValueError(f"accuracy_level must be 1, 2, 3 or 4, got {accuracy_level}")
    opts = ["exclude_embeds=true", "include_hidden_states=true"]
    if precision != "fp32":
        # asymmetric (uint zero point per block): 1 point of agreement over symmetric at int8
        # and 10 at int4 on SmolLM2; at int4 the LM head (the tied embedding, most sensitive)
        # stays 8-bit (module docstring).
        opts += [f"block_size={block_size}", f"accuracy_level={accuracy_level}",
                 "is_symmetric=false"]
        if precision == "int4":  # (export uses make_graph's own int4; this is the builder's)
            opts.append("matmul_mixed_precision=last_matmul:int8")
    return opts


def make_graph(hf_dir: str | Path, work: str | Path, dst: str | Path, precision: str,
               block_size: int = DEFAULT_BLOCK_SIZE,
               accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
               int4_scheme: str = "affine", int8_scheme: str = "builder") -> list[str]:
    """The bundle's decoder graph at `dst` (+ `dst.data`) from a transformers directory.

    fp32 and int8: the builder's graph (int8: its asymmetric MatMulNBits). int4: the builder's
    fp32 graph quantized by `export.quantize.quantize_affine` (4-bit codes with float
    block offsets, LM head 8-bit): on SmolLM2 97 % agreement against 72 % for the builder's
    best int4 (module docstring), at the cost of 9 small ops per layer (slower decode, see
    benchmarks/RESULTS.md); `int4_scheme="builder"` takes the builder's int4 instead
    (asymmetric, LM head 8-bit: faster, less accurate); `int4_scheme="affine-fold"` is "affine"
    with the offsets folded into extra 4-bit blocks of each MatMulNBits
    (`quantize_affine(fold_offsets=True)`: 2 small ops per distinct input instead of 1 + 2 per
    MatMul; the block sums are then rounded to int8 with the activations).
    `int8_scheme="affine"` quantizes int8 the way int4 is (8-bit codes with float block
    offsets, `quantize_affine(bits=8)`; LM head 8-bit symmetric): exact weights on a Q4_1/Q8_0
    source. On SmolLM2 (1024 tokens) it reaches 97.65 % agreement at accuracy_level 4 (the
    builder's int8: 96.3 %) at 1.2-1.45x the builder's time per token,
    and 100.0 % at accuracy_level 1, where a token takes ~20x longer (155-177 ms
    against 7-9 ms, 2 threads): the builder's stays the default. `int8_scheme="affine-2pass"`
    is "affine" with every MatMulNBits reading its activations in two int8 passes
    (`quantize_affine(two_pass=...)`: the rounded activations, then what the rounding dropped),
    which removes nearly all of the int8-activation error at the fast accuracy_level 4: 99.9 %
    agreement on SmolLM2 (whole text), no more weights, each MatMul fed twice the rows.

    Returns:
        the file names written.
    """
    if int4_scheme not in INT4_SCHEMES:
        raise ValueError(f"int4_scheme must be one of {INT4_SCHEMES}, got {int4_scheme!r}")
    if int8_scheme not in INT8_SCHEMES:
        raise ValueError(f"int8_scheme must be one of {INT8_SCHEMES}, got {int8_scheme!r}")
    if precision == "int8" and int8_scheme in ("affine", "affine-2pass"):
        from export.quantize import quantize_affine

        model = build_decoder(hf_dir, work, "fp32")
        return quantize_affine(model, dst, 8, block_size, accuracy_level,
                               two_pass=TWO_PASS_ALL if int8_scheme == "affine-2pass" else ())
    if precision == "int4" and int4_scheme in ("affine", "affine-fold"):
        from export.quantize import quantize_affine

        model = build_decoder(hf_dir, work, "fp32")
        return quantize_affine(model, dst, 4, block_size, accuracy_level,
                               fold_offsets=int4_scheme == "affine-fold")
    return save_graph(build_decoder(hf_dir, work, precision, block_size, accuracy_level), dst)


def build_decoder(hf_dir: str | Path, out_dir: str | Path, precision: str,
                  block_size: int = DEFAULT_BLOCK_SIZE,
                  accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
                  extra_options: list[str] | None = None) -> Path:
    """Runs onnxruntime-genai's model builder on a local transformers directory.

    Args:
        hf_dir: the directory (config.json, weights, tokenizer).
        out_dir: where the builder writes model.onnx, model.onnx.data and genai_config.json.
        precision, block_size, accuracy_level: see `builder_options`.
        extra_options: the builder's `--extra_options` instead of `builder_options(...)` ([]:
            the builder's defaults, the graph onnxruntime-genai itself runs).

    Returns:
        out_dir / "model.onnx".

    Raises:
        ImportError: onnxruntime-genai missing.
        RuntimeError: the builder failed (its last output lines are in the message).
    """
    require_builder()
    out_dir = Path(out_dir)
    opts = (builder_options(precision, block_size, accuracy_level) if extra_options is None
            else list(extra_options))
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir),
           "-o", str(out_dir), "-p", precision, "-e", "cpu"]
    if opts:
        cmd += ["--extra_options", *opts]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="earthx-builder-") as cache:
        r = subprocess.run([*cmd, "-c", cache], capture_output=True, text=True, env=env)
    model = out_dir / "model.onnx"
    if r.returncode != 0 or not model.is_file():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"onnxruntime-genai's builder failed on {hf_dir} ({precision}, exit "
                           f"{r.returncode}):\n{tail}")
    return model


def save_graph(src: str | Path, dst: str | Path) -> list[str]:
    """Re-saves the builder's graph as `dst` with its weights in one external-data file
    `dst.data` (onnxruntime maps it instead of copying a protobuf: about 45 MB less peak memory
    for SmolLM2 int4, 90 MB for fp32); the graph is written to a temporary name and renamed last.

    Returns:
        the file names written: [dst's name, the data file's name].
    """
    import onnx

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=True)
    tmp = dst.with_name(dst.name + ".tmp")
    data = dst.name + ".data"  # final name at once: the graph refers to it by name
    (dst.parent / data).unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
              location=data, size_threshold=1024)
    tmp.replace(dst)
    return [dst.name, data]


def llm_extra(config, precision: str, block_size: int, accuracy_level: int,
              data_file: str | None = None, int4_scheme: str = "affine",
              int8_scheme: str = "builder") -> dict:
    """The `llm` component's extra: sizes and I/O names `OrtLLM` needs, and how it was made."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    extra = {"num_layers": config.num_hidden_layers, "num_kv_heads": config.num_key_value_heads,
             "head_dim": head_dim, "hidden_size": config.hidden_size,
             "vocab_size": config.vocab_size, "max_positions": config.max_position_embeddings,
             **IO_NAMES, "graph": "onnxruntime-genai model builder",
             "builder_options": builder_options(precision, block_size, accuracy_level)}
    if precision == "int8" and int8_scheme in ("affine", "affine-2pass"):
        extra["builder_options"] = builder_options("fp32")
        extra["quantization"] = {"op": "MatMulNBits + block offsets", "bits": 8,
                                 "block_size": block_size, "accuracy_level": accuracy_level,
                                 "scheme": "affine: d * (u - 128) + offset per block",
                                 "lm_head_bits": 8, "quantizer": "export.quantize.quantize_affine",
                                 "two_pass_activations": int8_scheme == "affine-2pass"}
    elif precision == "int8":
        extra["quantization"] = {"op": "MatMulNBits", "bits": 8, "block_size": block_size,
                                 "accuracy_level": accuracy_level, "symmetric": False,
                                 "lm_head_bits": 8, "quantizer": "onnxruntime (builder)"}
    elif precision == "int4" and int4_scheme == "builder":
        extra["quantization"] = {"op": "MatMulNBits", "bits": 4, "block_size": block_size,
                                 "accuracy_level": accuracy_level, "symmetric": False,
                                 "lm_head_bits": 8, "quantizer": "onnxruntime (builder)"}
    elif precision == "int4":
        extra["builder_options"] = builder_options("fp32")
        extra["quantization"] = {"op": "MatMulNBits + block offsets", "bits": 4,
                                 "block_size": block_size, "accuracy_level": accuracy_level,
                                 "scheme": "affine (Q4_1): d * (u - 8) + offset per block",
                                 "lm_head_bits": 8,
                                 "quantizer": "export.quantize.quantize_affine",
                                 "folded_offsets": int4_scheme == "affine-fold"}
    if data_file is not None:
        extra["data_file"] = data_file
    return extra


def write_embed(llm, path: str | Path, dtype=np.float32) -> Path:
    """Writes the token embedding table [vocab, hidden] as safetensors tensor `embed_tokens`."""
    from safetensors.numpy import save_file

    path = Path(path)
    table = llm.get_input_embeddings().weight.detach().float().cpu().numpy().astype(dtype)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"embed_tokens": np.ascontiguousarray(table)}, str(tmp))
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class LLMExport:
    """What `export_llm` wrote: the two components, their parity entries, and {file: sha256}
    of the graph's external-data file for the manifest's `files`."""

    components: dict
    parity: list
    files: dict


def export_llm(llm, tokenizer, out: str | Path, precision: str = "fp32",
               block_size: int = DEFAULT_BLOCK_SIZE,
               accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
               agreement_floor: float | None = None, int4_scheme: str = "affine",
               int8_scheme: str = "builder") -> LLMExport:
    """Exports the LLM into a bundle directory and validates it against PyTorch.

    fp32: logits and last-layer hidden states of a prefill and three decode steps through
    `OrtLLM` (the runtime's own path, KV cache bound as I/O) within FP32_TOLERANCE of `llm`.
    int8/int4: teacher-forced next-token agreement with the fp32 PyTorch model on a seeded random
    token sequence (reported; checked against `agreement_floor` when given).

    Args:
        llm: the transformers causal LM (fp32).
        tokenizer: its EarthXTokenizer (or a transformers tokenizer).
        out: the bundle directory; `llm.onnx`, `llm.onnx.data` and `llm_embed.safetensors` are
            written there.
        precision: "fp32", "int8" or "int4".
        block_size, accuracy_level: MatMulNBits settings of int8/int4.
        agreement_floor: minimum agreement of a quantized graph (None: not checked).
        int4_scheme: "affine" (our float-offset int4, accurate), "affine-fold" (the same
            with the offsets inside MatMulNBits: fewer ops, see `make_graph`) or "builder"
            (faster, less accurate).
        int8_scheme: "builder" (onnxruntime's MatMulNBits, the default), "affine" (float
            block offsets) or "affine-2pass" (the same, activations in two int8 passes); see
            `make_graph`.

    Returns:
        LLMExport with components {"llm", "llm_embed"} and parity entries.

    Raises:
        ValueError: bad precision/block size/accuracy level.
        ImportError: onnx or onnxruntime-genai missing.
        ParityError: fp32 outputs beyond tolerance, or agreement below the floor.
    """
    from earthx_sdk.bundle import Component, TensorSpec, onnx_component, sha256

    builder_options(precision, block_size, accuracy_level)  # validates before any work
    require_builder()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="earthx-llm-") as tmp:
        hf = save_hf_dir(llm, tokenizer, Path(tmp) / "hf")
        files = make_graph(hf, Path(tmp) / "onnx", out / LLM_FILE, precision, block_size,
                           accuracy_level, int4_scheme, int8_scheme)
    embed = write_embed(llm, out / EMBED_FILE, np.float32 if precision == "fp32" else np.float16)
    extra = llm_extra(llm.config, precision, block_size, accuracy_level,
                      files[1] if len(files) > 1 else None, int4_scheme, int8_scheme)
    comp = onnx_component(out, LLM_FILE, precision, extra)
    table_dtype = "float32" if precision == "fp32" else "float16"
    embed_comp = Component(
        EMBED_FILE, "safetensors", "fp32" if precision == "fp32" else "fp16",
        (TensorSpec("ids", "int64", ("n",)),),
        (TensorSpec("embed_tokens", table_dtype, (llm.config.vocab_size,
                                                  llm.config.hidden_size)),),
        sha256(embed), {"tensor": "embed_tokens"})
    comps = {"llm": comp, "llm_embed": embed_comp}
    if precision == "fp32":
        parity = check_fp32(llm, out / LLM_FILE, embed, extra)
    else:
        parity = check_agreement(llm, out / LLM_FILE, embed, extra, precision, agreement_floor)
    return LLMExport(comps, parity, {f: sha256(out / f) for f in files[1:]})


def reference_logits(llm, ids):
    """fp32 PyTorch logits [T, V] and last hidden states [T, hidden] of token ids [T]."""
    import torch

    with torch.no_grad():
        o = llm(input_ids=torch.as_tensor(ids)[None], output_hidden_states=True, use_cache=False)
    return o.logits[0].float().numpy(), o.hidden_states[-1][0].float().numpy()


def check_fp32(llm, onnx_path: Path, embed_path: Path, extra: dict, prompt: int = 11,
               steps: int = 3, seed: int = 0) -> list[dict]:
    """Prefill + decode through OrtLLM against one full PyTorch forward (see `export_llm`).

    Returns:
        parity entries {"component": "llm", "output", "max_abs_err", "tolerance"} for logits
        and hidden_states.

    Raises:
        ParityError: an output beyond tolerance (all named).
    """
    from earthx_sdk.runtime.ort_llm import OrtLLM
    from export.validate import ParityError

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, llm.config.vocab_size, prompt + steps)
    ref_logits, ref_hidden = reference_logits(llm, ids)
    rt = OrtLLM(onnx_path, embed_path, extra, threads=None)
    state = rt.new_state(capacity=8)  # small: the decode steps exercise the buffer growth
    logits, hidden = [], []
    lg, hs = rt.forward(rt.embed(ids[:prompt]), state)
    logits.append(lg)
    hidden.append(hs)
    for t in range(prompt, prompt + steps):
        lg, hs = rt.forward(rt.embed(ids[t: t + 1]), state)
        logits.append(lg)
        hidden.append(hs)
    got = {"logits": np.stack(logits), "hidden_states": np.concatenate(hidden)}
    want = {"logits": ref_logits[prompt - 1:], "hidden_states": ref_hidden}
    report, failures = [], []
    for name in ("logits", "hidden_states"):
        err = float(np.abs(got[name] - want[name]).max())
        tol = FP32_TOLERANCE * max(1.0, float(np.abs(want[name]).max()))
        report.append({"component": "llm", "output": name, "max_abs_err": err, "tolerance": tol})
        if not err <= tol:
            failures.append(f"llm.{name}: max abs error {err:.3g} > {tol:.3g}")
    if failures:
        raise ParityError(f"{len(failures)} output(s) of {onnx_path} differ from the PyTorch "
                          f"reference: " + "; ".join(failures))
    return report


def graph_logits(session, embeds: np.ndarray, extra: dict) -> np.ndarray:
    """Logits float32 [T, V] of every position of one sequence (empty KV cache)."""
    feeds = {"inputs_embeds": embeds[None].astype(np.float32),
             "attention_mask": np.ones((1, embeds.shape[0]), np.int64)}
    empty = np.zeros((1, extra["num_kv_heads"], 0, extra["head_dim"]), np.float32)
    for i in range(extra["num_layers"]):
        feeds[extra["past_key"] % i] = empty
        feeds[extra["past_value"] % i] = empty
    return session.run(["logits"], feeds)[0][0]


def open_session(onnx_path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def check_agreement(llm, onnx_path: Path, embed_path: Path, extra: dict, precision: str,
                    floor: float | None, length: int = 64, seed: int = 0) -> list[dict]:
    """Teacher-forced next-token agreement of a quantized graph with fp32 PyTorch on a seeded
    random token sequence.

    Raises:
        ParityError: agreement below `floor`.
    """
    from safetensors.numpy import load_file

    from export.validate import ParityError

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, llm.config.vocab_size, length)
    ref, _ = reference_logits(llm, ids)
    table = load_file(str(embed_path))["embed_tokens"]
    got = graph_logits(open_session(onnx_path), table[ids].astype(np.float32), extra)
    agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
    entry = {"component": "llm", "output": f"next_token_agreement.{precision}",
             "value": agree, "threshold": floor, "text": f"random ids, seed {seed}, T={length}"}
    if floor is not None and agree < floor:
        raise ParityError(f"llm ({precision}): teacher-forced next-token agreement {agree:.3f} "
                          f"< {floor} on {entry['text']}")
    return [entry]


if __name__ == "__main__":  # `python -m export.llm --report`: the report lives in llm_report
    from export.llm_report import main

    sys.exit(main())
