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
