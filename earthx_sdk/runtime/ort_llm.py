"""The LLM decoder on onnxruntime, with its KV cache bound as I/O (torch-free).

The bundle's `llm` component is a decoder graph made by onnxruntime-genai's model builder
(`export/llm.py`): inputs `inputs_embeds [1, S, hidden]`, `attention_mask [1, past + S]` and
`past_key_values.<i>.key|value [1, kv_heads, capacity, head_dim]`; outputs `logits [1, S, V]`,
`hidden_states [1, S, hidden]` (the final norm's output, HF's `hidden_states[-1]`) and
`present.<i>.key|value`. Its attention is GroupQueryAttention, which writes the new keys and values
in place when `present` is bound to the same buffer as `past` (the builder's
`past_present_share_buffer` mode). `LLMState` therefore owns one preallocated buffer per layer and
per key/value, bound as both input and output of every step: nothing is copied per token; the
buffers grow (doubling, one copy) only when a sequence outgrows them.

The token embedding table is the `llm_embed` component (safetensors, tensor `embed_tokens`,
float32 or float16 [vocab, hidden]); `embed` looks rows up in numpy.

    llm = OrtLLM.from_bundle(bundle_dir, manifest, threads=2)
    state = llm.new_state()
    logits, hidden = llm.forward(llm.embed(prompt_ids), state)   # prefill
    logits, hidden = llm.forward(llm.embed(np.array([tok])), state)  # one decode step
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_CAPACITY = 256  # initial KV positions of a new state (grows by doubling)

# Every onnxruntime session of the runtime has its own intra-op thread pool, and a request runs
# up to six of them in turn with the native core's OpenMP loops (preprocess, region_pool, mask
# postprocess) in between. By default a pool's threads spin for a while after each run, and
# spinning pools took the cores from one another and from OpenMP: the demo's 12 requests on the
# embedded bundle took 167-191 ms a round with spinning and 44-68 ms without (2-core CPU,
# onnxruntime's default threads, separate processes in turn, 2026-12-06); the mask postprocess
# alone 80 ms against 1 ms. So the runtime's sessions do not spin.
NO_SPIN = ("session.intra_op.allow_spinning", "0")


def no_spin(opts):
    """`opts` (an onnxruntime.SessionOptions) with intra-op spinning off (see NO_SPIN)."""
    opts.add_session_config_entry(*NO_SPIN)
    return opts
EXTRA_KEYS = ("num_layers", "num_kv_heads", "head_dim", "hidden_size", "vocab_size",
              "max_positions", "past_key", "past_value", "present_key", "present_value")


class LLMState:
    """The KV cache of one sequence.

    Attributes:
        length: positions the cache holds (what `forward` has seen).
        capacity: positions the buffers can hold before they grow.
    """

    def __init__(self, llm: OrtLLM, capacity: int) -> None:
        self._llm = llm
        self.length = 0
        self.capacity = 0
        self._arrays: list[np.ndarray] = []  # per layer: key, value [1, kv_heads, capacity, hd]
        self._values: list = []  # OrtValues sharing the arrays' memory
        # Decode-step outputs, preallocated and bound once: a step allocates nothing.
        self._logits1 = np.empty((1, 1, llm.vocab_size), np.float32)
        self._hidden1 = np.empty((1, 1, llm.hidden_size), np.float32)
        self._binding = None  # per state, so threads decoding other states do not share one
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        import onnxruntime as ort

        llm = self._llm
        shape = (1, llm.num_kv_heads, capacity, llm.head_dim)
        arrays = []
        for i in range(2 * llm.num_layers):
            a = np.zeros(shape, np.float32)
            if self.length:
                a[:, :, : self.length] = self._arrays[i][:, :, : self.length]
            arrays.append(a)
        self._arrays = arrays
        self._values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
        self.capacity = capacity
        # The KV buffers are bound once (past and present the same buffer); each step rebinds
        # only the embeddings, the mask and, when S changes, the outputs.
        b = llm.session.io_binding()
        for i in range(llm.num_layers):
            for j in range(2):
                b.bind_ortvalue_input(llm._past[i][j], self._values[2 * i + j])
                b.bind_ortvalue_output(llm._present[i][j], self._values[2 * i + j])
        self._binding = b
        self._bound_s = 0  # the S the logits/hidden outputs are bound for (0: none)

    def reserve(self, positions: int) -> None:
        """Makes room for `positions` positions in total (one copy when the buffers grow)."""
        if positions > self._llm.max_positions:
            raise ValueError(f"sequence length {positions} exceeds the LLM's max_positions "
                             f"{self._llm.max_positions}")
        if positions > self.capacity:
            self._grow(min(max(positions, 2 * self.capacity), self._llm.max_positions))

    def keys(self, layer: int) -> np.ndarray:
        """The cached keys of a layer, [kv_heads, length, head_dim] (a view)."""
        return self._arrays[2 * layer][0, :, : self.length]

    def values(self, layer: int) -> np.ndarray:
        """The cached values of a layer, [kv_heads, length, head_dim] (a view)."""
        return self._arrays[2 * layer + 1][0, :, : self.length]


class OrtLLM:
    """The bundle's LLM decoder on onnxruntime (CPU execution provider).

    Attributes:
        hidden_size, vocab_size, num_layers, num_kv_heads, head_dim, max_positions: from the
            component's `extra`.
    """

    def __init__(self, onnx_path: str | Path, embed_path: str | Path, extra: dict,
                 providers: list[str] | None = None, threads: int | None = None,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        """Opens the decoder graph and reads the embedding table.

        Args:
            onnx_path: the decoder graph.
            embed_path: safetensors file with `embed_tokens` [vocab, hidden].
            extra: the `llm` component's extra (EXTRA_KEYS).
            providers: onnxruntime providers; only ["CPUExecutionProvider"] binds the KV cache
                here (None means that).
            threads: intra-op threads (None: onnxruntime's default, all cores).
            capacity: initial KV positions of `new_state()`.

        Raises:
            ValueError: missing extra keys, a provider other than CPU, threads < 1, an
                embedding table of the wrong shape.
            FileNotFoundError: a file missing.
        """
        import onnxruntime as ort
        missing = [k for k in EXTRA_KEYS if k not in extra]
        if missing:
            raise ValueError(f"llm component extra: missing key(s) {missing} (a bundle written "
                             f"by export/llm.py has {list(EXTRA_KEYS)})")
        providers = ["CPUExecutionProvider"] if providers is None else list(providers)
        if providers != ["CPUExecutionProvider"]:
            raise ValueError(f"OrtLLM: providers must be ['CPUExecutionProvider'] (the KV cache "
                             f"is bound in CPU memory), got {providers}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        for p in (onnx_path, embed_path):
            if not Path(p).is_file():
                raise FileNotFoundError(f"OrtLLM: {p} does not exist")
        self.num_layers = int(extra["num_layers"])
        self.num_kv_heads = int(extra["num_kv_heads"])
        self.head_dim = int(extra["head_dim"])
        self.hidden_size = int(extra["hidden_size"])
        self.vocab_size = int(extra["vocab_size"])
        self.max_positions = int(extra["max_positions"])
        self.capacity = min(capacity, self.max_positions)
        self._past = [(extra["past_key"] % i, extra["past_value"] % i)
                      for i in range(self.num_layers)]
        self._present = [(extra["present_key"] % i, extra["present_value"] % i)
                         for i in range(self.num_layers)]

        self._table = mmap_tensor(embed_path, "embed_tokens")
        if self._table.ndim != 2 or self._table.shape[1] != self.hidden_size:
            raise ValueError(f"{embed_path}: embed_tokens must be [vocab, {self.hidden_size}], "
                             f"got {list(self._table.shape)}")

        opts = no_spin(ort.SessionOptions())
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        want_in = {"inputs_embeds", "attention_mask"} | {n for p in self._past for n in p}
        want_out = {"logits", "hidden_states"} | {n for p in self._present for n in p}
        if not want_in <= inputs or not want_out <= outputs:
            raise ValueError(f"{onnx_path}: the graph must have inputs {sorted(want_in)} and "
                             f"outputs {sorted(want_out)}, got inputs {sorted(inputs)}, outputs "
                             f"{sorted(outputs)}")
        self._ones = np.ones((1, self.max_positions), np.int64)

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, manifest, providers: list[str] | None = None,
                    threads: int | None = None) -> OrtLLM:
        """The bundle's `llm` and `llm_embed` components.

        Raises:
            ValueError: the manifest has no `llm` or `llm_embed` component, or it is not the
                expected format.
        """
        comps = manifest.components
        for name, fmt in (("llm", "onnx"), ("llm_embed", "safetensors")):
            if name not in comps:
                raise ValueError(f"bundle {bundle_dir}: no {name!r} component (re-export with "
                                 f"`python -m export ... --llm fp32|int8|int4`)")
            if comps[name].format != fmt:
                raise ValueError(f"bundle {bundle_dir}: component {name!r} must be {fmt}, got "
                                 f"{comps[name].format!r}")
        bundle_dir = Path(bundle_dir)
        return cls(bundle_dir / comps["llm"].file, bundle_dir / comps["llm_embed"].file,
                   comps["llm"].extra, providers, threads)

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Embeddings float32 [n, hidden] of token ids int [n].

        Raises:
            ValueError: ids not 1-D integers, or out of [0, vocab).
        """
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array, got {ids.dtype} {list(ids.shape)}")
        if ids.size and (ids.min() < 0 or ids.max() >= self._table.shape[0]):
            raise ValueError(f"ids must be in [0, {self._table.shape[0]}), got "
                             f"[{ids.min()}, {ids.max()}]")
        return np.asarray(self._table[ids], dtype=np.float32)  # [n, hidden]

    def new_state(self, capacity: int | None = None) -> LLMState:
        """An empty KV cache with room for `capacity` positions (it grows when needed)."""
        return LLMState(self, self.capacity if capacity is None else min(capacity,
                                                                        self.max_positions))

    def forward(self, embeds: np.ndarray, state: LLMState) -> tuple[np.ndarray, np.ndarray]:
        """Runs S positions after what `state` has seen and appends them to its cache.

        Args:
            embeds: float32 [S, hidden] (S >= 1: the prompt at prefill, 1 per decode step).
            state: from `new_state()`; updated in place.

        Returns:
            (logits float32 [V] of the last position, last-layer hidden states float32
            [S, hidden]).

        Raises:
            ValueError: embeds not [S, hidden] with S >= 1, a state of another OrtLLM, or a
                sequence longer than max_positions.
        """
        embeds = np.asarray(embeds)
        if embeds.ndim != 2 or embeds.shape[1] != self.hidden_size or embeds.shape[0] < 1:
            raise ValueError(f"embeds must be [S >= 1, {self.hidden_size}], got "
                             f"{list(embeds.shape)}")
        if state._llm is not self:
            raise ValueError("state must come from this OrtLLM's new_state()")
        S = embeds.shape[0]
        total = state.length + S
        state.reserve(total)
        b = state._binding  # one binding per sequence: concurrent forwards of threads
        x = np.ascontiguousarray(embeds[None], dtype=np.float32)  # [1, S, hidden]
        b.bind_cpu_input("inputs_embeds", x)
        b.bind_cpu_input("attention_mask", self._ones[:, :total])  # [1, past + S]
        if S == 1:
            logits, hidden = state._logits1, state._hidden1
            if state._bound_s != 1:
                _bind_out(b, logits, hidden)
                state._bound_s = 1
        else:
            logits = np.empty((1, S, self.vocab_size), np.float32)
            hidden = np.empty((1, S, self.hidden_size), np.float32)
            _bind_out(b, logits, hidden)
            state._bound_s = S
        self.session.run_with_iobinding(b)
        state.length = total
        # copies: the decode-step buffers are reused by the next step
        return logits[0, -1].copy(), hidden[0].copy()  # [V], [S, hidden]


_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16}


def mmap_tensor(path: str | Path, name: str) -> np.ndarray:
    """A float32/float16 tensor of a safetensors file, memory-mapped read-only: an embedding
    lookup touches only the rows it reads, so the table does not count against the process's
    memory (a 150k-row table of a 1.5B LLM is half a gigabyte).

    Raises:
        ValueError: not a safetensors file, no tensor `name`, or a dtype other than F32/F16.
    """
    import json
    import struct

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError(f"{path}: not a safetensors file ({e})") from None
    if name not in header:
        names = sorted(k for k in header if k != "__metadata__")
        raise ValueError(f"{path}: no tensor {name!r} (has {names})")
    entry = header[name]
    if entry["dtype"] not in _SAFETENSORS_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} must be F32 or F16, got {entry['dtype']}")
    start, end = entry["data_offsets"]
    dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]])
    shape = tuple(entry["shape"])
    if end - start != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: tensor {name!r} holds {end - start} bytes, its shape "
                         f"{list(shape)} needs {int(np.prod(shape)) * dtype.itemsize}")
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=shape)


def _bind_out(b, logits: np.ndarray, hidden: np.ndarray) -> None:
    """Binds preallocated numpy buffers as the graph's logits and hidden_states outputs."""
    b.bind_output("logits", "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
    b.bind_output("hidden_states", "cpu", 0, np.float32, list(hidden.shape), hidden.ctypes.data)
