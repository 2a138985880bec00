"""The DMD2 student task: update ratio, loss gating, frozen teacher, CTC and SV gradients reach G."""
from dataclasses import replace

import pytest
import torch

from dmospeech.config import LatentASRConfig, SpeakerVerifierConfig
from dmospeech.critics.asr import LatentASR
from dmospeech.teacher.dit import DiT
from dmospeech.critics.speaker import LatentSpeakerVerifier
from dmospeech.student.trainer import StudentTask
from tests.helpers import params

P = params()
DIT = replace(P.train_teacher.model, dim=32, ff_dim=64, heads=2, encoder_layers=1, decoder_layers=2)
ASR = LatentASRConfig(latent_dim=64, dim=32, ff_dim=64, heads=2, layers=2, conv_kernel=5, dropout=0.0, vocab_size=180)
SV = SpeakerVerifierConfig(channels=32, res2_scale=4, se_dim=8, attention_dim=8, embedding_dim=16)


class Items:
    durations = [3.0] * 4


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor([120, 110, 100, 90])
    mask = torch.arange(120)[None] < n[:, None]
    return {"latents": torch.randn(4, 120, 64, generator=g) * mask[..., None], "latent_mask": mask,
            "phonemes": torch.randint(1, 180, (4, 30), generator=g), "phoneme_mask": torch.ones(4, 30, dtype=torch.bool)}


def make_task(**overrides):
    torch.manual_seed(0)
    teacher = DiT(DIT)
    for p in teacher.parameters():
        torch.nn.init.normal_(p, std=0.05)
    asr = LatentASR(ASR)
    cfg = replace(P.distill_student, **overrides)
    task = StudentTask(cfg, Items(), Items(), teacher, P.train_teacher.diffusion, asr.eval(), LatentSpeakerVerifier(SV, asr))
    parts = {p.name: p for p in task.parts()}
    opts = {name: torch.optim.AdamW(p.module.parameters(), lr=1e-4) for name, p in parts.items()}
    calls, norms = [], {}

    def update(name, loss):
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        grads = [q.grad.norm() for q in parts[name].module.parameters() if q.grad is not None]
        norms[(len(calls), name)] = float(torch.stack(grads).norm()) if grads else 0.0
        opts[name].step()
        calls.append(name)
        return {}
    return task, update, calls, norms


def test_update_ratio_five_score_updates_per_generator_and_discriminator():
    task, update, calls, _ = make_task()
    for step in range(10):
        task.train_step(batch(step), step, update)
    assert calls.count("score") == 10 and calls.count("generator") == 2 and calls.count("discriminator") == 2
    assert calls[:5] == ["score"] * 4 + ["score"] and calls[5:7] == ["discriminator", "generator"]


def test_teacher_never_changes():
    task, update, _, _ = make_task()
    before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    for step in range(5):
        task.train_step(batch(step), step, update)
    assert all(torch.equal(before[k], v) for k, v in task.teacher.state_dict().items())
    assert not any(p.requires_grad for p in task.teacher.parameters())
    assert not torch.equal(task._parts["generator"].module.latent_out.weight, task.teacher.latent_out.weight)


def test_lambda_gating_by_generator_step():
    task, update, _, _ = make_task(loss_start_steps={"dmd": 0, "adv": 0, "ctc": 1, "sv": 2})
    logs = {step: task.train_step(batch(step), step, update) for step in range(15)}
    assert logs[4]["weight/ctc"] == 0.0 and logs[9]["weight/ctc"] == 1.0             # generator steps 0, 1
    assert logs[9]["weight/sv"] == 0.0 and logs[14]["weight/sv"] == 1.0
    assert "grad_norm_x0/ctc" not in logs[4] and logs[9]["grad_norm_x0/ctc"] > 0
    assert logs[14]["grad_norm_x0/sv"] > 0 and logs[14]["grad_norm_x0/dmd"] > 0
    assert "weight/ctc" not in logs[3]                                                   # score-only step


@pytest.mark.parametrize("term", ["ctc", "sv"])
def test_each_critic_alone_gives_the_generator_a_gradient(term):
    weights = {"dmd": 0.0, "adv": 0.0, "ctc": 0.0, "sv": 0.0} | {term: 1.0}
    task, update, calls, norms = make_task(loss_weights=weights, loss_start_steps={k: 0 for k in weights})
    for step in range(5):
        task.train_step(batch(step), step, update)
    generator_update = [v for (i, name), v in norms.items() if name == "generator"]
    assert len(generator_update) == 1 and generator_update[0] > 0
