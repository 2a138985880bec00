"""The diffusion transformer f_phi of appendix C.2.3 (Table 9): an IPA text encoder and a latent
decoder with self-attention, cross-attention to the text, SwiGLU feed-forward and adaptive layer
norm on a sinusoidal time embedding. It predicts v (section 3.1) from noisy normalised latents.

Shapes: b batch, n latent frames, c latent channels, nt phonemes, d model width, l decoder layers.
Masks are bool and True on real (or prompt) positions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
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


def check_lengths(cfg: DiTConfig, frames: int, phonemes: int) -> None:
    """ValueError when a sentence is longer than the model `cfg` takes (torch or an ONNX export of it)."""
    if frames > cfg.max_frames or phonemes > cfg.max_phonemes:
        raise ValueError(f"{frames} latent frames ({frames / 40:.1f} s) and {phonemes} phonemes: this model takes "
                         f"at most {cfg.max_frames} frames ({cfg.max_frames / 40:.1f} s) and "
                         f"{cfg.max_phonemes} phonemes; use a shorter prompt or text")


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

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, m, d) -> keys, values, each (b, h, m, d/h)."""
        k, v = self.kv(context).view(context.shape[0], context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor], context: Optional[torch.Tensor] = None,
                kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """`kv`: keys and values of `context` computed beforehand; `key_mask` None: every key is real."""
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)                      # (b, h, n, d/h)
        k, v = self.keys_values(x if context is None else context) if kv is None else kv
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if key_mask is None else key_mask[:, None, None, :])
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

    def forward(self, x: torch.Tensor, time: torch.Tensor, latent_mask: Optional[torch.Tensor],
                text_kv: tuple[torch.Tensor, torch.Tensor], text_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x (b, n, d), time (b, d); text_kv: `cross_attn.keys_values(text)`, computed once per sentence."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(time))[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.self_attn(self.norm_self(x) * (1 + scale1) + shift1, latent_mask)
        x = x + self.cross_attn(self.norm_cross(x), text_mask, kv=text_kv)
        return x + gate2 * self.ff(self.norm_ff(x) * (1 + scale2) + shift2)


@dataclass
class StepContext:
    """What `decode` computes from the sentence alone, the same at every diffusion step (`DiT.step_context`)."""
    prompt: torch.Tensor                              # (b, n, d) prompt embedding of m
    positions: torch.Tensor                           # (n, d) sinusoidal frame positions
    text_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: cross-attention keys, values (b, h, nt, d/h)
    text_mask: Optional[torch.Tensor]                 # (b, nt); None: every key is real
    latent_mask: Optional[torch.Tensor]               # (b, n); None: every frame is real


class DiT(nn.Module):
    """f_phi(x_t; c, m, t) -> v. `encode_text` runs once per sentence (and once for the null text);
    `decode` runs once per diffusion step, or `decode_step` on a `step_context` built once per sentence."""

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
        check_lengths(self.cfg, frames, phonemes)

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

    def text_keys_values(self, text: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention keys and values of the text (b, nt, d), each (b, h, nt, d/h)."""
        return [layer.cross_attn.keys_values(text) for layer in self.decoder]

    def step_context(self, text_kv: list[tuple[torch.Tensor, torch.Tensor]], text_mask: Optional[torch.Tensor],
                     prompt_mask: torch.Tensor, latent_mask: Optional[torch.Tensor],
                     drop_full_masks: bool = False) -> StepContext:
        """decode's step-independent inputs from `text_keys_values(text)`, masks (b, nt), (b, n), (b, n)
        (None: all True). With `drop_full_masks`, a mask that is True everywhere becomes None."""
        n = prompt_mask.shape[1]
        full = lambda mask: None if mask is None or (drop_full_masks and bool(mask.all())) else mask  # noqa: E731
        return StepContext(self.prompt_embedding(prompt_mask.long()),
                           sinusoidal(torch.arange(n, device=prompt_mask.device), self.cfg.dim), text_kv,
                           full(text_mask), full(latent_mask))

    def decode(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
               prompt_mask: torch.Tensor, latent_mask: torch.Tensor, return_hidden: bool = False
               ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """v for x_t (b, n, c) at t (b,); with `return_hidden`, also each decoder layer's output (b, n, d)."""
        ctx = self.step_context(self.text_keys_values(text), text_mask, prompt_mask, latent_mask)
        return self.decode_step(x_t, t, ctx, return_hidden)

    def decode_step(self, x_t: torch.Tensor, t: torch.Tensor, ctx: StepContext, return_hidden: bool = False
                    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """`decode` with its sentence-level part `ctx` computed beforehand."""
        time = self.time_mlp(sinusoidal(t * 1000.0, self.cfg.dim))                          # (b, d)
        x = self.latent_in(x_t) + ctx.prompt + ctx.positions
        hidden = []
        for layer, text_kv in zip(self.decoder, ctx.text_kv):
            x = layer(x, time, ctx.latent_mask, text_kv, ctx.text_mask)
            hidden.append(x)
        shift, scale = self.out_modulation(F.silu(time))[:, None].chunk(2, dim=-1)
        v = self.latent_out(self.out_norm(x) * (1 + scale) + shift)
        return (v, hidden) if return_hidden else v

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, phonemes: torch.Tensor, phoneme_mask: torch.Tensor,
                prompt_mask: torch.Tensor, latent_mask: torch.Tensor, drop_text: Optional[torch.Tensor] = None,
                return_hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        text, text_mask = self.encode_text(phonemes, phoneme_mask, drop_text)
        return self.decode(x_t, t, text, text_mask, prompt_mask, latent_mask, return_hidden)
