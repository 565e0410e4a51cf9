"""The `earthx` command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import sys

# Optional runtimes; `earthx info` imports each to report whether it really loads (a package can be
# installed and still fail to import, like the TensorRT stubs on PyPI).
_BACKEND_MODULES = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "triton": "triton",
    "tensorrt": "tensorrt",
    "transformers": "transformers",
}


def _probe(module: str) -> dict:
    """{"available": bool, "version" or "error"} for an optional module."""
    if importlib.util.find_spec(module) is None:
        return {"available": False, "error": "not installed"}
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken install is reported, not raised: info must always answer
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"available": True, "version": str(getattr(mod, "__version__", "unknown"))}


def _kernels() -> dict:
    """Which region_pool implementations run here (needs torch), with the reason for the others."""
    if importlib.util.find_spec("torch") is None:
        return {"region_pool": {"ref": "needs torch (pip install earthx-sdk[torch])"}}
    from earthx_sdk.ops.region_pool import kernel_status

    status = {"ref": "available"}
    for impl in ("cpu", "triton", "cuda"):
        ok, why = kernel_status(impl)
        status[impl] = "available" if ok else f"unavailable: {why}"
    return {"region_pool": status}


def info() -> dict:
    """What this installation can run: version, importable backends, and the native build."""
    from earthx_sdk import __version__, _ext

    native = _ext.build_info()
    backends = {name: _probe(mod) for name, mod in _BACKEND_MODULES.items()}
    cuda_devices = None
    if native["built"] and native["cuda_compiled"]:
        cuda_devices = _ext.native().cuda_device_count()
    return {
        "version": __version__,
        "kernels": _kernels(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backends": backends,
        "native": {**native, "cuda_devices": cuda_devices},
    }


def _print_info(d: dict) -> None:
    n = d["native"]
    print(f"earthx-sdk {d['version']} (Python {d['python']}, {d['platform']})")
    print("backends:")
    for name, b in d["backends"].items():
        print(f"  {name:<13} {b['version'] if b['available'] else 'no (' + b['error'] + ')'}")
    for op, impls in d["kernels"].items():
        print(f"{op} kernels: " + ", ".join(f"{k} ({v})" for k, v in impls.items()))
    if n["built"]:
        cuda = (f"yes ({n['cuda_devices']} device(s) visible)" if n["cuda_compiled"] else "no")
        print(f"native core: built, CUDA compiled {cuda}, TensorRT compiled "
              f"{'yes' if n['tensorrt_compiled'] else 'no'}, OpenMP "
              f"{'yes' if n['openmp'] else 'no'} ({n['threads']} threads)")
        print("native ops: " + ", ".join(n["ops"]))
    else:
        print(f"native core: NOT built ({n['error']}); numpy reference ops run instead")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="earthx", description="EarthX SDK command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, available backends and the native build")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        d = info()
        if args.json:
            json.dump(d, sys.stdout, indent=2)
            print()
        else:
            _print_info(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
