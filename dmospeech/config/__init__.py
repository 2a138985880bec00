"""Typed, frozen configuration mirroring `params.yaml`.

One dataclass per params group; `load_params` parses the YAML strictly: an unknown key, a missing
key or a value of the wrong type is an error that names the key (`segment_audio.max_segment_s`).
A profile (`profiles/<name>.yaml`) is a partial document deep-merged over `params.yaml`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Literal, Optional

from dmospeech.config.data import (CutoffConfig, PhonemizeTextConfig, PrepareCorpusConfig,  # noqa: F401 (re-exported)
                                   PrepareDemoCorpusConfig, ResampleAudioConfig, SegmentAudioConfig, SourceConfig,
                                   SplitConfig, ValidateManifestConfig)
from dmospeech.config.flows import GateRule, PipelineConfig, RetrainConfig  # noqa: F401 (re-exported)
from dmospeech.config.parse import ConfigError, deep_merge, from_dict, read_yaml  # noqa: F401 (re-exported)


# ----------------------------------------------------------------------------- training (shared)
@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with linear warmup then cosine decay from `lr` to `min_lr` over the loop's max_steps."""
    lr: float
    min_lr: float
    betas: tuple[float, ...]
    weight_decay: float
    warmup_steps: int
    grad_clip: float  # max global grad norm; 0 disables clipping


@dataclass(frozen=True)
class TrainLoopConfig:
    """What every trainer shares (dmospeech/ops/training.py)."""
    max_steps: int
    max_minutes: float        # wall-clock budget; 0 = none (stops cleanly with a checkpoint)
    seed: int
    batch_seconds: float      # total audio seconds per batch and rank (length bucketing)
    max_batch_items: int
    num_workers: int
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    valid_every: int
    ema_decay: float
    ema_every: int
    out_dir: str              # checkpoints: <out_dir>/step_<n>/ and <out_dir>/latest
    report_dir: str           # dvclive metrics and plots, samples


# ----------------------------------------------------------------------------- codec (app. C.1)
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
    `fast_decoder` set, that decoder replaces DAC's (the encoder and its latents are unchanged)."""
    sample_rate: int
    encoder_dim: int
    strides: tuple[int, ...]
    latent_dim: int
    decoder_dim: int
    fast_decoder: Optional[FastDecoderConfig] = None

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

    def codec_training(self, codec: CodecConfig) -> TrainCodecConfig:
        """The train_codec settings that train `codec` with this decoder in place of its own."""
        shared = {f.name: getattr(self, f.name) for f in fields(TrainCodecConfig) if f.name != "model"}
        return TrainCodecConfig(model=replace(codec, fast_decoder=self.decoder), **shared)


@dataclass(frozen=True)
class EncodeLatentsConfig:
    use_mean: bool            # posterior mean (default) or a sample
    shard_frames: int         # latent frames per shard file
    batch_seconds: float
    out_dir: str
    manifest: str
    stats_path: str           # global latent mean/std (JSON) used to normalise latents
    report_dir: str           # the latents gate's report


# ----------------------------------------------------------------------------- teacher (sec. 3.1, app. C.2)
@dataclass(frozen=True)
class DiTConfig:
    """Diffusion transformer of appendix C.2.3 (Table 9)."""
    latent_dim: int
    dim: int
    ff_dim: int               # SwiGLU hidden width
    heads: int
    encoder_layers: int
    decoder_layers: int
    vocab_size: int           # IPA vocabulary (id 0 = pad)
    text_dropout: float       # probability of replacing the text by the null embedding (CFG)
    max_frames: int           # longest latent sequence, prompt + target, at 40 Hz
    max_phonemes: int


@dataclass(frozen=True)
class DiffusionConfig:
    """The diffusion process the teacher is trained on (part of its identity: samplers read it from
    the checkpoint). How to sample it is the sampler's business (TeacherSamplerConfig)."""
    shift: float              # s of the shifted cosine schedule (eq. 15)
    prompt_max_fraction: float

    @classmethod
    def from_run_config(cls, data: dict) -> "DiffusionConfig":
        """From a checkpoint's run_config; checkpoints written before sampling left the training
        identity also hold cfg_scale and sample_steps, which are ignored."""
        return from_dict(cls, {k: v for k, v in data.items() if k not in ("cfg_scale", "sample_steps")}, "diffusion")


@dataclass(frozen=True)
class TeacherSamplerConfig:
    """The teacher's sampler: `steps` ancestral steps (eq. 28) with classifier-free guidance of scale
    `cfg_scale` (w of eq. 27). Defaults: the paper's 128 steps and w = 2."""
    steps: int = 128
    cfg_scale: float = 2.0


@dataclass(frozen=True)
class TrainTeacherConfig:
    model: DiTConfig
    diffusion: DiffusionConfig
    max_seconds: float        # training segments longer than this are left out
    valid_items: int          # held-out items of the validation loss
    valid_samples: int        # held-out sentences synthesised (wav + spectrogram) at each validation
    optimizer: OptimizerConfig
    loop: TrainLoopConfig
    valid_sampler: TeacherSamplerConfig = TeacherSamplerConfig()  # of those samples (not the teacher's identity)


# ----------------------------------------------------------------------------- critics (sec. 3.3, app. C.3, C.4)
@dataclass(frozen=True)
class LatentASRConfig:
    """Conformer CTC phoneme recogniser over normalised latents (appendix C.3)."""
    latent_dim: int
    dim: int
    ff_dim: int
    heads: int
    layers: int
    conv_kernel: int          # depthwise convolution of each conformer block (odd)
    dropout: float
    vocab_size: int           # IPA vocabulary; its pad id 0 ("_", never in a target) is the CTC blank
    distill_dim: int = 0      # > 0: a linear head on block `distill_block` predicts Whisper states of this width
    distill_block: int = 0    # 1-based block whose output the head reads (train_asr_critic.distill)


@dataclass(frozen=True)
class LatentMaskingConfig:
    """SpecAugment-style masks on the training latents: `time_masks` spans of up to `time_mask_frames`
    frames and `channel_masks` bands of up to `channel_mask_width` channels are set to 0 (the mean)."""
    time_masks: int
    time_mask_frames: int
    channel_masks: int
    channel_mask_width: int


@dataclass(frozen=True)
class PhoneHeadConfig:
    """CTC phone head fitted on the Whisper states of the training segments (models.whisper_phones)."""
    dim: int = 256
    steps: int = 300
    lr: float = 1.0e-3
    batch_items: int = 8


@dataclass(frozen=True)
class ASRDistillConfig:
    """Auxiliary losses of the tiny CPU profile, both from an offline faster-whisper model's encoder
    states of the training segments (dmospeech.critics.whisper_states):
    - `weight`: the recogniser's `model.distill_block` output predicts the states;
    - `posterior_weight`: every frame's phone distribution matches (KL) that of a CTC head fitted on
      the states (`phone_head`, dmospeech.critics.whisper_phones).
    Both 0: off (the paper profile), and no Whisper model is loaded."""
    weight: float = 0.0
    posterior_weight: float = 0.0
    phone_head: PhoneHeadConfig = PhoneHeadConfig()
    whisper_model: str = "base"   # "base", "tiny.en" (both ship in pip packages) or a CTranslate2 folder
    cache_dir: str = "data/asr_whisper_states"
    threads: int = 1              # CTranslate2 threads while the states are computed

    @property
    def uses_whisper(self) -> bool:
        return self.weight > 0 or self.posterior_weight > 0


@dataclass(frozen=True)
class SpeedPerturbConfig:
    """Speed-perturbed copies of the training segments (dmospeech.critics.speed_copies), encoded by the
    codec once and cached in `cache_dir`. No factors: off (the paper profile)."""
    factors: tuple[float, ...] = ()   # e.g. (0.9, 1.1); 1 (the original) is always included
    cache_dir: str = "data/asr_speed_copies"


@dataclass(frozen=True)
class TrainASRCriticConfig:
    model: LatentASRConfig
    masking: LatentMaskingConfig
    max_seconds: float        # training segments longer than this are left out
    valid_items: int          # held-out segments of the phone error rate
    optimizer: OptimizerConfig
    loop: TrainLoopConfig
    distill: ASRDistillConfig = ASRDistillConfig()
    speed_perturb: SpeedPerturbConfig = SpeedPerturbConfig()


@dataclass(frozen=True)
class SpeakerVerifierConfig:
    """ECAPA-TDNN (Desplanques et al., 2020) over the recogniser's block outputs (appendix C.4)."""
    channels: int             # C of the SE-Res2Blocks (1024 in ECAPA-TDNN's large model)
    res2_scale: int           # Res2Net scale (8)
    se_dim: int               # squeeze-excitation bottleneck (128)
    attention_dim: int        # attentive statistics pooling bottleneck (128)
    embedding_dim: int        # = the teacher embedding size (Resemblyzer 256)
    with_latents: bool = False  # the input latents join the block outputs (as layer 0 of the stack)


@dataclass(frozen=True)
class SpeakerTeachersConfig:
    """Offline pretrained speaker encoders the verifier is distilled from (eq. 31). Neither path set:
    Resemblyzer (its weights ship in the package). One set: that encoder. Both: their embeddings
    L2-normalised and concatenated, as the paper concatenates WeSpeaker and WavLM-ECAPA."""
    wespeaker_path: Optional[str]   # WeSpeaker ResNet34 state dict (.pt / .bin, weights only)
    wavlm_path: Optional[str]       # local folder of a transformers WavLMForXVector (config + weights)


@dataclass(frozen=True)
class TrainSVCriticConfig:
    model: SpeakerVerifierConfig
    teachers: SpeakerTeachersConfig
    pitch_shifts: tuple[float, ...]  # semitones; each shifted copy of a training segment is a new speaker
    crop_seconds: float       # random latent crop per training item (whole item when shorter)
    max_seconds: float        # training segments longer than this are left out
    valid_items: int          # held-out segments, cut into trials of `trial_seconds`
    trial_seconds: float
    cache_dir: str            # shifted copies' latents and teacher embeddings
    optimizer: OptimizerConfig
    loop: TrainLoopConfig
    fine_tune_recogniser: bool = True  # False: only the ECAPA learns (the recogniser's weights stay)


# ----------------------------------------------------------------------------- student (sec. 3.2-3.4)
@dataclass(frozen=True)
class LatentDiscriminatorConfig:
    """Conformer D over the student score network's stacked decoder hidden states (section 3.2)."""
    dim: int
    ff_dim: int
    heads: int
    layers: int
    conv_kernel: int


@dataclass(frozen=True)
class DistillStudentConfig:
    student_times: tuple[float, ...]      # algorithm 1 schedule, t_0 = 1 first
    cfg_scale: float                       # w of the real score (eq. 27)
    score_updates_per_generator: int       # g_psi updates per G (and D) update (section 3.4)
    loss_weights: dict[str, float]         # "dmd", "adv", "ctc", "sv" (eq. 10 and section 3.3)
    loss_start_steps: dict[str, int]       # generator step from which each weight applies
    discriminator: LatentDiscriminatorConfig
    max_seconds: float
    valid_items: int
    valid_samples: int
    optimizer: OptimizerConfig             # G
    score_optimizer: OptimizerConfig       # g_psi
    disc_optimizer: OptimizerConfig        # D
    loop: TrainLoopConfig


# ----------------------------------------------------------------------------- evaluation (sec. 4.2-4.4)
@dataclass(frozen=True)
class EvaluateConfig:
    trials: Optional[str]      # trials CSV (prompt_path, prompt_text, target_text, reference_path); null: held-out split
    max_trials: int
    prompt_seconds: float      # longest prompt taken whole; longer ones are cut to this and transcribed
    cv_f0_trials: int          # trials synthesised cv_f0_repeats times for CV_f0 (section 4.4)
    cv_f0_repeats: int
    seed: int
    whisper_model: str         # packaged faster-whisper model of the WER (base | tiny.en | local folder)
    hubert_path: Optional[str]  # local HuBERT-CTC folder: the paper's WER evaluator instead of Whisper
    wavlm_path: Optional[str]   # local WavLM-ECAPA (x-vector) folder: the paper's SIM evaluator instead of Resemblyzer
    decoder: Literal["codec", "fast"]  # latents -> audio: the codec's own (DAC) decoder or train_fast_decoder's
    out_dir: str
    teacher_sampler: TeacherSamplerConfig = TeacherSamplerConfig()  # the student samples its own schedule


@dataclass(frozen=True)
class Params:
    prepare_demo_corpus: PrepareDemoCorpusConfig
    prepare_corpus: PrepareCorpusConfig
    resample_audio: ResampleAudioConfig
    segment_audio: SegmentAudioConfig
    phonemize_text: PhonemizeTextConfig
    validate_manifest: ValidateManifestConfig
    train_codec: TrainCodecConfig
    train_fast_decoder: TrainFastDecoderConfig
    encode_latents: EncodeLatentsConfig
    train_teacher: TrainTeacherConfig
    train_asr_critic: TrainASRCriticConfig
    train_sv_critic: TrainSVCriticConfig
    distill_student: DistillStudentConfig
    evaluate: EvaluateConfig
    pipeline: PipelineConfig
    retrain: RetrainConfig

    def decoder_checkpoint_dir(self, decoder: Optional[str] = None) -> Optional[str]:
        """Where synthesis takes its decoder from: train_fast_decoder's out_dir for "fast", None
        (the model's own codec) for "codec"; `decoder` defaults to evaluate.decoder."""
        return self.train_fast_decoder.loop.out_dir if (decoder or self.evaluate.decoder) == "fast" else None

    def manifests(self) -> list[str]:
        """Every stage database of the data half, upstream first."""
        return [self.prepare_corpus.manifest, self.resample_audio.manifest,
                self.segment_audio.manifest, self.phonemize_text.manifest]


def load_params(path: str | os.PathLike = "params.yaml", profile: str | os.PathLike | None = None) -> Params:
    """Parse `params.yaml` (optionally with a profile overlay) into `Params`."""
    data = read_yaml(path)
    if profile is not None:
        data = deep_merge(data, read_yaml(profile))
    try:
        return from_dict(Params, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
