"""The Whisper feature-matching loss (train_codec / train_fast_decoder .whisper_feature): the torch copy
of the packaged Whisper encoder agrees with faster-whisper's on real speech, the loss ranks a damaged
reconstruction below a faithful one and trains only the decoder, and the codec task adds it, logs it,
records it in the run config and leaves everything as before when it is off."""
from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from dmospeech.codec.trainer import CodecTask
from dmospeech.codec.whisper_feature import TorchWhisperEncoder, WhisperFeatureLoss, read_ctranslate2_encoder
from dmospeech.data.whisper_states import WhisperEncoder
from dmospeech.ops.audio import resample
from dmospeech.ops.checkpoint import read_run_config
from dmospeech.ops.training import latest_checkpoint, train
from tests.codec_run import fabricated_clips, tiny_codec_config
from tests.unit.test_fast_decoder import saved_codec, small_fast_decoder_training


def speech(dev_corpus, seconds: float, rate: int) -> np.ndarray:
    path = sorted((dev_corpus / "librispeech").rglob("*.flac"))[0]
    audio, sr = sf.read(path, dtype="float32")
    return resample(audio, sr, rate)[: int(seconds * rate)].astype(np.float32)


def test_the_torch_encoder_agrees_with_faster_whispers_on_real_speech(dev_corpus):
    audio = speech(dev_corpus, 4.0, 16000)
    reference = WhisperEncoder("tiny.en").encode([audio])[0]                     # CTranslate2, int8
    ours = TorchWhisperEncoder("tiny.en")(torch.from_numpy(audio)[None])[0].numpy()
    assert ours.shape == reference.shape == (200, 384)
    cosine = (ours * reference).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert cosine.mean() > 0.995 and cosine.min() > 0.9


def test_the_loss_ranks_damage_and_its_gradient_reaches_only_the_reconstruction(dev_corpus):
    loss = WhisperFeatureLoss("tiny.en", 48000)
    audio = torch.from_numpy(speech(dev_corpus, 2.0, 48000))[None, None]
    faithful = audio + 0.001 * torch.randn_like(audio)
    lowpassed = torch.from_numpy(resample(resample(audio[0, 0].numpy(), 48000, 2000), 2000, 48000))[None, None]
    damaged = lowpassed[..., : audio.shape[-1]].clone().requires_grad_()
    good, bad = loss(faithful, audio)[1], loss(damaged, audio)
    assert good["whisper_feature/cosine"] > 0.95 > bad[1]["whisper_feature/cosine"]
    assert good["whisper_feature/loss"] < bad[1]["whisper_feature/loss"]
    bad[0]["whisper_feature/loss"].backward()
    assert damaged.grad is not None and damaged.grad.abs().sum() > 0
    assert not list(loss.parameters()) and not any(b.requires_grad for b in loss.buffers())   # frozen
    assert loss.state_dict() == {}                        # nothing of it lands in a checkpoint


def test_the_reader_refuses_what_it_does_not_know(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(struct.pack("<I", 5))
    with pytest.raises(ValueError, match="binary version 5"):
        read_ctranslate2_encoder(bad)
    name = b"TransformerSpec\0"
    bad.write_bytes(struct.pack("<IH", 6, len(name)) + name)
    with pytest.raises(ValueError, match="a TransformerSpec, not a Whisper model"):
        read_ctranslate2_encoder(bad)


def test_the_fast_decoder_trains_with_the_loss_and_records_it(tmp_path):
    codec_dir, source = saved_codec(tmp_path / "codec")
    base = small_fast_decoder_training(tmp_path)
    cfg = replace(base, whisper_feature=replace(base.whisper_feature, weight=5.0)).codec_training(source.cfg)
    clips = fabricated_clips(tmp_path, n=4)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir, encoder_from=codec_dir)
    logged = []
    step = task.train_step
    task.train_step = lambda *a: logged.append(step(*a)) or logged[-1]
    train(task, cfg.loop, task.run_config())
    assert logged and all(np.isfinite(entry["whisper_feature/loss"]) for entry in logged)
    total = logged[0]["loss/total"]
    assert total == pytest.approx(logged[0]["loss/generator"] + 5.0 * logged[0]["whisper_feature/loss"], rel=1e-4)
    assert read_run_config(latest_checkpoint(cfg.loop.out_dir))["whisper_feature"] == {"weight": 5.0,
                                                                                        "whisper_model": "tiny.en"}
    assert "valid/whisper_feature_loss" in task.validation_losses(task.parts()[0].module)


def test_off_by_default_and_a_negative_weight_is_refused(tmp_path):
    cfg = tiny_codec_config(tmp_path)
    clips = fabricated_clips(tmp_path, n=2)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    assert task.whisper_feature is None and "whisper_feature" not in task.run_config()
    with pytest.raises(ValueError, match="whisper_feature.weight -1.0"):
        CodecTask(replace(cfg, whisper_feature=replace(cfg.whisper_feature, weight=-1.0)), clips, clips[:1],
                  cfg.loop.report_dir)
