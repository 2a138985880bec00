"""The diffusion transformer f_phi of appendix C.2.3 (Table 9): an IPA text encoder and a latent
decoder with self-attention, cross-attention to the text, SwiGLU feed-forward and adaptive layer
norm on a sinusoidal time embedding. It predicts v (section 3.1) from noisy normalised latents.

Shapes: b batch, n latent frames, c latent channels, nt phonemes, d model width, l decoder layers.
Masks are bool and True on real (or prompt) positions.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dmospeech.config import DiTConfig, from_dict


def sinusoidal(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids: positions (...,) float -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class SwiGLU(nn.Module):
    """Feed-forward with SwiGLU activation: W_out (silu(W_gate x) * W_in x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_in = nn.Linear(dim, 2 * hidden, bias=False)
        self.out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.gate_in(x).chunk(2, dim=-1)
        return self.out(F.silu(gate) * value)


class Attention(nn.Module):
    """Multi-head attention (self when `context` is None) with a key padding mask."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)                      # (b, h, n, d/h)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + SwiGLU over the phonemes."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.ff = SwiGLU(cfg.dim, cfg.ff_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.ff(self.norm2(x))


class DecoderLayer(nn.Module):
    """AdaLN-modulated self-attention and SwiGLU (shift, scale, gate from the time embedding, DiT's
    adaLN-Zero) around a pre-norm cross-attention to the text."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm_self = nn.LayerNorm(cfg.dim, elementwise_affine=False)
        self.norm_cross = nn.LayerNorm(cfg.dim)
        self.norm_ff = nn.LayerNorm(cfg.dim, elementwise_affine=False)
        self.self_attn = Attention(cfg.dim, cfg.heads)
        self.cross_attn = Attention(cfg.dim, cfg.heads)
        self.ff = SwiGLU(cfg.dim, cfg.ff_dim)
        self.modulation = nn.Linear(cfg.dim, 6 * cfg.dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, time: torch.Tensor, latent_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(time))[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.self_attn(self.norm_self(x) * (1 + scale1) + shift1, latent_mask)
        x = x + self.cross_attn(self.norm_cross(x), text_mask, context=text)
        return x + gate2 * self.ff(self.norm_ff(x) * (1 + scale2) + shift2)


class DiT(nn.Module):
    """f_phi(x_t; c, m, t) -> v. `encode_text` runs once per sentence (and once for the null text);
    `decode` runs once per diffusion step."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.phoneme_embedding = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.encoder_norm = nn.LayerNorm(cfg.dim)
        self.null_text = nn.Parameter(torch.randn(cfg.dim) * 0.02)   # the "empty" condition of eq. 27
        self.latent_in = nn.Linear(cfg.latent_dim, cfg.dim)
        self.prompt_embedding = nn.Embedding(2, cfg.dim)              # m: 0 generated, 1 prompt frame
        self.time_mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.out_norm = nn.LayerNorm(cfg.dim, elementwise_affine=False)
        self.out_modulation = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.latent_out = nn.Linear(cfg.dim, cfg.latent_dim)
        for layer in (self.out_modulation, self.latent_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, part: str = "teacher", ema: bool = True) -> "DiT":
        """Rebuild from a checkpoint alone (its run_config's `model`), in eval mode."""
        from dmospeech.ops.checkpoint import load_part_weights, read_run_config

        net = cls(from_dict(DiTConfig, read_run_config(checkpoint_dir)["model"], "model"))
        net.load_state_dict(load_part_weights(checkpoint_dir, part, ema=ema))
        return net.eval()

    def check_lengths(self, frames: int, phonemes: int) -> None:
        if frames > self.cfg.max_frames or phonemes > self.cfg.max_phonemes:
            raise ValueError(f"{frames} latent frames ({frames / 40:.1f} s) and {phonemes} phonemes: this model takes "
                             f"at most {self.cfg.max_frames} frames ({self.cfg.max_frames / 40:.1f} s) and "
                             f"{self.cfg.max_phonemes} phonemes; use a shorter prompt or text")

    def encode_text(self, phonemes: torch.Tensor, phoneme_mask: torch.Tensor,
                    drop: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text condition c: phonemes (b, nt) -> ((b, nt, d), mask (b, nt)). Items with `drop` (b,) True
        get the null condition: the learned null embedding as a single key (classifier-free guidance)."""
        b, nt = phonemes.shape
        x = self.phoneme_embedding(phonemes) + sinusoidal(torch.arange(nt, device=phonemes.device), self.cfg.dim)
        for layer in self.encoder:
            x = layer(x, phoneme_mask)
        text = self.encoder_norm(x)
        if drop is not None and bool(drop.any()):
            text = torch.where(drop[:, None, None], self.null_text.to(text.dtype).expand_as(text), text)
            first = torch.arange(nt, device=phonemes.device) == 0
            phoneme_mask = torch.where(drop[:, None], first.expand(b, nt), phoneme_mask)
        return text, phoneme_mask

    def null_condition(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The null text condition alone, ((b, 1, d), (b, 1))."""
        return (self.null_text.expand(batch, 1, -1).to(device),
                torch.ones(batch, 1, dtype=torch.bool, device=device))

    def decode(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
               prompt_mask: torch.Tensor, latent_mask: torch.Tensor, return_hidden: bool = False
               ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """v for x_t (b, n, c) at t (b,); with `return_hidden`, also each decoder layer's output (b, n, d)."""
        n = x_t.shape[1]
        time = self.time_mlp(sinusoidal(t * 1000.0, self.cfg.dim))                          # (b, d)
        x = (self.latent_in(x_t) + self.prompt_embedding(prompt_mask.long())
             + sinusoidal(torch.arange(n, device=x_t.device), self.cfg.dim))
        hidden = []
        for layer in self.decoder:
            x = layer(x, time, latent_mask, text, text_mask)
            hidden.append(x)
        shift, scale = self.out_modulation(F.silu(time))[:, None].chunk(2, dim=-1)
        v = self.latent_out(self.out_norm(x) * (1 + scale) + shift)
        return (v, hidden) if return_hidden else v

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, phonemes: torch.Tensor, phoneme_mask: torch.Tensor,
                prompt_mask: torch.Tensor, latent_mask: torch.Tensor, drop_text: Optional[torch.Tensor] = None,
                return_hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        text, text_mask = self.encode_text(phonemes, phoneme_mask, drop_text)
        return self.decode(x_t, t, text, text_mask, prompt_mask, latent_mask, return_hidden)
