"""Samplers of the diffusion model (eq. 28 and algorithm 1), as pure functions with one signature
(k-diffusion's habit), and the sentence-level entry points that run them on a DiT.

    sampler(x0_fn, noise, prompt, prompt_mask, times, shift, generator) -> x0

`x0_fn(x_t, t)` is the network as a clean-latent predictor (`x0_function` turns a v-predictor into
one, `guided_v_function` adds classifier-free guidance); `times` are the times at which it is
called, t_0 = 1 first. Conventions: docs/equations.md C1 (schedule), C2 (v), C3 and C6 (samplers).

Shapes: b batch, n latent frames, c latent channels, nt phonemes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from dmospeech.config import TeacherSamplerConfig
from dmospeech.teacher.diffusion import (VFunction, per_item, diffuse, guided_velocity, impose_prompt, shifted_cosine,
                                         x0_from_v)
from dmospeech.teacher.dit import DiT

XFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (b, n, c), t (b,)) -> x0 estimate (b, n, c)
Sampler = Callable[..., torch.Tensor]  # (x0_fn, noise, prompt, prompt_mask, times, shift, generator) -> x0


def x0_function(v_fn: VFunction, shift: float) -> XFunction:
    """A v-predicting network as an x0 predictor: x0 = alpha x_t - sigma v (eq. 5, docs/equations.md C2)."""
    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = shifted_cosine(t, shift)
        return x0_from_v(x, v_fn(x, t), alpha, sigma)
    return fn


def ddpm_step(x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor, noise: torch.Tensor,
              shift: float = 0.5) -> torch.Tensor:
    """One ancestral step t -> s < t, eq. 28 written with x0_hat (docs/equations.md C3): a draw from the posterior
    q(x_s | x_t, x0_hat) of the schedule, mean (alpha_ts sigma_s^2 / sigma_t^2) x_t + (alpha_s sigma_ts^2 /
    sigma_t^2) x0_hat and variance sigma_ts^2 sigma_s^2 / sigma_t^2; items with s == 0 get x0_hat."""
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
    s = torch.as_tensor(s, dtype=x_t.dtype, device=x_t.device)
    alpha_t, sigma_t = shifted_cosine(t, shift)
    alpha_s, sigma_s = shifted_cosine(s, shift)
    alpha_ts = alpha_t / alpha_s
    sigma_ts2 = (sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2).clamp_min(0.0)
    mean = (per_item(alpha_ts * sigma_s ** 2 / sigma_t ** 2, x_t) * x_t
            + per_item(alpha_s * sigma_ts2 / sigma_t ** 2, x_t) * x0_hat)
    std = per_item((sigma_ts2 * sigma_s ** 2 / sigma_t ** 2).sqrt(), x_t)
    return torch.where(per_item(s == 0, x_t), x0_hat, mean + std * noise)


def ddpm_times(steps: int) -> tuple[float, ...]:
    """The teacher sampler's times: `steps` uniform steps from t = 1 towards 0 (eq. 28)."""
    if steps < 1:
        raise ValueError(f"the teacher sampler needs steps >= 1, got {steps}")
    return tuple(torch.linspace(1.0, 0.0, steps + 1)[:-1].tolist())


def sample_ddpm(x0_fn: XFunction, noise: torch.Tensor, prompt: torch.Tensor, prompt_mask: torch.Tensor,
                times: Sequence[float], shift: float = 0.5, generator: Optional[torch.Generator] = None
                ) -> torch.Tensor:
    """Teacher sampler, eq. 28: at each t_i the prompt is re-imposed on x_t and on the network's x0
    estimate, then one ancestral step goes to t_{i+1} (0 after the last). noise, prompt (b, n, c);
    prompt_mask (b, n). Returns x0 (b, n, c)."""
    if len(times) < 1:
        raise ValueError("sample_ddpm: no sampling times")
    grid = torch.tensor([float(t) for t in times] + [0.0], dtype=noise.dtype, device=noise.device)
    x = noise
    for i in range(len(times)):
        t = grid[i].expand(len(x))
        x = impose_prompt(x, prompt, prompt_mask)
        x0_hat = impose_prompt(x0_fn(x, t), prompt, prompt_mask)
        fresh = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = ddpm_step(x, x0_hat, t, grid[i + 1].expand(len(x)), fresh, shift)
    return impose_prompt(x, prompt, prompt_mask)


def sample_student(x0_fn: XFunction, noise: torch.Tensor, prompt: torch.Tensor, prompt_mask: torch.Tensor,
                   times: Sequence[float], shift: float = 0.5, generator: Optional[torch.Generator] = None
                   ) -> torch.Tensor:
    """Student multi-step sampling, algorithm 1: at each t_i the prompt is re-imposed on x_t, the
    student predicts x0 (prompt re-imposed), and x0 is re-noised to t_{i+1} with fresh noise."""
    x = noise
    for i, t_i in enumerate(times):
        t = torch.full((len(x),), float(t_i), dtype=x.dtype, device=x.device)
        x0 = impose_prompt(x0_fn(impose_prompt(x, prompt, prompt_mask), t), prompt, prompt_mask)
        if i + 1 < len(times):
            alpha, sigma = shifted_cosine(torch.full_like(t, float(times[i + 1])), shift)
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = diffuse(x0, eps, alpha, sigma)
    return x0


def guided_v_function(net: DiT, text: torch.Tensor, text_mask: torch.Tensor, prompt_mask: torch.Tensor,
                      latent_mask: torch.Tensor, scale: float, drop_full_masks: bool = False) -> VFunction:
    """The network as v(x_t, t) with classifier-free guidance, eq. 27: conditional and null-text
    branches in one batch (the prompt latents and mask are kept in both), their step-independent
    inputs (`DiT.step_context`, `drop_full_masks` passed on) computed once."""
    if scale == 0:
        ctx = net.step_context(net.text_keys_values(text), text_mask, prompt_mask, latent_mask, drop_full_masks)
        return lambda x, t: net.decode_step(x, t, ctx)
    b, nt = text_mask.shape
    null, _ = net.null_condition(b, text.device)
    both_text = torch.cat([text, null.to(text.dtype).expand(b, nt, -1)])
    first = (torch.arange(nt, device=text.device) == 0).expand(b, nt)
    both_mask = torch.cat([text_mask, first])
    ctx = net.step_context(net.text_keys_values(both_text), both_mask, torch.cat([prompt_mask, prompt_mask]),
                           torch.cat([latent_mask, latent_mask]), drop_full_masks)

    def v_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond, uncond = net.decode_step(torch.cat([x, x]), torch.cat([t, t]), ctx).chunk(2)
        return guided_velocity(cond, uncond, scale)
    return v_fn


@dataclass
class SentenceInputs:
    """One sentence laid out for sampling: the prompt first, then the frames to generate."""
    prompt: torch.Tensor        # (1, n, c), zero after the prompt
    prompt_mask: torch.Tensor   # (1, n)
    latent_mask: torch.Tensor   # (1, n), all True
    text: torch.Tensor          # (1, nt, d) encoded phonemes
    text_mask: torch.Tensor     # (1, nt)
    noise: torch.Tensor         # (1, n, c)


def prompt_layout(prompt: torch.Tensor, total_frames: int, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised prompt latents (np, c) placed first in `total_frames` -> (prompt (1, n, c) zero after it,
    prompt_mask (1, n))."""
    n_prompt, channels = prompt.shape
    if total_frames <= n_prompt:
        raise ValueError(f"total length {total_frames} frames leaves nothing to generate after a "
                         f"{n_prompt}-frame prompt")
    prompt_full = torch.zeros(1, total_frames, channels, device=device)
    prompt_full[0, :n_prompt] = prompt.to(device)
    return prompt_full, (torch.arange(total_frames, device=device) < n_prompt)[None]


def sentence_inputs(net: DiT, phonemes: torch.Tensor, prompt: torch.Tensor, total_frames: int,
                    generator: Optional[torch.Generator]) -> SentenceInputs:
    """Phonemes (nt,) and normalised prompt latents (np, c) -> the sampler's inputs for `total_frames`."""
    device = next(net.parameters()).device
    prompt_full, prompt_mask = prompt_layout(prompt, total_frames, device)
    net.check_lengths(total_frames, len(phonemes))
    ids = phonemes.to(device)[None]
    text, text_mask = net.encode_text(ids, torch.ones_like(ids, dtype=torch.bool))
    return SentenceInputs(prompt_full, prompt_mask, torch.ones(1, total_frames, dtype=torch.bool, device=device),
                          text, text_mask, torch.randn(prompt_full.shape, generator=generator).to(device))


@torch.inference_mode()
def teacher_latents(net: DiT, phonemes: torch.Tensor, prompt: torch.Tensor, total_frames: int, shift: float,
                    sampler: TeacherSamplerConfig, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One sentence with the teacher: `sampler.steps` steps of eq. 28 with guidance `sampler.cfg_scale`
    (eq. 27). Phonemes (nt,), normalised prompt latents (np, c) placed first -> (total_frames, c)."""
    s = sentence_inputs(net, phonemes, prompt, total_frames, generator)
    v_fn = guided_v_function(net, s.text, s.text_mask, s.prompt_mask, s.latent_mask, sampler.cfg_scale,
                             drop_full_masks=True)
    return sample_ddpm(x0_function(v_fn, shift), s.noise, s.prompt, s.prompt_mask, ddpm_times(sampler.steps), shift,
                       generator)[0]


@torch.inference_mode()
def student_latents(net: DiT, phonemes: torch.Tensor, prompt: torch.Tensor, total_frames: int,
                    times: Sequence[float], shift: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One sentence with the distilled student, algorithm 1 over `times`: (np, c) prompt -> (total_frames, c).
    The text encoder, prompt embedding, positions and cross-attention keys run once (`DiT.step_context`)."""
    s = sentence_inputs(net, phonemes, prompt, total_frames, generator)
    ctx = net.step_context(net.text_keys_values(s.text), s.text_mask, s.prompt_mask, s.latent_mask, drop_full_masks=True)
    x0_fn = x0_function(lambda x, t: net.decode_step(x, t, ctx), shift)
    return sample_student(x0_fn, s.noise, s.prompt, s.prompt_mask, times, shift, generator)[0]
