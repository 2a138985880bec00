"""The DAC-VAE codec: shapes at hop 1200, the Gaussian bottleneck and the KL term of eq. 12."""
from dataclasses import replace

import pytest
import torch

from dmospeech.codec.model import Codec, frames_for_samples, kl_loss
from dmospeech.codec.loss import CodecLoss, build_discriminator
from tests.helpers import codec_model, params


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return Codec(codec_model())


@pytest.mark.parametrize("samples", [1200, 4800, 5000, 48000 + 17])
def test_shapes_follow_the_hop(codec, samples):
    audio = torch.randn(2, 1, samples) * 0.1
    mean, logscale = codec.encode(audio)
    assert mean.shape == logscale.shape == (2, 64, frames_for_samples(samples, 1200))
    out = codec(audio)
    assert out["audio_hat"].shape == audio.shape
    assert codec.decode(mean).shape == (2, 1, mean.shape[-1] * 1200)


def test_forty_frames_per_second(codec):
    assert codec.hop_length == 1200 and 48000 / codec.hop_length == 40
    with pytest.raises(ValueError, match="40 Hz"):
        Codec(codec_model(strides=(2, 6, 10)))


def test_reparameterisation_uses_the_scale(codec):
    audio = torch.randn(1, 1, 4800) * 0.1
    torch.manual_seed(1)
    a = codec(audio)
    torch.manual_seed(2)
    b = codec(audio)
    assert torch.allclose(a["mean"], b["mean"]) and not torch.allclose(a["z"], b["z"])
    assert torch.allclose(codec(audio, sample=False)["z"], a["mean"])


def test_kl_matches_eq12_and_is_zero_for_the_prior():
    mean, logscale = torch.zeros(2, 64, 5), torch.zeros(2, 64, 5)
    assert kl_loss(mean, logscale) == 0
    mean = torch.full((1, 4, 3), 0.5)
    logscale = torch.full((1, 4, 3), torch.log(torch.tensor(2.0)).item())
    expected = 0.25 + 4.0 - torch.log(torch.tensor(4.0)) - 1
    assert torch.isclose(kl_loss(mean, logscale), expected)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    mean[..., 2] = 100.0  # masked frame does not count
    assert torch.isclose(kl_loss(mean, logscale, mask), expected)


def test_generator_and_discriminator_losses_have_gradients(codec):
    cfg = params().train_codec
    loss = CodecLoss(cfg.mel, cfg.loss_weights, build_discriminator(cfg.discriminator, 48000), 48000)
    audio = torch.randn(2, 1, 9600) * 0.1
    out = codec(audio)
    d, _ = loss.discriminator_losses(out["audio_hat"], audio)
    g, logs = loss.generator_losses(out, audio, adversarial=True)
    assert set(logs) >= {"mel/loss", "waveform/l1", "kl/loss", "adv/gen_loss", "adv/feat_loss", "loss/generator"}
    g["loss/generator"].backward()
    assert codec.encoder.block[0].weight_v.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown loss name"):
        CodecLoss(cfg.mel, {"mel": 1.0}, loss.gan.discriminator, 48000)


def test_decoding_after_a_frame_matches_the_full_decode(codec):
    torch.manual_seed(0)
    latents = torch.randn(1, codec.cfg.latent_dim, 50)
    with torch.no_grad():
        full = codec.decode(latents)
        after = codec.decode_after(latents, 30)
        near_start = codec.decode_after(latents, 5)  # less context than the default: starts at frame 0
    hop = codec.hop_length
    assert after.shape[-1] == 20 * hop and near_start.shape[-1] == 45 * hop
    assert torch.allclose(after, full[..., 30 * hop:], atol=1e-5)
    assert torch.allclose(near_start, full[..., 5 * hop:], atol=1e-6)
    # with too little context the samples after the cut differ: the test can tell
    assert not torch.allclose(codec.decode_after(latents, 30, context=0), full[..., 30 * hop:], atol=1e-5)


@pytest.fixture(scope="module")
def fast_codec():
    torch.manual_seed(0)
    p = params()
    return Codec(codec_model(fast_decoder=p.train_fast_decoder.decoder))


def test_the_fast_decoder_keeps_the_encoder_and_the_hop(codec, fast_codec):
    assert {k: v.shape for k, v in fast_codec.encoder.state_dict().items()} == \
           {k: v.shape for k, v in codec.encoder.state_dict().items()}
    audio = torch.randn(2, 1, 4800 + 17) * 0.1
    out = fast_codec(audio)
    assert out["audio_hat"].shape == audio.shape
    latents = torch.randn(2, 64, 7)
    assert fast_codec.decode(latents).shape == (2, 1, 7 * 1200)
    out["audio_hat"].square().mean().backward()
    assert fast_codec.decoder.head.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n_fft_hops"):
        Codec(replace(codec.cfg, fast_decoder=replace(params().train_fast_decoder.decoder, n_fft_hops=3)))


def test_fast_decoding_after_a_frame_matches_the_full_decode():
    torch.manual_seed(0)
    p = params()
    fast_codec = Codec(codec_model(fast_decoder=p.train_fast_decoder.decoder)).eval()
    for block in fast_codec.decoder.backbone.convnext:  # full-strength residual branches, as after training
        block.gamma.data.fill_(1.0)
    context = fast_codec.decode_context
    assert context == 3 * (fast_codec.cfg.fast_decoder.layers + 1) + fast_codec.cfg.fast_decoder.n_fft_hops // 2
    latents = torch.randn(1, 64, 2 * context + 20)
    start = context + 10
    with torch.no_grad():
        full = fast_codec.decode(latents)[..., start * fast_codec.hop_length:]
        after = fast_codec.decode_after(latents, start)
        short = fast_codec.decode_after(latents, start, context=10)
    assert after.shape == full.shape == (1, 1, (latents.shape[-1] - start) * fast_codec.hop_length)
    assert torch.allclose(after, full, atol=1e-7)
    # DAC's receptive field would be too short for it: the samples after the cut change
    assert (short - full).abs().max() > 1e-6


def test_the_fast_decoders_inverse_stft_is_vocos_head():
    torch.manual_seed(0)
    p = params()
    decoder = Codec(codec_model(fast_decoder=p.train_fast_decoder.decoder)).decoder
    for block in decoder.backbone.convnext:
        block.gamma.data.fill_(1.0)
    latents = torch.randn(2, 64, 13)
    with torch.no_grad():
        mine = decoder(latents)
        vocos = decoder.head(decoder.backbone(latents))[:, None]
    assert mine.shape == vocos.shape == (2, 1, 13 * 1200)
    assert torch.allclose(mine, vocos, atol=1e-6, rtol=1e-4) and vocos.abs().max() > 1e-3


def test_the_context_encoder_widens_what_each_latent_frame_hears():
    """context_layers ConvNeXt blocks (kernel 7) after DAC's encoder: a click in frame 40 reaches
    3 (layers + 1) more frames on each side, and the latents keep their shape."""
    reached = {}
    for layers in (0, 2):
        torch.manual_seed(0)
        codec = Codec(codec_model(encoder_dim=4, decoder_dim=16, context_layers=layers)).eval()
        audio = torch.randn(1, 1, 1200 * 60) * 0.1
        clicked = audio.clone()
        clicked[..., 1200 * 40:1200 * 41] += 0.5
        with torch.no_grad():
            mean, clicked_mean = codec.encode(audio)[0], codec.encode(clicked)[0]
        assert mean.shape == (1, 64, 60)
        changed = ((mean - clicked_mean).abs().amax(dim=1)[0] > 0).nonzero().flatten()
        reached[layers] = (int(changed.min()), int(changed.max()))
    assert reached[2] == (reached[0][0] - 9, reached[0][1] + 9)
