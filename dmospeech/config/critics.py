"""Params groups of the critics (section 3.3, appendices C.3, C.4): train_asr_critic, train_sv_critic."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dmospeech.config.training import OptimizerConfig, TrainLoopConfig


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
    """CTC phone head fitted on the Whisper states of the training segments (critics.whisper_phones)."""
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
