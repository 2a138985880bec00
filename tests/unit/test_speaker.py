"""The latent speaker verifier: gradients to the latents, padding independence, eq. 31, verification
metrics, pitch shift, the offline teachers, the cache of shifted copies and a short training run."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dmospeech.ops.checkpoint import save_checkpoint
from dmospeech.config import CodecConfig, LatentASRConfig, SpeakerTeachersConfig, SpeakerVerifierConfig
from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.codec.latents import LatentStats, LatentStore, ShardWriter, encode_audio
from dmospeech.critics.speaker_copies import SpeakerCopy, TrialSet, build_speaker_copies, speaker_trials
from dmospeech.critics.asr import LatentASR
from dmospeech.codec.model import Codec
from dmospeech.critics.speaker import LatentSpeakerVerifier, distillation_loss
from dmospeech.critics.speaker_teachers import (ConcatTeacher, ResemblyzerTeacher, WavLMTeacher, WeSpeakerTeacher,
                                        build_teacher, pitch_shift)
from dmospeech.ops.training import train
from dmospeech.critics.sv_trainer import SpeakerCopyDataset, SVCriticTask, equal_error_rate, verification_metrics
from tests.helpers import params, voiced, write
from tests.unit.asr_helpers import saved_asr

ASR = LatentASRConfig(latent_dim=8, dim=16, ff_dim=32, heads=2, layers=2, conv_kernel=5, dropout=0.0, vocab_size=12)
SV = SpeakerVerifierConfig(channels=16, res2_scale=4, se_dim=8, attention_dim=8, embedding_dim=6)


@pytest.mark.parametrize("with_latents", [False, True])
def test_frozen_checkpoint_passes_gradients_to_latents(tmp_path, with_latents):
    torch.manual_seed(0)
    cfg = replace(SV, with_latents=with_latents)
    sv = LatentSpeakerVerifier(cfg, LatentASR(ASR))
    assert sv.ecapa.stem.conv.in_channels == ASR.layers * ASR.dim + (ASR.latent_dim if with_latents else 0)
    weights = {"sv": sv.state_dict(), "sv.ema": sv.state_dict()}
    model = dict(cfg.__dict__)
    if not with_latents:
        del model["with_latents"]  # a checkpoint from before the option reads as without it
    path = save_checkpoint(tmp_path, 1, weights, {}, {"task": "sv_critic", "model": model,
                                                     "asr_model": ASR.__dict__}, 0)
    frozen = LatentSpeakerVerifier.from_checkpoint(path)
    assert frozen.cfg == cfg
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    latents = torch.randn(3, 25, 8, requires_grad=True)
    mask = torch.ones(3, 25, dtype=torch.bool)
    mask[2, 10:] = False
    embeddings = frozen(latents, mask)
    torch.testing.assert_close(embeddings, sv.eval()(latents, mask))
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    losses, _ = distillation_loss(embeddings[:2], embeddings[[1, 2]].detach())
    losses["sv/loss"].backward()
    assert torch.isfinite(latents.grad).all() and latents.grad[:2].abs().sum() > 0
    assert latents.grad[2].abs().sum() == 0  # only through the first two items
    assert all(p.grad is None for p in frozen.parameters())


@pytest.mark.parametrize("with_latents", [False, True])
def test_embedding_does_not_depend_on_padding(with_latents):
    torch.manual_seed(1)
    sv = LatentSpeakerVerifier(replace(SV, with_latents=with_latents), LatentASR(ASR)).eval()
    short = torch.randn(1, 11, 8)
    batch = torch.full((2, 30, 8), 3.0)
    batch[0], batch[1, :11] = torch.randn(30, 8), short[0]
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0], mask[1, :11] = True, True
    torch.testing.assert_close(sv(batch, mask)[1], sv(short, torch.ones(1, 11, dtype=torch.bool))[0],
                               atol=1e-5, rtol=1e-5)


def test_a_batch_of_one_trains():
    """The loader can end an epoch with a single item: a training step must still work."""
    sv = LatentSpeakerVerifier(SV, LatentASR(ASR)).train()
    embedding = sv(torch.randn(1, 12, 8), torch.ones(1, 12, dtype=torch.bool))
    distillation_loss(embedding, torch.randn(1, 6))[0]["sv/loss"].backward()
    assert all(p.grad is not None for p in sv.ecapa.parameters())


def test_distillation_loss_is_one_minus_cosine():
    e = torch.nn.functional.normalize(torch.randn(4, 6), dim=-1)
    assert float(distillation_loss(e, 3 * e)[0]["sv/loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(e, -e)[0]["sv/loss"]) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="embedding_dim to 5"):
        distillation_loss(e, torch.randn(4, 5))


def test_equal_error_rate_and_metrics_on_hand_made_scores():
    same = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    assert equal_error_rate(np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.2]), same) == pytest.approx(1 / 3)
    assert equal_error_rate(np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3]), same) == 0.0
    assert equal_error_rate(np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7]), same) == 1.0
    with pytest.raises(ValueError, match="same- and different-speaker"):
        equal_error_rate(np.array([0.5, 0.4]), np.array([True, True]))
    centres = torch.nn.functional.normalize(torch.randn(3, 6), dim=-1)
    speakers = ["a", "a", "b", "b", "c", "c"]
    teacher = centres[[0, 0, 1, 1, 2, 2]] + 0.05 * torch.randn(6, 6)
    trials = TrialSet([torch.zeros(1, 8)] * 6, teacher, speakers)
    metrics = verification_metrics(teacher.clone(), trials, torch.zeros(6))
    assert metrics["valid/eer"] == metrics["valid/teacher_eer"] == 0.0
    assert metrics["valid/pearson"] == pytest.approx(1.0) and metrics["valid/sv_loss"] == pytest.approx(0.0, abs=1e-6)


def test_pitch_shift_moves_a_tone_and_keeps_the_length():
    sr = 48000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    for semitones, expected in ((12, 400.0), (-5, 200 * 2 ** (-5 / 12))):
        shifted = pitch_shift(tone, sr, semitones)
        assert len(shifted) == len(tone) and shifted.dtype == np.float32
        spectrum = np.abs(np.fft.rfft(shifted[sr // 4: 3 * sr // 4]))
        assert np.fft.rfftfreq(sr // 2, 1 / sr)[spectrum.argmax()] == pytest.approx(expected, abs=6)
    assert np.array_equal(pitch_shift(tone, sr, 0), tone)


def test_resemblyzer_teacher_tells_speakers_apart(dev_corpus):
    from dmospeech.data.resample import condition_file

    teacher = build_teacher(SpeakerTeachersConfig(None, None))
    assert isinstance(teacher, ResemblyzerTeacher) and teacher.dim == 256
    cfg = params().resample_audio
    a, _ = condition_file(str(next((dev_corpus / "kathleen" / "wavs").glob("*.flac"))), cfg)
    b, _ = condition_file(str(sorted((dev_corpus / "kathleen" / "wavs").glob("*.flac"))[1]), cfg)
    c, _ = condition_file(str(next((dev_corpus / "ljspeech" / "wavs").glob("*.wav"))), cfg)
    ea, eb, ec = (teacher.embed(x, cfg.sample_rate) for x in (a, b, c))
    assert ea.shape == (256,) and np.linalg.norm(ea) == pytest.approx(1.0, abs=1e-5)
    assert float(ea @ eb) > float(ea @ ec) + 0.1
    assert float(ea @ teacher.embed(pitch_shift(a, cfg.sample_rate, 4.0), cfg.sample_rate)) < float(ea @ eb)


@pytest.mark.slow  # importing pyannote takes ~20 s
def test_local_wespeaker_and_wavlm_weights_load_and_concatenate(tmp_path):
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(0)
    resnet = WeSpeakerResNet34().resnet.state_dict()
    torch.save({**resnet, "projection.weight": torch.zeros(1)}, tmp_path / "avg_model.pt")  # WeSpeaker's own layout
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                      conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
                      xvector_output_dim=12)
    WavLMForXVector(cfg).save_pretrained(tmp_path / "wavlm")
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "wavlm")
    teacher = build_teacher(SpeakerTeachersConfig(str(tmp_path / "avg_model.pt"), str(tmp_path / "wavlm")))
    assert isinstance(teacher, ConcatTeacher) and teacher.dim == 256 + 12
    wespeaker, wavlm = teacher.teachers
    assert isinstance(wespeaker, WeSpeakerTeacher) and isinstance(wavlm, WavLMTeacher)
    assert torch.equal(wespeaker.model.resnet.state_dict()["conv1.weight"], resnet["conv1.weight"])
    audio = voiced(1.5, 48000)
    e = teacher.embed(audio, 48000)
    assert e.shape == (268,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(e[:256] * np.sqrt(2), wespeaker.embed(audio, 48000), atol=1e-5)
    torch.save({"state_dict": resnet, "spec": SpeakerTeachersConfig(None, None)}, tmp_path / "pickled.bin")
    with pytest.raises(ValueError, match="weights_only"):
        WeSpeakerTeacher(tmp_path / "pickled.bin")


class PitchTeacher:
    """A test double of a speaker encoder: the unit vector of the audio's low-band spectrum."""
    name, dim, identity = "pitch", 6, "pitch-1"

    def __init__(self):
        self.calls = 0

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        self.calls += 1
        spectrum = np.abs(np.fft.rfft(audio, sample_rate))[100:1300].reshape(6, 200).sum(1)
        return (spectrum / np.linalg.norm(spectrum)).astype(np.float32)


def test_speaker_copies_are_cached_and_shifted(tmp_path):
    torch.manual_seed(0)
    codec = Codec(CodecConfig(48000, 4, (2, 6, 10, 10), 8, 16)).eval()
    items, writer = [], ShardWriter(tmp_path / "latents", 10_000)
    (tmp_path / "latents").mkdir()
    for i, f0 in enumerate((120.0, 210.0)):
        audio = voiced(1.0, 48000, f0=f0, seed=i)
        path = write(tmp_path / f"{i}.wav", audio, 48000)
        z = encode_audio(codec, [audio], [f"seg{i}"], use_mean=True)[0]
        shard, offset = writer.add(z)
        items.append(LatentTextItem(f"seg{i}", f"spk{i}", "train", (1, 2), shard, offset, len(z), str(path), 0.0, 1.0,
                                    f"sha{i}"))
    writer.flush()
    store, teacher = LatentStore(tmp_path / "latents"), PitchTeacher()

    def build(shifts):
        return build_speaker_copies(items, store, codec, "codec", teacher, shifts, tmp_path / "cache", 10_000, True)

    copies, embeddings = build((-3.0, 3.0))
    assert [c.speaker for c in copies] == ["spk0", "spk0@-3st", "spk0@+3st", "spk1", "spk1@-3st", "spk1@+3st"]
    assert embeddings.shape == (6, 6) and teacher.calls == 6
    cache = LatentStore(tmp_path / "cache")
    read = [cache.read(c.shard, c.frame_offset, c.num_frames) for c in copies]
    assert torch.equal(read[0], store.read(items[0].shard, items[0].frame_offset, items[0].num_frames))
    assert not torch.allclose(read[0], read[2])
    assert float(embeddings[0] @ embeddings[2]) < 0.99
    again, same = build((-3.0, 3.0))
    assert again == copies and torch.equal(same, embeddings) and teacher.calls == 6  # reused
    assert len(build((2.0,))[0]) == 4 and teacher.calls == 10  # other shifts: rebuilt
    trials = speaker_trials(items, store, LatentStats((0.0,) * 8, (1.0,) * 8, 1, "codec"), teacher, 0.4, 48000, 40)
    assert trials.speakers == ["spk0", "spk0", "spk1", "spk1"] and all(len(z) == 16 for z in trials.latents)
    with pytest.raises(ValueError, match="0 is the original"):
        build((0.0, 2.0))


def test_training_run_learns_the_teacher(tmp_path):
    """Speakers are latent offsets; the teacher gives each speaker a fixed direction."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    offsets, directions = torch.randn(6, 8, generator=gen), torch.nn.functional.normalize(torch.randn(6, 6), dim=-1)
    (tmp_path / "z").mkdir()
    writer, copies, teacher = ShardWriter(tmp_path / "z", 100_000), [], []
    for i in range(48):
        speaker = i % 6
        shard, offset = writer.add(offsets[speaker] + 0.5 * torch.randn(40, 8, generator=gen))
        copies.append(SpeakerCopy(f"s{i}", str(speaker), 0.0, shard, offset, 40))
        teacher.append(directions[speaker])
    writer.flush()
    stats = LatentStats((0.0,) * 8, (1.0,) * 8, 1, "none")
    teacher = [t + 0.5 for t in teacher]  # a common direction, as Resemblyzer's embeddings share
    dataset = SpeakerCopyDataset(copies, torch.stack(teacher), LatentStore(tmp_path / "z"), stats, 20, 40)
    mean = torch.stack(teacher).mean(0)
    torch.testing.assert_close(dataset[7]["teacher"], torch.nn.functional.normalize(teacher[7] - mean, dim=0))
    assert len(dataset[7]["latents"]) == 20  # a crop
    trials = TrialSet([dataset[i]["latents"] for i in range(12)], torch.stack(teacher[:12]),
                      [c.speaker for c in copies[:12]])
    cfg = params().train_sv_critic
    loop = replace(cfg.loop, max_steps=40, checkpoint_every=40, valid_every=0, log_every=0, batch_seconds=6.0,
                   ema_decay=0.9, out_dir=str(tmp_path / "ckpt"), report_dir=str(tmp_path / "report"))
    cfg = replace(cfg, model=SV, loop=loop, optimizer=replace(cfg.optimizer, lr=3e-3, warmup_steps=5))
    task = SVCriticTask(cfg, dataset, trials, ASR, None, "test")
    task.parts()
    before = task.evaluate(task._part.module)
    result = train(task, loop, task.run_config())
    after = task.evaluate(LatentSpeakerVerifier.from_checkpoint(result.checkpoint))
    assert after["valid/sv_loss"] < 0.3 < before["valid/sv_loss"]
    assert after["valid/eer"] == 0.0 and after["valid/pearson"] > 0.7
    with pytest.raises(ValueError, match="embedding_dim is 7"):
        SVCriticTask(replace(cfg, model=replace(SV, embedding_dim=7)), dataset, trials, ASR, None, "test")


    asr, asr_path = saved_asr(tmp_path / "asr", ASR)
    loop = replace(loop, max_steps=3, out_dir=str(tmp_path / "frozen"), report_dir=str(tmp_path / "frozen_report"))
    for fine_tune in (False, True):
        task = SVCriticTask(replace(cfg, loop=loop, fine_tune_recogniser=fine_tune), dataset, trials, ASR, asr_path,
                            "test")
        task.parts()
        train(task, replace(loop, out_dir=str(tmp_path / f"ft{fine_tune}")), task.run_config())
        moved = [not torch.equal(p, q) for p, q in zip(task._part.module.features.parameters(), asr.parameters())]
        assert any(moved) == fine_tune  # frozen: the recogniser keeps its trained weights
