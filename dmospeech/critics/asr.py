"""The latent CTC phoneme recogniser of appendix C.3: a conformer stack over normalised codec latents
with a per-frame softmax over the IPA vocabulary, trained with CTC (eq. 29-30). Frozen, it is the
critic C of the student's CTC loss (eq. 9); fine-tuned, it is the speaker verifier's feature
extractor (appendix C.4).

Shapes: b batch, n latent frames (40 Hz), c latent channels, d width, h heads, V vocabulary size,
nt phonemes.

Blank: the vocabulary's pad id 0 ("_"), which never occurs in a target, so the logits have V
columns (no extra blank index) and padded targets (0) need no remapping.

The conformer (Gulati et al., 2020) is written here rather than taken from torchaudio, whose
convolution module reads padded frames and whose attention has no positions: every block here
zeroes padded frames before its depthwise convolution and uses rotary positions, so an item's
outputs do not depend on what it is batched with.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dmospeech.config import LatentASRConfig, from_dict

BLANK = 0
TASK = "asr_critic"


def rotary_tables(n: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of rotary position embeddings (Su et al., 2021), each (n, head_dim / 2)."""
    freqs = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.arange(n, device=device).float()[:, None] * freqs[None]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the (even, odd) feature pairs of (b, h, n, hd) by the position angles."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class FeedForward(nn.Module):
    """Conformer half-step feed-forward module: LN -> Linear(d, ff) -> SiLU -> Linear(ff, d)."""

    def __init__(self, dim: int, ff_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ff_dim), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(ff_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions; padded frames are never attended to."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"LatentASRConfig: dim {dim} must split into {heads} heads of even width")
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                                   # each (b, h, n, hd)
        q, k = rotate(q, *rope), rotate(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.out(y.transpose(1, 2).reshape(b, n, d)))


class ConvModule(nn.Module):
    """Conformer convolution module: LN -> pointwise GLU -> depthwise conv over real frames only ->
    LN -> SiLU -> pointwise. LayerNorm replaces BatchNorm so statistics never mix items or padding."""

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"LatentASRConfig.conv_kernel must be odd, got {kernel}")
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.depthwise_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1) * mask[..., None]   # (b, n, d), zero padding
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pointwise_out(F.silu(self.depthwise_norm(y))))


class ConformerBlock(nn.Module):
    """x + FF/2, x + MHSA, x + Conv, x + FF/2, LayerNorm (Gulati et al., 2020, eq. 1); padded frames -> 0."""

    def __init__(self, cfg: LatentASRConfig):
        super().__init__()
        self.ff1 = FeedForward(cfg.dim, cfg.ff_dim, cfg.dropout)
        self.attention = SelfAttention(cfg.dim, cfg.heads, cfg.dropout)
        self.conv = ConvModule(cfg.dim, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(cfg.dim, cfg.ff_dim, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attention(x, mask, rope)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x) * mask[..., None]


class LatentASR(nn.Module):
    """Latents (b, n, c) normalised + latent_mask (b, n) -> {"logits": (b, n, V), "hidden": (b, n, d)},
    plus "distill": (b, n, distill_dim) when `cfg.distill_dim` > 0 (the auxiliary head's prediction
    of Whisper encoder states from block `cfg.distill_block`, used only in training)."""

    def __init__(self, cfg: LatentASRConfig):
        super().__init__()
        if cfg.distill_dim < 0 or (cfg.distill_dim and not 1 <= cfg.distill_block <= cfg.layers):
            raise ValueError(f"LatentASRConfig: distill_block {cfg.distill_block} must name one of the {cfg.layers} "
                             f"blocks (1-based) when distill_dim ({cfg.distill_dim}) > 0")
        self.cfg = cfg
        self.input = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.dim), nn.Dropout(cfg.dropout))
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.layers))
        self.head = nn.Linear(cfg.dim, cfg.vocab_size)
        self.distill_head = nn.Linear(cfg.dim, cfg.distill_dim) if cfg.distill_dim else None

    def block_outputs(self, latents: torch.Tensor, latent_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every conformer block's output, each (b, n, d), zero on padded frames."""
        if latents.ndim != 3 or latents.shape[-1] != self.cfg.latent_dim:
            raise ValueError(f"LatentASR expects (b, n, {self.cfg.latent_dim}) latents, got {tuple(latents.shape)}")
        if latent_mask.shape != latents.shape[:2]:
            raise ValueError(f"latent_mask {tuple(latent_mask.shape)} does not match latents {tuple(latents.shape)}")
        if not bool(latent_mask.any(dim=1).all()):
            raise ValueError("LatentASR: an item of the batch has no real frame (a latent_mask row is all False)")
        mask = latent_mask.bool()
        rope = rotary_tables(latents.shape[1], self.cfg.dim // self.cfg.heads, latents.device)
        x = self.input(latents) * mask[..., None]                          # (b, n, d)
        outputs = []
        for block in self.blocks:
            x = block(x, mask, rope)
            outputs.append(x)
        return outputs

    def forward(self, latents: torch.Tensor, latent_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.block_outputs(latents, latent_mask)
        out = {"logits": self.head(outputs[-1]), "hidden": outputs[-1]}
        if self.distill_head is not None:
            out["distill"] = self.distill_head(outputs[self.cfg.distill_block - 1])
        return out

    def without_distill_head(self) -> "LatentASR":
        """This recogniser without its training-only Whisper-state head (the speaker verifier's
        feature extractor has no use for it); its config says distill_dim 0."""
        self.distill_head = None
        self.cfg = replace(self.cfg, distill_dim=0, distill_block=0)
        return self

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path) -> "LatentASR":
        """The recogniser of a `train_asr_critic` checkpoint with its EMA weights, in eval mode and
        frozen (requires_grad False): gradients still flow through it to the input latents."""
        from dmospeech.ops.checkpoint import load_part_weights, read_run_config

        run_config = read_run_config(checkpoint_dir)
        if run_config.get("task") != TASK:
            raise ValueError(f"{checkpoint_dir} is a {run_config.get('task')!r} checkpoint, not {TASK!r}: pass a "
                             "checkpoint folder of train_asr_critic (e.g. data/models/asr_critic/step_<n>)")
        asr = cls(from_dict(LatentASRConfig, run_config["model"], "model"))
        asr.load_state_dict(load_part_weights(checkpoint_dir, "asr", ema=True))
        return asr.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- CTC
def ctc_min_frames(phonemes: torch.Tensor, phoneme_mask: torch.Tensor) -> torch.Tensor:
    """(b,) fewest frames a CTC alignment of each target needs: its length plus one blank between
    each pair of equal neighbours."""
    mask = phoneme_mask.bool()
    repeats = (phonemes[:, 1:] == phonemes[:, :-1]) & mask[:, 1:] & mask[:, :-1]
    return mask.sum(1) + repeats.sum(1)


def ctc_loss(logits: torch.Tensor, latent_mask: torch.Tensor, phonemes: torch.Tensor,
             phoneme_mask: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """CTC loss -log p(y | o) of eq. 29 with the softmax of eq. 30 (eq. 9 when the logits are the
    frozen recogniser's reading of the student's latents), blank = id 0.

    Each item's loss is divided by its target length, then averaged over the items that have an
    alignment. An item whose target needs more frames than it has (`ctc_min_frames`) has none:
    it is left out of the mean and counted in logs["ctc/impossible"] instead of crashing or
    returning inf. Returns ({"ctc/loss": scalar tensor}, {"ctc/loss", "ctc/impossible"}).
    """
    mask = phoneme_mask.bool()
    if bool((phonemes[mask] == BLANK).any()):
        rows = sorted({int(r) for r in (phonemes.eq(BLANK) & mask).nonzero()[:, 0]})
        raise ValueError(f"ctc_loss: targets of batch rows {rows} hold id {BLANK} (the pad/blank) inside "
                         "phoneme_mask; pad targets after their end only")
    input_lengths = latent_mask.sum(1).long()
    target_lengths = mask.sum(1).long()
    possible = ctc_min_frames(phonemes, mask) <= input_lengths                    # (b,)
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)                 # (n, b, V)
    per_item = F.ctc_loss(log_probs, phonemes.long(), input_lengths, target_lengths, blank=BLANK,
                          reduction="none", zero_infinity=True)                # (b,)
    per_item = per_item / target_lengths.clamp(min=1)
    loss = torch.where(possible, per_item, torch.zeros_like(per_item)).sum() / possible.sum().clamp(min=1)
    return {"ctc/loss": loss}, {"ctc/loss": float(loss.detach()), "ctc/impossible": float((~possible).sum())}


def posterior_distill_loss(logits: torch.Tensor, teacher_log_probs: torch.Tensor, latent_mask: torch.Tensor
                           ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Frame-level knowledge distillation of CTC (Takashima et al., 2018): KL(p_teacher || p_model) of
    each real frame's distribution over the vocabulary (blank included), averaged over the real frames
    of the batch. `logits` (b, n, V) are the recogniser's, `teacher_log_probs` (b, n, V) log-softmax
    outputs of the teacher on the same frames. Returns ({"posterior/loss"}, {"posterior/loss",
    "posterior/agreement"}), agreement = share of frames where both argmaxes coincide."""
    if logits.shape != teacher_log_probs.shape:
        raise ValueError(f"posterior_distill_loss: logits {tuple(logits.shape)} and teacher log-probabilities "
                         f"{tuple(teacher_log_probs.shape)} differ")
    mask = latent_mask.bool()
    log_q = logits.float().log_softmax(-1)[mask]                                  # (frames, V)
    log_p = teacher_log_probs.float()[mask]
    loss = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    agreement = (log_q.argmax(-1) == log_p.argmax(-1)).float().mean()
    return {"posterior/loss": loss}, {"posterior/loss": float(loss.detach()), "posterior/agreement": float(agreement)}


def greedy_decode(logits: torch.Tensor, latent_mask: torch.Tensor) -> list[list[int]]:
    """Best path per item: argmax over real frames, repeats collapsed, blanks removed."""
    best = logits.argmax(-1).cpu()                                             # (b, n)
    lengths = latent_mask.sum(1).cpu().tolist()
    out = []
    for path, n in zip(best.tolist(), lengths):
        path = path[:n]
        out.append([p for i, p in enumerate(path) if p != BLANK and (i == 0 or p != path[i - 1])])
    return out


def edit_distance(hyp: Sequence[int], ref: Sequence[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions) between two id sequences."""
    row = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        prev, row[0] = row[0], i
        for j, r in enumerate(ref, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (h != r))
    return row[-1]


def phone_error_rate(hyps: Sequence[Sequence[int]], refs: Sequence[Sequence[int]]) -> float:
    """Corpus phone error rate: total edit distance over total reference length (every vocabulary
    symbol counts, stress marks, spaces and punctuation included)."""
    if len(hyps) != len(refs):
        raise ValueError(f"phone_error_rate: {len(hyps)} hypotheses but {len(refs)} references")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("phone_error_rate: the references are empty")
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / total
