"""The latent CTC recogniser: gradients to the latents, padding independence, CTC on every length
combination the loader can make, greedy decoding, phone error rate, and a short training run."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from dmospeech.checkpoint import save_checkpoint
from dmospeech.config import LatentASRConfig, LatentMaskingConfig, PhoneHeadConfig
from dmospeech.data.latent_text import LatentTextDataset, LatentTextItem, collate_latent_text
from dmospeech.data.latents import LatentStats, LatentStore, ShardWriter
from dmospeech.data.whisper_states import STATE_HOP, WINDOW, WhisperEncoder, states_at_latent_rate
from dmospeech.models.asr import (BLANK, LatentASR, ctc_loss, ctc_min_frames, distill_loss, edit_distance,
                                  greedy_decode, phone_error_rate, posterior_distill_loss)
from dmospeech.models.whisper_phones import fit_phone_head, head_phone_error_rate, phone_log_posteriors
from dmospeech.train import train
from dmospeech.trainers.asr import ASRCriticTask, mask_latents
from tests.helpers import params

TINY = LatentASRConfig(latent_dim=8, dim=16, ff_dim=32, heads=2, layers=2, conv_kernel=5, dropout=0.0, vocab_size=12)


def saved_asr(tmp_path, cfg: LatentASRConfig = TINY) -> tuple[LatentASR, str]:
    torch.manual_seed(0)
    asr = LatentASR(cfg)
    weights = {"asr": asr.state_dict(), "asr.ema": asr.state_dict()}
    path = save_checkpoint(tmp_path / "ckpt", 1, weights, {"step": 1}, {"task": "asr_critic", "model": cfg.__dict__}, 0)
    return asr.eval(), str(path)


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


def fabricated_dataset(root, count: int, seed: int) -> LatentTextDataset:
    """Latents whose frames spell their phonemes: symbol k is the one-hot channel k, 3 frames each."""
    gen = torch.Generator().manual_seed(seed)
    root.mkdir()
    writer, items = ShardWriter(root, 10_000), []
    for i in range(count):
        ids = torch.randint(1, 8, (6,), generator=gen)
        z = torch.nn.functional.one_hot(ids.repeat_interleave(3), 8).float() + 0.1 * torch.randn(18, 8, generator=gen)
        shard, offset = writer.add(z)
        items.append(LatentTextItem(f"s{seed}_{i}", "spk", "train", tuple(ids.tolist()), shard, offset, 18, "", 0, 0,
                                    ""))
    writer.flush()
    stats = LatentStats((0.0,) * 8, (1.0,) * 8, 1, "none")
    return LatentTextDataset(items, LatentStore(root), stats, frame_rate=40)


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


# ----------------------------------------------------------------------------- Whisper-state distillation
def test_distill_loss_prefers_the_target_and_ignores_padding():
    torch.manual_seed(4)
    target = torch.randn(2, 10, 6)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    exact, logs = distill_loss(target.clone(), target, mask)
    # DistilHuBERT: (1/d)|h - y|_1 - log sigmoid(cos): the L1 part vanishes, cos = 1
    assert float(exact["distill/loss"]) == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(1.0)).item())
    assert logs["distill/cosine"] == pytest.approx(1.0)
    garbage = target.clone()
    garbage[1, 7:] = 100.0  # padded frames
    assert float(distill_loss(garbage, target, mask)[0]["distill/loss"]) == pytest.approx(float(exact["distill/loss"]))
    predicted = torch.randn(2, 10, 6, requires_grad=True)
    loss = distill_loss(predicted, target, mask)[0]["distill/loss"]
    assert float(loss.detach()) > float(exact["distill/loss"]) + 0.5
    loss.backward()
    assert predicted.grad[1, 7:].abs().sum() == 0 and predicted.grad[0].abs().sum() > 0


def test_distill_head_reads_its_block_and_survives_the_checkpoint(tmp_path):
    cfg = replace(TINY, distill_dim=5, distill_block=1)
    original, path = saved_asr(tmp_path, cfg)
    latents, mask = torch.randn(1, 9, 8), torch.ones(1, 9, dtype=torch.bool)
    out = LatentASR.from_checkpoint(path)(latents, mask)
    assert out["distill"].shape == (1, 9, 5)
    first_block = original.block_outputs(latents, mask)[0]
    torch.testing.assert_close(out["distill"], original.distill_head(first_block))
    assert "distill" not in LatentASR(TINY)(latents, mask)
    with pytest.raises(ValueError, match="distill_block 3"):
        LatentASR(replace(TINY, distill_dim=5, distill_block=3))


def fake_encoder(dim: int = 3) -> WhisperEncoder:
    """A WhisperEncoder whose 'states' are per-frame statistics of the samples in each 20-ms frame,
    so piecing and slicing can be checked exactly without loading a model."""
    encoder = WhisperEncoder.__new__(WhisperEncoder)
    encoder.pieces = []

    def encode_piece(audio):
        assert len(audio) <= WINDOW
        encoder.pieces.append(len(audio))
        frames = -(-len(audio) // STATE_HOP)
        padded = np.zeros(frames * STATE_HOP, np.float32)
        padded[: len(audio)] = audio
        frames = padded.reshape(-1, STATE_HOP)
        return np.stack([frames.mean(1), frames.max(1), frames.min(1)][:dim], axis=1)
    encoder._encode_piece = encode_piece
    return encoder


def test_long_clips_are_encoded_in_30_second_pieces():
    rng = np.random.default_rng(0)
    lengths = [16000 * 12, 16000 * 3 + 5, 16000 * 70 + 17]
    clips = [rng.standard_normal(n).astype(np.float32) + i for i, n in enumerate(lengths)]
    encoder = fake_encoder()
    states = encoder.encode(clips)
    for clip, got in zip(clips, states):
        frames = -(-len(clip) // STATE_HOP)
        padded = np.zeros(frames * STATE_HOP, np.float32)
        padded[: len(clip)] = clip
        assert got.shape == (frames, 3)
        np.testing.assert_allclose(got[:, 0], padded.reshape(frames, STATE_HOP).mean(1), atol=1e-5)
    assert encoder.pieces == [16000 * 12, 16000 * 3 + 5, WINDOW, WINDOW, 16000 * 10 + 17]


def test_encoder_states_are_cached_by_segments_and_model(tmp_path, monkeypatch):
    import dmospeech.data.whisper_states as ws
    import soundfile as sf

    audio = np.random.default_rng(1).standard_normal(48000 * 2).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.wav", audio, 48000)
    items = [LatentTextItem(f"seg{i}", "spk", "train", (1,), "", 0, 40, str(tmp_path / "a.wav"), 0.5 * i, 0.5 * i + 1,
                            "sha") for i in range(2)]
    built = []
    monkeypatch.setattr(ws, "encoder_identity", lambda name: f"fake {name}")
    monkeypatch.setattr(ws, "WhisperEncoder", lambda name, threads: built.append(name) or fake_encoder())
    first = ws.whisper_encoder_states(items, "m1", tmp_path / "cache")
    assert sorted(first) == ["seg0", "seg1"] and first["seg0"].shape == (50, 3) and first["seg0"].dtype == torch.float16
    again = ws.whisper_encoder_states(items, "m1", tmp_path / "cache")
    assert built == ["m1"] and all(torch.equal(first[k], again[k]) for k in first)
    ws.whisper_encoder_states(items[:1], "m1", tmp_path / "cache")
    ws.whisper_encoder_states(items[:1], "m2", tmp_path / "cache")
    assert built == ["m1", "m1", "m2"]
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_states_at_latent_rate_follow_time():
    ramp = torch.arange(50.0)[:, None].repeat(1, 2)          # 1 s at 50 Hz, value = frame index
    out = states_at_latent_rate(ramp, 40)
    assert out.shape == (40, 2)
    centres_in_states = (torch.arange(40) + 0.5) * 50 / 40 - 0.5   # each latent frame's centre
    torch.testing.assert_close(out[1:-1, 0], centres_in_states[1:-1])


def test_task_with_distillation_adds_targets_and_learns_them(tmp_path):
    torch.set_num_threads(1)
    cfg = params().train_asr_critic
    loop = replace(cfg.loop, max_steps=40, checkpoint_every=40, valid_every=0, log_every=10, batch_seconds=8.0,
                   out_dir=str(tmp_path / "ckpt"), report_dir=str(tmp_path / "report"))
    cfg = replace(cfg, model=replace(TINY, dim=32, ff_dim=64, distill_dim=4, distill_block=1), loop=loop,
                  optimizer=replace(cfg.optimizer, lr=3e-3, warmup_steps=5),
                  masking=replace(cfg.masking, time_masks=0, channel_masks=0),
                  distill=replace(cfg.distill, weight=1.0, posterior_weight=0.0))
    train_set, valid_set = fabricated_dataset(tmp_path / "tr", 16, 0), fabricated_dataset(tmp_path / "va", 4, 1)
    torch.manual_seed(5)
    table = torch.randn(12, 4)                                 # each phoneme's 'Whisper state'
    at_50hz = (torch.arange(22) * 40 // 50).clamp(max=17)      # 22 frames at 50 Hz = 18 latent frames
    states = {it.segment_id: table[torch.tensor(it.phoneme_ids).repeat_interleave(3)[at_50hz]]
              for it in train_set.items}
    symbols = [f"p{i}" for i in range(12)]
    with pytest.raises(ValueError, match="no Whisper encoder states for 1"):
        ASRCriticTask(cfg, train_set, valid_set, symbols, loop.report_dir, dict(list(states.items())[1:]))
    with pytest.raises(ValueError, match="distill_dim is 4 but"):
        ASRCriticTask(cfg, train_set, valid_set, symbols, loop.report_dir, {k: v[:, :3] for k, v in states.items()})
    task = ASRCriticTask(cfg, train_set, valid_set, symbols, loop.report_dir, states)
    batch = task.collate([train_set[0], train_set[3]])
    assert batch["encoder_states"].shape == (2, 18, 4)
    every = torch.cat([states[it.segment_id] for it in train_set.items])
    standardised = (states_at_latent_rate(states[train_set.items[3].segment_id], 18) - every.mean(0)) / every.std(0)
    torch.testing.assert_close(batch["encoder_states"][1], standardised, atol=2e-3, rtol=2e-3)
    task.parts()
    first = task.train_step(batch, 0, lambda name, loss: {})
    result = train(task, loop, task.run_config())
    assert result.metrics["distill/loss"] < first["distill/loss"] - 0.3
    assert first["loss/total"] == pytest.approx(first["ctc/loss"] + first["distill/loss"], rel=1e-5)


# ----------------------------------------------------------------------------- phone-posterior distillation
def test_posterior_distill_loss_is_the_framewise_kl_and_ignores_padding():
    torch.manual_seed(6)
    teacher = torch.randn(2, 7, 5).log_softmax(-1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    same, logs = posterior_distill_loss(teacher.clone(), teacher, mask)
    assert float(same["posterior/loss"]) == pytest.approx(0.0, abs=1e-6) and logs["posterior/agreement"] == 1.0
    logits = torch.randn(2, 7, 5, requires_grad=True)
    loss = posterior_distill_loss(logits, teacher, mask)[0]["posterior/loss"]
    p, log_q = teacher.exp(), logits.detach().log_softmax(-1)
    kl = (p * (teacher - log_q)).sum(-1)                       # (2, 7)
    assert float(loss.detach()) == pytest.approx(float(kl[mask].mean()), rel=1e-5)
    garbage = teacher.clone()
    garbage[1, 5:] = 0.0                                       # padded frames: not a distribution, not read
    assert float(posterior_distill_loss(logits, garbage, mask)[0]["posterior/loss"].detach()) == pytest.approx(
        float(loss.detach()), rel=1e-6)
    loss.backward()
    assert logits.grad[1, 5:].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="differ"):
        posterior_distill_loss(logits, teacher[:, :6], mask)


def spelled_states(count: int, seed: int, table: torch.Tensor) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Segments of 6 phonemes (ids 1..11), 3 frames each, whose 'states' are each phoneme's row of
    `table` plus noise."""
    gen = torch.Generator().manual_seed(seed)
    states, phonemes = [], []
    for _ in range(count):
        ids = torch.randint(1, 12, (6,), generator=gen)
        states.append(table[ids.repeat_interleave(3)] + 0.1 * torch.randn(18, table.shape[1], generator=gen))
        phonemes.append(ids.tolist())
    return states, phonemes


def test_phone_head_learns_phones_that_the_states_spell():
    torch.set_num_threads(1)
    table = torch.randn(12, 6, generator=torch.Generator().manual_seed(7))
    states, phonemes = spelled_states(24, 0, table)
    held_states, held_phonemes = spelled_states(8, 1, table)
    cfg = PhoneHeadConfig(dim=32, steps=150, lr=3e-3, batch_items=4)
    head = fit_phone_head(states, phonemes, 12, cfg)
    untrained = fit_phone_head(states, phonemes, 12, replace(cfg, steps=0))
    assert not head.training and not any(p.requires_grad for p in head.parameters())
    assert head_phone_error_rate(head, held_states, held_phonemes) < 0.2
    assert head_phone_error_rate(untrained, held_states, held_phonemes) > 0.8
    again = fit_phone_head(states, phonemes, 12, cfg)
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))
    posteriors = phone_log_posteriors(head, held_states[:3] + [held_states[3][:10]], batch_items=3)
    assert [tuple(p.shape) for p in posteriors] == [(18, 12)] * 3 + [(10, 12)]
    assert posteriors[0].dtype == torch.float16
    torch.testing.assert_close(posteriors[0].float().exp().sum(-1), torch.ones(18), atol=1e-2, rtol=0)


def test_task_with_posterior_distillation_fits_the_head_and_matches_it(tmp_path):
    torch.set_num_threads(1)
    cfg = params().train_asr_critic
    loop = replace(cfg.loop, max_steps=40, checkpoint_every=40, valid_every=0, log_every=10, batch_seconds=8.0,
                   out_dir=str(tmp_path / "ckpt"), report_dir=str(tmp_path / "report"))
    cfg = replace(cfg, model=replace(TINY, dim=32, ff_dim=64), loop=loop,
                  optimizer=replace(cfg.optimizer, lr=3e-3, warmup_steps=5),
                  masking=replace(cfg.masking, time_masks=0, channel_masks=0),
                  distill=replace(cfg.distill, weight=0.0, posterior_weight=2.0,
                                  phone_head=PhoneHeadConfig(dim=32, steps=150, lr=3e-3, batch_items=4)))
    train_set, valid_set = fabricated_dataset(tmp_path / "tr", 16, 0), fabricated_dataset(tmp_path / "va", 4, 1)
    table = torch.randn(12, 4, generator=torch.Generator().manual_seed(5))
    at_50hz = (torch.arange(22) * 40 // 50).clamp(max=17)      # 22 frames at 50 Hz = 18 latent frames
    states = {it.segment_id: table[torch.tensor(it.phoneme_ids).repeat_interleave(3)[at_50hz]]
              for it in train_set.items}
    symbols = [f"p{i}" for i in range(12)]
    with pytest.raises(ValueError, match="no Whisper encoder states were given"):
        ASRCriticTask(cfg, train_set, valid_set, symbols, loop.report_dir)
    task = ASRCriticTask(cfg, train_set, valid_set, symbols, loop.report_dir, states)
    head_states = [task.standardised_states(it.segment_id, it.num_frames) for it in train_set.items]
    assert head_phone_error_rate(task.phone_head, head_states, [it.phoneme_ids for it in train_set.items]) < 0.2
    batch = task.collate([train_set[0], train_set[3]])
    assert "encoder_states" not in batch and batch["phone_log_posteriors"].shape == (2, 18, 12)
    torch.testing.assert_close(batch["phone_log_posteriors"][1], task.phone_posteriors[train_set.items[3].segment_id].float())
    task.parts()
    first = task.train_step(batch, 0, lambda name, loss: {})
    assert first["loss/total"] == pytest.approx(first["ctc/loss"] + 2.0 * first["posterior/loss"], rel=1e-5)
    result = train(task, loop, task.run_config())
    assert result.metrics["posterior/loss"] < 0.5 * first["posterior/loss"]
    assert result.metrics["posterior/agreement"] > first["posterior/agreement"] + 0.3
    assert task.run_config()["distill"]["posterior_weight"] == 2.0


def test_whisper_states_without_padding_match_the_padded_window(dev_corpus):
    """The packaged Whisper base really encodes speech (no download); encoding a clip without
    Whisper's padding to 30 s leaves its states close to those of the padded window, and far from
    the states of silence."""
    import ctranslate2
    import soundfile as sf
    import soxr

    audio, sr = sf.read(dev_corpus / "librispeech" / "7800" / "283478" / "7800-283478-0000.flac", dtype="float32")
    clip = soxr.resample(audio, sr, 16000).astype(np.float32)[: 16000 * 8]
    encoder = WhisperEncoder("base", threads=1)
    states = encoder.encode([clip])[0]
    frames = -(-len(clip) // STATE_HOP)
    assert states.shape == (frames, 512)
    window = np.zeros((80, 3000), np.float32)
    features = encoder.model.feature_extractor(clip)
    window[:, : features.shape[1]] = features[:, :3000]
    padded = np.asarray(encoder.model.model.encode(ctranslate2.StorageView.from_array(window[None]), to_cpu=True))[0]

    def cosine(a, b):
        return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())
    assert cosine(states, padded[:frames]) > 0.9
    assert cosine(states, encoder.encode([np.zeros_like(clip)])[0]) < 0.6
