"""LLM quantization for the torch backend, and the error measures of quantized paths.

The ONNX graphs are quantized where they are made: `export/llm.py` asks onnxruntime-genai's
builder for int8 or int4 `MatMulNBits` weights (onnxruntime's `MatMulNBitsQuantizer`: symmetric,
per block of `block_size` input rows, LM head included; `accuracy_level=4` computes with int8
activations on CPU). This module quantizes the PyTorch model for the `torch` backend:
int8 weight-only through torchao (`Int8WeightOnlyConfig`: per-output-channel int8 weights,
dequantized inside the matmul), which runs on CPU torch (checked on torch 2.13.0+cpu with
torchao 0.18.0; torchao prints that its CUDA-only extensions did not load, which does not affect
this path).
"""

from __future__ import annotations

import numpy as np


def require_torchao() -> None:
    """Raises ImportError when torchao is not installed."""
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        raise ImportError("int8 weight-only quantization of the torch backend needs torchao "
                          "(pip install -c constraints.txt 'torchao==0.18.0', in the `export` "
                          "extra), not installed")


def int8_weight_only(model):
    """Quantizes every `nn.Linear` of `model` (the LLM's projections and its LM head) to int8
    weight-only in place, with torchao; embeddings stay as they are.

    Args:
        model: a torch module in eval mode (e.g. `EarthXModel.llm`), float32 or bfloat16.

    Returns:
        the same module.

    Raises:
        ImportError: torchao missing.
        TypeError: not a torch module.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    require_torchao()
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig())
    return model


def snr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-noise ratio in dB of `approx` against `reference` (torchao's `compute_error`):
    20 log10(||ref|| / ||ref - approx||); inf when they are equal.

    Raises:
        ValueError: shapes differ.
    """
    reference = np.asarray(reference, np.float64)
    approx = np.asarray(approx, np.float64)
    if reference.shape != approx.shape:
        raise ValueError(f"snr_db: shapes must match, got {list(reference.shape)} and "
                         f"{list(approx.shape)}")
    noise = np.linalg.norm(reference - approx)
    if noise == 0:
        return float("inf")
    return float(20 * np.log10(np.linalg.norm(reference) / noise))


def agreement(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Share of positions whose argmax token equals the reference's (logits [..., V])."""
    reference_logits, logits = np.asarray(reference_logits), np.asarray(logits)
    if reference_logits.shape != logits.shape:
        raise ValueError(f"agreement: shapes must match, got {list(reference_logits.shape)} and "
                         f"{list(logits.shape)}")
    return float((reference_logits.argmax(-1) == logits.argmax(-1)).mean())


# ------------------------------------------------------------------------------------------------
# int4 with float block offsets (Q4_1's scheme) on MatMulNBits
# ------------------------------------------------------------------------------------------------

def _pack4(u: np.ndarray) -> np.ndarray:
    """uint4 codes [N, nb, bs] -> MatMulNBits' packed bytes [N, nb, bs/2] (low nibble first)."""
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def affine_codes(w: np.ndarray, block_size: int, bits: int = 4):
    """Affine `bits`-bit codes of a weight [K, N] per block of `block_size` rows of K (Q4_1's
    scheme at 4 bits): w ~ d * (u - z) + off with u in 0..2^bits - 1, z = 2^(bits - 1) (the
    zero point MatMulNBits assumes without one), d = (max - min) / (2^bits - 1), off = min + z d.

    Weights that already lie on such a grid (a GGUF Q4_1 model, dequantized) are reproduced
    exactly, at 4 bits and at 8 bits (a Q4_1 code q becomes 17 q: 255 = 17 * 15); MatMulNBits'
    integer zero points cannot do that (the offset min / d is fractional).

    Returns:
        (codes uint8: packed [N, nb, bs/2] at 4 bits, [N, nb, bs] at 8, scales float32 [N, nb],
        offsets float32 [nb, N]).
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    K, N = w.shape
    nb = K // block_size
    top, z = (1 << bits) - 1, 1 << (bits - 1)
    wt = w.T.reshape(N, nb, block_size).astype(np.float64)  # [N, nb, bs]
    lo, hi = wt.min(-1, keepdims=True), wt.max(-1, keepdims=True)
    d = (hi - lo) / top
    u = np.clip(np.round((wt - lo) / np.where(d == 0, 1.0, d)), 0, top).astype(np.uint8)
    off = (lo + z * d)[..., 0]  # [N, nb]
    codes = _pack4(u) if bits == 4 else u
    return codes, d[..., 0].astype(np.float32), np.ascontiguousarray(off.T, np.float32)


FOLD_LEVELS = 3
"""4-bit levels a folded offset is written in (see `folded_offset_codes`): each level cuts the
residual by ~14x, so three leave ~4e-4 of the offsets' range (float16 storage: ~5e-4)."""


def folded_offset_codes(off: np.ndarray, block_size: int, levels: int = FOLD_LEVELS):
    """The block offsets `off` [nb, N] of `affine_codes`, as extra 4-bit MatMulNBits blocks:
    `levels` symmetric 4-bit codes of the residual, each level over the nb block sums padded to
    whole blocks (nbp = nb rounded up to a multiple of block_size, code 8 = 0 in the padding).

    Returns:
        (packed uint8 [N, levels * nbp / bs, bs / 2], scales float32 [N, levels * nbp / bs]):
        the blocks that, fed the block sums of A `levels` times, add sum_b off[b, n] S_b.
    """
    nb, N = off.shape
    nbp = -(-nb // block_size) * block_size
    r = np.zeros((N, nbp), np.float64)
    r[:, :nb] = off.T
    codes, scales = [], []
    for _ in range(levels):
        blocks = r.reshape(N, nbp // block_size, block_size)
        c = np.abs(blocks).max(-1, keepdims=True) / 7.0  # [N, nbp / bs, 1]
        q = np.clip(np.round(blocks / np.where(c == 0, 1.0, c)), -8, 7)
        r = (blocks - c * q).reshape(N, nbp)
        codes.append((q + 8).astype(np.uint8))
        scales.append(c[..., 0])
    u = np.concatenate(codes, 1)  # [N, levels * nbp / bs, bs]
    return _pack4(u), np.concatenate(scales, 1).astype(np.float32)


def int4_affine_codes(w: np.ndarray, block_size: int):
    """`affine_codes` at 4 bits."""
    return affine_codes(w, block_size, 4)


def int8_symmetric_codes(w: np.ndarray, block_size: int):
    """Q8_0-style symmetric 8-bit codes of a weight [K, N] per block: w ~ d * (u - 128),
    d = max|w| / 127 (exact for weights on a Q8_0 grid, like SmolLM2's tied embedding).

    Returns:
        (uint8 [N, nb, bs], scales float32 [N, nb]).
    """
    K, N = w.shape
    wt = w.T.reshape(N, K // block_size, block_size).astype(np.float64)
    amax = np.abs(wt).max(-1, keepdims=True)
    d = np.where(amax == 0, 1.0, amax / 127)
    u = (np.clip(np.round(wt / d), -127, 127) + 128).astype(np.uint8)
    return u, d[..., 0].astype(np.float32)


def quantize_int4_affine(src, dst, block_size: int = 32, accuracy_level: int = 4,
                         head_bits: int = 8, head_name: str = "lm_head") -> list[str]:
    """`quantize_affine` at 4 bits (the bundle's int4)."""
    return quantize_affine(src, dst, 4, block_size, accuracy_level, head_bits, head_name)


def quantize_affine(src, dst, bits: int = 4, block_size: int = 32, accuracy_level: int = 4,
                    head_bits: int = 8, head_name: str = "lm_head",
                    two_pass: tuple[str, ...] = (), fold_offsets: bool = False) -> list[str]:
    """Quantizes every constant-weight MatMul of an fp32 ONNX graph to `bits`-bit MatMulNBits
    with float block offsets; the LM head (node name containing `head_name`) to 8-bit symmetric
    (head_bits 8: exact on a Q8_0 source) or, with head_bits 4, affine like a 4-bit body.

    A MatMul `Y = A @ W` becomes `MatMulNBits(A; u, d) + (A @ E) @ C`: the codes and scales of
    `affine_codes`, `E` the [K, nb] 0/1 matrix that sums A per block (one per distinct input
    A, shared by the MatMuls reading it) and `C` the [nb, N] offsets (stored float16, cast once at
    session start; the scales likewise). MatMulNBits' own float zero points would say the same
    in one op, but onnxruntime's CPU kernel runs them about 70x slower.

    Args:
        src: the fp32 graph (e.g. the builder's, with external data).
        dst: the graph to write, with its weights in `dst.data`.
        block_size: rows of K per block (K must be a multiple; other MatMuls stay fp32).
        bits: 4 or 8, the body's code width.
        accuracy_level: MatMulNBits' accuracy_level (4: int8 activations, the fast CPU path;
            1: fp32 activations).
        head_bits: 8 (symmetric) or 4 (affine, like a 4-bit body) for the LM head.
        two_pass: MatMuls (node names containing one of these) whose int8 activations lose
            almost nothing: their MatMulNBits reads the rows [Q(A); A - Q(A)] stacked on the
            first axis and adds the two halves of its output. Q is the kernel's own rounding
            (symmetric int8 per block of `block_size`, scale max|A| / 127), so the kernel
            requantizes the first half exactly and the second, at ~1/254 of the first's scale,
            carries what that rounding dropped. Costs a second activation row per token in
            those MatMuls, no weights. Meaningful at accuracy_level 4.
        fold_offsets: (4-bit bodies) instead of the block-sum MatMul, offset MatMul and Add per
            MatMul, one MatMulNBits reads [A, A @ E3] (E3: E with its columns padded to whole
            blocks, FOLD_LEVELS times) and holds the offsets as FOLD_LEVELS extra 4-bit levels
            per block (`folded_offset_codes`): 2 small ops per distinct input instead of
            1 + 2 per MatMul, at K + FOLD_LEVELS x nbp input columns. The block sums are then
            rounded to int8 by the kernel like A.

    Returns:
        the file names written: [dst's name, the data file's name].

    Raises:
        ValueError: bits not 4 or 8, block_size not in 16..256 (power of two), head_bits not 4
            or 8, accuracy_level not 0..4.
    """
    from pathlib import Path

    import onnx
    from onnx import helper, numpy_helper

    if block_size not in (16, 32, 64, 128, 256):
        raise ValueError(f"block_size must be one of 16, 32, 64, 128, 256, got {block_size}")
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    if head_bits not in (4, 8):
        raise ValueError(f"head_bits must be 4 or 8, got {head_bits}")
    if accuracy_level not in (0, 1, 2, 3, 4):
        raise ValueError(f"accuracy_level must be 0..4, got {accuracy_level}")
    if fold_offsets and (bits != 4 or two_pass):
        raise ValueError("fold_offsets needs bits=4 and no two_pass, got "
                         f"bits={bits}, two_pass={two_pass!r}")
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=True)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, new_inits, dropped = [], [], set()
    block_sums: dict[str, str] = {}  # input name -> its block-sum tensor
    indicators: dict[int, str] = {}  # K -> E (and -K -> E3, with fold_offsets)

    def f16_const(name: str, x: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(x.astype(np.float16), name + "_f16"))
        nodes.append(helper.make_node("Cast", [name + "_f16"], [name], name=name + "_cast",
                                      to=onnx.TensorProto.FLOAT))
        return name

    stacks: dict[str, str] = {}  # input name -> its [Q(A); A - Q(A)] (shared like block_sums)

    def stacked(a: str, base: str) -> str:
        """Nodes that compute [Q(a); a - Q(a)] (see `two_pass`), once per input; its name."""
        if a in stacks:
            return stacks[a]
        if not stacks:  # the constants every stack shares
            consts = {"_blk": np.array([-1, block_size], np.int64),
                      "_axis": np.array([1], np.int64), "_tiny": np.array(1e-30, np.float32),
                      "_127": np.array(127.0, np.float32)}
            new_inits.extend(numpy_helper.from_array(v, "two_pass" + k) for k, v in consts.items())
        n = base + "_2p"
        nodes.extend([
            helper.make_node("Shape", [a], [n + "_shape"], name=n + "_shape"),
            helper.make_node("Reshape", [a, "two_pass_blk"], [n + "_blk"], name=n + "_blk"),
            helper.make_node("Abs", [n + "_blk"], [n + "_abs"], name=n + "_abs"),
            helper.make_node("ReduceMax", [n + "_abs", "two_pass_axis"], [n + "_amax"],
                             name=n + "_amax", keepdims=1),
            helper.make_node("Max", [n + "_amax", "two_pass_tiny"], [n + "_amax1"],
                             name=n + "_amax1"),
            helper.make_node("Div", [n + "_amax1", "two_pass_127"], [n + "_scale"],
                             name=n + "_scale"),
            helper.make_node("Div", [n + "_blk", n + "_scale"], [n + "_x"], name=n + "_x"),
            helper.make_node("Round", [n + "_x"], [n + "_r"], name=n + "_r"),
            helper.make_node("Mul", [n + "_r", n + "_scale"], [n + "_qb"], name=n + "_qb"),
            helper.make_node("Reshape", [n + "_qb", n + "_shape"], [n + "_q"], name=n + "_q"),
            helper.make_node("Sub", [a, n + "_q"], [n + "_res"], name=n + "_res"),
            helper.make_node("Concat", [n + "_q", n + "_res"], [n], name=n, axis=0),
        ])
        stacks[a] = n
        return n

    folded: dict[str, str] = {}  # input name -> [A, A @ E3] (fold_offsets)

    def folded_input(a: str, K: int, base: str) -> str:
        """Nodes that compute [a, a @ E3] (see `fold_offsets`), once per input; its name."""
        if a in folded:
            return folded[a]
        if -K not in indicators:  # E3 of this K (E's own entries are keyed by +K)
            indicators[-K] = f"fold_indicator_{K}"
            nb = K // block_size
            nbp = -(-nb // block_size) * block_size
            e = np.zeros((K, FOLD_LEVELS * nbp), np.float32)
            for lv in range(FOLD_LEVELS):
                e[np.arange(K), lv * nbp + np.arange(K) // block_size] = 1
            new_inits.append(numpy_helper.from_array(e, indicators[-K]))
        ind = indicators[-K]
        n = base + "_fold"
        nodes.extend([
            helper.make_node("MatMul", [a, ind], [n + "_sums"], name=n + "_sums"),
            helper.make_node("Concat", [a, n + "_sums"], [n], name=n, axis=-1),
        ])
        folded[a] = n
        return n

    def nbits(a: str, b: str, scales: str, out: str, name: str, nb: int, attrs: dict,
              two: bool) -> None:
        """MatMulNBits(a) into `out`, in two passes (see `two_pass`) when `two`."""
        if not two:
            nodes.append(helper.make_node("MatMulNBits", [a, b, scales], [out], name=name,
                                          domain="com.microsoft", bits=nb, **attrs))
            return
        nodes.extend([
            helper.make_node("MatMulNBits", [stacked(a, name), b, scales], [name + "_2"],
                             name=name, domain="com.microsoft", bits=nb, **attrs),
            helper.make_node("Split", [name + "_2"], [name + "_hi", name + "_lo"],
                             name=name + "_split", axis=0, num_outputs=2),
            helper.make_node("Add", [name + "_hi", name + "_lo"], [out], name=name + "_sum"),
        ])

    for node in g.node:
        w_name = node.input[1] if node.op_type == "MatMul" else None
        if w_name not in inits:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        if w.ndim != 2 or w.shape[0] % block_size:
            nodes.append(node)
            continue
        K, N = w.shape
        dropped.add(w_name)
        base = node.name.strip("/").replace("/", "_") or w_name
        a = node.input[0]
        two = any(t in node.name for t in two_pass)
        attrs = {"K": K, "N": N, "block_size": block_size, "accuracy_level": accuracy_level}
        if head_name in node.name and head_bits == 8:
            u, d = int8_symmetric_codes(w, block_size)
            new_inits.append(numpy_helper.from_array(u, base + "_B"))
            scales = f16_const(base + "_S", d.reshape(-1))
            nbits(a, base + "_B", scales, node.output[0], base + "_q8", 8, attrs, two)
            continue
        packed, d, off = affine_codes(w, block_size, bits)
        if fold_offsets:
            a_f = folded_input(a, K, base)
            extra_b, extra_d = folded_offset_codes(off, block_size)
            new_inits.append(numpy_helper.from_array(np.concatenate([packed, extra_b], 1),
                                                     base + "_B"))
            scales = f16_const(base + "_S", np.concatenate([d, extra_d], 1).reshape(-1))
            kf = K + extra_d.shape[1] * block_size
            nodes.append(helper.make_node("MatMulNBits", [a_f, base + "_B", scales],
                                          list(node.output), name=f"{base}_q{bits}",
                                          domain="com.microsoft", bits=bits,
                                          **{**attrs, "K": kf}))
            continue
        new_inits.append(numpy_helper.from_array(packed, base + "_B"))
        scales = f16_const(base + "_S", d.reshape(-1))
        offsets = f16_const(base + "_C", off)
        if K not in indicators:
            e = np.zeros((K, K // block_size), np.float32)
            e[np.arange(K), np.arange(K) // block_size] = 1
            indicators[K] = f"block_indicator_{K}"
            new_inits.append(numpy_helper.from_array(e, indicators[K]))
        if a not in block_sums:
            block_sums[a] = base + "_blocksum"
            nodes.append(helper.make_node("MatMul", [a, indicators[K]], [block_sums[a]],
                                          name=base + "_blocksum"))
        nbits(a, base + "_B", scales, f"{base}_q{bits}", f"{base}_q{bits}", bits, attrs, two)
        nodes += [
            helper.make_node("MatMul", [block_sums[a], offsets], [base + "_offset"],
                             name=base + "_offset"),
            helper.make_node("Add", [f"{base}_q{bits}", base + "_offset"], list(node.output),
                             name=base + "_add"),
        ]
    keep = [t for t in g.initializer if t.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    data = dst.name + ".data"
    (dst.parent / data).unlink(missing_ok=True)  # onnx appends to an existing data file
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
              location=data, size_threshold=1024)
    tmp.replace(dst)
    return [dst.name, data]
