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
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

FORMAT_VERSION = 1
FORMATS = ("onnx", "safetensors", "engine")
PRECISIONS = ("fp32", "fp16", "int8", "int4")
MANIFEST = "manifest.json"
RUNTIME_COMPONENTS = ("vision_*", "prompt_encoder", "mask_decoder")
"""What the runtime needs of every bundle (fnmatch patterns): at least one vision graph, the
prompt encoder and the mask decoder. `llm` and `llm_embed` come as a pair (see `load_bundle`)."""
PAIRED = (("llm", "llm_embed"),)
REEXPORT = "re-export the bundle (python -m export --checkpoint DIR --out BUNDLE)"


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the part and says what to do."""


class BundleFileMissing(BundleError, FileNotFoundError):
    """The bundle directory, its manifest or a file the manifest lists is missing."""


class BundleFormatError(BundleError):
    """The manifest's format version is not the one this earthx-sdk reads."""


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
            "mask_decoder", "llm" (ONNX decoder), "llm_embed" (safetensors embedding table).
        exporter: versions of torch, onnx, onnxruntime, transformers.
        parity: [{"component", "output", "max_abs_err", "tolerance"}].
        files: {relative path: sha256} of the bundle's files that are not components (the
            tokenizer file, ONNX external-data files).
    """

    format_version: int
    model_config: dict
    sensors: dict
    chat_template: str
    tokenizer_file: str
    components: dict[str, Component]
    exporter: dict[str, str] = field(default_factory=dict)
    parity: list = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # JSON-shaped plain data (tuples become lists), so a manifest equals its round trip.
        for name in ("model_config", "sensors", "exporter", "parity", "files"):
            object.__setattr__(self, name, json.loads(json.dumps(getattr(self, name))))
        if self.format_version != FORMAT_VERSION:
            raise BundleFormatError(_format_message(self.format_version, "manifest"))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> BundleManifest:
        """Parses a manifest; unknown or missing keys and wrongly typed values are rejected.

        Raises:
            BundleFormatError: a format_version other than FORMAT_VERSION (checked first: a
                newer format may have keys this reader does not know).
            BundleError: malformed JSON, an unknown or missing key, a value of the wrong type,
                a file path outside the bundle (each named with its place).
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise BundleError(f"{where}: not valid JSON ({e}): the manifest is damaged; "
                              f"{REEXPORT}") from e
        if not isinstance(d, dict):
            raise BundleError(f"{where}: must be a JSON object, got {type(d).__name__}; "
                              f"{REEXPORT}")
        version = d.get("format_version")
        if type(version) is not int:
            raise BundleError(f"{where}: format_version must be an integer, got {version!r}; "
                              f"{REEXPORT}")
        if version != FORMAT_VERSION:
            raise BundleFormatError(_format_message(version, where))
        _check(d, cls, where)
        comps = {}
        for name, c in d["components"].items():
            at = f"{where}: components.{name}"
            _check(c, Component, at)
            _relative(c["file"], f"{at}.file")
            specs = {}
            for side in ("inputs", "outputs"):
                specs[side] = []
                for i, t in enumerate(c[side]):
                    _check(t, TensorSpec, f"{at}.{side}[{i}]")
                    specs[side].append(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])))
            try:
                comps[name] = Component(c["file"], c["format"], c["precision"],
                                        tuple(specs["inputs"]), tuple(specs["outputs"]),
                                        c["sha256"], c.get("extra", {}))
            except ValueError as e:
                raise BundleError(f"{at}: {e}; {REEXPORT}") from e
        for file, digest in d.get("files", {}).items():
            _relative(file, f"{where}: files")
            if not isinstance(digest, str):
                raise BundleError(f"{where}: files[{file!r}] must be a sha256 string, got "
                                  f"{type(digest).__name__}; {REEXPORT}")
        _relative(d["tokenizer_file"], f"{where}: tokenizer_file")
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
        """Reads manifest.json of a bundle directory (no file hashes checked: see load_bundle).

        Raises:
            BundleFileMissing: no such directory, or no manifest.json in it.
            BundleError, BundleFormatError: as `from_json`.
        """
        bundle_dir = Path(bundle_dir)
        if not bundle_dir.is_dir():
            raise BundleFileMissing(f"bundle {bundle_dir}: no such directory")
        path = bundle_dir / MANIFEST
        if not path.is_file():
            raise BundleFileMissing(f"{bundle_dir} is not a bundle: {MANIFEST} missing; "
                                    f"{REEXPORT}")
        return cls.from_json(path.read_text(), str(path))


def _format_message(version: Any, where: str) -> str:
    if isinstance(version, int) and version > FORMAT_VERSION:
        return (f"{where}: this earthx-sdk reads bundle format {FORMAT_VERSION}; the bundle is "
                f"format {version}: upgrade earthx-sdk (pip install -U earthx-sdk) or export "
                f"the bundle with this version")
    return (f"{where}: this earthx-sdk reads bundle format {FORMAT_VERSION}; the bundle is "
            f"format {version!r}, which no release wrote: {REEXPORT}")


# JSON types of the manifest's fields (beyond "present, and no unknown key").
_TYPES = {
    "format_version": int, "model_config": dict, "sensors": dict, "chat_template": str,
    "tokenizer_file": str, "components": dict, "exporter": dict, "parity": list, "files": dict,
    "file": str, "format": str, "precision": str, "inputs": list, "outputs": list,
    "sha256": str, "extra": dict, "name": str, "dtype": str, "shape": list,
}


def _check(d: Any, cls: type, where: str) -> None:
    """Rejects a non-object, unknown or missing keys, and values of the wrong JSON type."""
    if not isinstance(d, dict):
        raise BundleError(f"{where}: must be an object, got {type(d).__name__}; {REEXPORT}")
    fields = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    unknown, missing = set(d) - fields, required - set(d)
    if unknown:
        raise BundleError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    if missing:
        raise BundleError(f"{where}: missing key(s) {sorted(missing)}; {REEXPORT}")
    for k, v in d.items():
        want = _TYPES[k]
        if type(v) is not want:
            raise BundleError(f"{where}.{k}: must be a JSON {want.__name__}, got "
                              f"{type(v).__name__}; {REEXPORT}")
    if cls is TensorSpec:
        bad = [s for s in d["shape"] if type(s) not in (int, str)]
        if bad:
            raise BundleError(f"{where}.shape: dims must be integers or dim names, got "
                              f"{bad!r}; {REEXPORT}")


def _relative(file: str, where: str) -> None:
    """A manifest path must stay inside the bundle: relative, without '..'."""
    p = PurePosixPath(file)
    if not file or p.is_absolute() or ".." in p.parts or "\\" in file:
        raise BundleError(f"{where}: {file!r} must be a relative path inside the bundle "
                          f"(no '..', not absolute); {REEXPORT}")


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


def load_bundle(bundle_dir: str | Path,
                require: tuple[str, ...] = RUNTIME_COMPONENTS) -> BundleManifest:
    """Reads a bundle's manifest and verifies it before anything is loaded from it.

    Args:
        bundle_dir: the bundle directory.
        require: fnmatch patterns of the components that must be present, each matched by at
            least one component (default `RUNTIME_COMPONENTS`; `()` checks integrity only).
            Independently of `require`, `llm` and `llm_embed` must come together.

    Returns:
        the manifest.

    Raises:
        BundleFileMissing: the directory, manifest.json, a component file, the tokenizer file
            or another listed file is missing (named).
        BundleFormatError: a manifest of another format version (upgrade earthx-sdk for a newer
            one).
        BundleError: a malformed manifest, a missing required component, or a file whose
            sha256 differs from the manifest (named with its component): re-export or restore.
    """
    bundle_dir = Path(bundle_dir)
    manifest = BundleManifest.load(bundle_dir)
    names = sorted(manifest.components)
    for pattern in require:
        if not any(fnmatchcase(n, pattern) for n in names):
            raise BundleError(f"bundle {bundle_dir}: no component {pattern!r} (it has {names}); "
                              f"the runtime needs {list(require)}: {REEXPORT}")
    for pair in PAIRED:
        present = [n for n in pair if n in manifest.components]
        if present and len(present) != len(pair):
            lacking = [n for n in pair if n not in present]
            raise BundleError(f"bundle {bundle_dir}: component {present[0]!r} needs "
                              f"{lacking[0]!r}, which is missing (it has {names}): {REEXPORT}")
    listed = [(f"component {n!r}", c.file, c.sha256) for n, c in manifest.components.items()]
    listed += [("file", f, digest) for f, digest in manifest.files.items()]
    if manifest.tokenizer_file not in manifest.files:
        raise BundleError(f"bundle {bundle_dir}: the manifest has no sha256 of the tokenizer "
                          f"file {manifest.tokenizer_file!r} (files: {sorted(manifest.files)}); "
                          f"{REEXPORT}")
    missing = [(what, f) for what, f, _ in listed if not (bundle_dir / f).is_file()]
    if missing:
        raise BundleFileMissing(f"bundle {bundle_dir}: " + "; ".join(
            f"{what} file {f} is missing" for what, f in missing)
            + f": restore the file(s) from the original bundle or {REEXPORT}")
    modified = []
    for what, f, want in listed:
        got = sha256(bundle_dir / f)
        if got != want:
            modified.append(f"{what} file {f} was modified (sha256 {got[:12]}..., the manifest "
                            f"says {want[:12]}...)")
    if modified:
        raise BundleError(f"bundle {bundle_dir}: " + "; ".join(modified)
                          + f": re-export or restore it ({REEXPORT})")
    return manifest


def verify(bundle_dir: str | Path) -> BundleManifest:
    """Recomputes the sha256 of every file the manifest lists (no component required):
    `load_bundle(bundle_dir, require=())`.

    Raises:
        BundleFileMissing, BundleError, BundleFormatError: as `load_bundle`.
    """
    return load_bundle(bundle_dir, require=())
