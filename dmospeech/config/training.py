"""Params groups every trainer shares: the optimiser and the training loop (dmospeech/ops/training.py)."""
from __future__ import annotations

from dataclasses import dataclass


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
