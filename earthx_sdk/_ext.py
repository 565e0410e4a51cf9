"""Loads the native core `earthx_sdk._C`, or records why it is missing.

`import earthx_sdk` never fails because native code or CUDA is missing: the ops fall back to their
numpy references, and one RuntimeWarning says so. Set EARTHX_DISABLE_NATIVE=1 to force the reference
path (the tests use it to check the fallback).
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

_C: ModuleType | None = None
NATIVE_ERROR: str | None = None

if os.environ.get("EARTHX_DISABLE_NATIVE", "") not in ("", "0"):
    NATIVE_ERROR = "disabled by EARTHX_DISABLE_NATIVE"
else:
    try:
        from earthx_sdk import _C  # type: ignore[attr-defined, no-redef]
    except ImportError as exc:  # not built, or built for another Python / platform
        NATIVE_ERROR = f"{type(exc).__name__}: {exc}"

if _C is None:
    warnings.warn(
        f"earthx_sdk: the native core earthx_sdk._C is not available ({NATIVE_ERROR}); "
        "the numpy reference implementations run instead (slower). Reinstall with "
        "`pip install -e .` to build it.",
        RuntimeWarning,
        stacklevel=2,
    )

IMPLS = ("auto", "native", "ref")


def native_available() -> bool:
    """True when the compiled core loaded."""
    return _C is not None


def use_native(impl: str, op: str) -> bool:
    """Resolves an op's `impl` argument to native (True) or reference (False).

    Raises:
        ValueError: `impl` is not one of IMPLS.
        RuntimeError: impl="native" was asked for but the native core is missing.
    """
    if impl == "ref":
        return False
    if impl == "auto":
        return _C is not None
    if impl == "native":
        if _C is None:
            raise RuntimeError(f"{op}: impl='native' needs earthx_sdk._C, which is not available "
                               f"({NATIVE_ERROR})")
        return True
    raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")


def native() -> ModuleType:
    """The loaded `_C` module. Raises RuntimeError when it is missing."""
    if _C is None:
        raise RuntimeError(f"earthx_sdk._C is not available ({NATIVE_ERROR})")
    return _C


def build_info() -> dict:
    """{"built", "cuda_compiled", "tensorrt_compiled", "openmp", "threads", "ops", "error"}."""
    if _C is None:
        return {"built": False, "cuda_compiled": False, "tensorrt_compiled": False,
                "openmp": False, "threads": 1, "ops": [], "error": NATIVE_ERROR}
    info = dict(_C.build_info())
    ops = sorted(n for n in dir(_C) if not n.startswith("_") and callable(getattr(_C, n)))
    return {"built": True, **info, "ops": ops, "error": None}
