"""The demo's requests with onnxruntime's intra-op spinning on and off (`ort_llm.NO_SPIN`).

    python -m benchmarks.ort_spinning [--bundle default] [--rounds 8] [--trials 3] [--json PATH]

Each trial runs two child processes in turn, one per setting: the runtime as shipped (spinning
off) and the same with `ort_llm.no_spin` replaced by a no-op (onnxruntime's default, spinning
on). A child loads the bundle with onnxruntime's default threads, asks the demo's 12 questions
on the sample scenes once to warm up, then `--rounds` times, and reports the wall time of a round
and each stage's time per round (`Result.timings`). Printed: every trial's wall per round, the
median over trials of each setting, and spinning-on / spinning-off (> 1: spinning is slower).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import write_json

MODES = ("spin", "nospin")
ROOT = Path(__file__).resolve().parents[1]  # the children import benchmarks from the checkout


def child(mode: str, bundle: str, rounds: int) -> dict:
    from earthx_sdk.runtime import ort_llm

    if mode == "spin":
        ort_llm.no_spin = lambda opts: opts  # onnxruntime's default
    from earthx_sdk import EarthX, defaults, demo

    model = EarthX.load(bundle, backend="onnxruntime")
    samples = defaults.samples()
    walls, stages = [], {}
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        answers = [a for e in samples
                   for a in demo.ask_all(model, str(defaults.SAMPLES_DIR / e["file"]),
                                         e["sensor"], demo.sample_prompts(e), e)]
        if r:  # round 0 warms up
            walls.append(time.perf_counter() - t0)
            for a in answers:
                for name, s in a.timings.items():
                    stages[name] = stages.get(name, 0.0) + s / rounds
    return {"mode": mode, "wall_s": walls, "stages_s": stages, "requests": len(answers)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ort_spinning", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="default")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--json", default=None)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("rounds", "trials"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.child:
        print(json.dumps(child(args.child, args.bundle, args.rounds)))
        return 0
    runs = []
    for t in range(args.trials):
        for mode in MODES:
            out = subprocess.run([sys.executable, "-m", "benchmarks.ort_spinning", "--child", mode,
                                  "--bundle", args.bundle, "--rounds", str(args.rounds)],
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                raise SystemExit(f"benchmarks.ort_spinning: the {mode} child failed:\n"
                                 f"{out.stderr[-2000:]}")
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run["trial"] = t
            runs.append(run)
            stages = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in run["stages_s"].items())
            print(f"trial {t} {mode:<6} {np.median(run['wall_s']) * 1e3:7.1f} ms per round of "
                  f"{run['requests']} requests (stages, ms: {stages})")
    med = {m: float(np.median([np.median(r["wall_s"]) for r in runs if r["mode"] == m]))
           for m in MODES}
    print(f"median wall per round: spinning on {med['spin'] * 1e3:.1f} ms, off "
          f"{med['nospin'] * 1e3:.1f} ms; on / off = {med['spin'] / med['nospin']:.2f}")
    if args.json:
        write_json(args.json, {"rounds": args.rounds, "runs": runs, "median_wall_s": med})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
