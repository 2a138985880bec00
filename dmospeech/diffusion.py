"""Diffusion maths of the teacher (section 3.1, appendix C.2) as pure functions.

Conventions are those of `../shared/paper/NOTES.md` §1-§4 (the extracted paper garbles some
formulas). Time t is in [0, 1] (1 = pure noise) and given per batch item, shape (b,) or a
scalar; `alpha`/`sigma` broadcast against tensors of any shape whose first axis is b.

Shapes: b batch, n latent frames, c latent channels.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

LOGSNR_LIMIT = 15.0  # NOTES §1: logsnr clamped so t = 0 and t = 1 stay finite

VFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (b, n, c), t (b,)) -> v (b, n, c)


def _expand(a: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """A per-item (b,) tensor reshaped to broadcast against `like` (b, ...); scalars pass through."""
    if isinstance(a, torch.Tensor) and a.ndim >= 1 and a.ndim < like.ndim:
        return a.reshape(*a.shape, *([1] * (like.ndim - a.ndim)))
    return a


def logsnr(t: torch.Tensor, shift: float = 0.5) -> torch.Tensor:
    """Shifted cosine log-SNR, eqs. 14-16 / NOTES §1: -2 log tan(pi t / 2) + 2 log s, clamped."""
    t64 = torch.as_tensor(t, dtype=torch.float64)
    half = 0.5 * math.pi * t64
    log_tan = torch.log(torch.sin(half).clamp_min(1e-30)) - torch.log(torch.cos(half).clamp_min(1e-30))
    return (-2.0 * log_tan + 2.0 * math.log(shift)).clamp(-LOGSNR_LIMIT, LOGSNR_LIMIT)


def shifted_cosine(t: torch.Tensor, shift: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) of the variance-preserving shifted cosine schedule, eqs. 14-17 / NOTES §1:
    alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)), so alpha^2 + sigma^2 = 1."""
    t = torch.as_tensor(t)
    dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    lam = logsnr(t, shift)
    return torch.sigmoid(lam).sqrt().to(dtype), torch.sigmoid(-lam).sqrt().to(dtype)


def diffuse(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Forward process, eq. 18: x_t = alpha x0 + sigma eps."""
    return _expand(alpha, x0) * x0 + _expand(sigma, x0) * eps


def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Velocity, section 3.1 / NOTES §2: v = alpha eps - sigma x0."""
    return _expand(alpha, x0) * eps - _expand(sigma, x0) * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean estimate, algorithm 1 line 5 / NOTES §2: x0 = alpha x_t - sigma v."""
    return _expand(alpha, x_t) * x_t - _expand(sigma, x_t) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Noise estimate, NOTES §2: eps = sigma x_t + alpha v."""
    return _expand(sigma, x_t) * x_t + _expand(alpha, x_t) * v


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on the model output, eq. 27 / NOTES §4: cond + w (cond - uncond)."""
    return cond + scale * (cond - uncond)


def impose_prompt(x: torch.Tensor, prompt: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """Section 3.1 / algorithm 1 lines 3 and 6: x (1 - m) + x_prompt m, with m (b, n) bool."""
    return torch.where(prompt_mask.unsqueeze(-1), prompt, x)


def ddpm_step(x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor, noise: torch.Tensor,
              shift: float = 0.5) -> torch.Tensor:
    """One ancestral step t -> s < t, eq. 28 written with x0_hat (NOTES §3): a draw from the posterior
    q(x_s | x_t, x0_hat) of the schedule, mean (alpha_ts sigma_s^2 / sigma_t^2) x_t + (alpha_s sigma_ts^2 /
    sigma_t^2) x0_hat and variance sigma_ts^2 sigma_s^2 / sigma_t^2; items with s == 0 get x0_hat."""
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
    s = torch.as_tensor(s, dtype=x_t.dtype, device=x_t.device)
    alpha_t, sigma_t = shifted_cosine(t, shift)
    alpha_s, sigma_s = shifted_cosine(s, shift)
    alpha_ts = alpha_t / alpha_s
    sigma_ts2 = (sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2).clamp_min(0.0)
    mean = (_expand(alpha_ts * sigma_s ** 2 / sigma_t ** 2, x_t) * x_t
            + _expand(alpha_s * sigma_ts2 / sigma_t ** 2, x_t) * x0_hat)
    std = _expand((sigma_ts2 * sigma_s ** 2 / sigma_t ** 2).sqrt(), x_t)
    return torch.where(_expand(s == 0, x_t), x0_hat, mean + std * noise)


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


def sample_ddpm(v_fn: VFunction, noise: torch.Tensor, prompt: torch.Tensor, prompt_mask: torch.Tensor, steps: int,
                shift: float = 0.5, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Teacher sampler, eq. 28 / NOTES §3: `steps` uniform steps from t = 1 to 0, prompt frames
    re-imposed on x_t before every network call and on each x0 estimate. `v_fn` is the (guided)
    network; noise, prompt (b, n, c); prompt_mask (b, n). Returns x0 (b, n, c)."""
    if steps < 1:
        raise ValueError(f"sample_ddpm: steps must be >= 1, got {steps}")
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=noise.dtype, device=noise.device)
    x = noise
    for i in range(steps):
        t = times[i].expand(len(x))
        x = impose_prompt(x, prompt, prompt_mask)
        alpha, sigma = shifted_cosine(t, shift)
        x0_hat = impose_prompt(x0_from_v(x, v_fn(x, t), alpha, sigma), prompt, prompt_mask)
        fresh = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = ddpm_step(x, x0_hat, t, times[i + 1].expand(len(x)), fresh, shift)
    return impose_prompt(x, prompt, prompt_mask)
