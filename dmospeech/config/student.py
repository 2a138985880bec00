"""Params group of the student (sections 3.2-3.4): distill_student."""
from __future__ import annotations

from dataclasses import dataclass

from dmospeech.config.training import OptimizerConfig, TrainLoopConfig


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
