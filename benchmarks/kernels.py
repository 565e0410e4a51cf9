"""region_pool implementations side by side, on the test suite's cases (tests/region_pool_cases).

    python -m benchmarks.kernels [--json PATH] [--repeat N] [--device cpu|cuda]

Per implementation and case: median and p90 time, GB/s, speed-up over `region_pool_ref` measured in
the same run, and the largest difference from it. GB/s counts the bytes a region_pool must gather:
per region, scale and sample, the 4 bilinear neighbours of every channel (and of the mask), plus
the boxes and the output — the traffic of a kernel without reuse between samples, so a kernel that
reuses cached neighbours can show more than the memory's bandwidth.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

import numpy as np

from benchmarks.harness import time_calls, write_json


def gathered_bytes(case, itemsize: int) -> int:
    per_sample = sum(c for c, _, _ in case.scales) * 4 + (4 if case.masks else 0)
    samples = case.batch * case.regions * case.grid * case.grid
    out = case.batch * case.regions * sum(c for c, _, _ in case.scales)
    return (samples * per_sample + out + case.batch * case.regions * 4) * itemsize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")

    import torch

    from earthx_sdk.ops.region_pool import available_impls, region_pool
    from tests.region_pool_cases import BENCH, make_inputs

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "benchmarks.kernels: --device cuda but no CUDA device is visible\n")
    sync = torch.cuda.synchronize if args.device == "cuda" else None
    impls = available_impls(args.device)
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else None
    print(f"# {gpu or platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), median of "
          f"{args.repeat}; implementations here: {', '.join(impls)}")
    header = (f"{'case':<46} {'impl':<7} {'median ms':>10} {'p90 ms':>9} {'GB/s':>8} "
              f"{'vs ref':>7} {'max |diff|':>11}")
    print(header)
    print("-" * len(header))
    rows = []
    for case in BENCH:
        feats, boxes, masks = make_inputs(case, device=args.device)
        call = {i: functools.partial(region_pool, feats, boxes, masks, case.grid,
                                     image_size=case.image_size, impl=i) for i in impls}
        ref_out = call["ref"]()
        ref_med = None
        for impl in impls:
            with torch.no_grad():
                t = time_calls(call[impl], args.repeat, sync)
                diff = float((call[impl]() - ref_out).abs().max())
            med = statistics.median(t)
            ref_med = med if impl == "ref" else ref_med
            gbs = gathered_bytes(case, feats[0].element_size()) / med / 1e9
            p90 = float(np.percentile(t, 90))
            print(f"{case.name:<46} {impl:<7} {med * 1e3:>10.3f} {p90 * 1e3:>9.3f} {gbs:>8.2f} "
                  f"{ref_med / med:>6.1f}x {diff:>11.3g}")
            rows.append({"case": case.name, "impl": impl, "median_s": med, "p90_s": p90,
                         "gb_per_s": gbs, "speedup_vs_ref": ref_med / med, "max_abs_diff": diff})
    if args.json:
        payload = {"device": gpu or platform.processor(), "cores": os.cpu_count(),
                   "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                   "repeat": args.repeat, "results": rows}
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
