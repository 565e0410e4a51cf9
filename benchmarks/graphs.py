"""Latency of the ONNX graphs of two or more bundles, side by side (e.g. a decoder change).

    python -m benchmarks.graphs BUNDLE [BUNDLE ...] [--graphs vision_optical_3,mask_decoder]
        [--queries 1] [--prompts 1] [--text 20] [--repeat 200] [--threads 1] [--json PATH]

`default` names the embedded bundle. Each graph is opened on onnxruntime's CPU provider with
`--threads` intra-op threads and fed seeded random inputs shaped from its own input metadata: a
dynamic axis named Q, R or T gets `--queries`, `--prompts` or `--text`; float inputs are normal,
`prompt_masks` a 0/1 square in the middle, integer inputs zero. The bundles then run round-robin
(one call of each graph of each bundle per round, `--repeat` rounds after one warm-up round), so
the ratios compare calls milliseconds apart on the same machine state. Per graph and bundle:
median and p90 in ms and the ratio of the median to the first bundle's (> 1: slower).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import write_json

DYNAMIC = {"Q": "queries", "R": "prompts", "T": "text"}


def _resolve(bundle: str) -> Path:
    from earthx_sdk.defaults import resolve_bundle

    path = resolve_bundle(bundle)
    if not (path / "manifest.json").is_file():
        raise SystemExit(f"benchmarks.graphs: {bundle} is not a bundle directory (no "
                         "manifest.json)")
    return path


def feed_for(session, sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for `session` with its dynamic axes set from `sizes` (Q, R, T)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for i in session.get_inputs():
        shape = []
        for d in i.shape:
            if isinstance(d, int):
                shape.append(d)
            elif d in sizes:
                shape.append(sizes[d])
            else:
                raise ValueError(f"input {i.name}: dynamic axis {d!r} is none of {sorted(sizes)}")
        if "int" in i.type:
            feed[i.name] = np.zeros(shape, np.int64)
        elif i.name == "prompt_masks":
            m = np.zeros(shape, np.float32)
            s = shape[-1]
            m[..., s // 4:3 * s // 4, s // 4:3 * s // 4] = 1.0
            feed[i.name] = m
        else:
            feed[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def run(bundles: list[str], graphs: list[str], sizes: dict[str, int], repeat: int,
        threads: int) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    paths = [_resolve(b) for b in bundles]
    jobs = []  # (bundle index, graph, session, feed)
    for k, path in enumerate(paths):
        for g in graphs:
            f = path / f"{g}.onnx"
            if not f.is_file():
                raise SystemExit(f"benchmarks.graphs: bundle {path} has no graph {g} ({f.name})")
            sess = ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
            jobs.append((k, g, sess, feed_for(sess, sizes)))
    times = {(k, g): [] for k, g, _, _ in jobs}
    for r in range(repeat + 1):
        for k, g, sess, feed in jobs:
            t0 = time.perf_counter()
            sess.run(None, feed)
            if r:  # round 0 warms up
                times[(k, g)].append(time.perf_counter() - t0)
    rows = []
    for g in graphs:
        base = float(np.median(times[(0, g)]))
        for k, path in enumerate(paths):
            t = np.asarray(times[(k, g)])
            rows.append({"graph": g, "bundle": str(path), "median_ms": float(np.median(t)) * 1e3,
                         "p90_ms": float(np.percentile(t, 90)) * 1e3,
                         "ratio_to_first": float(np.median(t)) / base})
    return {"sizes": sizes, "repeat": repeat, "threads": threads, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.graphs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+", help="bundle directories, or default")
    p.add_argument("--graphs", default="vision_optical_3,mask_decoder")
    p.add_argument("--queries", type=int, default=1)
    p.add_argument("--prompts", type=int, default=1)
    p.add_argument("--text", type=int, default=20)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    for name in ("queries", "prompts", "text", "repeat", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    sizes = {axis: getattr(args, name) for axis, name in DYNAMIC.items()}
    out = run(args.bundles, [g for g in args.graphs.split(",") if g], sizes, args.repeat,
              args.threads)
    print(f"{'graph':<20} {'median ms':>10} {'p90 ms':>8} {'x first':>8}  bundle")
    for r in out["rows"]:
        print(f"{r['graph']:<20} {r['median_ms']:>10.3f} {r['p90_ms']:>8.3f} "
              f"{r['ratio_to_first']:>8.2f}  {r['bundle']}")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
