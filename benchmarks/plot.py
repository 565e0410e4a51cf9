"""The stage breakdown of `benchmarks.e2e` as a PNG: one panel per preset and case, one stacked
bar per backend (median seconds of each stage, and "other": the request's wall time minus its
stages).

    python -m benchmarks.plot RESULTS.json OUT.png

Needs matplotlib (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

STAGES = ("preprocess", "vision", "fusion", "prompt_encoder", "prefill", "decode", "mask_decoder",
          "postprocess")
COLORS = {"preprocess": "#4c72b0", "vision": "#dd8452", "fusion": "#55a868",
          "prompt_encoder": "#c44e52", "prefill": "#8172b3", "decode": "#937860",
          "mask_decoder": "#da8bc3", "postprocess": "#8c8c8c", "other": "#cccccc"}


def plot_stages(payload: dict, path: str | Path) -> Path:
    """Writes the stage breakdown of an e2e result (the JSON `benchmarks.e2e` writes) to a PNG.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the payload holds no measured case.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("benchmarks.plot needs matplotlib (pip install -c constraints.txt "
                          "'.[bench]'), not installed") from e
    panels = [(p["preset"], c) for p in payload.get("presets", []) for c in p.get("cases", [])
              if c["backends"]]
    if not panels:
        raise ValueError("plot_stages: the results hold no measured case (every backend or "
                         "preset was not run)")
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 0.45 * 6 * rows + 1.2),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (preset, case) in zip(axes.flat, panels, strict=False):
        names = list(case["backends"])
        left = [0.0] * len(names)
        for part in (*STAGES, "other"):
            vals = []
            for n in names:
                r = case["backends"][n]
                v = r["other"]["median"] if part == "other" else r["stages"][part]["median"]
                vals.append(max(v, 0.0) * 1e3)
            ax.barh(names, vals, left=left, color=COLORS[part], label=part, height=0.6)
            left = [a + b for a, b in zip(left, vals, strict=True)]
        for i, n in enumerate(names):
            r = case["backends"][n]
            sp = r.get("speedup")
            tag = f" {r['wall']['median'] * 1e3:.0f} ms" + (f" ({sp:.2f}x)" if sp is not None
                                                           else "")
            ax.text(left[i], i, tag, va="center", fontsize=7)
        ax.set_xlim(0, max(left) * 1.35 if max(left) > 0 else 1)
        ax.invert_yaxis()
        ax.set_title(f"{preset}: {case['name']}", fontsize=9)
        ax.set_xlabel("ms per request: stage medians stacked; label: median wall (torch eager / "
                      "backend)", fontsize=7)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.975),
               ncol=len(labels), fontsize=7, frameon=False)
    m = payload.get("machine", {})
    fig.suptitle(f"EarthX end to end, per stage — {m.get('cpu', '')}, {m.get('cores', '')} "
                 f"cores, {payload.get('device', '')}, {m.get('date', '')}", fontsize=9, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("results", type=Path, help="JSON written by python -m benchmarks.e2e --json")
    p.add_argument("out", type=Path, help="PNG to write")
    args = p.parse_args(argv)
    plot_stages(json.loads(args.results.read_text()), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
