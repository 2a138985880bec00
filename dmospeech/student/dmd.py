"""DMD2 distillation maths (sections 3.2-3.4, appendix C.2.2, C.2.4): the DMD generator loss, the
student's few-step sampler and its one-step training simulation, LSGAN losses and loss gating.

Conventions are those of docs/equations.md C4-C7. Shapes: b batch, n latent frames,
c latent channels. Masks are bool, True on generated (non-prompt, non-padding) frames unless named
otherwise.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import torch

from dmospeech.teacher.diffusion import diffuse, impose_prompt, shifted_cosine
from dmospeech.teacher.sampling import XFunction

def dmd_loss(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor, mask: torch.Tensor
             ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """DMD generator loss, eqs. 19-26 / docs/equations.md C5. p_real = x0 - x0_real, p_fake = x0 - x0_fake,
    grad = (p_real - p_fake) / mean|p_real| per sample (over its generated elements, no gradient);
    loss = 0.5 ||x0 - stopgrad(x0 - grad)||^2 over generated frames / their count, so that
    d loss / d x0 = grad / count on generated frames and 0 elsewhere. mask: (b, n) generated frames."""
    keep = mask.unsqueeze(-1).to(x0.dtype)                                            # (b, n, 1)
    with torch.no_grad():
        p_real, p_fake = x0 - x0_real, x0 - x0_fake
        elements = (keep.sum(dim=(1, 2)) * x0.shape[-1]).clamp_min(1.0)               # (b,)
        scale = ((p_real.abs() * keep).sum(dim=(1, 2)) / elements).clamp_min(1e-8)   # mean |p_real|, (b,)
        grad = (p_real - p_fake) / scale[:, None, None]
        target = x0 - grad
    count = keep.sum().clamp_min(1.0)
    loss = 0.5 * (((x0 - target) ** 2) * keep).sum() / count
    return {"dmd/loss": loss}, {"dmd/loss": float(loss.detach()), "dmd/grad_abs": float((grad.abs() * keep).sum()
                                                                                        / (count * x0.shape[-1]))}


def lsgan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor
                             ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Least-squares GAN, eq. 8: E[(D(real) - 1)^2] + E[D(fake)^2]."""
    loss = ((real_logits - 1) ** 2).mean() + (fake_logits ** 2).mean()
    return {"adv/disc_loss": loss}, {"adv/disc_loss": float(loss.detach()),
                                     "adv/d_real": float(real_logits.detach().mean()),
                                     "adv/d_fake": float(fake_logits.detach().mean())}


def lsgan_generator_loss(fake_logits: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Least-squares GAN, eq. 7: E[(D(G(z)) - 1)^2]."""
    loss = ((fake_logits - 1) ** 2).mean()
    return {"adv/gen_loss": loss}, {"adv/gen_loss": float(loss.detach())}


def loss_weight(name: str, generator_step: int, weights: Mapping[str, float], start_steps: Mapping[str, int]) -> float:
    """lambda of a generator loss term at a generator step: 0 before its start step (docs/equations.md C7)."""
    return weights.get(name, 0.0) if generator_step >= start_steps.get(name, 0) else 0.0


def is_generator_step(step: int, score_updates_per_generator: int) -> bool:
    """Section 3.4 / docs/equations.md C7: the student score g_psi updates every step, G and D every
    `score_updates_per_generator`-th step (the last of each group)."""
    return (step + 1) % score_updates_per_generator == 0


def simulate_student_input(x0_fn: XFunction, latents: torch.Tensor, prompt_mask: torch.Tensor,
                           times: Sequence[float], shift: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The input G sees at a random step of algorithm 1 during training (eq. 6, docs/equations.md C6):
    per item a step index k; k = 0 starts from noise at t_0; k > 0 diffuses the ground truth to t_{k-1}, lets the
    student predict x0 without gradient and re-noises that to t_k. Returns (x_t, t) with the prompt
    imposed on x_t; latents (b, n, c) are the normalised ground truth (its prompt frames are the prompt)."""
    b, device = len(latents), latents.device
    schedule = torch.tensor([float(t) for t in times], device=device, dtype=latents.dtype)
    k = torch.randint(0, len(times), (b,)).to(device)
    t_k = schedule[k]
    previous = schedule[(k - 1).clamp_min(0)]
    alpha_p, sigma_p = shifted_cosine(previous, shift)
    with torch.no_grad():
        x_prev = impose_prompt(diffuse(latents, torch.randn_like(latents), alpha_p, sigma_p), latents, prompt_mask)
        x0_prev = impose_prompt(x0_fn(x_prev, previous), latents, prompt_mask)
    start = torch.where((k == 0)[:, None, None], torch.zeros_like(latents), x0_prev)  # k = 0: pure noise at t_0 = 1
    alpha, sigma = shifted_cosine(t_k, shift)
    x_t = diffuse(start, torch.randn_like(latents), alpha, sigma)
    return impose_prompt(x_t, latents, prompt_mask), t_k
