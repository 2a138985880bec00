"""Codec training task (appendix C.1) for the shared loop: DAC-style alternating discriminator and
generator updates, validation by the multi-scale mel loss on held-out clips with decoded wavs and
a spectrogram comparison written to the report folder. With `cfg.semantic.weight` > 0 the generator
loss adds the semantic term (dmospeech.codec.semantic) and validation its held-out loss. With
`encoder_from`, the encoder is a trained codec's, frozen, and only the decoder learns
(train_fast_decoder; no semantic term). With `cfg.whisper_feature.weight` > 0 the generator loss adds
the Whisper feature-matching loss of the reconstructions (dmospeech.codec.whisper_feature). A codec with `model.semantic_input` gets the same cached
Whisper states as an input of its encoder (standardised with its own statistics when frozen).

Shapes: b batch, t samples (48 kHz), n latent frames (40 Hz), d Whisper width.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dmospeech.ops.atomic import write_text_atomic
from dmospeech.ops.audio import write_audio_atomic
from dmospeech.config import TrainCodecConfig
from dmospeech.data.datasets import Clip, CropDataset, load_clip, stack_audio
from dmospeech.codec.model import Codec
from dmospeech.codec.loss import CodecLoss, build_discriminator
from dmospeech.codec.semantic import SemanticCrops, SemanticTargets, collate_semantic, semantic_loss
from dmospeech.codec.whisper_feature import WhisperFeatureLoss
from dmospeech.ops.training import Part


class CodecTask:
    """Task protocol of dmospeech.ops.training for the DAC-VAE."""

    def __init__(self, cfg: TrainCodecConfig, train_clips: Sequence[Clip], valid_clips: Sequence[Clip],
                 report_dir: str | Path, encoder_from: str | Path | None = None):
        self.cfg = cfg
        self.encoder_from = None if encoder_from is None else Path(encoder_from)
        check_semantic_settings(cfg, self.encoder_from)
        check_input_settings(cfg, self.encoder_from)
        self.source = None if encoder_from is None else Codec.from_checkpoint(self.encoder_from)  # until parts()
        hop = cfg.model.hop_length
        self.semantic_term = cfg.semantic.weight > 0
        self.targets = None                       # SemanticTargets for the semantic term or the encoder's input
        if self.semantic_term or cfg.model.semantic_input:
            stats = None
            if cfg.model.semantic_input and self.source is not None and self.source.cfg.semantic_input:
                stats = (self.source.whisper_mean, self.source.whisper_std)   # the frozen encoder's own statistics
            semantic = replace(cfg.semantic, whisper_model=cfg.model.semantic_input or cfg.semantic.whisper_model)
            self.targets = SemanticTargets(train_clips, valid_clips, semantic, cfg.model.sample_rate, hop, stats)
            for key, wanted in (("semantic_dim", self.semantic_term), ("semantic_input_dim", cfg.model.semantic_input)):
                if wanted and getattr(cfg.model, key) != self.targets.dim:
                    raise ValueError(f"train_codec.model.{key} is {getattr(cfg.model, key)} but Whisper "
                                     f"{semantic.whisper_model!r} states are {self.targets.dim} wide: set it to "
                                     f"{self.targets.dim}")
            crops = CropDataset(train_clips, cfg.crop_seconds, cfg.model.sample_rate, align=hop)
            self.dataset = SemanticCrops(crops, self.targets, hop)
        else:
            self.dataset = CropDataset(train_clips, cfg.crop_seconds, cfg.model.sample_rate)
        self.durations = self.dataset.durations
        self.valid_clips = list(valid_clips)
        self.valid_audio = [load_clip(c, cfg.model.sample_rate)[: int(cfg.valid_seconds * cfg.model.sample_rate)]
                            for c in valid_clips]
        self.valid_ids = [c.clip_id for c in valid_clips]
        self.report_dir = Path(report_dir)
        self._parts: dict[str, Part] = {}
        self.loss: CodecLoss | None = None
        self.whisper_feature = (WhisperFeatureLoss(cfg.whisper_feature.whisper_model, cfg.model.sample_rate)
                                if cfg.whisper_feature.weight > 0 else None)

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        """{"audio": (b, 1, t)}; with Whisper states also "states" (b, n, d) and "state_mask" (b, n)."""
        return {"audio": stack_audio(items)} if self.targets is None else collate_semantic(items)

    def run_config(self) -> dict:
        """Saved with every checkpoint: the model config (`Codec.from_checkpoint` rebuilds from it) and
        every setting that changes the training maths, so a resume with different ones is refused.
        Without the semantic term, neither it nor `model.semantic_dim` is recorded: the run config is
        the one of codecs trained before the term existed, which therefore still resume."""
        cfg = asdict(self.cfg)
        for key in ("valid_clips", "valid_seconds"):
            cfg.pop(key)
        cfg["loop"] = {k: cfg["loop"][k] for k in ("seed", "batch_seconds", "max_batch_items", "ema_decay", "ema_every")}
        semantic = cfg.pop("semantic")
        if not self.cfg.whisper_feature.weight:   # off: the run config of codecs trained before the loss existed
            cfg.pop("whisper_feature")
        for key, default in (("decoder_latents", "sample"), ("whisper_input_dropout", 0.0)):
            if cfg[key] == default:   # the run config of codecs trained before the setting existed
                cfg.pop(key)
        if self.semantic_term:
            cfg["semantic"] = {k: semantic[k] for k in ("weight", "start_step", "whisper_model")}
        for key in ("semantic_dim", "semantic_input", "semantic_input_dim"):
            if not cfg["model"][key]:
                cfg["model"].pop(key)
        if self.encoder_from is not None:
            cfg["encoder_from"] = str(self.encoder_from)
        return {"task": "codec", **cfg}

    def parts(self) -> list[Part]:
        if not self._parts:
            codec = Codec(self.cfg.model)
            if self.encoder_from is not None:
                self.load_frozen_encoder(codec)
            elif self.cfg.model.semantic_input:   # the statistics its Whisper input is standardised with
                codec.whisper_mean.copy_(self.targets.mean)
                codec.whisper_std.copy_(self.targets.std)
            discriminator = build_discriminator(self.cfg.discriminator, self.cfg.model.sample_rate)
            self.loss = CodecLoss(self.cfg.mel, self.cfg.loss_weights, discriminator, self.cfg.model.sample_rate)
            self._parts = {"codec": Part("codec", codec, self.cfg.optimizer, ema=True),
                           "discriminator": Part("discriminator", discriminator, self.cfg.disc_optimizer, ema=False)}
        return list(self._parts.values())

    def load_frozen_encoder(self, codec: Codec) -> None:
        """The encoder (EMA weights, as encode_latents uses) of the codec at `encoder_from`, frozen:
        the latents stay those the downstream models were trained on."""
        source, self.source = self.source, None   # read once; its decoder is not needed after this
        keys = ("sample_rate", "encoder_dim", "strides", "latent_dim", "context_layers", "semantic_input",
                "semantic_input_dim")
        mismatch = [k for k in keys if getattr(source.cfg, k) != getattr(codec.cfg, k)]
        if mismatch:
            raise ValueError(f"the codec at {self.encoder_from} has a different encoder: "
                             + ", ".join(f"{k} {getattr(source.cfg, k)} vs {getattr(codec.cfg, k)}" for k in mismatch))
        codec.encoder.load_state_dict(source.encoder.state_dict())
        codec.encoder.requires_grad_(False)
        if source.cfg.semantic_input:
            codec.whisper_mean.copy_(source.whisper_mean)
            codec.whisper_std.copy_(source.whisper_std)

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update) -> dict[str, float]:
        """One DAC step: D on real vs detached reconstructions, then G (eq. 13 + mel + GAN, plus
        semantic.weight x the semantic loss from semantic.start_step)."""
        self.loss.gan.discriminator = self._parts["discriminator"].model  # DDP wrapper under torchrun
        audio = batch["audio"]
        out = self._parts["codec"].model(audio, sample=self.cfg.decoder_latents == "sample",
                                         whisper=self.whisper_input(batch) if self.cfg.model.semantic_input else None)
        logs: dict[str, float] = {}
        adversarial = step >= self.cfg.adversarial_start_step
        if adversarial:
            d_losses, d_logs = self.loss.discriminator_losses(out["audio_hat"], audio)
            logs |= d_logs | update("discriminator", d_losses["adv/disc_loss"])
        g_losses, g_logs = self.loss.generator_losses(out, audio, adversarial)
        total = g_losses["loss/generator"]
        if self.semantic_term:  # before start_step weighted 0: the head still gets a (zero) gradient, as DDP needs
            s_losses, s_logs = semantic_loss(out["semantic"], batch["states"], batch["state_mask"])
            weight = self.cfg.semantic.weight if step >= self.cfg.semantic.start_step else 0.0
            total = total + weight * s_losses["semantic/loss"]
            logs |= s_logs
        if self.whisper_feature is not None:
            w_losses, w_logs = self.whisper_feature(out["audio_hat"], audio)
            total = total + self.cfg.whisper_feature.weight * w_losses["whisper_feature/loss"]
            logs |= w_logs
        return logs | g_logs | {"loss/total": float(total.detach())} | update("codec", total)

    def whisper_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's Whisper input (b, n, d): the batch's standardised states, zeroed for a random
        `whisper_input_dropout` share of its items (the semantic term's targets stay whole)."""
        states, share = batch["states"], self.cfg.whisper_input_dropout
        if not share or self.encoder_from is not None:
            return states
        keep = torch.rand(states.shape[0], 1, 1) >= share
        return states * keep.to(states.dtype)

    def validate(self, step: int) -> dict[str, float]:
        """Held-out mel loss (and semantic loss, with the term) and samples, with the codec's EMA weights."""
        self.loss.gan.discriminator = self._parts["discriminator"].module
        with self._parts["codec"].ema_weights() as codec:
            metrics = self.validation_losses(codec)
            self.write_samples(codec, step)
        return metrics

    def validation_losses(self, codec: Codec) -> dict[str, float]:
        """Held-out mel loss, the Whisper feature loss when it trains, and the semantic loss when the
        term trains a head (a Whisper input alone brings states but no head to score)."""
        pairs = self.valid_reconstructions(codec)   # decoded once for both losses
        metrics = {"valid/mel_loss": self.validation_mel_loss(codec, pairs)}
        if self.whisper_feature is not None:
            metrics["valid/whisper_feature_loss"] = self.validation_whisper_feature_loss(pairs)
        if self.semantic_term:
            metrics["valid/semantic_loss"] = self.validation_semantic_loss(codec)
        return metrics

    @torch.no_grad()
    def valid_reconstructions(self, codec: Codec) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(original, posterior-mean reconstruction), each (1, 1, t), of every validation clip."""
        pairs = []
        for clip, audio in zip(self.valid_clips, self.valid_audio):
            x = torch.from_numpy(audio)[None, None]
            pairs.append((x, codec(x, sample=False, whisper=self.valid_whisper(clip, x))["audio_hat"]))
        return pairs

    @torch.no_grad()
    def validation_mel_loss(self, codec: Codec, pairs: list | None = None) -> float:
        """Mean multi-scale mel loss of posterior-mean reconstructions of the validation clips (`pairs`
        from valid_reconstructions, if already decoded)."""
        pairs = self.valid_reconstructions(codec) if pairs is None else pairs
        return float(np.mean([float(self.loss.mel_loss(y, x)) for x, y in pairs]))

    @torch.no_grad()
    def validation_whisper_feature_loss(self, pairs: list) -> float:
        """Mean Whisper feature loss (unweighted) of the validation clips' reconstructions `pairs`."""
        return float(np.mean([self.whisper_feature(y, x)[1]["whisper_feature/loss"] for x, y in pairs]))

    def valid_whisper(self, clip: Clip, audio: torch.Tensor) -> torch.Tensor | None:
        """The encoder's Whisper input (1, n, d) for the first samples `audio` (1, 1, t) of `clip`, if it has one."""
        if not self.cfg.model.semantic_input:
            return None
        return self.targets.crop(clip, 0, -(-audio.shape[-1] // self.cfg.model.hop_length))[0][None]

    @torch.no_grad()
    def validation_semantic_loss(self, codec: Codec) -> float:
        """Mean semantic loss (the training term, unweighted) of the validation clips."""
        losses = []
        for clip, audio in zip(self.valid_clips, self.valid_audio):
            x = torch.from_numpy(audio)[None, None]
            predicted = codec.predict_semantic(codec.encode(x, self.valid_whisper(clip, x))[0])   # (1, n, d)
            states, mask = self.targets.crop(clip, 0, predicted.shape[1])
            losses.append(float(semantic_loss(predicted, states[None], mask[None])[0]["semantic/loss"]))
        return float(np.mean(losses))

    @torch.no_grad()
    def write_samples(self, codec: Codec, step: int, count: int = 3) -> None:
        """Decoded validation clips (wav) and a spectrogram comparison (png) in report_dir/samples."""
        out = self.report_dir / "samples"
        pairs = []
        for clip, audio in list(zip(self.valid_clips, self.valid_audio))[:count]:
            clip_id, x = clip.clip_id, torch.from_numpy(audio)[None, None]
            y = codec(x, sample=False, whisper=self.valid_whisper(clip, x))["audio_hat"][0, 0].numpy()
            write_audio_atomic(out / f"{clip_id}_decoded.wav", y, self.cfg.model.sample_rate, subtype="PCM_16")
            write_audio_atomic(out / f"{clip_id}_original.wav", audio, self.cfg.model.sample_rate, subtype="PCM_16")
            pairs.append((clip_id, audio, y))
        if pairs:
            spectrogram_png(pairs, self.cfg.model.sample_rate, out / "spectrograms.png", title=f"step {step}")
            write_text_atomic(out / "step.txt", f"{step}\n")


def check_semantic_settings(cfg: TrainCodecConfig, encoder_from: Path | None) -> None:
    """The semantic term needs the head and a trainable encoder; a head needs the term to learn."""
    weight, width = cfg.semantic.weight, cfg.model.semantic_dim
    if weight > 0 and not width:
        raise ValueError("train_codec.semantic.weight > 0 needs train_codec.model.semantic_dim (the Whisper width: "
                         "512 for base)")
    if weight <= 0 and width:
        raise ValueError(f"train_codec.model.semantic_dim is {width} but semantic.weight is {weight}: the head would "
                         "never learn; set model.semantic_dim: 0 to train without the semantic term")
    if weight > 0 and encoder_from is not None:
        raise ValueError("the semantic term trains the encoder, which encoder_from freezes: set semantic.weight 0")


def check_input_settings(cfg: TrainCodecConfig, encoder_from: Path | None) -> None:
    """What the encoder and decoder are given in training: Whisper-input dropout needs a Whisper input;
    posterior means instead of eq. 11's samples need a frozen encoder."""
    if not 0.0 <= cfg.whisper_input_dropout < 1.0 or (cfg.whisper_input_dropout and not cfg.model.semantic_input):
        raise ValueError(f"train_codec.whisper_input_dropout {cfg.whisper_input_dropout}: a share in [0, 1) of "
                         "training items, and only for a codec with model.semantic_input")
    if cfg.whisper_feature.weight < 0:
        raise ValueError(f"whisper_feature.weight {cfg.whisper_feature.weight}: 0 (off) or a positive weight")
    if cfg.decoder_latents == "mean" and encoder_from is None:
        raise ValueError("decoder_latents: mean trains the decoder on posterior means, without eq. 11's noise; "
                         "a trainable encoder needs the samples (its KL term would be free): use it only "
                         "with encoder_from (train_fast_decoder)")


def spectrogram_png(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], sample_rate: int, path: Path,
                    title: str, names: tuple[str, str] = ("original", "decoded")) -> None:
    """Two log spectrograms per row (original vs decoded by default), one row per clip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(10, 2.5 * len(pairs)), squeeze=False)
    for row, (clip_id, original, decoded) in enumerate(pairs):
        for col, (name, audio) in enumerate(zip(names, (original, decoded))):
            axes[row, col].specgram(audio + 1e-7, NFFT=1024, Fs=sample_rate, noverlap=768, cmap="magma")
            axes[row, col].set_title(f"{clip_id} {name}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
