"""The DAC variational autoencoder of appendix C.1: descript-audio-codec's own encoder and decoder
blocks with the residual vector quantiser replaced by a Gaussian bottleneck; optionally a
Vocos-style fast decoder (vocos' ConvNeXt backbone and ISTFT head) in place of DAC's decoder.

Shapes: b batch, t samples (48 kHz), n latent frames (t / hop, 40 Hz), c latent channels (64),
d semantic width (Whisper's, 512 for base).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from dac.model.dac import Decoder, Encoder, init_weights
from torch import nn
from vocos.heads import ISTFTHead
from vocos.models import VocosBackbone

from dmospeech.config import CodecConfig, FastDecoderConfig, from_dict

DECODE_CONTEXT_FRAMES = 16  # DAC decoder: frames decoded before the first wanted one (receptive field is ~9)

LOGSCALE_MIN, LOGSCALE_MAX = -12.0, 4.0


class FastDecoder(nn.Module):
    """Latents (b, c, n) -> audio (b, 1, n * hop): vocos' ConvNeXt backbone at the latent frame
    rate, then its ISTFT head (log-magnitude and phase per frame, "same" padding, n_fft =
    n_fft_hops * hop). All matrix products at 40 Hz instead of DAC's convolutions at 48 kHz."""

    def __init__(self, latent_dim: int, hop_length: int, cfg: FastDecoderConfig):
        super().__init__()
        if cfg.n_fft_hops < 2 or cfg.n_fft_hops % 2:
            raise ValueError(f"fast_decoder.n_fft_hops must be even and >= 2 (the window overlaps whole frames "
                             f"on both sides), got {cfg.n_fft_hops}")
        self.cfg = cfg
        self.backbone = VocosBackbone(latent_dim, cfg.dim, cfg.intermediate_dim, cfg.layers)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft_hops * hop_length, hop_length, padding="same")

    @property
    def context_frames(self) -> int:
        """Frames either side that an output frame depends on: the embedding conv and every
        ConvNeXt block see +-3 frames (kernel 7), the inverse STFT's window +-n_fft_hops / 2."""
        return 3 * (self.cfg.layers + 1) + self.cfg.n_fft_hops // 2

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """vocos' ISTFTHead.forward with the same parameters and output, computed faster on CPU: the
        spectrum from cos and sin of the phase, the overlap-add by strided sums instead of `fold`
        (about a third of the decoding time here); tests check it against vocos' head."""
        return self.waveform(self.spectral_frames(latents))

    def spectral_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """The learned part: (b, c, n) -> (b, n, n_fft + 2), log-magnitudes, then phases."""
        return self.head.out(self.backbone(latents))

    def waveform(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed part: spectral frames (b, n, n_fft + 2) -> (b, 1, n * hop) by the inverse STFT."""
        return frames_to_waveform(x, self.head.istft.window, self.head.istft.hop_length)


def frames_to_waveform(x: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """Spectral frames (b, n, n_fft + 2), log-magnitudes then phases -> (b, 1, n * hop) by the inverse STFT."""
    bins = x.shape[-1] // 2
    magnitude, phase = torch.exp(x[..., :bins]).clamp(max=1e2), x[..., bins:]
    spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))  # torch.polar: 2x slower on CPU
    return istft_same(spectrum.transpose(1, 2), window, hop)[:, None]


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(b, n_fft, n) windowed frames, n_fft a multiple of hop -> (b, (n + n_fft / hop - 1) * hop)."""
    b, n_fft, n = frames.shape
    k = n_fft // hop
    pieces = frames.transpose(1, 2).reshape(b, n, k, hop)
    out = frames.new_zeros(b, n + k - 1, hop)
    for i in range(k):
        out[:, i:i + n] += pieces[:, :, i]
    return out.reshape(b, -1)


def istft_same(spectrum: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """Inverse STFT with "same" padding as vocos.spectral_ops.ISTFT: (b, n_fft / 2 + 1, n) complex ->
    (b, n * hop), normalised by the summed squared window."""
    n_fft = window.numel()
    frames = torch.fft.irfft(spectrum, n_fft, dim=1, norm="backward") * window[None, :, None]
    pad = (n_fft - hop) // 2
    envelope = overlap_add(window.square()[None, :, None].expand(1, n_fft, spectrum.shape[-1]), hop)
    return overlap_add(frames, hop)[:, pad:-pad] / envelope[:, pad:-pad]  # cut first: the edges' envelope is 0


class ContextEncoder(nn.Module):
    """DAC's encoder, then `layers` ConvNeXt blocks at the latent frame rate (vocos' backbone, +-3
    frames each) and a 1x1 convolution to the bottleneck's 2c channels: each latent frame sees about
    +-3 (layers + 1) frames of the encoder's features, as Mimi's encoder transformer gives its latents
    context, at 40 Hz instead of 48 kHz. With `semantic_dim` > 0 a 1x1 convolution of the standardised
    Whisper states is added to DAC's features first, as X-Codec joins semantic and acoustic features
    before its bottleneck. (b, 1, t) [, (b, n, d)] -> (b, out_channels, n = t / hop)."""

    def __init__(self, encoder_dim: int, strides: list[int], out_channels: int, layers: int, semantic_dim: int = 0):
        super().__init__()
        width = encoder_dim * 2 ** len(strides)   # DAC's encoder doubles its width at every stride
        self.dac = Encoder(encoder_dim, strides, width)
        self.semantic_in = nn.Conv1d(semantic_dim, width, 1) if semantic_dim else None
        self.context = VocosBackbone(width, width, 3 * width, layers) if layers else None
        self.out = nn.Conv1d(width, out_channels, 1)

    def forward(self, audio: torch.Tensor, whisper: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dac(audio)                                            # (b, width, n)
        if self.semantic_in is not None:
            if whisper is None or whisper.shape[1] != h.shape[-1]:
                got = None if whisper is None else tuple(whisper.shape)
                raise ValueError(f"this codec's encoder reads Whisper states (b, {h.shape[-1]}, d) beside the audio; "
                                 f"got {got}: compute them with dmospeech.codec.semantic.whisper_input")
            h = h + self.semantic_in(whisper.transpose(1, 2))
        if self.context is not None:
            h = self.context(h).transpose(1, 2)
        return self.out(h)


class Codec(nn.Module):
    """encode(audio) -> (mean, logscale); decode(latents) -> audio; forward = both with eq. 11. With
    `cfg.semantic_dim` > 0 also a semantic head on the posterior mean (training only, see
    dmospeech.codec.semantic); encode and decode never read it."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        if cfg.hop_length * 40 != cfg.sample_rate:
            raise ValueError(f"codec strides {cfg.strides} give hop {cfg.hop_length}; the paper's latents are "
                             f"40 Hz, which needs hop {cfg.sample_rate // 40} at {cfg.sample_rate} Hz")
        self.cfg = cfg
        # DAC's encoder ends in a conv to d_latent channels: 2c = mean and log-scale (eq. 11)
        if bool(cfg.semantic_input) != (cfg.semantic_input_dim > 0):
            raise ValueError(f"codec semantic_input {cfg.semantic_input!r} needs semantic_input_dim > 0 (the Whisper "
                             f"width) and the other way round; got semantic_input_dim {cfg.semantic_input_dim}")
        self.encoder = (Encoder(cfg.encoder_dim, list(cfg.strides), 2 * cfg.latent_dim)
                        if not cfg.context_layers and not cfg.semantic_input_dim
                        else ContextEncoder(cfg.encoder_dim, list(cfg.strides), 2 * cfg.latent_dim, cfg.context_layers,
                                            cfg.semantic_input_dim))
        if cfg.semantic_input_dim:  # the training clips' Whisper channel statistics (its input is standardised)
            self.register_buffer("whisper_mean", torch.zeros(cfg.semantic_input_dim))
            self.register_buffer("whisper_std", torch.ones(cfg.semantic_input_dim))
        self.decoder = (Decoder(cfg.latent_dim, cfg.decoder_dim, list(reversed(cfg.strides)))
                        if cfg.fast_decoder is None else FastDecoder(cfg.latent_dim, cfg.hop_length, cfg.fast_decoder))
        self.semantic = nn.Conv1d(cfg.latent_dim, cfg.semantic_dim, 3, padding=1) if cfg.semantic_dim else None
        self.apply(init_weights)

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def pad(self, audio: torch.Tensor) -> torch.Tensor:
        """Right-pad (b, 1, t) with zeros to a multiple of the hop."""
        return F.pad(audio, (0, (-audio.shape[-1]) % self.hop_length))

    def encode(self, audio: torch.Tensor, whisper: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, 1, t) -> mean, logscale, each (b, c, n = ceil(t / hop)). With `cfg.semantic_input` the
        encoder also reads `whisper`: the audio's Whisper states at 40 Hz, standardised (b, n, d)."""
        audio = self.pad(audio)
        features = self.encoder(audio) if whisper is None else self.encoder(audio, whisper)
        mean, logscale = features.chunk(2, dim=1)
        return mean, logscale.clamp(LOGSCALE_MIN, LOGSCALE_MAX)

    def standardised_whisper(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw Whisper states (b, n, d) -> the encoder's input, with the training clips' statistics."""
        return (raw - self.whisper_mean) / self.whisper_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(b, c, n) -> (b, 1, n * hop)."""
        return self.decoder(latents)

    @property
    def decode_context(self) -> int:
        """Latent frames before the first wanted one that decode_after still decodes: at least the
        decoder's receptive field (DAC's is about +-9 frames, the fast decoder's is computed)."""
        if isinstance(self.decoder, FastDecoder):
            return self.decoder.context_frames
        return DECODE_CONTEXT_FRAMES

    def decode_after(self, latents: torch.Tensor, start: int, context: int | None = None) -> torch.Tensor:
        """decode(latents)[..., start * hop:] without decoding the frames before `start - context`:
        the decoder's receptive field is under `context` frames (checked in the tests), so the
        samples after `start` come out the same. For synthesis, where the prompt's frames are
        conditioning and only the continuation is heard."""
        return decode_after(self.decode, latents, start, self.decode_context if context is None else context,
                            self.hop_length)

    def predict_semantic(self, mean: torch.Tensor) -> torch.Tensor:
        """The semantic head: posterior-mean latents (b, c, n) -> predicted Whisper states (b, n, d)."""
        return self.semantic(mean).transpose(1, 2)

    def forward(self, audio: torch.Tensor, sample: bool = True, whisper: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Reparameterised z = mean + exp(logscale) * eps (eq. 11), decoded; audio_hat cut to t. With
        the semantic head, "semantic" (b, n, d) is its prediction from the mean (before sampling).
        `whisper`: the encoder's Whisper input when it has one (see encode)."""
        mean, logscale = self.encode(audio, whisper)
        z = reparameterize(mean, logscale, torch.randn_like(mean)) if sample else mean
        out = {"audio_hat": self.decode(z)[..., : audio.shape[-1]], "mean": mean, "logscale": logscale, "z": z}
        if self.semantic is not None:
            out["semantic"] = self.predict_semantic(mean)
        return out

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, ema: bool = True) -> "Codec":
        """Rebuild from a training checkpoint alone (its run config names the model config)."""
        from dmospeech.ops.training import load_part_weights, read_run_config

        cfg = from_dict(CodecConfig, read_run_config(checkpoint_dir)["model"], "model")
        codec = cls(cfg)
        codec.load_state_dict(load_part_weights(checkpoint_dir, "codec", ema=ema))
        return codec.eval()


def decode_after(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, start: int, context: int,
                 hop: int) -> torch.Tensor:
    """decode(latents)[..., start * hop:], decoding only from `context` frames before `start`."""
    first = max(0, start - context)
    return decode(latents[..., first:])[..., (start - first) * hop:]


def reparameterize(mean: torch.Tensor, logscale: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A draw from the codec's Gaussian posterior, eq. 11: z = mean + exp(logscale) * eps."""
    return mean + torch.exp(logscale) * eps


def kl_loss(mean: torch.Tensor, logscale: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q(z|y) || N(0, I)) of eq. 12: mean over channels of (mu^2 + sigma^2 - log sigma^2 - 1),
    averaged over the (masked) frames. mask: (b, n) with 1 on valid frames."""
    per_frame = (mean.square() + torch.exp(2 * logscale) - 2 * logscale - 1).mean(dim=1)  # (b, n)
    if mask is None:
        return per_frame.mean()
    return (per_frame * mask).sum() / mask.sum().clamp(min=1)


def frames_for_samples(num_samples: int, hop_length: int) -> int:
    """Latent frames the codec produces for `num_samples` of audio: ceil(t / hop)."""
    return math.ceil(num_samples / hop_length)


def codec_config_json(cfg: CodecConfig) -> str:
    return json.dumps(asdict(cfg), allow_nan=False)
