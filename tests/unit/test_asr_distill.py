"""The recogniser's two Whisper-taught losses of the tiny profile: Whisper encoder states (pieces,
cache, 50 -> 40 Hz, the state-prediction head and loss) and frame-level phone-posterior distillation
(the CTC head on the states, the KL loss, the task with both)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dmospeech.config import PhoneHeadConfig
from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.data.whisper_states import STATE_HOP, WINDOW, WhisperEncoder, distill_loss, states_at_latent_rate
from dmospeech.critics.asr import LatentASR, posterior_distill_loss
from dmospeech.critics.whisper_phones import fit_phone_head, head_phone_error_rate, phone_log_posteriors
from dmospeech.ops.training import train
from dmospeech.critics.asr_trainer import ASRCriticTask
from tests.helpers import params
from tests.unit.asr_helpers import TINY, fabricated_dataset, saved_asr


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
    import dmospeech.critics.whisper_states as ws
    from dmospeech.ops import executor
    import soundfile as sf

    audio = np.random.default_rng(1).standard_normal(48000 * 2).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.wav", audio, 48000)
    items = [LatentTextItem(f"seg{i}", "spk", "train", (1,), "", 0, 40, str(tmp_path / "a.wav"), 0.5 * i, 0.5 * i + 1,
                            "sha") for i in range(2)]
    built, encoders = [], []
    monkeypatch.setattr(executor, "_PROCESS_CACHE", {})   # models load once per process: start from none
    monkeypatch.setattr(ws, "encoder_identity", lambda name: f"fake {name}")
    monkeypatch.setattr(ws, "WhisperEncoder", lambda name, threads: built.append(name) or encoders.append(fake_encoder())
                        or encoders[-1])
    first = ws.whisper_encoder_states(items, "m1", tmp_path / "cache")
    assert sorted(first) == ["seg0", "seg1"] and first["seg0"].shape == (50, 3) and first["seg0"].dtype == torch.float16
    again = ws.whisper_encoder_states(items, "m1", tmp_path / "cache")
    assert built == ["m1"] and all(torch.equal(first[k], again[k]) for k in first)
    assert len(encoders[0].pieces) == 2                                  # the second call read the cache
    ws.whisper_encoder_states(items[:1], "m1", tmp_path / "cache")      # other segments: encoded again,
    assert len(encoders[0].pieces) == 3                                  # by the process's loaded model
    ws.whisper_encoder_states(items[:1], "m2", tmp_path / "cache")
    assert built == ["m1", "m2"]
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
