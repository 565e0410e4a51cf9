"""Each native op against its numpy reference, side by side in one run.

    python -m benchmarks.native [--json PATH] [--repeat N] [--only NAME]

Prints, per case, the median and p90 time of the numpy reference and of `earthx_sdk._C`, the
speed-up
(reference / native, measured in this run), and the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from benchmarks.harness import REGISTRY, Case, time_calls, write_json


def _max_diff(a: object, b: object) -> float:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return max((_max_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return _max_diff([a[k] for k in sorted(a)], [b[k] for k in sorted(b)])
    if isinstance(a, (bytes, str)):
        return 0.0 if a == b else float("inf")
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _cases() -> list[Case]:
    # Importing the op modules registers their factories.
    from benchmarks import native_cases  # noqa: F401

    cases: list[Case] = []
    for factory in REGISTRY:
        cases.extend(factory())
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.native", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--only", help="run only the cases whose op name contains this")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")

    from earthx_sdk import _ext

    if not _ext.native_available():
        parser.exit(2, f"benchmarks.native: earthx_sdk._C is not available ({_ext.NATIVE_ERROR})\n")
    info = _ext.build_info()

    rows = []
    header = (f"{'op':<22} {'case':<40} {'ref ms':>9} {'native ms':>10} {'p90 nat':>9} "
              f"{'speed-up':>9} {'target':>7} {'max |diff|':>11}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{info['threads']} native threads, median of {args.repeat}")
    print(header)
    print("-" * len(header))
    for case in _cases():
        if args.only and args.only not in case.op:
            continue
        ref_t = time_calls(case.ref, args.repeat)
        nat_t = time_calls(case.native, args.repeat)
        diff = _max_diff(case.ref(), case.native())
        ref_med, nat_med = statistics.median(ref_t), statistics.median(nat_t)
        speedup = ref_med / nat_med if nat_med > 0 else float("inf")
        target = f"{case.target:.0f}x" if case.target else "-"
        print(f"{case.op:<22} {case.name:<40} {ref_med * 1e3:>9.3f} {nat_med * 1e3:>10.3f} "
              f"{_percentile(nat_t, 90) * 1e3:>9.3f} {speedup:>8.1f}x {target:>7} {diff:>11.3g}")
        rows.append({
            "op": case.op, "case": case.name,
            "ref_median_s": ref_med, "ref_p90_s": _percentile(ref_t, 90),
            "native_median_s": nat_med, "native_p90_s": _percentile(nat_t, 90),
            "speedup": speedup, "target_speedup": case.target, "max_abs_diff": diff,
        })
    if args.json:
        payload = {"machine": {"processor": platform.processor(), "machine": platform.machine(),
                               "cores": os.cpu_count()}, "build": info, "repeat": args.repeat,
                   "date": time.strftime("%Y-%m-%d"), "results": rows}
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
