"""Params groups of the codec component (appendix C.1): train_codec, train_fast_decoder, encode_latents."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, Optional

from dmospeech.config.training import OptimizerConfig, TrainLoopConfig


@dataclass(frozen=True)
class FastDecoderConfig:
    """Vocos-style decoder of the codec's latents (Siuzdak, 2023): ConvNeXt blocks at the latent
    frame rate and a linear layer to STFT magnitudes and phases, inverted by an ISTFT of hop = the
    codec's hop and n_fft = n_fft_hops * hop. Replaces DAC's decoder, whose high-rate convolutions
    dominate synthesis time on CPU."""
    dim: int
    intermediate_dim: int
    layers: int
    n_fft_hops: int = 4


@dataclass(frozen=True)
class CodecConfig:
    """DAC encoder/decoder with a Gaussian (VAE) bottleneck; hop = prod(strides). With
    `fast_decoder` set, that decoder replaces DAC's (the encoder and its latents are unchanged).
    `semantic_dim` > 0 adds the semantic head (train_codec.semantic), which only training reads.
    `context_layers` > 0 puts that many ConvNeXt blocks at 40 Hz between DAC's encoder and the
    bottleneck (as Mimi puts a transformer there): more context per latent frame for little compute.
    `semantic_input` names an offline Whisper model (faster-whisper) whose encoder states, standardised
    and at 40 Hz, the encoder also reads before the bottleneck, as X-Codec feeds its semantic features
    to the codec: the latents then carry the words without the small encoder having to learn them;
    every encode then needs the audio's Whisper states (dmospeech.codec.semantic.whisper_input)."""
    sample_rate: int
    encoder_dim: int
    strides: tuple[int, ...]
    latent_dim: int
    decoder_dim: int
    fast_decoder: Optional[FastDecoderConfig] = None
    semantic_dim: int = 0     # > 0: a head on the posterior-mean latents predicts Whisper states this wide
    context_layers: int = 0   # > 0: ConvNeXt blocks at the latent rate before the bottleneck (ContextEncoder)
    semantic_input: str = ""  # a Whisper model ("base"): its states are an input of the encoder; "" off
    semantic_input_dim: int = 0  # that model's width (512 for base); > 0 exactly when semantic_input is set

    @property
    def hop_length(self) -> int:
        hop = 1
        for stride in self.strides:
            hop *= stride
        return hop


@dataclass(frozen=True)
class DiscriminatorConfig:
    """DAC's multi-period (periods) and multi-resolution STFT (fft_sizes) discriminators."""
    periods: tuple[int, ...]
    fft_sizes: tuple[int, ...]


@dataclass(frozen=True)
class MelLossConfig:
    """DAC's multi-scale mel loss: one STFT per window length."""
    n_mels: tuple[int, ...]
    window_lengths: tuple[int, ...]


@dataclass(frozen=True)
class CodecSemanticConfig:
    """Semantic distillation into the codec's latents, as Mimi, SpeechTokenizer and X-Codec distil
    self-supervised features: the codec's head (`model.semantic_dim` wide) on the posterior-mean
    latents predicts an offline faster-whisper model's encoder states of the same audio
    (dmospeech.codec.semantic), with the recogniser's distillation loss, `weight` x it from
    `start_step`. Weight 0: off (the paper profile), and no Whisper model is loaded."""
    weight: float = 0.0
    start_step: int = 0
    whisper_model: str = "base"   # "base", "tiny.en" (both ship in pip packages) or a CTranslate2 folder
    cache_dir: str = "data/codec_whisper_states"
    threads: int = 1              # CTranslate2 threads while the states are computed


@dataclass(frozen=True)
class WhisperFeatureConfig:
    """A perceptual loss for the decoder (dmospeech.codec.whisper_feature): `weight` x DistilHuBERT's
    loss between a frozen torch copy of an offline Whisper model's encoder states of the reconstruction
    and of the original. Weight 0: off, no model is read. "tiny.en" by default, so the recogniser that
    judges the reconstructions (Whisper base) is not the one they were trained to please."""
    weight: float = 0.0
    whisper_model: str = "tiny.en"   # "tiny.en", "base" or a CTranslate2 folder with float16/32 weights


@dataclass(frozen=True)
class TrainCodecConfig:
    model: CodecConfig
    discriminator: DiscriminatorConfig
    mel: MelLossConfig
    loss_weights: dict[str, float]   # "mel/loss", "waveform/l1", "kl/loss", "adv/gen_loss", "adv/feat_loss"
    adversarial_start_step: int
    crop_seconds: float
    valid_clips: int
    valid_seconds: float
    optimizer: OptimizerConfig
    disc_optimizer: OptimizerConfig
    loop: TrainLoopConfig
    semantic: CodecSemanticConfig = CodecSemanticConfig()
    # What the decoder learns to decode: eq. 11's sample z = mean + exp(logscale) * eps, or the posterior
    # mean itself (what encode_latents caches with use_mean); "mean" only with a frozen encoder, whose
    # KL term no longer trains anything.
    decoder_latents: Literal["sample", "mean"] = "sample"
    # With model.semantic_input: the share of training items whose encoder gets no Whisper input (its
    # standardised states zeroed, i.e. the training mean), so DAC's own features learn the sound alone too.
    whisper_input_dropout: float = 0.0
    whisper_feature: WhisperFeatureConfig = WhisperFeatureConfig()


@dataclass(frozen=True)
class TrainFastDecoderConfig:
    """A fast decoder fitted to the trained codec's latents: the codec's encoder is loaded and
    frozen, and only `decoder` (with the discriminator) learns, with the codec's losses."""
    decoder: FastDecoderConfig
    discriminator: DiscriminatorConfig
    mel: MelLossConfig
    loss_weights: dict[str, float]   # as train_codec's ("kl/loss" is constant: the encoder is frozen)
    adversarial_start_step: int
    crop_seconds: float
    valid_clips: int
    valid_seconds: float
    optimizer: OptimizerConfig
    disc_optimizer: OptimizerConfig
    loop: TrainLoopConfig
    decoder_latents: Literal["sample", "mean"] = "sample"   # as train_codec's; "mean" decodes what the cache holds
    whisper_feature: WhisperFeatureConfig = WhisperFeatureConfig()   # as train_codec's

    def codec_training(self, codec: CodecConfig) -> TrainCodecConfig:
        """The train_codec settings that train `codec` with this decoder in place of its own, without
        the semantic head and term (they train the encoder, which is frozen here)."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainCodecConfig)
                  if f.name not in ("model", "semantic", "whisper_input_dropout")}
        return TrainCodecConfig(model=replace(codec, fast_decoder=self.decoder, semantic_dim=0), **shared)


@dataclass(frozen=True)
class EncodeLatentsConfig:
    use_mean: bool            # posterior mean (default) or a sample
    shard_frames: int         # latent frames per shard file
    batch_seconds: float
    device: str               # cpu | cuda: on cuda, tasks go to Dask workers with resources {GPU: 1}
    out_dir: str
    manifest: str
    stats_path: str           # global latent mean/std (JSON) used to normalise latents
    report_dir: str           # the latents gate's report
