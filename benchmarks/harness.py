"""Shared pieces of the benchmarks: a case and the registry of case factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Case:
    op: str  # public op name
    name: str  # what the inputs are
    ref: Callable[[], object]  # the numpy reference, inputs bound
    native: Callable[[], object]  # the _C implementation, inputs bound
    target: float | None = None  # speed-up the issue asks for, when it asks for one


REGISTRY: list[Callable[[], list[Case]]] = []


def register(fn: Callable[[], list[Case]]) -> Callable[[], list[Case]]:
    """Adds a factory of cases; factories run only when the benchmark runs."""
    REGISTRY.append(fn)
    return fn


def time_calls(fn: Callable[[], object], repeat: int,
               sync: Callable[[], object] | None = None) -> list[float]:
    """Seconds of `repeat` calls after one warm-up call (first-touch allocations, thread pools,
    autotuning); `sync` (e.g. torch.cuda.synchronize) runs before each clock read."""
    import time

    sync = sync or (lambda: None)
    fn()
    sync()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def write_json(path: str, payload: dict) -> None:
    """Writes `payload` to `path` through a temporary file and a rename, and says so."""
    import json
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    print(f"wrote {path}")
