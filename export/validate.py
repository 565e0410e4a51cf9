"""Parity of exported graphs against the PyTorch reference, with onnxruntime on CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

TOLERANCES = {"fp32": 1e-4, "fp16": 5e-2}
"""Default absolute tolerance (scaled by max(1, max |reference|)) per precision."""


class ParityError(AssertionError):
    """One or more outputs differ from the reference beyond tolerance (all listed)."""


@dataclass(frozen=True)
class Parity:
    """Max abs error and tolerance of one output of one component."""

    component: str
    output: str
    max_abs_err: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_err <= self.tolerance


def run_onnx(path: str | Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs a graph with onnxruntime's CPU provider; returns outputs by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def check_parity(name: str, path: str | Path, module: torch.nn.Module,
                 inputs: dict[str, torch.Tensor], precision: str = "fp32",
                 tolerance: float | dict[str, float] | None = None) -> list[Parity]:
    """Compares every output of the graph at `path` with `module(**inputs)`.

    Args:
        name: the component's name (in messages).
        path: the ONNX file.
        module: the reference wrapper.
        inputs: inputs by graph input name.
        precision: "fp32" or "fp16" (picks the default tolerance).
        tolerance: one absolute tolerance, or one per output name; scaled by
            max(1, max |reference output|).

    Returns:
        one Parity per output.

    Raises:
        ParityError: outputs beyond tolerance, all named with their max error.
    """
    with torch.no_grad():
        ref = module.eval()(**inputs)
    got = run_onnx(path, {k: v.numpy() for k, v in inputs.items()})
    report, failures = [], []
    for out_name, r in zip(got, ref, strict=True):
        r = r.float().numpy()
        g = got[out_name].astype(np.float32)
        base = TOLERANCES[precision] if tolerance is None else tolerance
        tol = base.get(out_name, TOLERANCES[precision]) if isinstance(base, dict) else base
        tol = float(tol) * max(1.0, float(np.abs(r).max(initial=0.0)))
        if g.shape != r.shape:
            err = float("inf")
        else:
            err = float(np.abs(g - r).max(initial=0.0)) if np.isfinite(g).all() else float("inf")
        p = Parity(name, out_name, err, tol)
        report.append(p)
        if not p.ok:
            shape = "" if g.shape == r.shape else f" (shape {list(g.shape)} vs {list(r.shape)})"
            failures.append(f"{name}.{out_name}: max abs error {err:.3g} > {tol:.3g}{shape}")
    if failures:
        raise ParityError(f"{len(failures)} output(s) of {path} differ from the PyTorch "
                          f"reference: " + "; ".join(failures))
    return report
