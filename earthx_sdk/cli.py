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
        "auto": _auto(backends),
        "native": {**native, "cuda_devices": cuda_devices},
    }


def _auto(backends: dict) -> dict:
    """What backend="auto" runs here: a bundle on onnxruntime (its execution providers, fastest
    first), a checkpoint on torch."""
    out = {"checkpoint": "torch" if backends["torch"]["available"] else "unavailable (no torch)"}
    if backends["onnxruntime"]["available"]:
        from earthx_sdk.runtime.ort_backend import resolve_providers

        providers = [p[0] if isinstance(p, tuple) else p for p in resolve_providers("auto")]
        out["bundle"] = "onnxruntime (" + ", ".join(providers) + ")"
    else:
        out["bundle"] = "unavailable (no onnxruntime)"
    return out


def _print_info(d: dict) -> None:
    n = d["native"]
    print(f"earthx-sdk {d['version']} (Python {d['python']}, {d['platform']})")
    print("backends:")
    for name, b in d["backends"].items():
        print(f"  {name:<13} {b['version'] if b['available'] else 'no (' + b['error'] + ')'}")
    print(f"backend=auto: bundle -> {d['auto']['bundle']}; checkpoint -> "
          f"{d['auto']['checkpoint']}")
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


# ------------------------------------------------------------------------------------------------
# ask / segment
# ------------------------------------------------------------------------------------------------

def _floats(option: str, text: str, counts: tuple[int, ...] | None, even: bool = False):
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} takes comma-separated numbers, got "
                                         f"{text!r}") from None
    if counts is not None and len(vals) not in counts:
        raise argparse.ArgumentTypeError(f"{option} takes {' or '.join(map(str, counts))} "
                                         f"numbers, got {len(vals)} ({text!r})")
    if even and len(vals) % 2:
        raise argparse.ArgumentTypeError(f"{option} takes x,y pairs, got an odd count "
                                         f"{len(vals)} ({text!r})")
    return vals


class _PromptAction(argparse.Action):
    """Appends a prompt to namespace.prompts, so prompts keep their command-line order (the
    k-th <region> of the question is the k-th prompt)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from earthx_sdk.prompts import Box, Mask, Point, Polygon, Scribble

        opt = option_string
        try:
            if opt == "--point":
                v = _floats(opt, values, (2, 3))
                p = Point(v[0], v[1], v[2]) if len(v) == 3 else Point(v[0], v[1])
            elif opt == "--box":
                p = Box(*_floats(opt, values, (4,)))
            elif opt == "--polygon":
                v = _floats(opt, values, None, even=True)
                p = Polygon(tuple(zip(v[0::2], v[1::2], strict=True)))
            elif opt == "--scribble":
                v = _floats(opt, values, None, even=True)
                p = Scribble(tuple(zip(v[0::2], v[1::2], strict=True)))
            else:  # --mask FILE
                import numpy as np

                from earthx_sdk.io.images import load_image

                px = np.asarray(load_image(values, max_pixels=None).pixels)
                p = Mask((px != 0).any(axis=2))
        except (argparse.ArgumentTypeError, ValueError, TypeError, FileNotFoundError) as e:
            parser.error(f"argument {opt}: {e}")
        prompts = list(getattr(namespace, "prompts", None) or [])
        prompts.append(p)
        namespace.prompts = prompts


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="bundle directory (manifest.json) or checkpoint directory")
    p.add_argument("image", help="image file: PNG, JPEG, TIFF / GeoTIFF")
    p.add_argument("--point", action=_PromptAction, metavar="X,Y[,R]", help="point prompt")
    p.add_argument("--box", action=_PromptAction, metavar="X0,Y0,X1,Y1", help="box prompt")
    p.add_argument("--polygon", action=_PromptAction, metavar="X,Y,X,Y,...",
                   help="free-form polygon prompt (>= 3 vertices)")
    p.add_argument("--scribble", action=_PromptAction, metavar="X,Y,...",
                   help="scribble prompt (a polyline)")
    p.add_argument("--mask", action=_PromptAction, metavar="FILE",
                   help="mask prompt: an image file of the image's size, nonzero = region")
    p.add_argument("--sensor", default="auto",
                   choices=("auto", "optical", "multispectral", "sar", "infrared"))
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime",
                                                         "tensorrt"))
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse larger scenes (default 268 MP); 0 for no limit")
    p.add_argument("--tile-size", type=int, default=None, help="segment: tile larger scenes")
    p.add_argument("--mask-threshold", type=float, default=None,
                   help="mask pixels where the logit exceeds this (default: the model's "
                        "calibrated threshold)")
    p.add_argument("--json", action="store_true", help="print the Result as JSON")
    p.set_defaults(prompts=[])


class _Progress:
    """A tqdm bar on stderr, or plain lines without tqdm."""

    def __init__(self, desc: str, quiet: bool = False) -> None:
        self.desc, self.quiet, self.bar = desc, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=self.desc, unit="tile", file=sys.stderr)
            except ImportError:
                self.bar = False
        if self.bar:
            self.bar.update(done - self.bar.n)
            if done == total:
                self.bar.close()
        else:
            print(f"{self.desc}: {done}/{total}", file=sys.stderr)


def _load(args):
    from earthx_sdk import EarthX

    opts = {}
    if args.max_pixels is not None:
        opts["max_pixels"] = None if args.max_pixels == 0 else args.max_pixels
    if args.mask_threshold is not None:
        opts["mask_threshold"] = args.mask_threshold
    if args.tile_size is not None:
        opts["tile_size"] = args.tile_size
        opts["tile_overlap"] = min(128, args.tile_size // 8)
    if not args.json:
        print(f"loading {args.model} ...", file=sys.stderr)
    return EarthX.load(args.model, backend=args.backend, device=args.device,
                       threads=args.threads, **opts)


def _timings_line(r) -> str:
    parts = []
    for k, t in r.timings.items():
        if t.status == "skipped":
            continue
        parts.append(f"{k} {t.seconds * 1e3:.1f} ms ({t.backend}, {t.precision}"
                     f"{', cached' if t.status == 'cached' else ''})")
    return "; ".join(parts)


def _print_result(r, args) -> None:
    if args.json:
        json.dump(r.to_dict(), sys.stdout)
        print()
        return
    print(f"masks: {len(r.masks)}" + (f" (predicted IoU {', '.join(f'{s:.3f}' for s in r.scores)})"
                                      if r.masks else ""), file=sys.stderr)
    print("timings: " + _timings_line(r), file=sys.stderr)


def cmd_ask(args) -> int:
    model = _load(args)
    n = args.max_new_tokens or 64
    if args.json:
        r = model.ask(args.image, args.question, args.prompts, sensor=args.sensor,
                      max_new_tokens=n, temperature=args.temperature, seed=args.seed)
    else:
        st = model.stream(args.image, args.question, args.prompts, sensor=args.sensor,
                          max_new_tokens=n, temperature=args.temperature, seed=args.seed)
        for piece in st:
            print(piece, end="", flush=True)
        print()
        r = st.result
    _print_result(r, args)
    return 0


def cmd_segment(args) -> int:
    model = _load(args)
    r = model.segment(args.image, args.text, args.prompts or None, sensor=args.sensor,
                      max_new_tokens=args.max_new_tokens or 1, temperature=args.temperature,
                      seed=args.seed, progress=_Progress("segment", quiet=args.json))
    if args.out:
        from earthx_sdk.io.images import load_image
        from earthx_sdk.overlay import write_overlay

        px = load_image(args.image, max_pixels=model.options.max_pixels).pixels
        write_overlay(args.out, px, r.masks_array(), args.prompts)
        if not args.json:
            print(f"overlay: {args.out}", file=sys.stderr)
    if args.geojson:
        r.write_geojson(args.geojson)
        if not args.json:
            where = r.geo.crs if r.geo is not None and r.geo.crs else "pixel coordinates"
            print(f"geojson: {args.geojson} ({where})", file=sys.stderr)
    if not args.json:
        print(r.text)
    _print_result(r, args)
    return 0


def bench(argv: list[str]) -> int:
    """`earthx bench ARGS`: `python -m benchmarks.e2e ARGS`, from a source checkout.

    The benchmarks live in the repository's `benchmarks/`, outside the installed package: they
    are found next to the `earthx_sdk` being run (an editable install, or PYTHONPATH at the
    checkout), and their absence is said, not hidden.
    """
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "e2e.py").is_file():
        print(f"earthx bench: the benchmarks run from a source checkout of the EarthX SDK (its "
              f"benchmarks/ folder is not part of the installed package, and there is none next "
              f"to {Path(__file__).resolve().parent}); clone the repository, pip install -e "
              f"'.[bench]' there and run `earthx bench` (or python -m benchmarks.e2e) from it",
              file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks import e2e

    return e2e.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its options are benchmarks.e2e's own
        return bench(argv[1:])
    parser = argparse.ArgumentParser(prog="earthx", description="EarthX SDK command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, available backends and the native build")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("bench", help="end-to-end latency benchmark, from a source checkout "
                   "(earthx bench --help lists its options)")
    p_ask = sub.add_parser("ask", help="ask a question about an image (text streamed)")
    _model_args(p_ask)
    p_ask.add_argument("question", help='the question; "<region>" marks where each prompt goes')
    p_seg = sub.add_parser("segment", help="masks for a referring text or for prompts")
    _model_args(p_seg)
    p_seg.add_argument("text", nargs="?", default=None,
                       help="what to segment (\"the ships\"), or a text with <region>")
    p_seg.add_argument("--out", help="overlay PNG: masks and prompts over the image")
    p_seg.add_argument("--geojson", help="masks as polygons (in the image's CRS for a GeoTIFF)")
    from earthx_sdk import demo, evaluation

    demo.add_parser(sub)  # earthx demo
    evaluation.add_parser(sub)  # earthx eval
    args = parser.parse_args(argv)
    if args.command in ("demo", "eval"):
        return args.run(args)
    if args.command == "info":
        d = info()
        if args.json:
            json.dump(d, sys.stdout, indent=2)
            print()
        else:
            _print_info(d)
        return 0
    try:
        return cmd_ask(args) if args.command == "ask" else cmd_segment(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as e:
        print(f"earthx {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
