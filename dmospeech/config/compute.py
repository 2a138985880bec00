"""Params group `compute`: where the data half's per-file work runs (part of `dmospeech.config.Params`).

Execution only: no stage lists this group as a DVC params dependency, because the engine never
changes a result (the same manifests, audio and latents from either engine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class ComputeConfig:
    engine: Literal["local", "dask"]      # local: in the stage process; dask: a Dask distributed cluster
    scheduler_address: Optional[str]      # dask: tcp://host:8786 of a running scheduler; null = start a LocalCluster
    workers: int                          # LocalCluster: worker processes
    threads_per_worker: int               # LocalCluster: threads of each worker (torch threads follow it)
    gpu_workers: int                      # LocalCluster: how many of `workers` declare resources {GPU: 1}
    shard_files: int                      # files (or segments) per task: one task per shard, never per file
    allowed_failures: int                 # a shard may kill this many workers; then each file is tried alone,
                                          # and a file that still kills its worker is quarantined `worker_crash`
