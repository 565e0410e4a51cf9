"""`python -m export --checkpoint DIR --out BUNDLE [--precision fp32|fp16] [--resolution N]`.

Exports the vision graph of every (sensor, channel count) of the checkpoint, the prompt encoder
and the mask decoder to ONNX, validates each against the PyTorch reference with onnxruntime
(CPU), and writes the bundle manifest. With `--llm fp32|int8|int4` it also exports the LLM
decoder (onnxruntime-genai's builder; int8/int4 MatMulNBits) and its embedding table, validated
against PyTorch (export/llm.py). With `--tensorrt [fp16|int8|fp32]` it then builds TensorRT
engines of the vision graphs, prompt encoder and mask decoder for this GPU into BUNDLE/engines
(export/tensorrt.py; needs TensorRT 10 and an NVIDIA GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from earthx_sdk.bundle import MANIFEST
from export.pipeline import export_bundle


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[1])
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="model directory written by EarthXModel.save")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--resolution", type=int, default=None,
                   help="input side in pixels; must equal the checkpoint's image_size "
                        "(default: that size)")
    p.add_argument("--sensors", nargs="*", default=None,
                   help="sensors to export vision graphs for (default: all of the checkpoint)")
    p.add_argument("--llm", default=None, choices=("fp32", "int8", "int4"),
                   help="also export the LLM at this precision (default: no LLM components)")
    p.add_argument("--llm-block-size", type=int, default=32,
                   help="MatMulNBits block size of an int8/int4 LLM (16, 32, 64, 128 or 256)")
    p.add_argument("--llm-int4", default="affine", choices=("affine", "affine-fold", "builder"),
                   help="int4 scheme: affine (float block offsets: accurate), affine-fold (the "
                        "same offsets inside MatMulNBits: fewer ops, faster decode, slightly "
                        "less accurate) or builder (onnxruntime-genai's: fastest, least "
                        "accurate)")
    p.add_argument("--llm-int8", default="builder", choices=("builder", "affine", "affine-2pass"),
                   help="int8 scheme: builder (onnxruntime's MatMulNBits: fastest), affine "
                        "(float block offsets: exact on Q4_1/Q8_0 weights, slower decode) or "
                        "affine-2pass (the same with activations in two int8 passes: nearly "
                        "fp32-activation accuracy, slower again)")
    p.add_argument("--tensorrt", nargs="?", const="fp16", default=None,
                   choices=("fp16", "int8", "fp32"),
                   help="also build TensorRT engines for this GPU (default fp16; int8 calibrates "
                        "the vision graphs on sample images) into BUNDLE/engines")
    args = p.parse_args(argv)
    if not args.checkpoint.is_dir():
        p.error(f"--checkpoint {args.checkpoint}: no such directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        manifest = export_bundle(args.checkpoint, args.out, args.precision, args.resolution,
                                 args.sensors, llm=args.llm, llm_block_size=args.llm_block_size,
                                 llm_int4=args.llm_int4,
                                 tensorrt=args.tensorrt, llm_int8=args.llm_int8)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / MANIFEST}: {len(manifest.components)} components")
    return 0


if __name__ == "__main__":
    sys.exit(main())
