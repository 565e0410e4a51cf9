"""The decode loop every backend shares: prefill, then one token at a time with the KV cache.

It mirrors `EarthXModel.generate` step for step, so the torch backend reproduces the reference
bit for bit and the others are compared with it: greedy at temperature 0 (argmax, first maximum),
else sampling from softmax(logits / temperature) with a numpy Generator. The hidden state of a
`<seg>` is the last-layer state *at* the `<seg>` input, i.e. what the step after the `<seg>` was
emitted returns for its input position; a `<seg>` emitted last still needs that step, which runs
after the loop. `forced` ids replace the first choices (a constrained answer prefix: `segment`
forces its answer to begin with `<seg>`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class DecodeStats:
    """Filled in while the loop runs.

    Attributes:
        token_ids: the generated ids (ending with eos when reached).
        seg_hidden: float32 [Q, hidden], the state at each `<seg>`.
        prompt_hidden: float32 [L, hidden], the last-layer states of the prompt (the prefill's).
        prefill_s, decode_s: seconds in the LLM (and in choosing tokens) for prefill / the steps.
        steps: forward calls after the prefill.
        forwards: all forward calls, the prefill included.
    """

    token_ids: list[int] = field(default_factory=list)
    seg_hidden: np.ndarray | None = None
    prompt_hidden: np.ndarray | None = None
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    forwards: int = 0


def check_sampling(max_new_tokens: int, temperature: float) -> None:
    """Raises ValueError for max_new_tokens < 1 or a temperature that is negative or NaN."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")


def choose(logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    """The next token: argmax at temperature 0, else a sample of softmax(logits / T)."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    return int(rng.choice(p.shape[0], p=p))


def decode(llm, embeds: np.ndarray, *, eos_id: int, seg_id: int, max_new_tokens: int,
           temperature: float = 0.0, seed: int | None = 0, forced: Sequence[int] = (),
           stats: DecodeStats | None = None) -> Iterator[int]:
    """Yields the generated token ids one by one, as they are decoded.

    Args:
        llm: an LLM session (embed / new_state / forward).
        embeds: float32 [L, hidden], the prompt's embeddings (image and region slots filled).
        eos_id, seg_id: the tokenizer's ids.
        max_new_tokens: >= 1.
        temperature: 0 for greedy.
        seed: of the sampling generator (temperature > 0).
        forced: ids that replace the first len(forced) choices.
        stats: filled in as the loop runs (token ids, <seg> states, timings).
    """
    check_sampling(max_new_tokens, temperature)
    st = stats if stats is not None else DecodeStats()
    rng = np.random.default_rng(seed) if temperature > 0 else None
    state = llm.new_state()
    seg: list[np.ndarray] = []
    t0 = time.perf_counter()
    logits, hidden = llm.forward(embeds, state)  # prefill
    st.prompt_hidden = np.asarray(hidden, np.float32)
    st.forwards += 1
    st.prefill_s += time.perf_counter() - t0
    gen = st.token_ids
    for step in range(max_new_tokens):
        t0 = time.perf_counter()
        if step:
            logits, hidden = llm.forward(llm.embed(np.asarray(gen[-1:], np.int64)), state)
            st.forwards += 1
            st.steps += 1
            if gen[-1] == seg_id:
                seg.append(hidden[-1])  # the state at the <seg> input
        nxt = int(forced[step]) if step < len(forced) else choose(logits, temperature, rng)
        gen.append(nxt)
        st.decode_s += time.perf_counter() - t0
        yield nxt
        if nxt == eos_id:
            break
    if gen[-1] == seg_id:  # a trailing <seg> still needs its own hidden state
        t0 = time.perf_counter()
        _, hidden = llm.forward(llm.embed(np.asarray([seg_id], np.int64)), state)
        st.forwards += 1
        st.steps += 1
        seg.append(hidden[-1])
        st.decode_s += time.perf_counter() - t0
    st.seg_hidden = np.stack(seg).astype(np.float32) if seg else None
