"""The latent CTC recogniser: gradients to the latents, padding independence, CTC on every length
combination the loader can make, greedy decoding, phone error rate, and a short training run
(its Whisper-taught losses: test_asr_distill.py)."""
from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from dmospeech.ops.checkpoint import save_checkpoint
from dmospeech.config import LatentMaskingConfig
from dmospeech.codec.latent_text import collate_latent_text
from dmospeech.critics.asr import (BLANK, LatentASR, ctc_loss, ctc_min_frames, edit_distance, greedy_decode,
                                  phone_error_rate)
from dmospeech.ops.training import train
from dmospeech.critics.asr_trainer import ASRCriticTask, mask_latents
from tests.helpers import params
from tests.unit.asr_helpers import TINY, fabricated_dataset, saved_asr


def test_frozen_checkpoint_passes_gradients_to_latents(tmp_path):
    original, path = saved_asr(tmp_path)
    asr = LatentASR.from_checkpoint(path)
    assert not asr.training and not any(p.requires_grad for p in asr.parameters())
    latents = torch.randn(2, 30, 8, requires_grad=True)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    out = asr(latents, mask)
    assert out["logits"].shape == (2, 30, 12) and out["hidden"].shape == (2, 30, 16)
    torch.testing.assert_close(out["logits"], original(latents, mask)["logits"])
    phonemes = torch.tensor([[3, 4, 4, 5], [6, 7, 0, 0]])
    losses, _ = ctc_loss(out["logits"], mask, phonemes, phonemes != 0)
    losses["ctc/loss"].backward()
    grad = latents.grad
    assert torch.isfinite(grad).all() and grad[0].abs().sum() > 0 and grad[1, :20].abs().sum() > 0
    assert grad[1, 20:].abs().sum() == 0  # padded frames do not matter
    assert all(p.grad is None for p in asr.parameters())


def test_from_checkpoint_refuses_other_tasks(tmp_path):
    path = save_checkpoint(tmp_path / "c", 1, {"asr.ema": {}}, {}, {"task": "codec", "model": {}}, 0)
    with pytest.raises(ValueError, match="not 'asr_critic'"):
        LatentASR.from_checkpoint(path)


def test_outputs_do_not_depend_on_padding():
    torch.manual_seed(1)
    asr = LatentASR(TINY).eval()
    short = torch.randn(1, 13, 8)
    batch = torch.zeros(2, 40, 8)
    batch[0], batch[1, :13] = torch.randn(40, 8), short[0]
    batch[1, 13:] = 5.0  # garbage in the padding
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0], mask[1, :13] = True, True
    alone = asr(short, torch.ones(1, 13, dtype=torch.bool))["logits"][0]
    torch.testing.assert_close(asr(batch, mask)["logits"][1, :13], alone, atol=1e-5, rtol=1e-5)


def test_ctc_loss_is_finite_for_every_length_combination_of_the_loader():
    """Inputs of 1..6 frames x targets of 1..8 phonemes (with repeats), collated together as the
    data loader does: finite, impossible items counted and without gradient."""
    torch.manual_seed(2)
    items = []
    for i, (n, nt) in enumerate(itertools.product(range(1, 7), range(1, 9))):
        phonemes = torch.randint(1, 4, (nt,))  # few symbols: many equal neighbours
        items.append({"latents": torch.randn(n, 8), "phonemes": phonemes, "speaker": torch.tensor(0),
                      "index": torch.tensor(i)})
    batch = collate_latent_text(items)
    logits = torch.randn(*batch["latent_mask"].shape, 12, requires_grad=True)
    losses, logs = ctc_loss(logits, batch["latent_mask"], batch["phonemes"], batch["phoneme_mask"])
    need = ctc_min_frames(batch["phonemes"], batch["phoneme_mask"])
    impossible = need > batch["latent_mask"].sum(1)
    assert 0 < int(impossible.sum()) < len(items)
    assert logs["ctc/impossible"] == float(impossible.sum())
    assert torch.isfinite(losses["ctc/loss"]) and losses["ctc/loss"] > 0
    losses["ctc/loss"].backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[impossible].abs().sum() == 0 and logits.grad[~impossible].abs().sum() > 0


def test_ctc_loss_of_an_all_impossible_batch_is_zero_and_reported():
    logits = torch.randn(1, 2, 12, requires_grad=True)
    phonemes = torch.tensor([[1, 2, 3]])
    losses, logs = ctc_loss(logits, torch.ones(1, 2, dtype=torch.bool), phonemes, phonemes > 0)
    assert float(losses["ctc/loss"].detach()) == 0.0 and logs["ctc/impossible"] == 1.0
    losses["ctc/loss"].backward()


def test_ctc_loss_rewards_the_right_emissions_and_refuses_blank_targets():
    phonemes = torch.tensor([[5, 5, 7]])
    mask = torch.ones(1, 6, dtype=torch.bool)
    right = torch.full((1, 6, 12), -10.0)
    for t, k in enumerate([5, BLANK, 5, 7, 7, BLANK]):
        right[0, t, k] = 10.0
    wrong = right.roll(1, dims=-1)
    good = ctc_loss(right, mask, phonemes, phonemes > 0)[0]["ctc/loss"]
    bad = ctc_loss(wrong, mask, phonemes, phonemes > 0)[0]["ctc/loss"]
    assert good < 1e-3 < 1.0 < bad
    with pytest.raises(ValueError, match="rows \\[0\\]"):
        ctc_loss(right, mask, torch.tensor([[5, 0, 7]]), torch.ones(1, 3, dtype=torch.bool))


def test_greedy_decode_on_a_hand_made_emission_matrix():
    paths = [[0, 5, 5, 0, 5, 7, 7, 0, 3], [2, 2, 0, 2, 9, 9, 9, 9, 9]]
    logits = torch.zeros(2, 9, 12)
    for b, path in enumerate(paths):
        for t, k in enumerate(path):
            logits[b, t, k] = 1.0
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 4:] = False  # the 9s are padding
    assert greedy_decode(logits, mask) == [[5, 5, 7, 3], [2, 2]]


def test_phone_error_rate():
    assert edit_distance([1, 3, 4, 5], [1, 2, 3, 4]) == 2
    assert phone_error_rate([[1, 3, 4, 5], []], [[1, 2, 3, 4], [6, 6]]) == pytest.approx(4 / 6)
    assert phone_error_rate([[1, 2]], [[1, 2]]) == 0.0
    with pytest.raises(ValueError):
        phone_error_rate([[1]], [[]])


def test_masking_zeroes_spans_and_bands():
    torch.manual_seed(3)
    z = torch.randn(200, 64) + 10.0
    masked = mask_latents(z, LatentMaskingConfig(time_masks=2, time_mask_frames=20, channel_masks=2,
                                                 channel_mask_width=8))
    zero_rows, zero_cols = (masked == 0).all(1).sum(), (masked == 0).all(0).sum()
    assert 0 < zero_rows <= 40 and 0 < zero_cols <= 16
    assert torch.equal(masked[masked != 0], z[masked != 0])


def test_training_run_learns_and_checkpoint_rebuilds_the_recogniser(tmp_path):
    torch.set_num_threads(1)
    cfg = params().train_asr_critic
    loop = replace(cfg.loop, max_steps=60, checkpoint_every=60, valid_every=0, log_every=0, batch_seconds=8.0,
                   ema_decay=0.9, out_dir=str(tmp_path / "ckpt"), report_dir=str(tmp_path / "report"))
    cfg = replace(cfg, model=replace(TINY, dim=32, ff_dim=64), loop=loop,
                  optimizer=replace(cfg.optimizer, lr=3e-3, warmup_steps=5),
                  masking=replace(cfg.masking, time_masks=0, channel_masks=0), distill=replace(cfg.distill, weight=0.0, posterior_weight=0.0))
    task = ASRCriticTask(cfg, fabricated_dataset(tmp_path / "tr", 24, 0), fabricated_dataset(tmp_path / "va", 8, 1),
                         [f"p{i}" for i in range(12)], loop.report_dir)
    task.parts()
    before = task.evaluate(task._part.module)
    result = train(task, loop, task.run_config())
    after = task.evaluate(LatentASR.from_checkpoint(result.checkpoint), write_examples=True)
    assert after["valid/ctc_loss"] < 0.5 * before["valid/ctc_loss"]
    assert after["valid/per"] < 0.5 < before["valid/per"]
    assert "REF" in (tmp_path / "report" / "examples.txt").read_text()
