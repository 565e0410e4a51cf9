"""The export pipeline: checkpoint -> ONNX components -> parity -> bundle manifest."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

from earthx_sdk.bundle import FORMAT_VERSION, BundleManifest, onnx_component, sha256
from export.onnx_export import (
    component_specs,
    export_onnx,
    external_data_file,
    require_onnx,
    to_fp16,
)
from export.validate import check_parity

CHAT_TEMPLATE = "chatml"
TOKENIZER_FILE = "tokenizer.json"


def exporter_versions() -> dict[str, str]:
    """Versions of torch, onnx, onnxruntime, transformers ("missing" when absent)."""
    out = {}
    for name in ("torch", "onnx", "onnxruntime", "transformers"):
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = "missing"
    return out


def sensor_table(model) -> dict:
    """{sensor: channels, kind and normalization statistics} of a model's sensors."""
    from earthx_sdk.io.sensors import SENSORS as SPECS

    table = {}
    for name, channels in model.vision.allowed_channels.items():
        spec = SPECS[name]
        table[name] = {"channels": list(channels), "kind": spec.kind, "mean": list(spec.mean),
                       "std": list(spec.std)}
    return table


class _Stages:
    """A tqdm bar over the stages, or one plain line per stage without tqdm."""

    def __init__(self, total: int) -> None:
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="export", unit="stage", file=sys.stderr)
        except ImportError:
            self.bar = None
        self.total, self.done = total, 0

    def step(self, what: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(what)
            self.bar.update(1)
        else:
            print(f"export [{self.done}/{self.total}] {what}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def export_bundle(checkpoint: str | Path, out: str | Path, precision: str = "fp32",
                  resolution: int | None = None,
                  sensors: list[str] | None = None, llm: str | None = None,
                  llm_block_size: int = 32, llm_int4: str = "affine",
                  tensorrt: str | None = None, llm_int8: str = "builder") -> BundleManifest:
    """Exports and validates the vision, prompt-encoder and mask-decoder graphs of a checkpoint,
    and with `llm` the LLM decoder and its embedding table (`export.llm.export_llm`).

    Args:
        checkpoint: directory written by `EarthXModel.save`.
        out: bundle directory (created).
        precision: "fp32", or "fp16" (each fp32 graph is validated, converted, the fp16 graph
            validated against the same fp32 PyTorch reference, and the fp32 file removed).
        resolution: must equal the checkpoint's image_size (the graphs have fixed sizes).
        sensors: sensors to export vision graphs for (default all).
        llm: None (no LLM components), "fp32", "int8" or "int4": the `llm` + `llm_embed`
            components, validated (fp32: logits and hidden states within 1e-4 of PyTorch;
            int8/int4: teacher-forced next-token agreement at least `export.llm.AGREEMENT_FLOORS`).
        llm_block_size: MatMulNBits block size of an int8/int4 LLM.
        llm_int4: "affine" (float block offsets, accurate), "affine-fold" (the offsets folded
            into MatMulNBits: fewer ops) or "builder" (faster), see `export.llm.make_graph`.
        llm_int8: "builder" (onnxruntime's MatMulNBits), "affine" (float block offsets: more
            accurate, slower) or "affine-2pass" (activations in two int8 passes as well: most
            accurate, slowest), see `export.llm.make_graph`.
        tensorrt: None, or "fp16" / "int8" / "fp32": also build TensorRT engines for this GPU
            into out/engines (`export.tensorrt.build_engines`; needs TensorRT 10).

    Returns:
        the manifest written to out/manifest.json.

    Raises:
        FileNotFoundError: the checkpoint is not a model directory.
        ValueError: unknown precision or sensor, a resolution other than the checkpoint's.
        ImportError: onnx/onnxscript missing; TensorRT missing with `tensorrt` (before any
            export).
        ParityError: a graph's outputs differ from the reference (all listed).
    """
    from earthx_sdk.modeling.model import EarthXModel

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    if llm is not None:
        from export.llm import builder_options, require_builder

        builder_options(llm, llm_block_size)  # a bad --llm fails before any export
        require_builder()
    if tensorrt is not None:
        from export.tensorrt import PRECISIONS, build_engines, require_tensorrt

        if tensorrt not in PRECISIONS:
            raise ValueError(f"tensorrt must be one of {PRECISIONS}, got {tensorrt!r}")
        require_tensorrt()  # no TensorRT: fail before any export
    require_onnx()
    checkpoint, out = Path(checkpoint), Path(out)
    model = EarthXModel.load(checkpoint)
    size = model.cfg.vision.image_size
    if resolution is not None and resolution != size:
        raise ValueError(f"resolution: the checkpoint {checkpoint} is built for {size} px "
                         f"inputs, got --resolution {resolution} (re-export needs a model at "
                         f"that size)")
    allowed = model.vision.allowed_channels
    sensors = list(allowed) if sensors is None else sensors
    for s in sensors:
        if s not in allowed:
            raise ValueError(f"sensors: unknown sensor {s!r}, the checkpoint has {list(allowed)}")
    pairs = [(s, c) for s in sensors for c in allowed[s]]
    out.mkdir(parents=True, exist_ok=True)

    specs = []
    for i, (s, c) in enumerate(pairs):
        comps = component_specs(model, s, c)
        specs.append(comps[0])
        if i == 0:
            shared = comps[1:]
    specs += shared
    stages = _Stages(len(specs) + 2 + (llm is not None) + (tensorrt is not None))
    components, parity, files = {}, [], {}
    for spec in specs:
        path = export_onnx(spec, out / f"{spec.name}.onnx")
        parity += check_parity(spec.name, path, spec.module, spec.inputs, "fp32")
        file = path.name
        if precision == "fp16":
            half = to_fp16(path, out / f"{spec.name}.fp16.onnx")
            parity += check_parity(spec.name + ".fp16", half, spec.module, spec.inputs, "fp16")
            file = half.name
            path.unlink()  # the fp32 graph was only the conversion's source
            external_data_file(path).unlink(missing_ok=True)
        components[spec.name] = onnx_component(out, file, precision)
        if external_data_file(out / file).exists():  # the weights of a graph over 1.5 GB
            data = external_data_file(out / file)
            files[data.name] = sha256(data)
        stages.step(spec.name)
    llm_parity = []
    if llm is not None:
        from export.llm import AGREEMENT_FLOORS, export_llm

        res = export_llm(model.llm, model.tokenizer, out, llm, llm_block_size,
                         agreement_floor=AGREEMENT_FLOORS.get(llm), int4_scheme=llm_int4,
                         int8_scheme=llm_int8)
        components.update(res.components)
        files.update(res.files)
        llm_parity = res.parity
        stages.step("llm")
    tmp = out / (TOKENIZER_FILE + ".tmp")
    shutil.copyfile(checkpoint / TOKENIZER_FILE, tmp)
    tmp.replace(out / TOKENIZER_FILE)
    stages.step("tokenizer")
    manifest = BundleManifest(
        format_version=FORMAT_VERSION, model_config=model.cfg.to_dict(),
        sensors=sensor_table(model), chat_template=CHAT_TEMPLATE, tokenizer_file=TOKENIZER_FILE,
        components=components, exporter=exporter_versions(),
        files={**files, TOKENIZER_FILE: sha256(out / TOKENIZER_FILE)},
        parity=[{"component": p.component, "output": p.output, "max_abs_err": p.max_abs_err,
                 "tolerance": p.tolerance} for p in parity] + llm_parity)
    manifest.save(out)
    stages.step("manifest")
    if tensorrt is not None:
        build_engines(out, tensorrt)
        stages.step("tensorrt")
    stages.close()
    return manifest
