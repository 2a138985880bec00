"""Prefect flow: the DVC pipeline, one task per stage of dvc.yaml.

DVC owns the graph and the caching: a task runs `dvc repro <stage>` for one top-level stage of
dvc.yaml (in the file's order, read from the file; a `foreach` group is one task), so an unchanged
stage costs one DVC check. Prefect owns the rest: tasks are tagged by resource ("gpu" for stages
matching params `pipeline.gpu_stages`, else "cpu") and a concurrency limit on "gpu"
(`pipeline.gpu_slots`) serialises GPU work across flow runs; a transient failure (a kill signal, or
a log line matching `pipeline.transient_patterns`, such as DVC's lock held by another run) is
retried with exponential back-off; any other failure stops the flow before the later stages with a
failure report (stage, log tail, failed manifest checks) in `<pipeline.report_dir>/failure.json`.

With `compute.engine: dask` and no `compute.scheduler_address`, the flow starts one Dask
LocalCluster for the whole run and hands its address to every stage (env DMOSPEECH_DASK_SCHEDULER),
so the data stages share warm workers instead of each starting a cluster of its own.

Run it: `python -m flows.pipeline [stage ...]` from the project root.
"""
from __future__ import annotations

import flows  # noqa: F401  (telemetry off before prefect is imported)

import contextlib
import datetime as dt
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import yaml
from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from prefect.tasks import exponential_backoff

from dmospeech.ops.atomic import write_json_atomic
from dmospeech.ops.executor import SCHEDULER_ENV, local_cluster
from dmospeech.config import ComputeConfig, PipelineConfig, load_params

_RAN = re.compile(r"^Running stage '([^']+)'")
_FAILED = re.compile(r"failed to reproduce '([^']+)'")
_EXITED = re.compile(r"exited with (-?\d+)")


@dataclass
class StageRun:
    stage: str
    ran: list[str]          # DVC stages that ran (empty: everything was up to date)
    seconds: float
    attempt: int
    log: str


class StageFailed(RuntimeError):
    """`dvc repro <stage>` failed; carries what the failure report needs."""

    def __init__(self, stage: str, returncode: int, log: str, tail: list[str], transient: bool, attempt: int):
        failed = next((m.group(1) for line in tail if (m := _FAILED.search(line))), stage)
        super().__init__(f"dvc repro {stage} failed (exit {returncode}, DVC stage {failed!r}, "
                         f"{'transient' if transient else 'not transient'}); log {log}")
        self.stage, self.returncode, self.log, self.tail = stage, returncode, log, tail
        self.transient, self.attempt, self.dvc_stage = transient, attempt, failed


class PipelineFailed(RuntimeError):
    """A stage failed for good; the message is the failure report."""


def stage_order(root: str | os.PathLike) -> list[str]:
    """Top-level stage names of `<root>/dvc.yaml`, in file order."""
    path = Path(root) / "dvc.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the flow from the project root (or pass root=)")
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
    if not stages:
        raise ValueError(f"{path} defines no stages")
    return list(stages)


def resource_tags(stage: str, gpu_patterns: tuple[str, ...]) -> list[str]:
    resource = "gpu" if any(fnmatch.fnmatchcase(stage, p) for p in gpu_patterns) else "cpu"
    return [resource, f"stage:{stage}"]


def is_transient(returncode: int, tail: list[str], patterns: tuple[str, ...]) -> bool:
    """Killed by a signal (DVC's own exit < 0, or a stage that "exited with" < 0 or > 128), or a log
    line holds one of `patterns`."""
    codes = [int(m.group(1)) for line in tail if (m := _EXITED.search(line))]
    killed = returncode < 0 or any(code < 0 or code > 128 for code in codes)
    return killed or any(p in line for line in tail for p in patterns)


def _env() -> dict:
    """The stages run `python`: the interpreter running this flow (the project's venv) comes first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1"}


def run_dvc_repro(root: Path, stage: str, log_path: Path, cfg: PipelineConfig, attempt: int = 1) -> StageRun:
    """`dvc repro <stage>` in `root`, streaming its output to `log_path`; raises StageFailed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=max(cfg.log_tail_lines, 1))
    ran, started = [], dt.datetime.now()
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", stage], cwd=root, env=_env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            tail.append(line.rstrip("\n"))
            if m := _RAN.match(line):
                ran.append(m.group(1))
    seconds = (dt.datetime.now() - started).total_seconds()
    if proc.returncode != 0:
        lines = list(tail)
        raise StageFailed(stage, proc.returncode, str(log_path), lines,
                          is_transient(proc.returncode, lines, cfg.transient_patterns), attempt)
    return StageRun(stage, ran, seconds, attempt, str(log_path))


def failed_checks(root: Path, dvc_stage: str) -> list[dict]:
    """Failed checks of the gate reports (`report.json` with "success": false and a "checks" list)
    among the outputs of `dvc_stage`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = repo.stage.collect(f"{root / 'dvc.yaml'}:{dvc_stage}")
        outs = [Path(out.fs_path) for stage in stages for out in stage.outs]
    reports = [p for out in outs for p in ([out] if out.suffix == ".json" else sorted(out.rglob("report.json"))
                                           if out.is_dir() else [])]
    failures = []
    for path in reports:
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(report, dict) and report.get("success") is False and isinstance(report.get("checks"), list):
            failures += [{"report": str(path.relative_to(root)), **check}
                         for check in report["checks"] if not check.get("success", True)]
    return failures


def failure_report(root: Path, err: StageFailed, not_run: list[str]) -> dict:
    try:
        checks, checks_error = failed_checks(root, err.dvc_stage), None
    except Exception as exc:  # the report must still name the stage when dvc.yaml itself is broken
        checks, checks_error = [], f"{type(exc).__name__}: {exc}"
    return {"stage": err.stage, "dvc_stage": err.dvc_stage, "command": f"dvc repro {err.stage}",
            "returncode": err.returncode, "transient": err.transient, "attempts": err.attempt,
            "log": err.log, "log_tail": err.tail, "failed_checks": checks, "failed_checks_error": checks_error,
            "not_run": not_run, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def format_failure(report: dict) -> str:
    lines = [f"stage {report['stage']} failed (DVC stage {report['dvc_stage']}, exit {report['returncode']}, "
             f"{report['attempts']} attempt(s), {'transient' if report['transient'] else 'not transient'})",
             f"log: {report['log']}", "log tail:", *[f"  | {line}" for line in report["log_tail"]]]
    for check in report["failed_checks"]:
        where = ".".join(str(check[k]) for k in ("table", "column") if check.get(k))
        lines.append(f"failed check: {check.get('expectation')} on {where or '?'}: {check.get('unexpected_count')} "
                     f"failing rows {check.get('failing_rows', [])[:5]} {check.get('error') or ''} ({check['report']})")
    lines.append(f"not run: {', '.join(report['not_run']) or 'none'}")
    return "\n".join(lines)


@task(cache_policy=NO_CACHE)
def repro_stage(root: str, stage: str, cfg: PipelineConfig) -> StageRun:
    attempt = task_run.run_count
    log = Path(root) / cfg.report_dir / "logs" / f"{stage}.log"
    result = run_dvc_repro(Path(root), stage, log, cfg, attempt)
    get_run_logger().info(f"{stage}: {'ran ' + ', '.join(result.ran) if result.ran else 'up to date'} "
                          f"({result.seconds:.1f} s, attempt {attempt})")
    return result


def retry_if_transient(_task, _task_run, state) -> bool:
    """Prefect's retry_condition_fn: retry StageFailed when it is transient."""
    err = state.result(raise_on_failure=False)
    return isinstance(err, StageFailed) and err.transient


def ensure_gpu_limit(slots: int) -> None:
    """Create or update the Prefect concurrency limit on the "gpu" tag."""
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=slots)


@contextlib.contextmanager
def shared_cluster(cfg: ComputeConfig) -> Iterator[None]:
    """With engine dask and no scheduler address: one LocalCluster for every stage of this run."""
    if cfg.engine != "dask" or cfg.scheduler_address or os.environ.get(SCHEDULER_ENV):
        yield
        return
    with local_cluster(cfg) as cluster:
        os.environ[SCHEDULER_ENV] = cluster.scheduler_address
        try:
            yield
        finally:
            os.environ.pop(SCHEDULER_ENV, None)


@flow(name="dmospeech-pipeline")
def pipeline_flow(root: str = ".", stages: list[str] | None = None, params_path: str = "params.yaml") -> list[dict]:
    """`dvc repro` each stage of dvc.yaml in order (or only `stages`, kept in dvc.yaml order)."""
    root_path = Path(root).resolve()
    params = load_params(root_path / params_path)
    cfg = params.pipeline
    order = stage_order(root_path)
    unknown = sorted(set(stages or []) - set(order))
    if unknown:
        raise ValueError(f"stages {unknown} are not in {root_path / 'dvc.yaml'} (stages there: {order})")
    selected = [s for s in order if stages is None or s in stages]
    ensure_gpu_limit(cfg.gpu_slots)
    (root_path / cfg.report_dir / "failure.json").unlink(missing_ok=True)
    runs = []
    with shared_cluster(params.compute):
        for i, stage in enumerate(selected):
            runs.append(_repro_in_flow(root_path, stage, cfg, selected[i + 1:]))
    return runs


def _repro_in_flow(root_path: Path, stage: str, cfg: PipelineConfig, later: list[str]) -> dict:
    """One stage as a Prefect task; a failure writes the failure report and stops the flow."""
    state = repro_stage.with_options(
        name=f"repro-{stage}", task_run_name=f"repro-{stage}", tags=resource_tags(stage, cfg.gpu_stages),
        retries=cfg.retries, retry_delay_seconds=exponential_backoff(cfg.retry_delay_s),
        retry_condition_fn=retry_if_transient,
    )(str(root_path), stage, cfg, return_state=True)
    if state.is_failed():
        err = state.result(raise_on_failure=False)
        if not isinstance(err, StageFailed):
            raise err
        report = failure_report(root_path, err, later)
        write_json_atomic(root_path / cfg.report_dir / "failure.json", report, indent=1)
        text = format_failure(report)
        get_run_logger().error(text)
        raise PipelineFailed(text)
    return asdict(state.result())


if __name__ == "__main__":
    pipeline_flow(stages=sys.argv[1:] or None)
