"""Lineage audits (`dmospeech lineage ...`), as DuckDB queries over `lineage.open_catalog`.

- `model_lineage`: a checkpoint, model out_dir, registered model id or "current" -> its dvc.lock
  entries (its stage and every stage upstream of it), params, git revisions, run config, upstream
  models, and the exact segments and source files (with hashes) that trained it.
- `artifacts_using`: a source file (path, sha256 or file id) or a speaker -> every segment,
  quarantine row, latent shard, checkpoint and registered model that used it (what a takedown
  request needs). Checkpoints are found from their lineage records, so runs archived or registered
  before the file was removed from the sources are still listed; a model built from an upstream
  checkpoint that used it is listed "via" that checkpoint.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import yaml
from rich.console import Console
from rich.table import Table

from dmospeech.config import Params
from dmospeech.data.manifest import sha256_file
from dmospeech.lineage.records import checkpoint_dirs, open_catalog
from dmospeech.lineage.registry import Registry, project_path
from dmospeech.ops.atomic import dumps_strict


class LineageError(LookupError):
    """A lineage query names something the catalog does not hold."""


def _records(con: duckdb.DuckDBPyConnection, sql: str, args: list) -> list[dict]:
    df = con.execute(sql, args).df()
    return json.loads(df.to_json(orient="records", date_format="iso"))


# ----------------------------------------------------------------------------- model -> data
def resolve_checkpoint(params: Params, target: str, root: Path) -> tuple[Path, dict | None]:
    """(checkpoint folder, registry row or None) for "current", a model id, a checkpoint or an out_dir."""
    registry = Registry(root / params.retrain.registry_dir)
    model_id = registry.current_id() if target == "current" else target
    if target == "current" and model_id is None:
        raise LineageError(f"no current model: {registry.current_link} does not exist (nothing promoted yet)")
    if model_id in {row["model_id"] for row in registry.rows()}:
        return registry.model_checkpoint(model_id).resolve(), registry.row(model_id)
    path = Path(target) if Path(target).is_absolute() else root / target
    if (path / "run_config.json").is_file():
        checkpoint = path.resolve()
    elif path.is_dir() and checkpoint_dirs(path):
        checkpoint = checkpoint_dirs(path)[-1].resolve()
    else:
        raise LineageError(f"{target!r} is neither a registered model id, 'current', a checkpoint folder "
                           f"(step_<n>/ with run_config.json) nor a model out_dir holding one")
    in_store = checkpoint.parent.parent == registry.models_dir.resolve()
    return checkpoint, registry.row(checkpoint.parent.name) if in_store else None


def dvc_lock_entries(lock_path: Path, stage: str) -> dict[str, dict]:
    """The dvc.lock entries of `stage` and of every stage upstream of it (by dependency paths), in lock order."""
    if not lock_path.is_file():
        raise LineageError(f"{lock_path} does not exist: the pipeline has not been run (dvc repro) there")
    stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
    if stage not in stages:
        raise LineageError(f"stage {stage!r} is not in {lock_path} (stages: {sorted(stages)})")

    def feeds(upstream: str, dep: str) -> bool:
        return any(dep == o or dep.startswith(o + "/") or o.startswith(dep + "/")
                   for o in (out["path"] for out in stages[upstream].get("outs", [])))

    wanted, todo = {stage}, [stage]
    while todo:
        deps = [d["path"] for d in stages[todo.pop()].get("deps", [])]
        for name in stages:
            if name not in wanted and any(feeds(name, dep) for dep in deps):
                wanted.add(name)
                todo.append(name)
    return {name: entry for name, entry in stages.items() if name in wanted}


def model_lineage(params: Params, target: str, root: str | os.PathLike = ".") -> dict[str, Any]:
    root = Path(root).resolve()
    checkpoint, row = resolve_checkpoint(params, target, root)
    con = open_catalog(params, root)
    rel = project_path(checkpoint, root)
    found = _records(con, "SELECT * FROM checkpoints WHERE checkpoint = ?", [rel])
    if not found:
        raise LineageError(f"{rel} has no lineage records ({checkpoint.parent}/lineage/records.json): it was trained "
                           "without record_training_segments, or lies outside retrain.models_dir and registry_dir")
    info = found[0]
    records = _records(con, "SELECT from_step, recorded_at, code_version, upstream FROM lineage_records "
                            "WHERE location = ? AND from_step < ? ORDER BY from_step", [info["location"], info["step"]])
    if not records or records[0]["from_step"] != 0:
        first = records[0]["from_step"] if records else "its own step"
        raise LineageError(f"{rel}: steps before {first} were trained before its stage recorded lineage, so the "
                           "segments that trained it are unknown; retrain it to have a complete record")
    lock_path = root / row["model_dir"] / "dvc.lock" if row else root / "dvc.lock"
    lock = dvc_lock_entries(lock_path, info["stage"])
    where = "FROM checkpoint_segments WHERE checkpoint = ?"
    return {
        "checkpoint": rel, "stage": info["stage"], "step": info["step"], "kind": info["kind"],
        "run_id": info["run_id"], "registry": row,
        "git_revisions": sorted({r["code_version"] for r in records} | ({row["git_revision"]} if row else set())),
        "dvc_lock_file": project_path(lock_path, root), "dvc_lock": lock,
        "params": lock[info["stage"]].get("params", {}),
        "run_config": json.loads((checkpoint / "run_config.json").read_text()),
        "records": [{k: r[k] for k in ("from_step", "recorded_at", "code_version")} for r in records],
        "upstream": [u for r in records for u in json.loads(r["upstream"])],
        "source_files": _records(con, "SELECT source_sha256, any_value(source_path) AS source_path, any_value(speaker) "
                                      f"AS speaker, count(*) AS segments {where} GROUP BY ALL ORDER BY 2", [rel]),
        "segments": _records(con, f"SELECT segment_id, file_id, speaker, split, source_sha256 {where} ORDER BY 1",
                             [rel]),
    }


# ----------------------------------------------------------------------------- data -> models
def resolve_source(con: duckdb.DuckDBPyConnection, source: str, root: Path) -> list[str]:
    """Content hashes meant by `source`: a sha256, a file id, an existing file, or a path on record."""
    if re.fullmatch(r"[0-9a-f]{64}", source):
        return [source]
    path = Path(source) if Path(source).is_absolute() else root / source
    if path.is_file():
        return [sha256_file(path)]
    found = con.execute(
        "SELECT source_sha256 FROM source_files WHERE file_id = ? OR path = ? OR rel_path = ? UNION "
        "SELECT source_sha256 FROM training_segments WHERE file_id = ? OR source_path = ?",
        [source, str(path.resolve()), source, source, str(path.resolve())]).fetchall()
    if not found:
        raise LineageError(f"{source!r} is not a sha256, an existing file, or a file id / path in the manifests "
                           "or lineage records")
    return sorted({sha for (sha,) in found})


def _containment(con: duckdb.DuckDBPyConnection, pred: str, args: list) -> dict[tuple[str, int], str]:
    """(run_id, step) of every checkpoint on record that used the data -> "direct" | "via <stage> <path>",
    or "unknown: ..." when part of its training (or of an upstream model's) was not recorded."""
    hits = con.execute(f"SELECT DISTINCT r.run_id, r.from_step FROM lineage_records r JOIN training_segments t "
                       f"USING (segments_file) WHERE {pred}", args).fetchall()
    records = con.execute("SELECT DISTINCT run_id, from_step, upstream FROM lineage_records").fetchall()
    first_step = {run_id: min(s for r, s, _ in records if r == run_id) for run_id, _, _ in records}

    def contains(run_id: str, step: int, seen: frozenset) -> str | None:
        if any(r == run_id and s < step for r, s in hits):
            return "direct"
        unknown = None
        if first_step.get(run_id, step) > 0:
            unknown = f"unknown: steps before {first_step.get(run_id, step)} of run {run_id} were not recorded"
        for rec_run, from_step, upstream in records:
            for ref in json.loads(upstream) if rec_run == run_id and from_step < step else []:
                key = (ref["run_id"], ref["step"])
                if ref["run_id"] is None:
                    unknown = unknown or f"unknown: upstream {ref['path']} has no lineage records"
                elif key not in seen and (found := contains(*key, seen | {key})):
                    if not found.startswith("unknown"):
                        return f"via {ref['stage']} {ref['path']}"
                    unknown = unknown or f"{found} (upstream {ref['path']})"
        return unknown

    result = {}
    for run_id, step in con.execute("SELECT DISTINCT run_id, step FROM checkpoints").fetchall():
        via = contains(run_id, step, frozenset({(run_id, step)}))
        if via:
            result[(run_id, step)] = via
    return result


def artifacts_using(params: Params, root: str | os.PathLike = ".", *, source: str | None = None,
                    speaker: str | None = None) -> dict[str, Any]:
    """Everything derived from one source file (`source`) or from every file of `speaker`."""
    if (source is None) == (speaker is None):
        raise ValueError("artifacts_using: give exactly one of source= and speaker=")
    root = Path(root).resolve()
    con = open_catalog(params, root)
    if speaker is not None:
        query, values, col = {"speaker": speaker}, [speaker], "speaker"
    else:
        values = resolve_source(con, source, root)
        query, col = {"source": source, "source_sha256": values}, "source_sha256"
    marks = ", ".join("?" for _ in values)

    def pred(alias: str) -> str:
        return f"{alias}.{col} IN ({marks})"

    via = _containment(con, pred("t"), values)
    checkpoints = [{**c, "via": via[(c["run_id"], c["step"])]}
                   for c in _records(con, "SELECT checkpoint, stage, step, kind, model_id, run_id FROM checkpoints "
                                          "ORDER BY checkpoint", [])
                   if (c["run_id"], c["step"]) in via]
    counts = {r["checkpoint"]: r["segments"] for r in _records(
        con, f"SELECT checkpoint, count(DISTINCT segment_id) AS segments FROM checkpoint_segments t "
             f"WHERE {pred('t')} GROUP BY ALL", values)}
    for c in checkpoints:
        c["segments"] = counts.get(c["checkpoint"], 0)
    registered = {c["model_id"]: c["via"] for c in checkpoints if c["model_id"]}
    models = [{**m, "via": registered[m["model_id"]]}
              for m in _records(con, "SELECT model_id, status, current, reason, created_at FROM registry", [])
              if m["model_id"] in registered]
    return {
        "query": query,
        "source_files": _records(con, f"SELECT f.source_sha256, f.path, f.speaker, f.split, true AS in_manifest "
                                      f"FROM source_files f WHERE {pred('f')} UNION "
                                      f"SELECT DISTINCT t.source_sha256, t.source_path, t.speaker, t.split, false "
                                      f"FROM training_segments t WHERE {pred('t')} AND t.source_sha256 NOT IN "
                                      f"(SELECT source_sha256 FROM source_files) ORDER BY 2", values + values),
        "quarantine": _records(con, f"SELECT q.stage, q.reason, q.item_id, q.path FROM quarantine q "
                                    f"LEFT JOIN segments g ON g.segment_id = q.item_id "
                                    f"LEFT JOIN source_files f ON f.file_id = q.item_id "
                                    f"WHERE {pred('g')} OR {pred('f')}"
                                    + (f" OR {pred('q')}" if col == "source_sha256" else "") + " ORDER BY 1, 3",
                               values * (3 if col == "source_sha256" else 2)),
        "segments": _records(con, f"SELECT g.segment_id, g.file_id, g.speaker, g.split, g.use_for_training, "
                                  f"g.duration_s, c.cer AS transcript_cer, c.verdict AS transcript_verdict "
                                  f"FROM segments g LEFT JOIN transcript_checks c USING (segment_id) "
                                  f"WHERE {pred('g')} ORDER BY 1", values),
        "latents": _records(con, f"SELECT l.segment_id, l.shard, l.codec_checkpoint FROM latents l "
                                 f"JOIN segments g USING (segment_id) WHERE {pred('g')} ORDER BY 1", values),
        "checkpoints": checkpoints,
        "models": models,
    }


# ----------------------------------------------------------------------------- output
def render(result: dict[str, Any], console: Console, limit: int = 20) -> None:
    """Scalars and small mappings as `key: value` lines; lists of rows as tables (first `limit` rows)."""
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            table = Table(*value[0].keys(), title=f"{key} ({len(value)})", title_justify="left")
            for row in value if limit <= 0 else value[:limit]:
                table.add_row(*[_cell(v) for v in row.values()])
            console.print(table)
            if 0 < limit < len(value):
                console.print(f"  ... {len(value) - limit} more (--limit 0 shows all, --json prints everything)")
        elif key == "dvc_lock":
            table = Table("stage", "cmd", "deps", "outs", title="dvc.lock entries", title_justify="left")
            for name, entry in value.items():
                table.add_row(name, str(entry.get("cmd")), str(len(entry.get("deps", []))),
                              "\n".join(f"{o['path']} {o.get('md5', '')[:12]}" for o in entry.get("outs", [])))
            console.print(table)
        else:
            console.print(f"[bold]{key}[/]: {_cell(value)}")


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else dumps_strict(value, indent=None, default=str)
