"""The SDK's front door: `EarthX.load(bundle_or_checkpoint)`, then ask questions about imagery.

    from earthx_sdk import EarthX
    from earthx_sdk.prompts import Box

    model = EarthX.load("bundle/")                      # onnxruntime; a checkpoint -> torch
    r = model.ask("scene.tif", "What is in <region>?", prompts=[Box(10, 20, 80, 90)])
    r.text, r.timings["vision"].backend
    r = model.segment("scene.tif", "the ships")         # r.mask(0), r.write_geojson("ships.json")
    for piece in model.stream("scene.tif", "Describe this image."):
        print(piece, end="")
    chat = model.chat("scene.tif"); chat.ask("What is in <region>?", prompts=[...]); chat.ask(...)

Each call takes the image (a path, a numpy array, a PIL image); its dense features are cached
(keyed by file path + modification time, or by the array's content), so a second prompt on the
same image skips preprocessing and the vision stage (`Result.timings["vision"].status ==
"cached"`). `predictor()` gives SAM's pattern instead (`set_image` once, then prompts).

One EarthX object serves many threads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from earthx_sdk.defaults import resolve_bundle
from earthx_sdk.io.images import file_key, load_image
from earthx_sdk.predictor import (
    ImageState,
    Options,
    Predictor,
    Stream,
    _check_prompts,
    drain,
    finish,
    resolve_options,
    run_request,
)
from earthx_sdk.result import Result
from earthx_sdk.runtime.sessions import Engine

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def _kind(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (a bundle directory with manifest.json "
                                f"or a checkpoint directory with config.json was expected)")
    if (path / "manifest.json").is_file():
        return "bundle"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return "checkpoint"
    raise ValueError(f"{path} is neither a bundle (manifest.json) nor a checkpoint directory "
                     f"(config.json + model.safetensors)")


class EarthX:
    """A loaded model. Build it with `EarthX.load` (or `EarthX(engine)` over composed sessions).

    Args:
        engine: the sessions (earthx_sdk.runtime.sessions.Engine).
        options: runtime settings (earthx_sdk.predictor.Options).
    """

    def __init__(self, engine: Engine, options: Options | None = None) -> None:
        self.engine = engine
        self.options = resolve_options(options, engine)
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, bundle_or_checkpoint: str | Path, backend: str = "auto", device: str = "auto",
             threads: int | None = None, **options) -> EarthX:
        """Loads a bundle (onnxruntime) or a checkpoint directory (torch).

        Args:
            bundle_or_checkpoint: a bundle directory (manifest.json), a checkpoint directory
                (EarthXModel.save), or "default": the embedded model (earthx_sdk.defaults).
            backend: "auto" (a bundle runs on onnxruntime with the fastest execution provider
                present, TensorRT > CUDA > CPU; a checkpoint on torch), "torch", "onnxruntime",
                "tensorrt".
            device: "auto" | "cpu" | "cuda".
            threads: intra-op threads of the onnxruntime sessions (None: onnxruntime's default).
            **options: fields of earthx_sdk.predictor.Options (max_pixels, tile_size, ...).

        Raises:
            FileNotFoundError: the path does not exist; a bundle file is missing.
            ValueError: an unknown backend; a path that is neither; a bundle missing a component
                or with a damaged file (named); a checkpoint asked to run on onnxruntime.
            RuntimeError: backend="tensorrt" where the TensorRT runner is not built.
            ImportError: the backend's package is not installed (named).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        path = resolve_bundle(bundle_or_checkpoint)  # "default": the embedded bundle
        kind = _kind(path)
        opts = Options(**options)
        if backend == "tensorrt":
            from earthx_sdk import _ext

            built = bool(_ext.build_info().get("tensorrt_compiled", False))
            why = ("the _C engine runner is compiled, but the runtime has no TensorRT sessions "
                   "yet (untestable without TensorRT here)" if built else
                   "the TensorRT engine runner is not available in this installation "
                   f"(earthx_sdk._C built: {_ext.native_available()}, TensorRT compiled: no)")
            raise RuntimeError(f"backend='tensorrt': {why}; use backend='onnxruntime' (its "
                               f"TensorRT execution provider is used where present)")
        if kind == "checkpoint":
            if backend == "onnxruntime":
                raise ValueError(f"{path} is a checkpoint: the onnxruntime backend runs a bundle; "
                                 f"export one with python -m export --checkpoint {path} --out "
                                 f"BUNDLE")
            from earthx_sdk.runtime.torch_backend import load_torch

            return cls(load_torch(path, device), opts)
        if backend == "torch":
            raise ValueError(f"{path} is a bundle (ONNX graphs): the torch backend runs a "
                             f"checkpoint directory; use backend='onnxruntime'")
        from earthx_sdk.runtime.ort_backend import load_onnxruntime

        return cls(load_onnxruntime(path, device, threads), opts)

    # -- images ------------------------------------------------------------------------------

    def image_state(self, image, sensor: str = "auto", layout: str = "auto") -> ImageState:
        """The (cached) state of an image: its reading, sensor, and encoded views."""
        if isinstance(image, (str, os.PathLike)):  # a file seen before is not read again
            fkey = file_key(image)
            with self._lock:
                st = self._cache.get((fkey, sensor)) if fkey is not None else None
                if st is not None:
                    self._cache.move_to_end((fkey, sensor))
                    return st
        loaded = load_image(image, layout, self.options.max_pixels)
        key = None if loaded.key is None else (loaded.key, sensor)
        if key is not None:
            with self._lock:
                st = self._cache.get(key)
                if st is not None:
                    self._cache.move_to_end(key)
                    return st
        st = ImageState(self.engine, loaded, sensor, self.options)
        if key is not None:
            with self._lock:
                st = self._cache.setdefault(key, st)
                self._cache.move_to_end(key)
                while len(self._cache) > self.options.cache_size:
                    self._cache.popitem(last=False)
        return st

    def predictor(self) -> Predictor:
        """A SamPredictor-style object: set_image once, then ask / segment many times."""
        return Predictor(self.engine, self.options)

    # -- requests ----------------------------------------------------------------------------

    def _on(self, image, sensor: str) -> Predictor:
        p = Predictor(self.engine, self.options)
        p.state = self.image_state(image, sensor)
        return p

    def ask(self, image, text: str, prompts=None, *, sensor: str = "auto",
            max_new_tokens: int = 64, temperature: float = 0.0, seed: int | None = 0,
            history: Sequence[tuple[str, str]] = ()) -> Result:
        """Answers a question about an image.

        Args:
            image: path, numpy array or PIL image.
            text: the question; the k-th `<region>` in it (over history and question) refers to
                prompts[k].
            prompts: Point / Box / Polygon / Scribble / Mask (earthx_sdk.prompts), or a list.
            sensor: "auto", "optical", "multispectral", "sar", "infrared".
            max_new_tokens, temperature, seed: decoding (temperature 0 is greedy).
            history: earlier (question, answer) turns.

        Returns:
            Result (text, masks for each <seg> the answer holds, timings per stage).

        Raises:
            ValueError / TypeError / FileNotFoundError: bad image, sensor, prompts, text.
        """
        return self._on(image, sensor).ask(text, prompts, max_new_tokens=max_new_tokens,
                                           temperature=temperature, seed=seed, history=history)

    def stream(self, image, text: str, prompts=None, *, sensor: str = "auto",
               max_new_tokens: int = 64, temperature: float = 0.0, seed: int | None = 0,
               history: Sequence[tuple[str, str]] = ()) -> Stream:
        """Like ask, but iterate the returned Stream for the text pieces as they are decoded;
        `Stream.result` holds the Result at the end."""
        return self._on(image, sensor).stream(text, prompts, max_new_tokens=max_new_tokens,
                                              temperature=temperature, seed=seed,
                                              history=history)

    def segment(self, image, text: str | None = None, prompts=None, *, sensor: str = "auto",
                max_new_tokens: int = 1, temperature: float = 0.0, seed: int | None = 0,
                progress: Callable[[int, int], None] | None = None) -> Result:
        """Masks for a referring text, for each prompt, or for a text with <region> and its
        prompts (see earthx_sdk.predictor.Predictor.segment). Large scenes run tiled."""
        return self._on(image, sensor).segment(text, prompts, max_new_tokens=max_new_tokens,
                                               temperature=temperature, seed=seed,
                                               progress=progress)

    def classify_region(self, image, prompt, *, sensor: str = "auto",
                        max_new_tokens: int = 16) -> Result:
        """The class of a prompted region, asked as the model was trained."""
        return self._on(image, sensor).classify_region(prompt, max_new_tokens=max_new_tokens)

    def caption_region(self, image, prompt, *, sensor: str = "auto",
                       max_new_tokens: int = 48) -> Result:
        """A short description of a prompted region, asked as the model was trained."""
        return self._on(image, sensor).caption_region(prompt, max_new_tokens=max_new_tokens)

    def chat(self, image, sensor: str = "auto") -> Chat:
        """A multi-turn conversation about one image."""
        return Chat(self, image, sensor)

    def with_options(self, **options) -> EarthX:
        """The same loaded engine with other runtime options (its own feature cache)."""
        return EarthX(self.engine, replace(self.options, **options))

    def info(self) -> dict:
        """{"source", "backend": {stage: backend}, "sensors": {sensor: channels}}."""
        return {"source": self.engine.source, "backend": {"name": self.engine.name,
                                                           **self.engine.describe()},
                "sensors": {k: list(v) for k, v in self.engine.spec.channels.items()}}


class Chat:
    """A conversation about one image: each turn sees the earlier questions and answers, and
    the prompts given so far (the k-th `<region>` of the whole conversation is the k-th prompt).

    Attributes:
        history: [(question, answer)] of the finished turns.
        prompts: every prompt given so far, in order.
    """

    def __init__(self, model: EarthX, image, sensor: str = "auto") -> None:
        self.model = model
        self.state = model.image_state(image, sensor)
        self.history: list[tuple[str, str]] = []
        self.prompts: list = []

    def ask(self, text: str, prompts=None, *, max_new_tokens: int = 64,
            temperature: float = 0.0, seed: int | None = 0) -> Result:
        """The next turn; its answer joins the history."""
        new = _check_prompts(prompts)
        all_prompts = self.prompts + new
        part = drain(run_request(self.state, text, all_prompts, history=self.history,
                                 max_new_tokens=max_new_tokens, temperature=temperature,
                                 seed=seed))
        r = finish(self.state, part, all_prompts, self.model.options.mask_threshold)
        self.history.append((text, r.text))
        self.prompts = all_prompts
        return r

    def reset(self) -> None:
        """Forgets the turns and prompts (the image's features stay cached)."""
        self.history, self.prompts = [], []
