"""A codec whose encoder reads Whisper states beside the audio (CodecConfig.semantic_input, as X-Codec):
the encoder needs them and says so, training feeds the cached states and stores their statistics in the
codec, every later encode (the latent cache, a frozen encoder for the fast decoder) standardises new
states with those statistics."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soxr
import torch

from dmospeech.codec.latents import encode_audio
from dmospeech.codec.model import Codec
from dmospeech.codec.trainer import CodecTask
from dmospeech.data.datasets import load_clip
from dmospeech.data.whisper_states import states_at_latent_rate
from dmospeech.ops.training import latest_checkpoint, train
from tests.codec_run import FakeEncoder, fabricated_clips, tiny_codec_config


def input_config(work, **loop):
    """tests.codec_run's tiny codec reading a fake Whisper's 2-wide states, without the semantic term."""
    cfg = tiny_codec_config(work, **loop)
    return replace(cfg, model=replace(cfg.model, semantic_input="fake", semantic_input_dim=2),
                   semantic=replace(cfg.semantic, cache_dir=str(work / "states")))


def test_the_encoder_reads_the_states_and_names_what_it_lacks(tmp_path):
    cfg = input_config(tmp_path).model
    torch.manual_seed(0)
    codec = Codec(cfg).eval()
    audio = 0.1 * torch.randn(1, 1, 4800)                                     # 4 latent frames
    with pytest.raises(ValueError, match=r"reads Whisper states \(b, 4, d\).*got None"):
        codec.encode(audio)
    with pytest.raises(ValueError, match=r"got \(1, 3, 2\)"):
        codec.encode(audio, torch.zeros(1, 3, 2))
    states = torch.randn(1, 4, 2)
    mean = codec.encode(audio, states)[0]
    torch.testing.assert_close(mean, codec.encode(audio, states)[0])
    assert not torch.allclose(mean, codec.encode(audio, -states)[0])          # the states change the latents
    with pytest.raises(ValueError, match="semantic_input_dim > 0"):
        Codec(replace(cfg, semantic_input_dim=0))
    assert "whisper_mean" not in Codec(replace(cfg, semantic_input="", semantic_input_dim=0)).state_dict()


def test_training_feeds_the_cached_states_and_the_codec_keeps_their_statistics(tmp_path, fake_whisper):
    cfg = input_config(tmp_path, max_steps=2, checkpoint_every=2)
    clips = fabricated_clips(tmp_path, n=3)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    assert not task.semantic_term and fake_whisper.built == ["fake"]
    batch = task.collate([task.dataset[0], task.dataset[1]])
    assert batch["states"].shape == (2, 4, 2)
    run = task.run_config()
    assert "semantic" not in run and run["model"]["semantic_input"] == "fake" and "semantic_dim" not in run["model"]
    result = train(task, cfg.loop, run)
    assert result.step == 2 and "semantic/loss" not in result.metrics
    codec = Codec.from_checkpoint(latest_checkpoint(cfg.loop.out_dir))
    torch.testing.assert_close(codec.whisper_mean, task.targets.mean)
    torch.testing.assert_close(codec.whisper_std, task.targets.std)
    assert float(codec.whisper_std.sub(1).abs().max()) > 1e-3                 # real statistics, not the defaults


def test_encoding_new_audio_standardises_its_states_with_the_codecs_statistics(tmp_path, fake_whisper):
    cfg = input_config(tmp_path).model
    torch.manual_seed(0)
    codec = Codec(cfg).eval()
    codec.whisper_mean.copy_(torch.tensor([0.01, 0.2]))
    codec.whisper_std.copy_(torch.tensor([0.5, 0.1]))
    audio = load_clip(fabricated_clips(tmp_path, n=1)[0], 48000)             # 1 s: 40 frames
    raw = FakeEncoder("fake").encode([soxr.resample(audio, 48000, 16000).astype(np.float32)])[0]
    expected = (states_at_latent_rate(torch.from_numpy(raw), 40) - codec.whisper_mean) / codec.whisper_std
    with torch.no_grad():
        wanted = codec.encode(torch.from_numpy(audio)[None, None], expected[None])[0][0].T
    torch.testing.assert_close(encode_audio(codec, [audio], ["clip0"], use_mean=True)[0], wanted)


def test_a_frozen_encoder_brings_its_own_statistics(tmp_path, fake_whisper):
    cfg = input_config(tmp_path, max_steps=1, checkpoint_every=1)
    clips = fabricated_clips(tmp_path, n=3)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    train(task, cfg.loop, task.run_config())
    source = latest_checkpoint(cfg.loop.out_dir)
    other = fabricated_clips(tmp_path / "other", n=2)                          # other clips, other statistics
    fast_cfg = replace(cfg, loop=replace(cfg.loop, out_dir=str(tmp_path / "fast")))
    fast = CodecTask(fast_cfg, other, other[:1], fast_cfg.loop.report_dir, encoder_from=source)
    frozen = fast.parts()[0].module
    torch.testing.assert_close(fast.targets.mean, task.targets.mean)
    torch.testing.assert_close(frozen.whisper_std, task.targets.std)
    assert set(fast.validation_losses(frozen)) == {"valid/mel_loss"}          # states, but no semantic head
    with pytest.raises(ValueError, match="semantic_input fake vs "):
        CodecTask(replace(fast_cfg, model=replace(fast_cfg.model, semantic_input="", semantic_input_dim=0)), other,
                  other[:1], fast_cfg.loop.report_dir, encoder_from=source).parts()


def test_a_decoder_is_only_paired_with_the_same_whisper_statistics(tmp_path):
    """Synthesis pairs a model's codec with a fast decoder's checkpoint only when their latents agree:
    the same encoder weights and, for a Whisper input, the same statistics."""
    from dataclasses import asdict

    from dmospeech.ops.checkpoint import save_checkpoint
    from dmospeech.synthesis.synthesizer import SynthesisError, same_encoder_codec

    cfg = input_config(tmp_path).model
    torch.manual_seed(0)
    codec = Codec(cfg).eval()
    codec.whisper_mean.copy_(torch.tensor([0.1, 0.2]))

    def saved(name: str, mean: list[float]):
        fast = Codec(cfg)
        fast.load_state_dict(codec.state_dict())
        fast.whisper_mean.copy_(torch.tensor(mean))
        return save_checkpoint(tmp_path / name, 1, {"codec.ema": fast.state_dict()}, {"step": 1},
                               {"task": "codec", "model": asdict(cfg)}, 0)

    assert torch.equal(same_encoder_codec(codec, saved("same", [0.1, 0.2])).whisper_mean, codec.whisper_mean)
    with pytest.raises(SynthesisError, match="fitted to another codec's latents"):
        same_encoder_codec(codec, saved("other", [0.1, 0.3]))


def test_whisper_input_dropout_zeroes_whole_items_of_the_input_only(tmp_path, fake_whisper):
    cfg = replace(input_config(tmp_path, max_steps=2, checkpoint_every=2), whisper_input_dropout=0.5)
    clips = fabricated_clips(tmp_path, n=4)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    batch = task.collate([task.dataset[i] for i in range(4)] * 8)              # 32 items
    torch.manual_seed(0)
    given = task.whisper_input(batch)
    dropped = given.abs().sum(dim=(1, 2)) == 0
    kept = ~dropped
    assert 4 <= int(dropped.sum()) <= 28                                       # about half, whole items
    torch.testing.assert_close(given[kept], batch["states"][kept])
    assert float(batch["states"][dropped].abs().sum()) > 0                     # the term's targets stay whole
    assert task.run_config()["whisper_input_dropout"] == 0.5
    assert train(task, cfg.loop, task.run_config()).step == 2
    assert "whisper_input_dropout" not in CodecTask(input_config(tmp_path), clips, clips[:1], cfg.loop.report_dir).run_config()
    with pytest.raises(ValueError, match="whisper_input_dropout 1.0"):
        CodecTask(replace(cfg, whisper_input_dropout=1.0), clips, clips[:1], cfg.loop.report_dir)
    plain = replace(cfg, model=replace(cfg.model, semantic_input="", semantic_input_dim=0))
    with pytest.raises(ValueError, match="only for a codec with model.semantic_input"):
        CodecTask(plain, clips, clips[:1], cfg.loop.report_dir)
