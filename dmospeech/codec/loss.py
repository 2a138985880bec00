"""Codec training losses (appendix C.1, eq. 13 + DAC): L1 waveform, DAC's multi-scale mel loss,
the KL term (eq. 12), and DAC's GAN (multi-period + multi-resolution STFT discriminators, LSGAN)
with feature matching. Each method returns (losses, logs); weights live in one dict by name."""
from __future__ import annotations

import torch
from audiotools import AudioSignal
from dac.model.discriminator import Discriminator
from dac.nn.loss import GANLoss, MelSpectrogramLoss
from torch import nn

from dmospeech.config import DiscriminatorConfig, MelLossConfig
from dmospeech.codec.model import kl_loss

LOSS_NAMES = ("mel/loss", "waveform/l1", "kl/loss", "adv/gen_loss", "adv/feat_loss")


def build_discriminator(cfg: DiscriminatorConfig, sample_rate: int) -> Discriminator:
    return Discriminator(rates=[], periods=list(cfg.periods), fft_sizes=list(cfg.fft_sizes), sample_rate=sample_rate)


class CodecLoss(nn.Module):
    """Holds the mel loss and the GAN loss around `discriminator` (possibly DDP-wrapped)."""

    def __init__(self, mel: MelLossConfig, weights: dict[str, float], discriminator: nn.Module, sample_rate: int):
        super().__init__()
        unknown = set(weights) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"train_codec.loss_weights: unknown loss name(s) {sorted(unknown)}; known: {LOSS_NAMES}")
        self.weights = dict(weights)
        self.sample_rate = sample_rate
        self.mel = MelSpectrogramLoss(n_mels=list(mel.n_mels), window_lengths=list(mel.window_lengths),
                                      mel_fmin=[0.0] * len(mel.n_mels), mel_fmax=[None] * len(mel.n_mels),
                                      pow=1.0, clamp_eps=1e-5, mag_weight=0.0)
        self.gan = GANLoss(discriminator)

    def signal(self, audio: torch.Tensor) -> AudioSignal:
        return AudioSignal(audio, self.sample_rate)

    def mel_loss(self, audio_hat: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """DAC's multi-scale log-mel L1 distance; (b, 1, t) each."""
        return self.mel(self.signal(audio_hat), self.signal(audio))

    def discriminator_losses(self, audio_hat: torch.Tensor, audio: torch.Tensor):
        """LSGAN discriminator loss on real vs (detached) reconstructed audio."""
        loss = self.gan.discriminator_loss(self.signal(audio_hat), self.signal(audio))
        return {"adv/disc_loss": loss}, {"adv/disc_loss": float(loss.detach())}

    def generator_losses(self, out: dict[str, torch.Tensor], audio: torch.Tensor, adversarial: bool):
        """Weighted generator objective: eq. 13 (L1 + lambda_KL * KL) + mel + (GAN + feature matching)."""
        losses = {"mel/loss": self.mel_loss(out["audio_hat"], audio),
                  "waveform/l1": (out["audio_hat"] - audio).abs().mean(),
                  "kl/loss": kl_loss(out["mean"], out["logscale"])}
        if adversarial:
            losses["adv/gen_loss"], losses["adv/feat_loss"] = self.gan.generator_loss(
                self.signal(out["audio_hat"]), self.signal(audio))
        total = sum(self.weights.get(name, 0.0) * value for name, value in losses.items())
        logs = {name: float(value.detach()) for name, value in losses.items()}
        logs["loss/generator"] = float(total.detach())
        return {"loss/generator": total, **losses}, logs
