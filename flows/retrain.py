"""Prefect flow: retraining when the sources change, with a promotion gate (params `retrain`).

1. Detect: the files of `prepare_corpus.sources` are compared with the manifests by content hash
   (`dmospeech.data.changes`). Nothing added or removed, and the last completed run saw the same
   data: stop, nothing is retrained.
2. The data half: the pipeline flow for the dvc.yaml stages up to `retrain.data_until`. DVC reruns
   what changed; resample_audio's outputs are content-addressed, so only new files are processed
   (counted here as its new outputs).
3. Models: each training stage in `retrain.models` resumes from its checkpoints ("resume") or starts
   over ("retrain": its out_dir is moved to the registry's archive, where lineage still finds it).
4. The rest of the pipeline (training, distillation, evaluation), again through DVC.
5. Gate: the candidate (newest checkpoint in `retrain.candidate_dir`) is compared with the current
   model on `retrain.gate` using `retrain.metrics_path`, then registered as promoted (`current`
   moves) or rejected (with the reason). A candidate identical to a registered one is not added again.

Run once: `python -m flows.retrain`; on a schedule: `python -m flows.deploy serve` (see README).
"""
from __future__ import annotations

import flows  # noqa: F401  (telemetry off before prefect is imported)

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dmospeech.config import Params, load_params
from dmospeech.data.changes import source_changes
from dmospeech.synthesis.watermark import synthesis_record
from dmospeech.lineage.records import checkpoint_dirs, lineage_attachment
from dmospeech.lineage.registry import Registry, apply_gate, tree_sha256
from dmospeech.ops.atomic import dumps_strict
from flows.pipeline import pipeline_flow, stage_order


@dataclass
class RetrainResult:
    status: str                 # up_to_date | promoted | rejected | unchanged (candidate already registered)
    added: int = 0              # source files whose content the manifests did not hold
    removed: int = 0            # manifest files no source holds any more
    processed: int = 0          # files the data half processed (new resample_audio outputs)
    reused: int = 0             # files whose resample_audio outputs were reused
    archived: list[str] = field(default_factory=list)  # out_dirs moved aside to train from scratch
    trained: list[str] = field(default_factory=list)   # DVC stages that ran after the data half
    model_id: str | None = None
    reason: str = ""


def _stage_out_dir(params: Params, stage: str) -> Path:
    group = getattr(params, stage, None)
    if group is None or not hasattr(group, "loop"):
        raise ValueError(f"params retrain.models names {stage!r}, which has no params group with loop.out_dir")
    return Path(group.loop.out_dir)


def check_plan(params: Params, order: list[str]) -> int:
    """Index of `retrain.data_until` in the dvc.yaml order; every stage named in params must exist."""
    cfg = params.retrain
    missing = [s for s in [cfg.data_until, *cfg.models] if s not in order]
    if missing:
        raise ValueError(f"params retrain names stages {missing} that dvc.yaml does not define (stages: {order})")
    for stage in cfg.models:
        _stage_out_dir(params, stage)
    split = order.index(cfg.data_until)
    unnamed = [s for s in order[split + 1:] if hasattr(getattr(params, s, None), "loop") and s not in cfg.models]
    if unnamed:  # found before any work: otherwise the stage fails after the data half, refusing to resume
        raise ValueError(f"params retrain.models must name every training stage after {cfg.data_until!r} with "
                         f"resume or retrain; missing: {unnamed}")
    return split


def _resample_outputs(root: Path, params: Params) -> set[str]:
    out = root / params.resample_audio.out_dir
    return {p.name for p in out.glob("*.json")} if out.is_dir() else set()


@task(cache_policy=NO_CACHE)
def detect_changes(root: Path, params: Params):
    changes = source_changes(params.prepare_corpus, root)
    get_run_logger().info(f"sources: {len(changes.added)} added, {len(changes.removed)} removed, "
                          f"{changes.unchanged} unchanged ({changes.hashed} hashed now), "
                          f"not there yet: {list(changes.missing) or 'none'}")
    return changes


@task(cache_policy=NO_CACHE)
def prepare_models(root: Path, params: Params, registry: Registry) -> list[str]:
    archived = []
    for stage, mode in params.retrain.models.items():
        if mode == "retrain" and (moved := registry.archive(root / _stage_out_dir(params, stage), stage)):
            archived.append(str(moved))
            get_run_logger().info(f"{stage}: previous run moved to {moved}; it trains from scratch")
    return archived


@task(cache_policy=NO_CACHE)
def gate_and_register(root: Path, params: Params, registry: Registry, extra: dict) -> tuple[str, str | None, str]:
    cfg = params.retrain
    done = checkpoint_dirs(root / cfg.candidate_dir)
    if not done:
        raise FileNotFoundError(f"no candidate checkpoint in {root / cfg.candidate_dir} (retrain.candidate_dir): "
                                "the stage that trains it did not run; check dvc.yaml")
    candidate = done[-1]
    known = registry.find_checkpoint(tree_sha256(candidate))
    if known is not None:
        return "unchanged", known["model_id"], f"{candidate} is already registered as {known['model_id']}"
    metrics_path = root / cfg.metrics_path
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path} (retrain.metrics_path) does not exist: the evaluation stage "
                                "must write the candidate's metrics there")
    gate = apply_gate(json.loads(metrics_path.read_text()), str(metrics_path), cfg.gate, registry.current_row())
    attachments = {"metrics.json": metrics_path, **lineage_attachment(candidate)}
    row = registry.register(candidate, attachments, gate, root, extra)
    get_run_logger().info(f"candidate {row['model_id']}: {row['status']} ({row['reason']})")
    return row["status"], row["model_id"], row["reason"]


@flow(name="dmospeech-retrain")
def retrain_flow(root: str = ".", params_path: str = "params.yaml") -> dict:
    root_path = Path(root).resolve()
    params = load_params(root_path / params_path)
    order = stage_order(root_path)
    split = check_plan(params, order)
    registry = Registry(root_path / params.retrain.registry_dir)
    changes = detect_changes(root_path, params)
    last = registry.last_run()
    if not changes.changed and last is not None and last["fingerprint"] == changes.fingerprint:
        get_run_logger().info("nothing new in the sources since the last run: nothing to retrain")
        return asdict(RetrainResult("up_to_date", reason="no new or removed source files"))
    before = _resample_outputs(root_path, params)
    pipeline_flow(str(root_path), order[:split + 1], params_path)
    after = _resample_outputs(root_path, params)
    archived = prepare_models(root_path, params, registry)
    runs = pipeline_flow(str(root_path), order[split + 1:], params_path)
    result = RetrainResult("", len(changes.added), len(changes.removed), len(after - before), len(after & before),
                           archived, [name for run in runs for name in run["ran"]])
    extra = {"data_fingerprint": changes.fingerprint, "added_files": result.added, "removed_files": result.removed,
             "processed_files": result.processed, "synthesis_watermark": synthesis_record()}
    result.status, result.model_id, result.reason = gate_and_register(root_path, params, registry, extra)
    registry.write_last_run({"fingerprint": changes.fingerprint, "status": result.status, "model_id": result.model_id})
    get_run_logger().info(f"retrain: {result}")
    return asdict(result)


if __name__ == "__main__":
    print(dumps_strict(retrain_flow(), indent=1))
