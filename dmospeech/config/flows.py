"""Params groups of the Prefect flows (flows/): `pipeline` and `retrain` (part of `dmospeech.config.Params`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PipelineConfig:
    """flows/pipeline.py: `dvc repro <stage>` for each stage of dvc.yaml, in file order."""
    gpu_stages: tuple[str, ...]           # fnmatch patterns: their tasks are tagged "gpu", the others "cpu"
    gpu_slots: int                        # Prefect concurrency limit on the "gpu" tag
    retries: int                          # retries of a stage that failed transiently
    retry_delay_s: float                  # delay before the first retry; doubles with each retry
    transient_patterns: tuple[str, ...]   # a failure whose log holds one of these (or a kill signal) is transient
    log_tail_lines: int                   # lines of the stage log quoted in the failure report
    report_dir: str                       # stage logs and failure.json


@dataclass(frozen=True)
class GateRule:
    """The candidate's `metric` may be worse than the current model's by at most `tolerance` (absolute)."""
    metric: str                           # dotted path in the metrics file, e.g. "student.wer"
    better: Literal["lower", "higher"]
    tolerance: float


@dataclass(frozen=True)
class RetrainConfig:
    """flows/retrain.py: retrain when the sources change, promote the candidate through the gate."""
    schedule: str                         # cron of the deployment (flows/deploy.py)
    data_until: str                       # last stage of the data half in dvc.yaml
    models: dict[str, Literal["resume", "retrain"]]  # training stage -> continue its checkpoints | start over
    candidate_dir: str                    # out_dir of the model that is gated and promoted
    metrics_path: str                     # the candidate's metrics (JSON) written by the evaluation stage
    gate: tuple[GateRule, ...]
    registry_dir: str                     # registry.jsonl, stored models, `current`, archived runs
    models_dir: str                       # below it the training stages' out_dirs (searched by lineage)
