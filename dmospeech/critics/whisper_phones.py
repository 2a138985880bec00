"""A CTC phone recogniser over Whisper encoder states: the teacher of the latent recogniser's posterior
distillation in the tiny CPU profile (train_asr_critic.distill.posterior_weight).

Half an hour of speech is too little for a conformer to learn CTC from codec latents, but the encoder
of the packaged Whisper base already separates phones: a two-convolution CTC head fitted on its states
of the training segments (a few CPU-minutes) reads held-out speech far better than anything trained
from scratch on the latents can. Its per-frame phone posteriors, computed at the latents' 40 Hz, then
supervise every frame of the latent recogniser (frame-level knowledge distillation of CTC, Takashima
et al., 2018), where CTC alone gives one sequence-level signal per segment. The latent recogniser stays
the critic: it reads latents only, and this head is not used after training.

The same head reads any per-frame features: benchmarks/probe_phones.py fits it on codec latents, a
log-mel and Whisper states to measure how much phone information each representation carries.

Shapes: n frames at 40 Hz, d feature width, V vocabulary size (CTC blank = id 0, as in critics.asr).
"""
from __future__ import annotations

import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dmospeech.config import PhoneHeadConfig
from dmospeech.codec.latent_text import pad_stack
from dmospeech.critics.asr import ctc_loss, greedy_decode, phone_error_rate, posterior_distill_loss


class ConvPhoneHead(nn.Module):
    """Standardised features (b, n, d) + mask (b, n) -> phone logits (b, n, V): a linear
    projection, two residual GELU convolutions (kernel 5, padded frames zeroed before each), a linear
    read-out."""

    def __init__(self, feature_dim: int, vocab_size: int, cfg: PhoneHeadConfig):
        super().__init__()
        self.input = nn.Linear(feature_dim, cfg.dim)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.dim, 5, padding=2) for _ in range(2))
        self.output = nn.Linear(cfg.dim, vocab_size)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].float()
        x = F.gelu(self.input(features)).transpose(1, 2) * keep                  # (b, dim, n)
        for conv in self.convs:
            x = (x + F.gelu(conv(x))) * keep
        return self.output(x.transpose(1, 2))


def _batch(features: Sequence[torch.Tensor], phonemes: Sequence[Sequence[int]] | None = None):
    """Padded (b, n, d) features and their mask, plus padded ids and their mask when `phonemes` are given."""
    x, mask = pad_stack([f.float() for f in features])
    if phonemes is None:
        return x, mask
    ids, ids_mask = pad_stack([torch.tensor(p, dtype=torch.long) for p in phonemes], 0)
    return x, mask, ids, ids_mask


def fit_phone_head(features: Sequence[torch.Tensor], phonemes: Sequence[Sequence[int]], vocab_size: int,
                   cfg: PhoneHeadConfig, seed: int = 0,
                   teacher_log_probs: Sequence[torch.Tensor] | None = None) -> ConvPhoneHead:
    """A `ConvPhoneHead` fitted with the CTC loss (eq. 29) for `cfg.steps` AdamW steps of
    `cfg.batch_items` segments, shuffled per epoch with `seed`. `features[i]` are segment i's
    standardised features at 40 Hz (n_i, d), `phonemes[i]` its target ids; with `teacher_log_probs`
    ((n_i, V) per segment) the KL to them is added (critics.asr.posterior_distill_loss). A few hundred
    small steps with no checkpoint, EMA or validation, so it is a plain function rather than a task of
    the shared training loop; returned in eval mode and frozen."""
    if len(features) != len(phonemes) or not features:
        raise ValueError(f"fit_phone_head: {len(features)} feature sequences for {len(phonemes)} targets")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = ConvPhoneHead(features[0].shape[-1], vocab_size, cfg)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=1e-2)
    order, rng, step = list(range(len(features))), random.Random(seed), 0
    head.train()
    while step < cfg.steps:
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_items):
            chosen = order[start: start + cfg.batch_items]
            x, mask, ids, ids_mask = _batch([features[i] for i in chosen], [phonemes[i] for i in chosen])
            logits = head(x, mask)
            loss = ctc_loss(logits, mask, ids, ids_mask)[0]["ctc/loss"]
            if teacher_log_probs is not None:
                targets = pad_stack([teacher_log_probs[i].float() for i in chosen])[0]
                loss = loss + posterior_distill_loss(logits, targets, mask)[0]["posterior/loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == cfg.steps:
                break
    return head.eval().requires_grad_(False)


@torch.no_grad()
def phone_log_posteriors(head: ConvPhoneHead, features: Sequence[torch.Tensor], batch_items: int = 8
                         ) -> list[torch.Tensor]:
    """Per segment, the head's log-softmax over the vocabulary (n_i, V) float16, one row per frame."""
    out = []
    for start in range(0, len(features), batch_items):
        chunk = features[start: start + batch_items]
        x, mask = _batch(chunk)
        log_probs = head(x, mask).float().log_softmax(-1)
        out += [lp[:len(s)].to(torch.float16) for lp, s in zip(log_probs, chunk)]
    return out


@torch.no_grad()
def head_phone_error_rate(head: ConvPhoneHead, features: Sequence[torch.Tensor],
                          phonemes: Sequence[Sequence[int]], batch_items: int = 8) -> float:
    """Phone error rate (critics.asr.phone_error_rate) of the head's greedy decoding."""
    hyps = []
    for start in range(0, len(features), batch_items):
        x, mask = _batch(features[start: start + batch_items])
        hyps += greedy_decode(head(x, mask), mask)
    return phone_error_rate(hyps, [list(p) for p in phonemes])
