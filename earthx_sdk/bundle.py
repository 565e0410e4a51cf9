"""The bundle manifest: what a deployed bundle holds, its integrity check and its loader.

`manifest.json` records the format version, the model config, the sensors and their
normalization statistics, the chat template and tokenizer file, one `Component` per file
(`vision_<sensor>_<C>`, `prompt_encoder`, `mask_decoder`, `llm`, `llm_embed`), the exporter's
versions and the parity report. This module is torch-free (the runtime reads bundles on devices
without torch); onnxruntime is imported only by `onnx_component`. The writer lives in `export/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
FORMATS = ("onnx", "safetensors", "engine")
PRECISIONS = ("fp32", "fp16", "int8", "int4")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, dtype ("float32", "int64", ...) and shape (ints or
    names of dynamic dims)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class Component:
    """One file of the bundle.

    `extra` holds JSON metadata of the component (for the LLM: num_layers, kv_heads, head_dim,
    the KV input/output names, quantization settings).
    """

    file: str
    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str
    extra: dict = field(default_factory=dict, hash=False, compare=True)

    def __post_init__(self) -> None:
        if not isinstance(self.extra, dict):
            raise ValueError(f"Component {self.file}: extra must be a JSON object (dict), "
                             f"got {type(self.extra).__name__}")
        try:
            extra = json.loads(json.dumps(self.extra))
        except (TypeError, ValueError) as e:
            raise ValueError(f"Component {self.file}: extra must be JSON-serializable: {e}") from e
        object.__setattr__(self, "extra", extra)
        if self.format not in FORMATS:
            raise ValueError(f"Component {self.file}: format must be one of {FORMATS}, "
                             f"got {self.format!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Component {self.file}: precision must be one of {PRECISIONS}, "
                             f"got {self.precision!r}")


@dataclass(frozen=True)
class BundleManifest:
    """Everything a runtime needs to know about a bundle directory.

    Attributes:
        format_version: FORMAT_VERSION of the writer.
        model_config: EarthXConfig.to_dict().
        sensors: {sensor: {"channels": [...], "mean": [...], "std": [...], "kind": ...}}.
        chat_template: name of the chat template ("chatml").
        tokenizer_file: the tokenizer file, relative to the bundle.
        components: {name: Component}; names "vision_<sensor>_<C>", "prompt_encoder",
            "mask_decoder" (and, from a later step, "llm").
        exporter: versions of torch, onnx, onnxruntime, transformers.
        parity: [{"component", "output", "max_abs_err", "tolerance"}].
    """

    format_version: int
    model_config: dict
    sensors: dict
    chat_template: str
    tokenizer_file: str
    components: dict[str, Component]
    exporter: dict[str, str] = field(default_factory=dict)
    parity: list = field(default_factory=list)

    def __post_init__(self) -> None:
        # JSON-shaped plain data (tuples become lists), so a manifest equals its round trip.
        for name in ("model_config", "sensors", "exporter", "parity"):
            object.__setattr__(self, name, json.loads(json.dumps(getattr(self, name))))
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"manifest: format_version {self.format_version} is not supported "
                             f"(this reader knows {FORMAT_VERSION})")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> BundleManifest:
        """Parses a manifest; unknown or missing keys are rejected.

        Raises:
            ValueError: malformed JSON, an unknown or missing key (named with its place).
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON: {e}") from e
        _keys(d, cls, where)
        comps = {}
        for name, c in d["components"].items():
            at = f"{where}: components.{name}"
            _keys(c, Component, at)
            specs = {}
            for side in ("inputs", "outputs"):
                specs[side] = []
                for i, t in enumerate(c[side]):
                    _keys(t, TensorSpec, f"{at}.{side}[{i}]")
                    specs[side].append(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])))
            comps[name] = Component(c["file"], c["format"], c["precision"],
                                    tuple(specs["inputs"]), tuple(specs["outputs"]), c["sha256"],
                                    c.get("extra", {}))
        return cls(**{**d, "components": comps})

    def save(self, bundle_dir: str | Path) -> Path:
        """Writes manifest.json (temporary name, then renamed)."""
        path = Path(bundle_dir) / MANIFEST
        tmp = path.with_name(MANIFEST + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, bundle_dir: str | Path) -> BundleManifest:
        """Reads manifest.json of a bundle directory.

        Raises:
            FileNotFoundError: no manifest.json.
        """
        path = Path(bundle_dir) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{bundle_dir} is not a bundle: {MANIFEST} missing")
        return cls.from_json(path.read_text(), str(path))


def _keys(d: Any, cls: type, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: must be an object, got {type(d).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    unknown, missing = set(d) - fields, required - set(d)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    if missing:
        raise ValueError(f"{where}: missing key(s) {sorted(missing)}")


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_component(bundle_dir: str | Path, file: str, precision: str,
                   extra: dict | None = None) -> Component:
    """A Component describing an ONNX file of the bundle (I/O read from the graph)."""
    import onnxruntime as ort

    path = Path(bundle_dir) / file
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def specs(args) -> tuple[TensorSpec, ...]:
        out = []
        for a in args:
            dtype = a.type.removeprefix("tensor(").removesuffix(")")
            dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
            out.append(TensorSpec(a.name, dtype, tuple(d if isinstance(d, (int, str)) else "?"
                                                        for d in a.shape)))
        return tuple(out)

    return Component(file, "onnx", precision, specs(sess.get_inputs()), specs(sess.get_outputs()),
                     sha256(path), dict(extra or {}))


def verify(bundle_dir: str | Path) -> BundleManifest:
    """Recomputes every component's sha256.

    Raises:
        FileNotFoundError: manifest or a component file missing (named).
        ValueError: a component's hash differs from the manifest (the component is named).
    """
    manifest = BundleManifest.load(bundle_dir)
    for name, c in manifest.components.items():
        path = Path(bundle_dir) / c.file
        if not path.is_file():
            raise FileNotFoundError(f"bundle {bundle_dir}: component {name!r} file {c.file} "
                                    f"missing")
        got = sha256(path)
        if got != c.sha256:
            raise ValueError(f"bundle {bundle_dir}: component {name!r} ({c.file}) sha256 is "
                             f"{got}, the manifest says {c.sha256}: the file was modified")
    return manifest
