"""Where the int8 LLM's error comes from: int8 activations, simulated per MatMul in PyTorch.

    python -m benchmarks.quant_sensitivity [--tokens N] [--threads 1] [--json PATH]

The bundle's int8 graph (`MatMulNBits`, accuracy_level 4, the fast CPU path) quantizes each
MatMul's activations to int8 per block of 32 input channels. With weights that reproduce the
fp32 reference exactly (`--llm-int8 affine`), that is the only error left, and it costs ~2.4
points of next-token agreement (benchmarks/RESULTS.md, "Quantization parity"). This script
applies the same quantization (symmetric, scale max|x| / 127 per block) to the inputs of chosen
`nn.Linear`s of SmolLM2-135M-Instruct and reports, against the unquantized model on
`export/llm_eval.txt` (windows of 512), the teacher-forced next-token agreement and the mean
KL(fp32 || quantized) per token. Rows: every Linear quantized; only one projection type; only one
decoder layer; only the LM head; everything but the last layer and the LM head.

KL is the figure to read: agreement moves by +-1 point between configurations whose KL differs
by less than 1e-4 (near-tied tokens flip either way), so it ranks nothing at this level.

The simulation is an approximation of onnxruntime's kernel, not a copy: on a random 128 x 64
MatMul it accounts for more than half (about two thirds, measured) of the kernel's deviation
from fp32 activations (tests/benchmarks/test_quant_sensitivity.py), and on
the first 1024 tokens it gives 97.75 % agreement where the real affine int8 graph gives 97.65 %.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

BLOCK = 32  # MatMulNBits' block along K (the bundle's block size)


def act_int8(x, block: int = BLOCK):
    """x [..., K] with its last dimension quantized to int8 per block of `block` (symmetric,
    scale max |x| / 127) and dequantized back.

    Raises:
        ValueError: K not a multiple of `block`.
    """
    import torch

    k = x.shape[-1]
    if k % block:
        raise ValueError(f"act_int8: the last dimension ({k}) must be a multiple of the block "
                         f"({block})")
    xb = x.reshape(*x.shape[:-1], k // block, block)
    scale = xb.abs().amax(-1, keepdim=True) / 127.0
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (torch.round(xb / scale).clamp(-127, 127) * scale).reshape(x.shape)


class Sensitivity:
    """A transformers causal LM with a switchable int8-activation hook on every nn.Linear."""

    def __init__(self, model, ids, window: int = 512) -> None:
        import torch

        self.model = model
        self.chunks = [c for c in (ids[i: i + window] for i in range(0, len(ids) - 1, window))
                       if len(c) > 1]
        self.names: list[str] = []
        self.active: set[str] = set()
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.Linear):
                self.names.append(n)
                m.register_forward_pre_hook(
                    lambda mod, args, n=n: (act_int8(args[0]),) if n in self.active else None)
        self.reference = self._logprobs()

    def _logprobs(self):
        import torch

        out = []
        with torch.no_grad():
            for c in self.chunks:
                logits = self.model(input_ids=torch.as_tensor(c)[None], use_cache=False).logits
                out.append(torch.log_softmax(logits[0, :-1].float(), -1))
        return torch.cat(out)

    def measure(self, quantized) -> dict:
        """Agreement and mean KL with the Linears named in `quantized` (an iterable) quantized."""
        self.active = set(quantized)
        lp = self._logprobs()
        self.active = set()
        ref = self.reference
        kl = (ref.exp() * (ref - lp)).sum(-1).mean().item()
        agree = (lp.argmax(-1) == ref.argmax(-1)).float().mean().item()
        return {"linears": len(quantized), "agreement": agree, "kl": kl}


def rows(sens: Sensitivity, layers: int) -> dict[str, list[str]]:
    """The configurations measured: {label: names of the quantized Linears}."""
    names = sens.names
    last = f"layers.{layers - 1}."
    out = {"all": names}
    for typ in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        out[f"only {typ} (all layers)"] = [n for n in names if n.endswith(typ)]
    for i in range(layers):
        out[f"only layer {i}"] = [n for n in names if f"layers.{i}." in n]
    out["only lm_head"] = [n for n in names if n.endswith("lm_head")]
    out[f"all but layer {layers - 1} and lm_head"] = [
        n for n in names if last not in n and not n.endswith("lm_head")]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quant_sensitivity",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=None, help="score only the first N tokens")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    from export.llm_report import eval_ids
    from export.smollm2 import smollm2_model, smollm2_tokenizer

    torch.set_num_threads(a.threads)
    model = smollm2_model("sdpa")
    ids = eval_ids(smollm2_tokenizer(), a.tokens)
    sens = Sensitivity(model, ids)
    results = {}
    print(f"int8 activations (symmetric, block {BLOCK}) on SmolLM2-135M-Instruct, "
          f"{sum(len(c) - 1 for c in sens.chunks)} tokens of export/llm_eval.txt\n")
    print("| quantized | linears | agreement | KL (nats/token) |\n|---|---|---|---|")
    for label, names in rows(sens, model.config.num_hidden_layers).items():
        r = results[label] = sens.measure(names)
        print(f"| {label} | {r['linears']} | {100 * r['agreement']:.2f}% | {r['kl']:.5f} |",
              flush=True)
    if a.json:
        fd, tmp = tempfile.mkstemp(dir=a.json.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
