"""Export at real scale: `python -m export.scale_check --preset base [--json PATH]`.

Builds the vision encoder (one sensor), the prompt encoder and the mask decoder of a preset with
random weights — the LLM is not built: these graphs need only its width — exports each to ONNX
exactly as `python -m export` does (`component_specs`, `export_onnx`), validates it against
PyTorch with onnxruntime (`check_parity`, fp32 tolerance), and prints the peak resident memory
of the process, the time per stage, the file sizes and the max errors. It proves the export
path holds for the `base` graphs (ViT-L/14 + ConvNeXt-L at 448 px) within a memory budget; it is
heavy (minutes on 2 cores), so it is not part of the test suite.

Exit status: 0 when every graph passes validation and the peak memory is within --max-rss-gib,
1 otherwise (the JSON report is written either way).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_parts(preset: str):
    """An nn.Module holding `vision`, `prompt_encoder`, `mask_decoder` and `cfg` of a preset,
    sized as `EarthXModel` sizes them (the LLM width from the config), without the LLM."""
    import torch
    from torch import nn

    from earthx_sdk.modeling.config import EarthXConfig
    from earthx_sdk.modeling.mask_decoder import MaskDecoder
    from earthx_sdk.modeling.prompt_encoder import PromptEncoder
    from earthx_sdk.modeling.vision import VisionEncoder

    cfg = EarthXConfig.from_name(preset)
    torch.manual_seed(0)
    parts = nn.Module()
    parts.cfg = cfg
    hidden, size = cfg.llm.hidden, cfg.vision.image_size
    parts.vision = VisionEncoder(cfg.vision, hidden)
    v = parts.vision
    parts.prompt_encoder = PromptEncoder(cfg.prompt, list(v.feature_dims), v.dense_dim, hidden,
                                         size)
    parts.mask_decoder = MaskDecoder(cfg.mask, hidden, v.dense_dim, cfg.prompt.dim,
                                     tuple(v.hires_dims), cfg.vision.grid, size)
    return parts.eval()


def run(preset: str, sensor: str, channels: int, out_dir: Path,
        components: tuple[str, ...]) -> dict:
    """Exports and validates the chosen components; returns the report (see the module doc)."""
    import torch

    from export.onnx_export import component_specs, export_onnx, external_data_file
    from export.validate import ParityError, check_parity

    t0 = time.perf_counter()
    report: dict = {"preset": preset, "sensor": sensor, "channels": channels,
                    "torch_threads": torch.get_num_threads(), "components": {}}
    parts = build_parts(preset)
    report["build_s"] = round(time.perf_counter() - t0, 1)
    report["params"] = {name: sum(p.numel() for p in getattr(parts, name).parameters())
                        for name in ("vision", "prompt_encoder", "mask_decoder")}
    specs = component_specs(parts, sensor, channels)
    keep = [s for s in specs if s.name == f"vision_{sensor}_{channels}" or s.name in components]
    del specs
    ok = True
    for spec in keep:
        entry: dict = {}
        t = time.perf_counter()
        path = export_onnx(spec, out_dir / f"{spec.name}.onnx")
        entry["export_s"] = round(time.perf_counter() - t, 1)
        data = external_data_file(path)
        entry["external_data"] = data.exists()
        entry["file_mib"] = round((path.stat().st_size
                                   + (data.stat().st_size if data.exists() else 0)) / 2**20, 1)
        entry["rss_after_export_gib"] = round(peak_rss_gib(), 2)
        gc.collect()
        t = time.perf_counter()
        try:
            parity = check_parity(spec.name, path, spec.module, spec.inputs, "fp32")
            entry["passed"] = True
        except ParityError as e:
            parity, entry["passed"], entry["error"] = [], False, str(e)
            ok = False
        entry["validate_s"] = round(time.perf_counter() - t, 1)
        entry["parity"] = {p.output: {"max_abs_err": p.max_abs_err, "tolerance": p.tolerance}
                           for p in parity}
        entry["rss_after_validate_gib"] = round(peak_rss_gib(), 2)
        report["components"][spec.name] = entry
        print(f"{spec.name}: export {entry['export_s']} s, {entry['file_mib']} MiB (external "
              f"data: {entry['external_data']}), validate "
              f"{entry['validate_s']} s, passed={entry['passed']}, peak RSS "
              f"{entry['rss_after_validate_gib']} GiB", file=sys.stderr)
        for out_name, p in entry["parity"].items():
            print(f"  {out_name}: max abs err {p['max_abs_err']:.3g} (tolerance "
                  f"{p['tolerance']:.3g})", file=sys.stderr)
        path.unlink()
        data.unlink(missing_ok=True)
        gc.collect()
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["peak_rss_gib"] = round(peak_rss_gib(), 2)
    report["passed"] = ok
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.scale_check",
                                description=__doc__.split("\n\n")[1])
    p.add_argument("--preset", default="base", help="config preset (default base)")
    p.add_argument("--sensor", default="optical")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--components", nargs="*", default=["mask_decoder"],
                   choices=["prompt_encoder", "mask_decoder"],
                   help="components besides the vision graph (default: mask_decoder)")
    p.add_argument("--max-rss-gib", type=float, default=24.0,
                   help="memory budget the peak RSS must stay within (default 24)")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the ONNX files are written (default: a temporary directory)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        report = run(args.preset, args.sensor, args.channels, Path(tmp),
                     tuple(args.components))
    report["max_rss_gib"] = args.max_rss_gib
    report["within_budget"] = report["peak_rss_gib"] <= args.max_rss_gib
    text = json.dumps(report, indent=2)
    if args.json is not None:
        tmp_json = args.json.with_name(args.json.name + ".tmp")
        tmp_json.write_text(text)
        tmp_json.replace(args.json)
    print(text)
    return 0 if report["passed"] and report["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
