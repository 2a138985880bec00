"""DMD2 maths (docs/equations.md C5-C7: eqs. 7-8, 19-26, algorithm 1): DMD gradient, update ratio, loss gating,
student sampler and simulation."""
import torch

from dmospeech.student.dmd import (dmd_loss, is_generator_step, loss_weight, lsgan_discriminator_loss,
                                   lsgan_generator_loss, simulate_student_input)
from dmospeech.teacher.diffusion import shifted_cosine
from dmospeech.teacher.sampling import sample_student

TIMES = (1.0, 0.75, 0.5, 0.25)


def test_dmd_gradient_is_the_normalised_difference_over_the_generated_frame_count():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 6, 3, generator=g).requires_grad_(True)
    x0_real, x0_fake = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 3, generator=g)
    mask = torch.tensor([[False, False, True, True, True, True], [False, True, True, True, False, False]])
    losses, _ = dmd_loss(x0, x0_real, x0_fake, mask)
    losses["dmd/loss"].backward()
    p_real, p_fake = x0.detach() - x0_real, x0.detach() - x0_fake
    count = int(mask.sum())                                              # 7 generated frames
    expected = torch.zeros_like(x0)
    for i in range(2):
        scale = p_real[i][mask[i]].abs().mean()                          # per sample, generated elements only
        expected[i][mask[i]] = ((p_real[i] - p_fake[i]) / scale)[mask[i]] / count
    assert torch.allclose(x0.grad, expected, atol=1e-6)
    assert (x0.grad[~mask] == 0).all()


def test_dmd_step_moves_x0_toward_the_real_estimate():
    x0 = torch.zeros(1, 4, 2, requires_grad=True)
    x0_real, x0_fake = torch.ones(1, 4, 2), torch.zeros(1, 4, 2)        # real score says "go up"
    dmd_loss(x0, x0_real, x0_fake, torch.ones(1, 4, dtype=torch.bool))[0]["dmd/loss"].backward()
    assert (x0.grad < 0).all()                                          # descent increases x0


def test_update_ratio_and_gating():
    flags = [is_generator_step(s, 5) for s in range(15)]
    assert [s for s, f in enumerate(flags) if f] == [4, 9, 14]
    weights, starts = {"dmd": 1.0, "ctc": 1.0, "sv": 1.0, "adv": 1e-3}, {"ctc": 5000, "sv": 10000}
    assert loss_weight("ctc", 4999, weights, starts) == 0.0 and loss_weight("ctc", 5000, weights, starts) == 1.0
    assert loss_weight("sv", 9999, weights, starts) == 0.0 and loss_weight("sv", 10000, weights, starts) == 1.0
    assert loss_weight("adv", 0, weights, starts) == 1e-3 and loss_weight("dmd", 0, weights, starts) == 1.0
    assert loss_weight("missing", 10**6, weights, starts) == 0.0


def test_lsgan_losses():
    d, _ = lsgan_discriminator_loss(torch.ones(5), torch.zeros(5))
    assert d["adv/disc_loss"].item() == 0.0                             # perfect D
    g, _ = lsgan_generator_loss(torch.zeros(5))
    assert g["adv/gen_loss"].item() == 1.0


def test_student_sampler_with_an_oracle_returns_x0_and_keeps_the_prompt():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 12, 4, generator=g)
    prompt_mask = torch.zeros(2, 12, dtype=torch.bool)
    prompt_mask[:, :3] = True
    calls = []

    def oracle(x, t):
        calls.append(float(t[0]))
        return x0
    out = sample_student(oracle, torch.randn(2, 12, 4, generator=g), x0, prompt_mask, TIMES, generator=g)
    assert calls == list(TIMES) and torch.equal(out, x0)


def test_training_simulation_uses_the_schedule_and_the_students_estimate():
    torch.manual_seed(0)
    latents = torch.randn(64, 10, 3)
    prompt_mask = torch.zeros(64, 10, dtype=torch.bool)
    prompt_mask[:, :2] = True
    seen = []

    def student(x, t):
        seen.append(t.clone())
        return torch.full_like(x, 5.0)                                # a recognisable estimate
    x_t, t = simulate_student_input(student, latents, prompt_mask, TIMES)
    assert set(t.tolist()) <= set(TIMES) and len(set(t.tolist())) == 4
    assert torch.equal(x_t[:, :2], latents[:, :2])                     # prompt imposed
    later = t < 1.0
    alpha, _ = shifted_cosine(t[later])
    # items past the first step are re-noised from the student's estimate (5.0), not from the data
    assert torch.allclose(x_t[later, 2:].mean(dim=(1, 2)), 5.0 * alpha, atol=0.8)
    assert torch.equal(seen[0][later], torch.tensor([TIMES[TIMES.index(v) - 1] for v in t[later].tolist()]))
