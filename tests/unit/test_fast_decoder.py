"""train_fast_decoder's task: a trained codec's encoder loaded and frozen, only the fast decoder
learns, and the checkpoint rebuilds as a codec with the same encoder."""
from dataclasses import asdict, replace

import pytest
import torch

from dmospeech.ops.checkpoint import read_run_config, save_checkpoint
from dmospeech.codec.model import Codec, FastDecoder
from dmospeech.ops.training import latest_checkpoint, train
from dmospeech.codec.trainer import CodecTask
from tests.codec_run import fabricated_clips, tiny_codec_config
from tests.helpers import codec_model, params


def small_fast_decoder_training(work):
    """train_fast_decoder's settings at the tiny test sizes of tests.codec_run."""
    p = params()
    small = tiny_codec_config(work, max_steps=3, checkpoint_every=3)
    cfg = replace(p.train_fast_decoder, decoder=replace(p.train_fast_decoder.decoder, dim=32, intermediate_dim=64,
                                                        layers=2),
                  mel=small.mel, discriminator=small.discriminator, crop_seconds=0.2, valid_clips=1,
                  valid_seconds=0.5, loop=replace(small.loop, batch_seconds=0.4))
    return cfg


def saved_codec(root, **changes):
    torch.manual_seed(0)
    cfg = codec_model(encoder_dim=4, decoder_dim=16, **changes)
    codec = Codec(cfg)
    return save_checkpoint(root, 1, {"codec.ema": codec.state_dict()}, {"step": 1},
                           {"task": "codec", "model": asdict(cfg)}, 0), codec


@pytest.mark.parametrize("context_layers", [0, 1])
def test_only_the_fast_decoder_learns_and_the_encoder_is_the_codecs(tmp_path, context_layers):
    codec_dir, source = saved_codec(tmp_path / "codec", context_layers=context_layers)
    cfg = small_fast_decoder_training(tmp_path).codec_training(source.cfg)
    clips = fabricated_clips(tmp_path, n=4)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir, encoder_from=codec_dir)
    codec = task.parts()[0].module
    assert isinstance(codec.decoder, FastDecoder)
    assert not any(p.requires_grad for p in codec.encoder.parameters())
    decoder_before = {k: v.clone() for k, v in codec.decoder.state_dict().items()}
    result = train(task, cfg.loop, task.run_config())
    assert result.step == 3
    for k, v in source.encoder.state_dict().items():
        assert torch.equal(codec.encoder.state_dict()[k], v), k
    assert any(not torch.equal(decoder_before[k], v) for k, v in codec.decoder.state_dict().items())

    saved = latest_checkpoint(cfg.loop.out_dir)
    assert read_run_config(saved)["encoder_from"] == str(codec_dir)
    rebuilt = Codec.from_checkpoint(saved)  # EMA weights: the frozen encoder's EMA is the encoder itself
    assert rebuilt.cfg.fast_decoder == cfg.model.fast_decoder
    for k, v in source.encoder.state_dict().items():
        assert torch.equal(rebuilt.encoder.state_dict()[k], v), k
    audio = torch.randn(1, 1, 4800) * 0.1
    with torch.no_grad():
        assert torch.equal(rebuilt.encode(audio)[0], source.encode(audio)[0])  # the same latents


def test_an_encoder_of_another_shape_is_refused(tmp_path):
    codec_dir, source = saved_codec(tmp_path / "codec")
    cfg = small_fast_decoder_training(tmp_path).codec_training(replace(source.cfg, encoder_dim=8))
    clips = fabricated_clips(tmp_path, n=2)
    with pytest.raises(ValueError, match="different encoder: encoder_dim 4 vs 8"):
        CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir, encoder_from=codec_dir).parts()


@pytest.mark.parametrize("decoder_latents", ["sample", "mean"])
def test_the_fast_decoder_learns_from_samples_or_from_posterior_means(tmp_path, monkeypatch, decoder_latents):
    import dmospeech.codec.model as model

    codec_dir, source = saved_codec(tmp_path / "codec")
    cfg = replace(small_fast_decoder_training(tmp_path), decoder_latents=decoder_latents).codec_training(source.cfg)
    clips = fabricated_clips(tmp_path, n=4)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir, encoder_from=codec_dir)
    draws = []
    monkeypatch.setattr(model, "reparameterize", lambda mean, logscale, eps: draws.append(1) or mean + logscale.exp() * eps)
    train(task, cfg.loop, task.run_config())
    assert bool(draws) == (decoder_latents == "sample")   # eq. 11's noise only when the decoder learns from samples
    run_config = read_run_config(latest_checkpoint(cfg.loop.out_dir))
    assert run_config.get("decoder_latents", "sample") == decoder_latents   # "sample" left out: older runs resume


def test_a_trainable_encoder_needs_the_samples(tmp_path):
    cfg = replace(tiny_codec_config(tmp_path), decoder_latents="mean")
    clips = fabricated_clips(tmp_path, n=2)
    with pytest.raises(ValueError, match="decoder_latents: mean"):
        CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
