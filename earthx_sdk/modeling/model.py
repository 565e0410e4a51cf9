"""EarthXModel: vision experts + prompt encoder + LLM + pixel perception, tensors in, tensors out.

The predictor/runtime owns images, caching and prompts; this module owns the math. A batch is a
list of `earthx_sdk.processor.Encoded` samples (they may mix sensors and channel counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from earthx_sdk.modeling.config import EarthXConfig
from earthx_sdk.modeling.llm import build_llm, load_tokenizer
from earthx_sdk.modeling.mask_decoder import MaskDecoder
from earthx_sdk.modeling.prompt_encoder import PromptEncoder
from earthx_sdk.modeling.vision import VisionEncoder
from earthx_sdk.processor import IGNORE_INDEX, Encoded, Processor, text_positions
from earthx_sdk.tokenizer import EarthXTokenizer


@dataclass
class Generation:
    """What `generate` returns for one sample.

    Attributes:
        token_ids: generated ids (without the prompt), ending with eos if it was reached.
        text: the decoded answer (special tokens other than <seg> dropped).
        mask_logits: float [Q, G, G], one per <seg> emitted (Q may be 0); G = S/4, or S/2 for a
            decoder with cfg.refine (`MaskDecoder.out_size`).
        iou: float [Q] predicted IoU per mask.
    """

    token_ids: list[int]
    text: str
    mask_logits: torch.Tensor
    iou: torch.Tensor


class EarthXModel(nn.Module):
    """The spatial multi-modal LLM.

    Args:
        cfg: the configuration.
        tokenizer: defaults to `load_tokenizer(cfg.llm)`.
    """

    def __init__(self, cfg: EarthXConfig, tokenizer: EarthXTokenizer | None = None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.llm)
        self.llm = build_llm(cfg.llm, self.tokenizer)
        hidden = self.llm.config.hidden_size
        self.vision = VisionEncoder(cfg.vision, hidden)
        size = cfg.vision.image_size
        self.prompt_encoder = PromptEncoder(cfg.prompt, list(self.vision.feature_dims),
                                            self.vision.dense_dim, hidden, size)
        self.mask_decoder = MaskDecoder(cfg.mask, hidden, self.vision.dense_dim, cfg.prompt.dim,
                                        tuple(self.vision.hires_dims), cfg.vision.grid, size)
        self.processor = Processor(self.tokenizer, size, self.vision.num_tokens,
                                   cfg.prompt.region_tokens, cfg.prompt.mask_resolution,
                                   mask_grid=self.mask_decoder.out_size)

    # --------------------------------------------------------------------------------------------
    # encoding
    # --------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_images(self, samples: list[Encoded]) -> list:
        """Runs the vision encoder once per (sensor, channel count) group; returns one
        VisionOutput per sample, each with batch dimension 1."""
        out: list = [None] * len(samples)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, s in enumerate(samples):
            groups.setdefault((s.sensor, s.pixels.shape[0]), []).append(i)
        for (sensor, _), idx in groups.items():
            px = torch.from_numpy(np.stack([samples[i].pixels for i in idx])).to(self.device)
            v = self.vision(px, sensor)
            for j, i in enumerate(idx):
                out[i] = _select(v, j)
        return out

    def encode_prompts(self, vis, s: Encoded):
        """Region embeddings [R, n, hidden] and prompt states [R, dim] of one sample."""
        dev = self.device
        boxes = torch.from_numpy(s.boxes).to(dev)[None]  # [1, R, 4]
        masks = torch.from_numpy(s.prompt_masks).to(dev)[None]  # [1, R, M, M]
        types = torch.from_numpy(s.prompt_types).to(dev)[None]  # [1, R]
        valid = torch.ones(types.shape, dtype=torch.bool, device=dev)
        region, states = self.prompt_encoder(vis.features, vis.image_tokens, boxes, masks, types,
                                             valid)
        return region[0], states[0]

    def embed(self, ids: torch.Tensor, vis, region: torch.Tensor) -> torch.Tensor:
        """Token embeddings [L, hidden] of one sample with the image and region slots filled."""
        tok = self.tokenizer
        emb = self.llm.get_input_embeddings()(ids)  # [L, hidden]
        img_pos = (ids == tok.image_id).nonzero().squeeze(1)
        if img_pos.numel() != vis.tokens.shape[1]:
            raise ValueError(f"input_ids hold {img_pos.numel()} <image> slots, the vision encoder "
                             f"gives {vis.tokens.shape[1]} tokens")
        emb = emb.index_put((img_pos,), vis.tokens[0].to(emb.dtype))
        reg_pos = (ids == tok.region_id).nonzero().squeeze(1)
        if reg_pos.numel():
            flat = region.reshape(-1, region.shape[-1])  # [R * n, hidden]
            if reg_pos.numel() > flat.shape[0]:
                raise ValueError(f"input_ids hold {reg_pos.numel()} <region> slots but the prompts "
                                 f"give only {flat.shape[0]} region tokens")
            emb = emb.index_put((reg_pos,), flat[: reg_pos.numel()].to(emb.dtype))
        return emb

    def _prepare(self, samples: list[Encoded]):
        vis = self.encode_images(samples)
        embeds, prompt_states = [], []
        for s, v in zip(samples, vis, strict=True):
            region, states = self.encode_prompts(v, s)
            ids = torch.from_numpy(s.input_ids).to(self.device)
            embeds.append(self.embed(ids, v, region))
            prompt_states.append(states)
        return vis, embeds, prompt_states

    # --------------------------------------------------------------------------------------------
    # training
    # --------------------------------------------------------------------------------------------

    def forward(self, samples: list[Encoded], reduction: str = "mean",
                balanced_bce: bool = False, return_vision: bool = False) -> dict:
        """Training losses of a batch.

        Args:
            reduction: "mean" (the losses) or "sum" (their numerators and denominators, so that a
                data-parallel trainer can weight each process's share by the global counts).
            balanced_bce: weight each mask's positive pixels in the BCE (see mask_losses).
            return_vision: also return "vision", the VisionOutput of each sample (for auxiliary
                losses on the features, training.dense_labels).

        Returns:
            "mean": {"loss", "lm_loss", "mask_loss" (BCE + Dice), "iou_loss"}: scalars; the mask
            terms are 0 when no sample has a <seg>.
            "sum": {"lm_sum" (CE summed over answer tokens), "lm_tokens", "mask_sum" and
            "iou_sum" (summed over target masks), "masks"}: the means are lm_sum / lm_tokens and
            mask_sum / masks, iou_sum / masks.
        """
        if not samples:
            raise ValueError("samples must hold at least one sample")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        vis, embeds, prompt_states = self._prepare(samples)
        dev = self.device
        L = max(e.shape[0] for e in embeds)
        hidden = embeds[0].shape[1]
        B = len(samples)
        x = torch.zeros(B, L, hidden, dtype=embeds[0].dtype, device=dev)  # right-padded
        attn = torch.zeros(B, L, dtype=torch.long, device=dev)
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long, device=dev)
        for i, (e, s) in enumerate(zip(embeds, samples, strict=True)):
            x[i, : e.shape[0]] = e
            attn[i, : e.shape[0]] = 1
            labels[i, : e.shape[0]] = torch.from_numpy(s.labels)
        out = self.llm(inputs_embeds=x, attention_mask=attn, output_hidden_states=True)
        logits = out.logits[:, :-1].float()  # [B, L-1, V]
        lm_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                 ignore_index=IGNORE_INDEX, reduction="sum")
        lm_tokens = (labels[:, 1:] != IGNORE_INDEX).sum()
        last = out.hidden_states[-1]  # [B, L, hidden]

        mask_loss = last.new_zeros(())
        iou_loss = last.new_zeros(())
        n_masks = 0
        for i, s in enumerate(samples):
            if s.target_masks is None or len(s.target_masks) == 0:
                continue
            pos = torch.from_numpy(np.flatnonzero(s.input_ids == self.tokenizer.seg_id)).to(dev)
            text = self._text_states(last[i], s, with_labels=True)
            logits_m, iou = self.decode_masks(vis[i], last[i, pos][None], prompt_states[i], text,
                                              self._prompt_masks(s))
            target = torch.from_numpy(s.target_masks).to(dev)  # [Q, G, G]
            bce, dice, iou_l = mask_losses(logits_m[0], iou[0], target, balanced_bce)
            mask_loss = mask_loss + (bce + dice) * target.shape[0]
            iou_loss = iou_loss + iou_l * target.shape[0]
            n_masks += target.shape[0]
        extra = {"vision": vis} if return_vision else {}
        if reduction == "sum":
            return {"lm_sum": lm_sum, "lm_tokens": lm_tokens, "mask_sum": mask_loss,
                    "iou_sum": iou_loss, "masks": torch.tensor(n_masks, device=dev), **extra}
        lm_loss = lm_sum / lm_tokens.clamp_min(1)
        if n_masks:
            mask_loss = mask_loss / n_masks
            iou_loss = iou_loss / n_masks
        return {"loss": lm_loss + mask_loss + iou_loss, "lm_loss": lm_loss,
                "mask_loss": mask_loss, "iou_loss": iou_loss, **extra}

    def _text_states(self, last: torch.Tensor, s: Encoded, with_labels: bool):
        """[1, T, hidden] last-layer states at the prompt's text tokens (`text_positions`), with
        their input embeddings after them ([1, T, 2 * hidden]) for a decoder with
        cfg.text_embeddings, or None for a decoder that does not read them. last: [L, hidden] of
        the sample."""
        if not self.mask_decoder.text_tokens:
            return None
        tok = self.tokenizer
        pos = text_positions(s.input_ids, s.labels if with_labels else None, tok.image_id,
                             tok.region_id)
        pos = torch.from_numpy(pos).to(last.device)
        states = last[pos]  # [T, hidden]
        if self.mask_decoder.text_embeddings:  # [T, 2 * hidden]: [state, input embedding]
            ids = torch.from_numpy(s.input_ids).to(last.device)[pos]
            emb = self.llm.get_input_embeddings()(ids).to(states.dtype)
            states = torch.cat([states, emb], -1)
        return states[None]

    def _prompt_masks(self, s: Encoded) -> torch.Tensor | None:
        """[1, R, M, M] region masks of the sample's prompts, for a decoder with cfg.prompt_map
        (None for one without, or with no prompt)."""
        if not self.mask_decoder.prompt_map or not len(s.prompt_masks):
            return None
        return torch.from_numpy(s.prompt_masks).to(self.device)[None]

    def decode_masks(self, vis, seg_hidden: torch.Tensor, prompt_states: torch.Tensor,
                     text_states: torch.Tensor | None = None,
                     prompt_masks: torch.Tensor | None = None):
        """Mask logits [1, Q, G, G] (G = MaskDecoder.out_size) and IoU [1, Q] for <seg> hidden
        states [1, Q, hidden] (and, for a decoder with cfg.text_tokens, the prompt's text states
        [1, T, hidden]; for one with cfg.prompt_map, the prompts' region masks [1, R, M, M])."""
        states = prompt_states[None] if prompt_states.shape[0] else None
        if states is None:
            prompt_masks = None
        maps = list(vis.hires) + ([vis.stem] if self.mask_decoder.refine else [])
        return self.mask_decoder(seg_hidden, vis.dense, maps, states, None, text_states,
                                 prompt_masks)

    # --------------------------------------------------------------------------------------------
    # inference
    # --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, sample: Encoded, max_new_tokens: int = 64, temperature: float = 0.0,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> Generation:
        """Decodes an answer for one encoded sample (its input_ids end with the generation
        prompt), with a KV cache (or, use_cache=False, full recomputation at every step: the
        reference the cache is checked against). Greedy at temperature 0, else sampling.

        Raises:
            ValueError: max_new_tokens < 1, temperature < 0.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        tok = self.tokenizer
        vis, embeds, prompt_states = self._prepare([sample])
        x = embeds[0][None]  # [1, L, hidden]
        emb_table = self.llm.get_input_embeddings()
        generated: list[int] = []
        seg_states: list[torch.Tensor] = []
        cache = None
        step_in = x
        text = None
        for _ in range(max_new_tokens):
            if use_cache:
                out = self.llm(inputs_embeds=step_in, past_key_values=cache, use_cache=True,
                               output_hidden_states=True)
                cache = out.past_key_values
            else:
                out = self.llm(inputs_embeds=x, use_cache=False, output_hidden_states=True)
            if text is None:  # the prefill: the prompt's states
                text = self._text_states(out.hidden_states[-1][0], sample, with_labels=False)
            if generated and generated[-1] == tok.seg_id:
                seg_states.append(out.hidden_states[-1][0, -1])  # the state *at* the <seg> input
            logits = out.logits[0, -1].float()  # [V]
            if temperature == 0:
                nxt = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            generated.append(nxt)
            if nxt == tok.eos_id:
                break
            step_in = emb_table(torch.tensor([[nxt]], device=self.device))  # [1, 1, hidden]
            x = torch.cat([x, step_in], dim=1)
        if generated[-1] == tok.seg_id:  # a trailing <seg> still needs its own hidden state
            out = self.llm(inputs_embeds=x, use_cache=False, output_hidden_states=True)
            seg_states.append(out.hidden_states[-1][0, -1])
        g = self.cfg.vision.image_size // 4
        if seg_states:
            q = torch.stack(seg_states)[None]  # [1, Q, hidden]
            masks, iou = self.decode_masks(vis[0], q, prompt_states[0], text,
                                           self._prompt_masks(sample))
            masks, iou = masks[0], iou[0]
        else:
            masks = torch.zeros(0, g, g, device=self.device)
            iou = torch.zeros(0, device=self.device)
        return Generation(generated, self.decode_text(generated), masks.float(), iou.float())

    def decode_text(self, ids: list[int]) -> str:
        """Text of generated ids: eos and other special tokens dropped, <seg> kept in place."""
        return self.tokenizer.decode_answer(ids)
    # --------------------------------------------------------------------------------------------
    # persistence: config.json, model.safetensors, tokenizer.json — never pickle
    # --------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Writes the model directory (files go to temporary names, then are renamed)."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.cfg.save(path / "config.json")
        tmp = path / "model.safetensors.tmp"
        save_model(self, str(tmp))
        tmp.replace(path / "model.safetensors")
        self.tokenizer.save(path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> EarthXModel:
        """Loads a directory written by `save`.

        Raises:
            FileNotFoundError: a file of the directory is missing (the message names it).
        """
        from safetensors.torch import load_model

        path = Path(path)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not an EarthX model directory: {name} missing")
        cfg = EarthXConfig.load(path / "config.json")
        tokenizer = EarthXTokenizer.from_dir(path)
        # Built for real, not on the meta device: non-persistent buffers (rotary frequencies,
        # positional codes) are computed at construction and are not in the file.
        model = cls(_without_paths(cfg), tokenizer)
        load_model(model, str(path / "model.safetensors"))
        model = model.to(device)
        return model.eval()


def _without_paths(cfg: EarthXConfig) -> EarthXConfig:
    """The saved weights replace the pretrained directories a config may name."""
    import dataclasses

    return dataclasses.replace(
        cfg, vision=dataclasses.replace(cfg.vision, vit_path=None, convnext_path=None),
        llm=dataclasses.replace(cfg.llm, llm_path=None, tokenizer_path=None))


def _select(v, j: int):
    """Sample j of a VisionOutput, keeping a batch dimension of 1."""
    import dataclasses

    fields = {}
    for f in dataclasses.fields(v):
        val = getattr(v, f.name)
        if isinstance(val, torch.Tensor):
            fields[f.name] = val[j: j + 1]
        elif isinstance(val, (list, tuple)):
            fields[f.name] = type(val)(t[j: j + 1] for t in val)
        else:
            fields[f.name] = val
    return type(v)(**fields)


def mask_losses(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
                balanced_bce: bool = False):
    """BCE, Dice and IoU-regression losses of logits [Q, h, w] against targets [Q, h, w] in [0, 1].

    balanced_bce: positive pixels of each mask weigh sqrt(negatives / positives) (1 to 20) in the
    BCE: with targets of a few percent of the grid, plain BCE settles below 0.5 everywhere (an
    empty mask once thresholded) while the model is still unsure where the object is.

    Returns:
        (bce, dice, iou_mse): scalars, averaged over the Q masks.
    """
    logits = logits.float()
    if balanced_bce:
        pos = target.flatten(1).sum(1)  # [Q]
        neg = target[0].numel() - pos
        w = torch.sqrt(neg / pos.clamp_min(1.0)).clamp(1.0, 20.0)[:, None, None]  # [Q, 1, 1]
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=w)
    else:
        bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)  # [Q, h*w]
    t = target.flatten(1)
    # a small epsilon, not the usual +1: on the S/4 grid a target may be a few pixels, and a +1
    # smoothing term would make an empty prediction nearly free there
    dice = 1 - (2 * (p * t).sum(1) + 1e-6) / (p.sum(1) + t.sum(1) + 1e-6)
    with torch.no_grad():
        hard = (logits > 0).flatten(1).float()
        inter = (hard * t).sum(1)
        union = hard.sum(1) + t.sum(1) - inter
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return bce, dice.mean(), F.mse_loss(iou_pred.float(), iou)
