"""The model registry: every candidate the retrain flow evaluated, promoted or rejected by a gate.

Layout of `retrain.registry_dir`:

    registry.jsonl          one JSON row per candidate (model id, status, reason, metrics, params hash,
                            git revision, dvc.lock hash, data fingerprint, time)
    models/<model_id>/      the candidate as it was: its checkpoint folder (hard links), its lineage
                            folder, metrics.json, dvc.lock and params.yaml
    current                 symlink to models/<promoted model id>, replaced atomically
    archive/<name>/         model out_dirs moved aside before a run retrains from scratch
    last_run.json           the data fingerprint and outcome of the last completed retrain run

Rows are never edited: the registry file is rewritten with the new row appended (temp file +
rename), after the model folder is complete; `current` moves last.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from dmospeech.ops.files import files_below
from dmospeech.ops.atomic import UNDEFINED_SUFFIX, dumps_strict, write_json_atomic, write_text_atomic
from dmospeech.config import GateRule
from dmospeech.data.manifest import params_hash


class RegistryError(RuntimeError):
    """The registry or a candidate is not in the state an operation needs."""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    values: dict[str, float | None]  # the candidate's value of every gate metric (None: undefined)
    compared_to: str | None         # model id of the current model, None for a first promotion


def metric_at(metrics: dict, path: str, source: str) -> float | None:
    """The number at dotted `path` ("student.wer") in `metrics` (read from `source`); None when the
    metric is undefined there (null, as strict JSON writes it, or a NaN of an older file)."""
    value: Any = metrics
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise KeyError(f"metric {path!r} is not in {source} (at {part!r}: found {keys}); "
                           "check params retrain.gate against what the evaluation writes")
        value = value[part]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"metric {path!r} in {source} is {value!r}, not a number")
    return float(value)


def undefined_reason(metrics: dict, path: str, source: str) -> str:
    """Why the metric at dotted `path` (which `metric_at` found undefined) is undefined: the
    "<name>_undefined" key the writer put next to it (ops/atomic.py strict_json)."""
    *parents, name = path.split(".")
    for part in parents:
        metrics = metrics[part]
    if metrics.get(f"{name}{UNDEFINED_SUFFIX}"):
        return str(metrics[f"{name}{UNDEFINED_SUFFIX}"])
    return f"NaN in {source}" if isinstance(metrics[name], float) else f"null in {source}, no reason recorded"


def apply_gate(candidate: dict, source: str, rules: Sequence[GateRule], current: dict | None) -> GateResult:
    """Compare the candidate's metrics with the current model's registry row (None: no current model).
    A gate metric that is undefined in the candidate (null/NaN) fails the gate, first promotion included."""
    values = {rule.metric: metric_at(candidate, rule.metric, source) for rule in rules}
    undefined = [f"metric {m} is undefined ({undefined_reason(candidate, m, source)})"
                 for m, v in values.items() if v is None]
    if undefined:
        return GateResult(False, "; ".join(undefined), values, None if current is None else current["model_id"])
    if current is None:
        return GateResult(True, "no current model: first promotion", values, None)
    failures = []
    for rule in rules:
        value, before = values[rule.metric], current["metrics"].get(rule.metric)
        if rule.metric not in current["metrics"]:
            failures.append(f"current model {current['model_id']} has no recorded {rule.metric} (the gate changed "
                            "since it was promoted); promote by hand with `dmospeech registry promote <model id>`")
        elif before is None or (isinstance(before, float) and math.isnan(before)):
            failures.append(f"current model {current['model_id']} has an undefined {rule.metric} (nothing to "
                            "compare with); promote by hand with `dmospeech registry promote <model id>`")
        elif rule.better == "lower" and value > before + rule.tolerance:
            failures.append(f"{rule.metric} {value:.4g} > current {before:.4g} + tolerance {rule.tolerance:g}")
        elif rule.better == "higher" and value < before - rule.tolerance:
            failures.append(f"{rule.metric} {value:.4g} < current {before:.4g} - tolerance {rule.tolerance:g}")
    if failures:
        return GateResult(False, "; ".join(failures), values, current["model_id"])
    shown = ", ".join(f"{k} {v:.4g} (current {current['metrics'][k]:.4g})" for k, v in values.items())
    return GateResult(True, f"within tolerance of {current['model_id']}: {shown}", values, current["model_id"])


def tree_sha256(folder: str | os.PathLike) -> str:
    """sha256 over the relative names and contents of every file below `folder`."""
    folder, digest = Path(folder), hashlib.sha256()
    for path in files_below(folder):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def git_revision(root: str | os.PathLike) -> str:
    """HEAD of the checkout at `root`, with "+dirty" when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    try:
        rev = git("rev-parse", "HEAD")
        return f"{rev}+dirty" if git("status", "--porcelain", "--untracked-files=no") else rev
    except (OSError, subprocess.CalledProcessError) as err:
        raise RegistryError(f"cannot read the git revision of {root}: {err}; "
                            "the registry needs a git checkout with a commit") from None


def _link_tree(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` with hard links (checkpoint files are never rewritten in place), else copies."""
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=link)


def project_path(path: Path, root: Path) -> str:
    """`path` relative to the project `root` when it is inside it, else absolute."""
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Registry:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.file = self.root / "registry.jsonl"
        self.models_dir = self.root / "models"
        self.archive_dir = self.root / "archive"
        self.current_link = self.root / "current"
        self.last_run_file = self.root / "last_run.json"

    def rows(self) -> list[dict]:
        if not self.file.is_file():
            return []
        return [json.loads(line) for line in self.file.read_text(encoding="utf-8").splitlines() if line.strip()]

    def row(self, model_id: str) -> dict:
        for row in self.rows():
            if row["model_id"] == model_id:
                return row
        raise RegistryError(f"no model {model_id!r} in {self.file}; `dmospeech registry` lists them")

    def current_id(self) -> str | None:
        return Path(os.readlink(self.current_link)).name if self.current_link.is_symlink() else None

    def current_row(self) -> dict | None:
        current = self.current_id()
        return self.row(current) if current else None

    def model_checkpoint(self, model_id: str) -> Path:
        """The checkpoint folder stored for `model_id`."""
        return self.models_dir / model_id / self.row(model_id)["checkpoint_name"]

    def find_checkpoint(self, checkpoint_sha256: str) -> dict | None:
        return next((r for r in self.rows() if r["checkpoint_sha256"] == checkpoint_sha256), None)

    def register(self, checkpoint: Path, attachments: dict[str, Path], gate: GateResult, project_root: Path,
                 extra: dict[str, Any]) -> dict:
        """Store the candidate `checkpoint` and `attachments` (name in the model folder -> file or folder
        to copy: metrics, lineage, ...) with the project's dvc.lock and params.yaml, append its row, and
        move `current` to it when the gate passed. `extra` adds fields to the row (data fingerprint, counts)."""
        checkpoint_sha = tree_sha256(checkpoint)
        now = _now()
        model_id = f"{checkpoint.parent.name}-{now:%Y%m%dT%H%M%S}-{checkpoint_sha[:8]}"
        tmp, final = self.models_dir / f".{model_id}.tmp", self.models_dir / model_id
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _link_tree(checkpoint, tmp / checkpoint.name)
        for name, src in {**attachments, "dvc.lock": project_root / "dvc.lock",
                          "params.yaml": project_root / "params.yaml"}.items():
            if src.is_dir():
                shutil.copytree(src, tmp / name)
            else:
                shutil.copy2(src, tmp / name)
        os.replace(tmp, final)
        row = {"model_id": model_id, "status": "promoted" if gate.passed else "rejected", "reason": gate.reason,
               "compared_to": gate.compared_to, "metrics": gate.values,
               "checkpoint": project_path(checkpoint, project_root),
               "checkpoint_name": checkpoint.name, "checkpoint_sha256": checkpoint_sha,
               "model_dir": project_path(final, project_root), "git_revision": git_revision(project_root),
               "params_hash": params_hash(yaml.safe_load((project_root / "params.yaml").read_text())),
               "dvc_lock_sha256": hashlib.sha256((project_root / "dvc.lock").read_bytes()).hexdigest(),
               "created_at": now.isoformat(timespec="seconds"), **extra}
        lines = [dumps_strict(r, indent=None) for r in self.rows()] + [dumps_strict(row, indent=None)]
        write_text_atomic(self.file, "\n".join(lines) + "\n")
        if gate.passed:
            self.promote(model_id)
        return row

    def promote(self, model_id: str) -> None:
        """Point `current` at a registered model (also a manual override or a rollback)."""
        self.row(model_id)
        if not (self.models_dir / model_id).is_dir():
            raise RegistryError(f"{self.models_dir / model_id} is missing: the registry row has no stored model")
        tmp = self.root / f".current.tmp{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("models") / model_id, tmp)
        os.replace(tmp, self.current_link)

    def archive(self, out_dir: Path, stage: str) -> Path | None:
        """Move a model out_dir aside (so its stage starts over); None when there is nothing to move."""
        if not out_dir.exists():
            return None
        dest = self.archive_dir / f"{stage}-{_now():%Y%m%dT%H%M%S%f}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out_dir, dest)
        return dest

    def last_run(self) -> dict | None:
        return json.loads(self.last_run_file.read_text(encoding="utf-8")) if self.last_run_file.is_file() else None

    def write_last_run(self, record: dict) -> None:
        record = {**record, "finished_at": _now().isoformat(timespec="seconds")}
        write_json_atomic(self.last_run_file, record, indent=1)

