"""Params groups of the teacher component (section 3.1, appendix C.2): the DiT, its diffusion process,
its sampler, train_teacher."""
from __future__ import annotations

from dataclasses import dataclass

from dmospeech.config.parse import from_dict
from dmospeech.config.training import OptimizerConfig, TrainLoopConfig


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
