"""The diffusion functions against hand-computed values (docs/equations.md C1-C4: eqs. 5, 14-17, 27, 28)
and an oracle sampler check."""
import math

import pytest
import torch

from dmospeech.teacher.diffusion import (eps_from_v, guided_velocity, impose_prompt, random_prompt_mask, shifted_cosine,
                                         v_target, x0_from_v)
from dmospeech.teacher.sampling import ddpm_step, ddpm_times, sample_ddpm, x0_function


def test_shifted_cosine_hand_values():
    # t = 0.5: tan(pi/4) = 1, logsnr = 2 log 0.5 -> alpha^2 = sigmoid(-1.386) = 0.2
    alpha, sigma = shifted_cosine(torch.tensor([0.5]), shift=0.5)
    assert alpha.item() == pytest.approx(math.sqrt(0.2), abs=1e-6)
    assert sigma.item() == pytest.approx(math.sqrt(0.8), abs=1e-6)
    # shift 1 is the plain cosine schedule: alpha = cos(pi t / 2)
    alpha, sigma = shifted_cosine(torch.tensor([0.3]), shift=1.0)
    assert alpha.item() == pytest.approx(math.cos(0.15 * math.pi), abs=1e-6)
    assert sigma.item() == pytest.approx(math.sin(0.15 * math.pi), abs=1e-6)


def test_shifted_cosine_ends_finite_monotone_and_variance_preserving():
    t = torch.linspace(0, 1, 101)
    alpha, sigma = shifted_cosine(t)
    assert torch.isfinite(alpha).all() and torch.isfinite(sigma).all()
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones_like(t), atol=1e-6)
    assert (alpha[1:] <= alpha[:-1]).all() and (sigma[1:] >= sigma[:-1]).all()
    assert alpha[0] == pytest.approx(math.sqrt(1 / (1 + math.exp(-15))), abs=1e-7)   # logsnr clamped at 15
    assert sigma[-1] == pytest.approx(math.sqrt(1 / (1 + math.exp(-15))), abs=1e-7)


def test_v_x0_eps_conversions_hand_values():
    x0, eps, alpha, sigma = torch.tensor(2.0), torch.tensor(1.0), 0.6, 0.8
    v = v_target(x0, eps, alpha, sigma)
    assert v.item() == pytest.approx(0.6 * 1 - 0.8 * 2)            # -1.0
    x_t = alpha * x0 + sigma * eps                                    # 2.0
    assert x0_from_v(x_t, v, alpha, sigma).item() == pytest.approx(2.0)   # 0.6*2 - 0.8*(-1)
    assert eps_from_v(x_t, v, alpha, sigma).item() == pytest.approx(1.0)  # 0.8*2 + 0.6*(-1)


def test_functions_broadcast_per_batch_item():
    x0, eps = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    alpha, sigma = shifted_cosine(torch.tensor([0.1, 0.5, 0.9]))
    v = v_target(x0, eps, alpha, sigma)
    for i in range(3):
        assert torch.allclose(v[i], alpha[i] * eps[i] - sigma[i] * x0[i])
    x_t = alpha[:, None, None] * x0 + sigma[:, None, None] * eps
    assert torch.allclose(x0_from_v(x_t, v, alpha, sigma), x0, atol=1e-5)
    assert torch.allclose(eps_from_v(x_t, v, alpha, sigma), eps, atol=1e-5)


def test_cfg_hand_values_and_scale_zero():
    cond, uncond = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    assert torch.allclose(guided_velocity(cond, uncond, 2.0), torch.tensor([2.0, -8.0]))
    assert torch.equal(guided_velocity(cond, uncond, 0.0), cond)


def test_ddpm_step_hand_values():
    t, s = torch.tensor([0.5]), torch.tensor([0.25])
    a_t, s_t = math.sqrt(0.2), math.sqrt(0.8)
    lam_s = -2 * math.log(math.tan(math.pi / 8)) + 2 * math.log(0.5)
    a_s, s_s = math.sqrt(1 / (1 + math.exp(-lam_s))), math.sqrt(1 / (1 + math.exp(lam_s)))
    a_ts = a_t / a_s
    var_ts = s_t ** 2 - a_ts ** 2 * s_s ** 2
    mean = a_ts * s_s ** 2 / s_t ** 2 * 1.5 + a_s * var_ts / s_t ** 2 * 0.7
    std = math.sqrt(var_ts * s_s ** 2 / s_t ** 2)
    out = ddpm_step(torch.tensor([[1.5]]), torch.tensor([[0.7]]), t, s, torch.tensor([[0.3]]))
    assert out.item() == pytest.approx(mean + std * 0.3, abs=1e-6)


def test_ddpm_step_returns_x0_hat_at_zero_per_item():
    x_t, x0_hat, noise = torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    out = ddpm_step(x_t, x0_hat, torch.tensor([0.2, 0.2]), torch.tensor([0.0, 0.1]), noise)
    assert torch.equal(out[0], x0_hat[0])
    assert not torch.allclose(out[1], x0_hat[1])


def test_ddpm_step_posterior_keeps_the_marginal():
    """x_t ~ q(x_t | x0) then x_s ~ q(x_s | x_t, x0) must be distributed as q(x_s | x0)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000,), 0.8)
    t, s = torch.tensor(0.7), torch.tensor(0.4)
    a_t, s_t = shifted_cosine(t)
    a_s, s_s = shifted_cosine(s)
    x_t = a_t * x0 + s_t * torch.randn(x0.shape, generator=g)
    x_s = ddpm_step(x_t, x0, t, s, torch.randn(x0.shape, generator=g))
    assert x_s.mean().item() == pytest.approx((a_s * 0.8).item(), abs=0.01)
    assert x_s.std().item() == pytest.approx(s_s.item(), abs=0.01)


def test_oracle_chain_returns_x0():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 30, 8, generator=g)

    def oracle_v(x, t):  # the true v of x_t for this x0: x0 = alpha x - sigma v
        alpha, sigma = shifted_cosine(t)
        return (alpha[:, None, None] * x - x0) / sigma[:, None, None]

    out = sample_ddpm(x0_function(oracle_v, 0.5), torch.randn(2, 30, 8, generator=g), torch.zeros_like(x0),
                      torch.zeros(2, 30, dtype=torch.bool), ddpm_times(128), generator=g)
    assert torch.allclose(out, x0, atol=1e-4)


def test_sampler_keeps_the_prompt():
    prompt = torch.randn(1, 10, 4)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, :4] = True
    out = sample_ddpm(x0_function(lambda x, t: torch.zeros_like(x), 0.5), torch.randn(1, 10, 4), prompt, mask,
                      ddpm_times(8))
    assert torch.equal(out[0, :4], prompt[0, :4])
    assert torch.equal(impose_prompt(torch.zeros(1, 10, 4), prompt, mask)[0, 4:], torch.zeros(6, 4))


def test_random_prompt_mask_is_one_contiguous_span_up_to_half():
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([100, 37, 1, 64] * 50)
    mask = random_prompt_mask(lengths, 0.5, generator=g)
    assert mask.shape == (200, 100)
    fractions = []
    for row, n in zip(mask, lengths):
        idx = row.nonzero().flatten()
        assert not row[n:].any()
        if len(idx):
            assert (idx.diff() == 1).all() if len(idx) > 1 else True
        fractions.append(len(idx) / int(n))
    assert max(fractions) <= 0.5 and min(fractions) == 0.0
    assert 0.15 < sum(fractions) / len(fractions) < 0.3           # uniform 0-50 %: mean about 25 %
    starts = {int(row.nonzero()[0]) for row in mask[::4] if row.any()}
    assert len(starts) > 10                                       # the span moves


def test_ddpm_times_are_uniform_from_one_and_need_a_step():
    assert ddpm_times(4) == (1.0, 0.75, 0.5, 0.25)
    with pytest.raises(ValueError, match="steps >= 1"):
        ddpm_times(0)
