"""Diffusion maths of the teacher (section 3.1, appendix C.2) as pure functions.

Conventions are those of docs/equations.md C1-C4 (the extracted paper garbles some formulas).
Time t is in [0, 1] (1 = pure noise) and given per batch item, shape (b,) or a
scalar; `alpha`/`sigma` broadcast against tensors of any shape whose first axis is b.

Shapes: b batch, n latent frames, c latent channels.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

import torch

from dmospeech.config import DiffusionConfig

if TYPE_CHECKING:
    from dmospeech.teacher.dit import DiT

LOGSNR_LIMIT = 15.0  # docs/equations.md C1: logsnr clamped so t = 0 and t = 1 stay finite

VFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (b, n, c), t (b,)) -> v (b, n, c)


def per_item(a: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """A per-item (b,) tensor reshaped to broadcast against `like` (b, ...); scalars pass through."""
    if isinstance(a, torch.Tensor) and a.ndim >= 1 and a.ndim < like.ndim:
        return a.reshape(*a.shape, *([1] * (like.ndim - a.ndim)))
    return a


def logsnr(t: torch.Tensor, shift: float = 0.5) -> torch.Tensor:
    """Shifted cosine log-SNR, eqs. 14-16 / docs/equations.md C1: -2 log tan(pi t / 2) + 2 log s, clamped."""
    t64 = torch.as_tensor(t, dtype=torch.float64)
    half = 0.5 * math.pi * t64
    log_tan = torch.log(torch.sin(half).clamp_min(1e-30)) - torch.log(torch.cos(half).clamp_min(1e-30))
    return (-2.0 * log_tan + 2.0 * math.log(shift)).clamp(-LOGSNR_LIMIT, LOGSNR_LIMIT)


def shifted_cosine(t: torch.Tensor, shift: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) of the variance-preserving shifted cosine schedule, eqs. 14-17 / docs/equations.md C1:
    alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)), so alpha^2 + sigma^2 = 1."""
    t = torch.as_tensor(t)
    dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    lam = logsnr(t, shift)
    return torch.sigmoid(lam).sqrt().to(dtype), torch.sigmoid(-lam).sqrt().to(dtype)


def diffuse(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Forward process, eq. 18: x_t = alpha x0 + sigma eps."""
    return per_item(alpha, x0) * x0 + per_item(sigma, x0) * eps


def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Velocity, section 3.1 / docs/equations.md C2: v = alpha eps - sigma x0."""
    return per_item(alpha, x0) * eps - per_item(sigma, x0) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean estimate, algorithm 1 line 5 / docs/equations.md C2: x0 = alpha x_t - sigma v."""
    return per_item(alpha, x_t) * x_t - per_item(sigma, x_t) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Noise estimate, eq. 5 solved for eps in the v form, docs/equations.md C2: eps = sigma x_t + alpha v."""
    return per_item(sigma, x_t) * x_t + per_item(alpha, x_t) * v


def guided_velocity(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on the model output, eq. 27 / docs/equations.md C4: cond + w (cond - uncond)."""
    return cond + scale * (cond - uncond)


def impose_prompt(x: torch.Tensor, prompt: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """Section 3.1 / algorithm 1 lines 3 and 6: x (1 - m) + x_prompt m, with m (b, n) bool."""
    return torch.where(prompt_mask.unsqueeze(-1), prompt, x)


def random_prompt_mask(lengths: torch.Tensor, max_fraction: float = 0.5,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Section 3.1: per item a contiguous prompt span covering a uniform 0-`max_fraction` of its
    length, at a uniform position. lengths (b,) -> mask (b, max length) bool, True on prompt frames."""
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    fraction = torch.rand(len(lengths), generator=generator) * max_fraction
    span = torch.floor(fraction * lengths).long()
    start = torch.floor(torch.rand(len(lengths), generator=generator) * (lengths - span + 1)).long()
    frames = torch.arange(int(lengths.max()) if len(lengths) else 0)
    return (frames >= start[:, None]) & (frames < (start + span)[:, None])


def diffusion_loss(net: "DiT", batch: dict[str, torch.Tensor], cfg: DiffusionConfig, text_dropout: float = 0.0,
                   t: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                   prompt_mask: Optional[torch.Tensor] = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Diffusion loss, eq. 1 (docs/equations.md C2): mean squared error between v = alpha eps - sigma x0 and
    f(x_t; c, m, t) over the generated frames (outside the prompt span, inside each item). x_t keeps
    the clean latents on the prompt span (section 3.1), a random span unless `prompt_mask` (b, n) is
    given. `batch` is a `collate_latent_text` batch."""
    x0, latent_mask = batch["latents"], batch["latent_mask"]
    b, device = len(x0), x0.device
    draw = lambda *shape: torch.rand(*shape, generator=generator).to(device)  # noqa: E731
    if prompt_mask is None:
        prompt_mask = random_prompt_mask(latent_mask.sum(1), cfg.prompt_max_fraction, generator).to(device)
    prompt_mask = prompt_mask & latent_mask
    t = draw(b) if t is None else t
    eps = torch.randn(x0.shape, generator=generator).to(device)
    alpha, sigma = shifted_cosine(t, cfg.shift)
    x_t = impose_prompt(diffuse(x0, eps, alpha, sigma), x0, prompt_mask)
    drop = draw(b) < text_dropout
    v_hat = net(x_t, t, batch["phonemes"], batch["phoneme_mask"], prompt_mask, latent_mask, drop_text=drop)
    generated = (latent_mask & ~prompt_mask).unsqueeze(-1).to(x0.dtype)                     # (b, n, 1)
    error = (v_hat.float() - v_target(x0, eps, alpha, sigma).float()) ** 2 * generated
    loss = error.sum() / (generated.sum() * x0.shape[-1]).clamp_min(1.0)
    return {"diffusion/loss": loss}, {"diffusion/loss": float(loss.detach()), "diffusion/prompt_fraction":
                                      float(prompt_mask.sum() / latent_mask.sum())}
