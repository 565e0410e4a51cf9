"""End-to-end latency of the SDK's requests, per stage and per backend, against torch eager fp32.

    python -m benchmarks.e2e --preset tiny[,small,base]
        --backends torch,torch-compile,ort-fp32,ort-int8,ort-int4[,trt]
        [--device cpu|cuda] [--threads N] [--repeat N] [--cases NAME,...]
        [--json PATH] [--plot PATH] [--workdir DIR]

For each preset a model with seeded random weights is built (latency does not depend on the
values), saved as a checkpoint, and exported by `export.pipeline.export_bundle` (vision graphs of
the cases' sensors, prompt encoder, mask decoder, the LLM in fp32); the int8 and int4 bundles share
those graphs and carry their own LLM (`export.llm.export_llm`, MatMulNBits). Backends:
- `torch`: the checkpoint on the torch backend, eager fp32 (the reference of every ratio).
- `torch-compile`: the same with the vision experts, the prompt encoder's blocks, the mask
  decoder and the LLM's forward passed through `torch.compile` (inductor); compile time is
  reported apart (`warmup_s`), not in the timed runs.
- `ort-fp32`, `ort-int8`, `ort-int4`: the bundle on onnxruntime (vision, prompt encoder, mask
  decoder fp32 graphs; the LLM at that precision).
- `trt`: the bundle with backend="tensorrt" (the runtime says why it cannot run where it cannot).

Every backend is loaded in this one process, then the requests of `benchmarks/e2e_cases.py` run
round-robin (case by case, backend after backend, `--repeat` rounds after one warm-up round), so
the ratios compare runs seconds apart on the same machine state. Each request goes through the
public API on a fresh `EarthX` over the loaded engine (no feature cache from an earlier round).

Per case and backend: median / p90 / p99 of the request's wall time and of each stage of
`Result.timings` (preprocess, vision, fusion, prompt encoder, prefill, decode, mask decoder,
postprocess; "other" is wall minus their sum: the API's own Python); time to first token
(preprocess + vision + fusion + prompt encoder + prefill); time to mask (wall of a segment call);
decode tokens/s (decode steps / decode seconds); the share of the memory-bandwidth limit of decode
(bytes a step reads, the LLM's weights plus its KV cache at that step's length, over the step
time, over the peak bandwidth: the device's figure where known, else a large copy measured in
this run, `benchmarks.llm_decode.peak_bandwidth`); peak memory (resident set: what loading the
backend added, plus the largest rise while its requests ran). Every figure carries its ratio to
torch eager fp32 (times and memory: torch / backend, so > 1 is better; tokens/s: backend / torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.e2e_cases import E2ECase, cases, images, run

BACKENDS = ("torch", "torch-compile", "ort-fp32", "ort-int8", "ort-int4", "trt")
PRESETS = ("tiny", "small", "base")
STAGES = ("preprocess", "vision", "fusion", "prompt_encoder", "prefill", "decode", "mask_decoder",
          "postprocess")
TTFT_STAGES = ("preprocess", "vision", "fusion", "prompt_encoder", "prefill")
REFERENCE = "torch"
SEED = 0
# Peak memory bandwidth of known devices, bytes/s (DESIGN.md, "Performance: how it is judged").
DEVICE_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "Orin Nano": 68e9, "Orin": 204.8e9}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# memory: the resident set, and its high-water mark reset per backend (Linux /proc/self)
# ------------------------------------------------------------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def reset_peak() -> bool:
    """Resets the process's peak resident set (VmHWM) to its current size; False where the
    kernel does not allow it (then peaks are not measured)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


# ------------------------------------------------------------------------------------------------
# the LLM session wrapped to see each forward's length (for the KV bytes of a step)
# ------------------------------------------------------------------------------------------------

class CountingLLM:
    """Delegates to an LLM session; records the sequence length of every forward call."""

    def __init__(self, llm) -> None:
        self._llm = llm
        self.lengths: list[int] = []  # per forward: positions in the cache after it

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def embed(self, ids):
        return self._llm.embed(ids)

    def new_state(self):
        state = self._llm.new_state()
        self.lengths.append(0)  # a new request: its forwards follow
        return state

    def forward(self, embeds, state):
        out = self._llm.forward(embeds, state)
        self.lengths.append(self.lengths[-1] + int(embeds.shape[0]))
        return out


# ------------------------------------------------------------------------------------------------
# models and bundles
# ------------------------------------------------------------------------------------------------

def make_checkpoint(preset: str, path: Path, seed: int = SEED) -> Path:
    """A seeded random-weight model of the preset, saved as a checkpoint directory."""
    import torch

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    if (path / "model.safetensors").is_file():
        return path
    torch.manual_seed(seed)
    model = EarthXModel(EarthXConfig.from_name(preset)).eval()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    tmp.replace(path)
    return path


def model_bytes(preset: str) -> int:
    """fp32 bytes of the preset's parameters (counted on the meta device: nothing allocated)."""
    import torch

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.model import EarthXModel

    with torch.device("meta"):
        model = EarthXModel(EarthXConfig.from_name(preset))
    return sum(p.numel() * 4 for p in model.parameters())


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def export_fp32(ckpt: Path, out: Path, sensors: list[str]) -> Path:
    """The fp32 bundle (every graph and the fp32 LLM) through export.pipeline.export_bundle."""
    from export.pipeline import export_bundle

    if (out / "manifest.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    export_bundle(ckpt, tmp, "fp32", sensors=sensors, llm="fp32")
    tmp.replace(out)
    return out


def export_quantized(ckpt: Path, fp32_bundle: Path, out: Path, precision: str) -> Path:
    """A bundle with the fp32 bundle's vision / prompt / mask graphs (hard links) and the LLM
    re-exported at `precision` (int8 / int4 MatMulNBits) by export.llm.

    The next-token agreement with fp32 is measured and recorded in the manifest's parity report
    but not held to `export.llm.AGREEMENT_FLOORS`: the weights here are random, whose logits are
    nearly flat, so agreement says little about the graph (the small preset's int4 graph agrees
    on about 0.77 of the tokens); latency does not depend on it. The benchmark prints it.
    """
    from earthx_sdk.bundle import BundleManifest
    from earthx_sdk.modeling.model import EarthXModel
    from export.llm import EMBED_FILE, LLM_FILE, export_llm

    if (out / "manifest.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    base = BundleManifest.load(fp32_bundle)
    llm_files = {LLM_FILE, LLM_FILE + ".data", EMBED_FILE, "manifest.json"}
    for f in fp32_bundle.iterdir():
        if f.is_file() and f.name not in llm_files:
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    model = EarthXModel.load(ckpt)
    res = export_llm(model.llm, model.tokenizer, tmp, precision, agreement_floor=None)
    parity = [p for p in base.parity if not str(p.get("component", "")).startswith("llm")]
    files = {k: v for k, v in base.files.items() if k not in llm_files}
    manifest = dataclasses.replace(base, components={**base.components, **res.components},
                                   files={**files, **res.files}, parity=parity + res.parity)
    manifest.save(tmp)
    tmp.replace(out)
    return out


# ------------------------------------------------------------------------------------------------
# backends
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Backend:
    """A loaded backend (engine is None when it could not be prepared: `reason` says why)."""

    name: str
    engine: object = None
    options: object = None
    reason: str = ""
    load_bytes: int | None = None  # resident set added by loading it
    run_peak_bytes: int = 0  # largest rise of the resident set while its requests ran
    llm_bytes: int = 0  # bytes of LLM weights a decode step reads
    kv_bytes_per_position: int = 0
    warmup_s: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)


def compile_model(model) -> list[str]:
    """Puts the heavy submodules of an EarthXModel through torch.compile (in place); returns what
    was compiled."""
    import torch

    model.vision.forward = torch.compile(model.vision.forward)  # both experts and the fusion
    enc = model.prompt_encoder
    enc.blocks = torch.nn.ModuleList(torch.compile(b) for b in enc.blocks)
    model.mask_decoder.forward = torch.compile(model.mask_decoder.forward)
    # the LLM's cache grows by one position per step: compiled with dynamic shapes
    model.llm.model.forward = torch.compile(model.llm.model.forward, dynamic=True)
    return ["vision (both experts, fusion)", "prompt encoder blocks", "mask decoder",
            "LLM decoder (dynamic shapes)"]


def _torch_llm_bytes(engine) -> tuple[int, int]:
    llm = engine.llm.llm
    weights = sum(p.numel() * p.element_size() for p in llm.parameters())  # tied: counted once
    c = llm.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    itemsize = next(llm.parameters()).element_size()
    return weights, 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * itemsize


def _ort_llm_bytes(bundle: Path) -> tuple[int, int]:
    from earthx_sdk.bundle import BundleManifest

    comp = BundleManifest.load(bundle).components["llm"]
    extra = comp.extra or {}
    size = (bundle / comp.file).stat().st_size
    if extra.get("data_file"):
        size += (bundle / extra["data_file"]).stat().st_size
    kv = 2 * int(extra["num_layers"]) * int(extra["num_kv_heads"]) * int(extra["head_dim"]) * 4
    return size, kv


def _agreement(bundle: Path) -> str:
    from earthx_sdk.bundle import BundleManifest

    for p in BundleManifest.load(bundle).parity:
        if str(p.get("output", "")).startswith("next_token_agreement"):
            return (f"LLM next-token agreement with fp32 {p['value']:.3f} ({p.get('text', '')}; "
                    f"random weights)")
    return "LLM agreement with fp32 not recorded"


def prepare(name: str, ckpt: Path, bundles: dict, device: str, threads: int) -> Backend:
    """Loads one backend, measuring the resident set it adds."""
    from earthx_sdk import EarthX
    from earthx_sdk.predictor import Options

    b = Backend(name)
    gc.collect()
    reset_peak()
    before = rss_bytes()
    if name in ("torch", "torch-compile"):
        from earthx_sdk.modeling.model import EarthXModel
        from earthx_sdk.runtime.torch_backend import engine_from_model, resolve_device

        model = EarthXModel.load(ckpt, device=resolve_device(device))
        if name == "torch-compile":
            b.notes.append("compiled: " + ", ".join(compile_model(model)))
        engine = engine_from_model(model, str(ckpt))
        b.llm_bytes, b.kv_bytes_per_position = _torch_llm_bytes(engine)
    elif name == "trt":
        EarthX.load(bundles["fp32"], backend="tensorrt", device=device, threads=threads)
        raise AssertionError("unreachable: the tensorrt backend loaded")  # pragma: no cover
    else:
        prec = name.removeprefix("ort-")
        bundle = bundles[prec]
        if isinstance(bundle, Exception):
            raise bundle
        engine = EarthX.load(bundle, backend="onnxruntime", device=device,
                             threads=threads).engine
        b.llm_bytes, b.kv_bytes_per_position = _ort_llm_bytes(bundle)
        if prec != "fp32":
            b.notes.append(_agreement(bundle))
    b.engine = dataclasses.replace(engine, llm=CountingLLM(engine.llm))
    b.options = Options(max_pixels=None)
    after = rss_bytes()
    b.load_bytes = None if before is None or after is None else after - before
    return b


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------

def one_request(b: Backend, case: E2ECase, imgs: dict) -> dict:
    """Runs a case once on a fresh EarthX over the backend's engine; returns its raw figures."""
    from earthx_sdk import EarthX

    model = EarthX(b.engine, b.options)
    llm = b.engine.llm
    start = len(llm.lengths)
    gc.disable()  # no collection pause inside a timed request (the loaded models are frozen)
    try:
        t0 = time.perf_counter()
        r = run(model, case, imgs)
        wall = time.perf_counter() - t0
    finally:
        gc.enable()
    stages = {s: r.timings[s].seconds for s in STAGES}
    # per request (a tiled segment makes one per tile): prompt length and decode-step lengths
    lengths = llm.lengths[start:]
    step_positions, prompt_lengths = [], []
    for k in range(1, len(lengths)):
        if lengths[k - 1] == 0:
            prompt_lengths.append(lengths[k])
        elif lengths[k] > lengths[k - 1]:
            step_positions.append(lengths[k])
    steps = r.timings["decode"].calls
    return {"wall": wall, "stages": stages, "steps": steps,
            "step_positions": step_positions, "prompt_tokens": prompt_lengths,
            "tiles": r.tiles, "masks": len(r.masks), "text_tokens": len(r.token_ids),
            "backend": {s: f"{r.timings[s].backend} {r.timings[s].precision}".strip()
                        for s in STAGES if r.timings[s].status == "ran"}}


def _stats(xs: list[float]) -> dict:
    a = np.asarray(xs, np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "n": int(a.size)}


def summarize_case(b: Backend, runs: list[dict], bandwidth: float) -> dict:
    walls = [r["wall"] for r in runs]
    out = {"wall": _stats(walls), "stages": {}, "other": _stats(
        [r["wall"] - sum(r["stages"].values()) for r in runs])}
    for s in STAGES:
        out["stages"][s] = _stats([r["stages"][s] for r in runs])
    out["ttft"] = _stats([sum(r["stages"][s] for s in TTFT_STAGES) for r in runs])
    out["stage_backends"] = runs[-1]["backend"]
    out["tiles"] = runs[-1]["tiles"]
    out["masks"] = runs[-1]["masks"]
    out["prompt_tokens"] = runs[-1]["prompt_tokens"]
    steps = sum(r["steps"] for r in runs)
    dec = sum(r["stages"]["decode"] for r in runs)
    out["decode_steps_per_request"] = runs[-1]["steps"]
    if steps and dec > 0:
        positions = [p for r in runs for p in r["step_positions"]]
        step_bytes = b.llm_bytes * steps + b.kv_bytes_per_position * sum(positions)
        out["decode_tokens_per_s"] = steps / dec
        out["decode_bytes_per_step"] = step_bytes / steps
        out["decode_gb_per_s"] = step_bytes / dec / 1e9
        out["decode_pct_bw_limit"] = 100 * step_bytes / dec / bandwidth
    else:
        out["decode_tokens_per_s"] = out["decode_gb_per_s"] = out["decode_pct_bw_limit"] = None
    return out


def measure_preset(preset: str, names: list[str], the_cases: list[E2ECase], imgs: dict,
                   work: Path, device: str, threads: int, repeat: int,
                   bandwidth: float) -> dict:
    """Prepares every backend of a preset, runs the cases round-robin, summarizes."""
    import torch

    out: dict = {"preset": preset, "backends": {}, "cases": []}
    need = model_bytes(preset)
    avail = available_bytes()
    out["model_fp32_bytes"] = need
    # torch loads the weights once; the export holds the model, its graphs and the builder's copy
    if avail is not None and need * 1.5 > avail:
        reason = (f"preset {preset}: {need / 1e9:.1f} GB of fp32 weights, {avail / 1e9:.1f} GB "
                  f"of memory available: does not fit")
        log(reason)
        out["skipped"] = reason
        return out
    t0 = time.perf_counter()
    ckpt = make_checkpoint(preset, work / preset / "ckpt")
    sensors = sorted({c.sensor for c in the_cases})
    bundles: dict = {}
    want = {n.removeprefix("ort-") for n in names if n.startswith("ort-")}
    if "trt" in names:
        want.add("fp32")
    if want:
        if avail is not None and need * 4 > avail:
            err = MemoryError(f"preset {preset}: exporting {need / 1e9:.1f} GB of fp32 weights "
                              f"needs about {4 * need / 1e9:.0f} GB (model, graphs, the LLM "
                              f"builder's copy), {avail / 1e9:.1f} GB available")
            bundles = {p: err for p in want}
        else:
            log(f"[{preset}] export fp32 bundle ({', '.join(sensors)}) ...")
            try:
                bundles["fp32"] = export_fp32(ckpt, work / preset / "bundle-fp32", sensors)
            except Exception as e:  # reported as the reason the ort backends did not run
                bundles = {p: e for p in want}
            for p in sorted(want - {"fp32"}):
                if isinstance(bundles.get("fp32"), Exception):
                    break
                log(f"[{preset}] export {p} LLM ...")
                try:
                    bundles[p] = export_quantized(ckpt, bundles["fp32"],
                                                  work / preset / f"bundle-{p}", p)
                except Exception as e:
                    bundles[p] = e
    out["prepare_s"] = time.perf_counter() - t0
    log(f"[{preset}] checkpoint + bundles ready in {out['prepare_s']:.0f} s")

    loaded: list[Backend] = []
    for n in names:
        try:
            b = prepare(n, ckpt, bundles, device, threads)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            b = Backend(n, reason=f"{type(e).__name__}: {first}")
        if b.engine is None:
            log(f"[{preset}] {n}: NOT RUN: {b.reason}")
        loaded.append(b)
    ready = [b for b in loaded if b.engine is not None]

    # warm-up round (sessions opened, thread pools, torch.compile), then the timed rounds.
    # A full collection over torch + transformers takes about a second here: the loaded
    # objects are frozen out of the collector's sight instead of collected before each request.
    gc.collect()
    gc.freeze()
    runs: dict = {(c.name, b.name): [] for c in the_cases for b in ready}
    for rnd in range(repeat + 1):
        for c in the_cases:
            for b in ready:
                if b.engine is None:
                    continue
                base = rss_bytes()
                reset_peak()
                t0 = time.perf_counter()
                try:
                    res = one_request(b, c, imgs)
                except Exception as e:
                    b.reason = f"{type(e).__name__} on case {c.name}: {str(e)[:300]}"
                    log(f"[{preset}] {b.name}: FAILED: {b.reason}")
                    b.engine = None
                    continue
                peak = peak_bytes()
                if peak is not None and base is not None:
                    b.run_peak_bytes = max(b.run_peak_bytes, peak - base)
                if rnd == 0:
                    b.warmup_s += time.perf_counter() - t0
                    log(f"[{preset}] warm-up {c.name} on {b.name}: "
                        f"{time.perf_counter() - t0:.1f} s")
                else:
                    runs[(c.name, b.name)].append(res)
        log(f"[{preset}] round {rnd}/{repeat} done" + (" (warm-up)" if rnd == 0 else ""))

    for b in loaded:
        ok = b.engine is not None
        out["backends"][b.name] = {
            "status": "ran" if ok else "not run", "reason": b.reason,
            "load_mb": None if b.load_bytes is None else b.load_bytes / 1e6,
            "run_peak_mb": b.run_peak_bytes / 1e6,
            "peak_mb": None if b.load_bytes is None else (b.load_bytes + b.run_peak_bytes) / 1e6,
            "llm_weight_mb": b.llm_bytes / 1e6, "warmup_s": b.warmup_s, "notes": b.notes}
    for c in the_cases:
        entry = {"name": c.name, "what": c.what, "call": c.call, "image": c.image,
                 "sensor": c.sensor, "backends": {}}
        for b in loaded:
            rs = runs.get((c.name, b.name), [])
            if b.engine is not None and rs:
                entry["backends"][b.name] = summarize_case(b, rs, bandwidth)
        out["cases"].append(entry)
    add_ratios(out)
    for b in loaded:
        b.engine = None
    del loaded, ready
    gc.unfreeze()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def add_ratios(out: dict) -> None:
    """Ratios to torch eager fp32: time and memory as torch / backend, tokens/s as backend /
    torch; and the totals over the cases."""
    backends = out["backends"]
    ref_mem = backends.get(REFERENCE, {}).get("peak_mb")
    for b in backends.values():
        b["peak_mb_vs_torch"] = (ref_mem / b["peak_mb"] if ref_mem and b.get("peak_mb")
                                 else None)
    totals = {}
    for c in out["cases"]:
        ref = c["backends"].get(REFERENCE)
        for name, r in c["backends"].items():
            t = totals.setdefault(name, {"wall_median_s": 0.0, "cases": 0})
            t["wall_median_s"] += r["wall"]["median"]
            t["cases"] += 1
            if ref is None:
                r["speedup"] = None
                continue
            r["speedup"] = ref["wall"]["median"] / r["wall"]["median"]
            r["ttft_speedup"] = _ratio(ref["ttft"]["median"], r["ttft"]["median"])
            r["stage_speedup"] = {s: _ratio(ref["stages"][s]["median"],
                                            r["stages"][s]["median"]) for s in STAGES}
            tps, rtps = r.get("decode_tokens_per_s"), ref.get("decode_tokens_per_s")
            r["decode_vs_torch"] = tps / rtps if tps and rtps else None
    n_ref = totals.get(REFERENCE, {}).get("cases")
    for t in totals.values():
        ref = totals.get(REFERENCE)
        t["speedup"] = (ref["wall_median_s"] / t["wall_median_s"]
                        if ref and t["cases"] == n_ref else None)
    out["totals"] = totals


def _ratio(ref: float, x: float) -> float | None:
    return ref / x if ref > 0 and x > 0 else None


# ------------------------------------------------------------------------------------------------
# printing
# ------------------------------------------------------------------------------------------------

def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _ms(v) -> str:
    return f"{v * 1e3:.1f}"


def markdown(out: dict) -> str:
    lines = []
    p = out["preset"]
    if "skipped" in out:
        return f"### preset {p}: not run: {out['skipped']}\n"
    lines.append(f"### preset `{p}` (random weights, {out['model_fp32_bytes'] / 1e6:.0f} MB "
                 f"fp32)\n")
    lines.append("| backend | status | load MB | run peak MB | peak MB | vs torch | "
                 "LLM weights MB | warm-up s | notes |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, b in out["backends"].items():
        def mb(v):
            return "-" if v is None else f"{v:.0f}"
        st = b["status"] if b["status"] == "ran" else f"not run: {b['reason']}"
        lines.append(f"| {name} | {st} | {mb(b['load_mb'])} | {mb(b['run_peak_mb'])} | "
                     f"{mb(b['peak_mb'])} | {_x(b.get('peak_mb_vs_torch'))} | "
                     f"{b['llm_weight_mb']:.1f} | {b['warmup_s']:.1f} | "
                     f"{'; '.join(b['notes'])} |")
    lines.append("")
    lines.append("End to end, per request (ms; ratio = torch eager / backend):\n")
    lines.append("| case | backend | median | p90 | p99 | vs torch | TTFT | vs torch | "
                 "time to mask | decode tok/s | vs torch | % BW limit |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in out["cases"]:
        for name, r in c["backends"].items():
            w = r["wall"]
            ttft = _ms(r["ttft"]["median"]) if c["call"] != "segment" else "-"
            ttft_x = _x(r.get("ttft_speedup")) if c["call"] != "segment" else "-"
            ttm = _ms(w["median"]) if c["call"] == "segment" else "-"
            tps = r.get("decode_tokens_per_s")
            # a rate over a step or two per tile says little
            many = c["call"] != "segment" and r["decode_steps_per_request"] >= 4
            pct = r.get("decode_pct_bw_limit")
            lines.append(
                f"| {c['name']} | {name} | {_ms(w['median'])} | {_ms(w['p90'])} | "
                f"{_ms(w['p99'])} | {_x(r.get('speedup'))} | {ttft} | {ttft_x} | {ttm} | "
                f"{f'{tps:.1f}' if tps and many else '-'} | "
                f"{_x(r.get('decode_vs_torch')) if many else '-'} | "
                f"{f'{pct:.1f}%' if pct is not None and many else '-'} |")
    lines.append("")
    lines.append("All cases (sum of the per-case medians):\n")
    lines.append("| backend | total ms | vs torch |")
    lines.append("|---|---|---|")
    for name, t in out["totals"].items():
        lines.append(f"| {name} | {_ms(t['wall_median_s'])} | {_x(t.get('speedup'))} |")
    lines.append("")
    lines.append("Per stage, median / p90 / p99 ms (ratio of the medians to torch eager):\n")
    lines.append("| case | backend | " + " | ".join(STAGES) + " | other |")
    lines.append("|---|---|" + "---|" * (len(STAGES) + 1))
    for c in out["cases"]:
        for name, r in c["backends"].items():
            cells = []
            for s in STAGES:
                st = r["stages"][s]
                if st["median"] == 0 and st["p99"] == 0:
                    cells.append("-")
                    continue
                ratio = (r.get("stage_speedup") or {}).get(s)
                cells.append(f"{_ms(st['median'])} / {_ms(st['p90'])} / {_ms(st['p99'])}"
                             + (f" ({ratio:.2f}x)" if ratio is not None else ""))
            o = r["other"]
            cells.append(f"{_ms(o['median'])}")
            lines.append(f"| {c['name']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict:
    import onnxruntime
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    d = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
         "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


def peak_bandwidth_for(device: str) -> tuple[float, str]:
    """(bytes/s, where the figure comes from) for decode's bandwidth limit."""
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name(0)
        for key, bw in DEVICE_BANDWIDTH.items():
            if key in name:
                return bw, f"{name} specification"
        src = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        best = float("inf")
        for _ in range(5):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            dst.copy_(src)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return 2 * src.numel() / best, f"measured: 256 MB device copy on {name}"
    from benchmarks.llm_decode import peak_bandwidth

    return peak_bandwidth(), "measured: 512 MB numpy copy (benchmarks.llm_decode.peak_bandwidth)"


def _list(arg: str, valid: tuple, what: str, parser) -> list[str]:
    items = [s.strip() for s in arg.split(",") if s.strip()]
    bad = [s for s in items if s not in valid]
    if bad or not items:
        parser.error(f"--{what}: {bad or arg!r} not in {list(valid)}")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="tiny, small, base, or a comma list")
    parser.add_argument("--backends", default="torch,torch-compile,ort-fp32,ort-int8,ort-int4",
                        help=f"comma list of {','.join(BACKENDS)}")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of torch, onnxruntime and the native core (default: all "
                             "cores)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--cases", default=None, help="comma list of case names (default all)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--plot", type=Path, default=None, help="write the stage plot (PNG)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep checkpoints and bundles here and reuse them (default: a "
                             "temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    presets = _list(args.preset, PRESETS, "preset", parser)
    names = _list(args.backends, BACKENDS, "backends", parser)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.threads is None or args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    all_cases = cases()
    if args.cases:
        the_cases = [c for c in all_cases if c.name in args.cases.split(",")]
        if len(the_cases) != len(args.cases.split(",")):
            parser.error(f"--cases: valid names are {[c.name for c in all_cases]}")
    else:
        the_cases = all_cases

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "benchmarks.e2e: --device cuda, but torch sees no CUDA device here\n")
    torch.set_num_threads(args.threads)
    from earthx_sdk import _ext

    if _ext.native_available():  # preprocess, fusion, postprocess: the native core's OpenMP
        _ext.native().set_num_threads(args.threads)
    imgs, missing = images({c.image for c in the_cases})
    for key, why in missing.items():
        log(f"image {key} missing: {why}; its cases are not run")
    the_cases = [c for c in the_cases if c.image in imgs]
    if not the_cases:
        parser.exit(2, "benchmarks.e2e: no case has its image\n")

    t_start = time.perf_counter()
    bandwidth, bw_src = peak_bandwidth_for(args.device)
    info = machine()
    cmd = "python -m benchmarks.e2e " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# {cmd}\n# {info['cpu']}, {info['cores']} cores, {args.threads} threads, device "
          f"{args.device}{' (' + info['gpu'] + ')' if 'gpu' in info else ''}; torch "
          f"{info['torch']}, onnxruntime {info['onnxruntime']}; {info['date']}; median of "
          f"{args.repeat} after 1 warm-up; peak bandwidth {bandwidth / 1e9:.1f} GB/s ({bw_src})")
    results = []
    work = args.workdir or Path(tempfile.mkdtemp(prefix="earthx-e2e-"))
    try:
        for preset in presets:
            r = measure_preset(preset, names, the_cases, imgs, work, args.device, args.threads,
                               args.repeat, bandwidth)
            results.append(r)
            print(markdown(r), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    print(f"# total time {elapsed:.0f} s (exports included)")
    payload = {"benchmark": "e2e", "command": cmd, "machine": info, "device": args.device,
               "threads": args.threads, "repeat": args.repeat,
               "peak_bandwidth_bytes_per_s": bandwidth, "peak_bandwidth_source": bw_src,
               "missing_images": missing, "elapsed_s": elapsed, "presets": results}
    if args.json is not None:
        from benchmarks.harness import write_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(args.json), payload)
    if args.plot is not None:
        from benchmarks.plot import plot_stages

        plot_stages(payload, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
