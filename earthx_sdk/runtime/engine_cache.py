"""The TensorRT engine cache: engines keyed by GPU, TensorRT version, ONNX graph and precision.

A TensorRT engine runs only on the GPU model and with the TensorRT version that built it, and only
stands for the graph it was built from. Each engine file `<component>.<precision>.engine` sits
with a JSON sidecar `<component>.<precision>.engine.json` holding its `EngineKey` and the engine
file's own sha256. `EngineCache.lookup` returns an engine only when the whole key matches; a
foreign or stale engine is refused with a message naming each key field that differs, both
values and what to do (`get_or_build` rebuilds it instead, saying why). Torch-free and
TensorRT-free: the key of this machine comes from the CUDA driver (`gpu_identity`, through
ctypes) and the TensorRT version from whichever of the `tensorrt` module or the `_C` runner is
present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")

FIX = {
    "gpu_name": "an engine runs only on the GPU model that built it",
    "compute_capability": "an engine runs only on the GPU architecture that built it",
    "tensorrt_version": "an engine runs only with the TensorRT version that built it",
    "onnx_sha256": "the ONNX graph changed since the engine was built (the bundle was "
                   "re-exported)",
    "precision": "the engine was built for another precision",
}
"""Why each key field matters (in refusal messages)."""


class EngineCacheError(RuntimeError):
    """An engine in the cache cannot be used; `fields` lists the key fields that differ."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class EngineKey:
    """What an engine is valid for.

    Attributes:
        gpu_name: the CUDA device name ("NVIDIA H100 80GB HBM3", "Orin").
        compute_capability: "major.minor" ("9.0", "8.7").
        tensorrt_version: the TensorRT that built it ("10.3.0").
        onnx_sha256: sha256 of the ONNX file it was built from (the manifest's).
        precision: one of ENGINE_PRECISIONS.
    """

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    onnx_sha256: str
    precision: str

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"EngineKey.{f.name} must be a non-empty string, got {v!r}")
        if self.precision not in ENGINE_PRECISIONS:
            raise ValueError(f"EngineKey.precision must be one of {ENGINE_PRECISIONS}, got "
                             f"{self.precision!r}")

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: object, where: str = "engine key") -> EngineKey:
        """Raises ValueError for a non-object, unknown or missing keys, bad values."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"{where}: keys must be {sorted(names)}, got {sorted(d)}")
        return cls(**d)

    def differences(self, other: EngineKey) -> tuple[str, ...]:
        """Names of the fields where `other` differs from this key, in field order."""
        return tuple(f.name for f in dataclasses.fields(self)
                     if getattr(self, f.name) != getattr(other, f.name))


def stale_message(engine: Path, built: EngineKey, wanted: EngineKey) -> str:
    """Names every differing field with both values and what to do."""
    parts = [f"{f} is {getattr(built, f)!r}, this machine needs {getattr(wanted, f)!r} "
             f"({FIX[f]})" for f in built.differences(wanted)]
    return (f"TensorRT engine {engine} does not fit: " + "; ".join(parts)
            + f". Rebuild it on this machine (python -m export --tensorrt, or "
              f"EngineCache.get_or_build) or delete {engine}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class EngineCache:
    """Engines of one bundle (or any directory) with their key sidecars.

    Args:
        root: the cache directory (created on the first store).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def paths(self, component: str, precision: str) -> tuple[Path, Path]:
        """(engine file, key sidecar) of a component at a precision."""
        if not component or "/" in component or component.startswith("."):
            raise ValueError(f"component must be a plain name like 'vision_optical_3', got "
                             f"{component!r}")
        engine = self.root / f"{component}.{precision}.engine"
        return engine, engine.with_name(engine.name + ".json")

    def lookup(self, component: str, key: EngineKey) -> Path | None:
        """The engine built for exactly `key`, or None when there is none yet.

        Raises:
            EngineCacheError: an engine exists but was built for another key (the message names
                each differing field, both values, and says to rebuild or delete it), or it has
                no readable sidecar, or its bytes differ from the sidecar's sha256.
        """
        engine, sidecar = self.paths(component, key.precision)
        if not engine.exists():
            return None
        if not sidecar.is_file():
            raise EngineCacheError(f"TensorRT engine {engine} has no key file {sidecar.name}: "
                                   f"which GPU and TensorRT built it is unknown. Rebuild it on "
                                   f"this machine or delete {engine}", ("sidecar",))
        try:
            meta = json.loads(sidecar.read_text())
            if not isinstance(meta, dict) or set(meta) != {"key", "engine_sha256"}:
                raise ValueError(f"keys must be ['engine_sha256', 'key'], got "
                                 f"{sorted(meta) if isinstance(meta, dict) else meta!r}")
            built = EngineKey.from_dict(meta["key"], str(sidecar))
        except ValueError as e:
            raise EngineCacheError(f"TensorRT engine key file {sidecar} is malformed ({e}). "
                                   f"Rebuild the engine or delete {engine}", ("sidecar",)) from e
        diff = built.differences(key)
        if diff:
            raise EngineCacheError(stale_message(engine, built, key), diff)
        if _sha256(engine) != meta["engine_sha256"]:
            raise EngineCacheError(f"TensorRT engine {engine} was modified after it was built "
                                   f"(its sha256 differs from {sidecar.name}). Rebuild it or "
                                   f"delete {engine}", ("engine_sha256",))
        return engine

    def store(self, component: str, key: EngineKey, engine_bytes: bytes) -> Path:
        """Writes an engine and its sidecar (each to a temporary name, then renamed; the old
        sidecar goes first, so an interrupted store never pairs a new engine with an old key)."""
        if not isinstance(engine_bytes, (bytes, bytearray, memoryview)) or not len(engine_bytes):
            raise ValueError(f"engine_bytes must be a non-empty serialized engine, got "
                             f"{type(engine_bytes).__name__}")
        engine, sidecar = self.paths(component, key.precision)
        self.root.mkdir(parents=True, exist_ok=True)
        sidecar.unlink(missing_ok=True)
        data = bytes(engine_bytes)
        _write(engine, data)
        meta = {"key": key.to_dict(), "engine_sha256": hashlib.sha256(data).hexdigest()}
        _write(sidecar, json.dumps(meta, indent=2, sort_keys=True).encode())
        return engine

    def get_or_build(self, component: str, key: EngineKey, build: Callable[[], bytes]) -> Path:
        """The cached engine for `key`, built (and stored) when missing; a foreign or stale
        engine is rebuilt, with a warning that names why."""
        try:
            found = self.lookup(component, key)
        except EngineCacheError as e:
            warnings.warn(f"{e} -- rebuilding it", RuntimeWarning, stacklevel=2)
            found = None
        return found if found is not None else self.store(component, key, build())


# --- this machine's key ------------------------------------------------------------------------

_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of a CUDA device, from the driver API (libcuda) through ctypes.

    Raises:
        RuntimeError: no NVIDIA driver on this machine, or no such device (the driver's error
            code named).
    """
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        raise RuntimeError(f"gpu_identity: no NVIDIA driver on this machine (libcuda.so.1 not "
                           f"loadable: {e}); TensorRT engines need an NVIDIA GPU") from e

    def check(rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"gpu_identity: {what} failed with CUDA driver error {rc} "
                               f"(device {device})")

    check(cuda.cuInit(0), "cuInit")
    dev = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    check(cuda.cuDeviceGetName(name, 256, dev), "cuDeviceGetName")
    major, minor = ctypes.c_int(), ctypes.c_int()
    check(cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev),
          "cuDeviceGetAttribute(compute capability major)")
    check(cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev),
          "cuDeviceGetAttribute(compute capability minor)")
    return name.value.decode(), f"{major.value}.{minor.value}"


def tensorrt_version() -> str:
    """The TensorRT version of this machine: the `tensorrt` Python module's, else the one the
    `_C` engine runner was built against.

    Raises:
        ImportError: neither is present (TensorRT is not installed here).
    """
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except ImportError:
        pass
    from earthx_sdk import _ext

    if _ext.build_info().get("tensorrt_compiled"):
        return str(_ext.native().tensorrt.version())
    raise ImportError("TensorRT is not installed: neither the `tensorrt` Python package nor an "
                      "earthx_sdk._C built with TensorRT (EARTHX_TENSORRT, csrc/tensorrt) is "
                      "present, so this machine cannot build or run engines")


def current_key(onnx_sha256: str, precision: str, device: int = 0) -> EngineKey:
    """The key an engine for a graph must have to run on this machine."""
    name, cc = gpu_identity(device)
    return EngineKey(name, cc, tensorrt_version(), onnx_sha256, precision)
