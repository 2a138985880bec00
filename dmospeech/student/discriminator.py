"""The DMD2 discriminator D of section 3.2: a conformer over the stacked hidden states of every
decoder layer of the student score network g_psi on a noisy input, with the text embedding, the
prompt mask and the time step; one realness logit per latent frame (LSGAN, eqs. 7-8).

Shapes: b batch, n latent frames, l score-network decoder layers, ds its width, d this width,
nt phonemes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchaudio.models import Conformer

from dmospeech.config import LatentDiscriminatorConfig
from dmospeech.teacher.dit import sinusoidal


class LatentDiscriminator(nn.Module):
    def __init__(self, cfg: LatentDiscriminatorConfig, score_dim: int, score_layers: int):
        super().__init__()
        self.cfg = cfg
        self.hidden_in = nn.Linear(score_layers * score_dim, cfg.dim)
        self.text_in = nn.Linear(score_dim, cfg.dim)
        self.prompt_embedding = nn.Embedding(2, cfg.dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.conformer = Conformer(input_dim=cfg.dim, num_heads=cfg.heads, ffn_dim=cfg.ff_dim, num_layers=cfg.layers,
                                   depthwise_conv_kernel_size=cfg.conv_kernel)
        self.head = nn.Linear(cfg.dim, 1)

    def forward(self, hidden: Sequence[torch.Tensor], text: torch.Tensor, text_mask: torch.Tensor,
                prompt_mask: torch.Tensor, latent_mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """hidden: l x (b, n, ds); text (b, nt, ds) with text_mask (b, nt); t (b,) -> logits (b, n)."""
        keep = text_mask.unsqueeze(-1).to(text.dtype)
        pooled = (text * keep).sum(1) / keep.sum(1).clamp_min(1.0)                             # (b, ds)
        x = (self.hidden_in(torch.cat(list(hidden), dim=-1)) + self.prompt_embedding(prompt_mask.long())
             + (self.text_in(pooled) + self.time_mlp(sinusoidal(t * 1000.0, self.cfg.dim)))[:, None])
        lengths = latent_mask.sum(1).to(torch.int32)
        x, _ = self.conformer(x, lengths)
        return self.head(x).squeeze(-1)
