"""Model lineage: which segments (so which source files and speakers) trained each checkpoint.

Training stages call `record_training_segments` right before `train(...)`. It writes, inside the
model's out_dir (so the record travels with the checkpoints when a run is archived or registered):

    lineage/records.json                    run id, stage, and one record per training start
    lineage/segments_from_<step>.parquet    the segments of that record, with file id, speaker,
                                            split, source sha256 and source path

A record made when the run starts at step s (0, or the step it resumes from) covers every checkpoint
`step_<n>` with n > s, so the segments that trained `step_<n>` are exactly the union of the run's
records with `from_step < n`. A resume with more data adds a record; an attempt that wrote no
checkpoint is replaced by the next one. `upstream` names the checkpoints a model was built from
(a teacher it is distilled from, the codec whose latents it learns), so audits follow them.

The audits themselves (`dmospeech.lineage.audit`) query these files, the manifests and the
registry in DuckDB; `open_catalog` builds that connection.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import pandas as pd

from dmospeech.ops.atomic import dumps_strict, write_json_atomic
from dmospeech.config import Params
from dmospeech.data.manifest import code_version, open_manifests, schema_statements
from dmospeech.lineage.registry import Registry, project_path

LINEAGE_DIR = "lineage"
RECORDS_FILE = "records.json"
SEGMENT_COLUMNS = ("segment_id", "file_id", "speaker", "split", "source_sha256", "source_path")
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """n of a `step_<n>` checkpoint folder."""
    match = _STEP_DIR.match(Path(checkpoint).name)
    if not match:
        raise ValueError(f"{checkpoint} is not a checkpoint folder (expected a name like step_<n>)")
    return int(match.group(1))


def checkpoint_dirs(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of `out_dir`, oldest first, by dmospeech.ops.checkpoint's rule (`step_<n>/`
    holding state.json and run_config.json) but without importing torch."""
    found = [p for p in Path(out_dir).glob("step_*") if _STEP_DIR.match(p.name) and (p / "state.json").is_file()
             and (p / "run_config.json").is_file()]
    return sorted(found, key=checkpoint_step)


def read_records(out_dir: str | os.PathLike) -> dict | None:
    """`{"run_id", "stage", "records": [...]}` of a model out_dir, or None when it has no lineage."""
    path = Path(out_dir) / LINEAGE_DIR / RECORDS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def lineage_attachment(checkpoint: str | os.PathLike) -> dict[str, Path]:
    """The lineage folder of a checkpoint's run, as an attachment for `Registry.register` (empty if none)."""
    folder = Path(checkpoint).parent / LINEAGE_DIR
    return {LINEAGE_DIR: folder} if folder.is_dir() else {}


def _upstream_ref(checkpoint: str | os.PathLike) -> dict:
    checkpoint = Path(checkpoint)
    if not (checkpoint / "run_config.json").is_file():
        raise FileNotFoundError(f"upstream checkpoint {checkpoint} does not exist (no run_config.json)")
    run = read_records(checkpoint.parent)
    return {"run_id": run["run_id"] if run else None, "stage": run["stage"] if run else None,
            "step": checkpoint_step(checkpoint), "path": str(checkpoint)}


def record_training_segments(out_dir: str | os.PathLike, segment_ids: Iterable[str],
                             manifests: Sequence[str | os.PathLike], stage: str,
                             upstream: Sequence[str | os.PathLike] = ()) -> Path | None:
    """Record that the run in `out_dir` trains on `segment_ids` from its next step on. Call it right
    before `train(...)`. `manifests` are the stage databases holding `segments` and `source_files`
    (`params.manifests()`); every id must be in them. Under torchrun only rank 0 writes (other
    ranks return None). Returns the records file."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    out_dir = Path(out_dir)
    ids = pd.DataFrame({"segment_id": [str(s) for s in segment_ids]})
    if ids.empty:
        raise ValueError(f"record_training_segments({out_dir}): no segment ids given for stage {stage}")
    duplicated = ids.segment_id[ids.segment_id.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"record_training_segments({out_dir}): segment ids given twice: {duplicated[:5]}")
    with open_manifests(manifests) as con:
        con.register("ids", ids)
        rows = con.execute(
            "SELECT i.segment_id, s.file_id, s.speaker, s.split, s.source_sha256, f.path AS source_path "
            "FROM ids i LEFT JOIN segments s USING (segment_id) LEFT JOIN source_files f USING (file_id) "
            "ORDER BY i.segment_id").df()
    missing = rows.segment_id[rows.file_id.isna()].tolist()
    if missing:
        raise ValueError(f"record_training_segments({out_dir}): {len(missing)} segment id(s) are not in the "
                         f"segments manifest of {[str(m) for m in manifests]}, e.g. {missing[:3]}; "
                         "pass ids read from the same manifests the stage trains on")
    done = checkpoint_dirs(out_dir)
    from_step = checkpoint_step(done[-1]) if done else 0  # where train() resumes
    run = read_records(out_dir) or {"run_id": uuid.uuid4().hex[:12], "stage": stage, "records": []}
    # Records at or after from_step belong to attempts whose checkpoints no longer exist.
    kept = [r for r in run["records"] if r["from_step"] < from_step]
    folder = out_dir / LINEAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"segments_from_{from_step}.parquet"
    _write_parquet_atomic(rows[list(SEGMENT_COLUMNS)], folder / name)
    record = {"from_step": from_step, "segments_file": name, "segments": len(rows),
              "speakers": int(rows.speaker.nunique()), "source_files": int(rows.source_sha256.nunique()),
              "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "code_version": code_version(), "upstream": [_upstream_ref(u) for u in upstream]}
    run = {"run_id": run["run_id"], "stage": stage, "records": kept + [record]}
    path = write_json_atomic(folder / RECORDS_FILE, run, indent=1)
    for stale in folder.glob("segments_from_*.parquet"):
        if stale.name not in {r["segments_file"] for r in run["records"]}:
            stale.unlink()
    return path


def _write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with duckdb.connect() as con:
        con.register("rows", df)
        con.execute(f"COPY rows TO '{tmp}' (FORMAT parquet)")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the catalog
LINEAGE_RECORDS_COLUMNS = {"location": "VARCHAR", "run_id": "VARCHAR", "stage": "VARCHAR", "from_step": "BIGINT",
                           "segments_file": "VARCHAR", "recorded_at": "VARCHAR", "code_version": "VARCHAR",
                           "upstream": "VARCHAR"}
CHECKPOINTS_COLUMNS = {"checkpoint": "VARCHAR", "location": "VARCHAR", "run_id": "VARCHAR", "stage": "VARCHAR",
                       "step": "BIGINT", "kind": "VARCHAR", "model_id": "VARCHAR"}
REGISTRY_COLUMNS = {"model_id": "VARCHAR", "status": "VARCHAR", "reason": "VARCHAR", "created_at": "VARCHAR",
                    "checkpoint": "VARCHAR", "model_dir": "VARCHAR", "git_revision": "VARCHAR", "params_hash": "VARCHAR",
                    "dvc_lock_sha256": "VARCHAR", "metrics": "VARCHAR", "current": "BOOLEAN"}
_EMPTY_SEGMENTS = "SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in SEGMENT_COLUMNS) + ", " \
                  "NULL::VARCHAR AS segments_file WHERE false"


def lineage_folders(roots: Iterable[Path]) -> list[Path]:
    """Every `lineage/` folder with a records file below `roots` (workspace, archived, registered runs)."""
    found = {p.parent.resolve() for root in roots if root.is_dir() for p in root.rglob(f"{LINEAGE_DIR}/{RECORDS_FILE}")}
    return sorted(found)


def _kind(location: Path, registry: Registry) -> tuple[str, str | None]:
    """("registered", model id) | ("archived", None) | ("workspace", None)."""
    if location.parent == registry.models_dir.resolve():
        return "registered", location.name
    if location.is_relative_to(registry.archive_dir.resolve()):
        return "archived", None
    return "workspace", None


def open_catalog(params: Params, root: str | os.PathLike = ".") -> duckdb.DuckDBPyConnection:
    """DuckDB connection over the manifests (missing ones as empty tables), the lineage folders below
    `retrain.models_dir` and `retrain.registry_dir`, and the registry. Tables: the manifest tables,
    `lineage_records`, `training_segments`, `checkpoints`, `registry`; view `checkpoint_segments`."""
    root = Path(root).resolve()
    cfg = params.retrain
    stage_dbs = [root / m for m in [*params.manifests(), params.encode_latents.manifest] if (root / m).is_file()]
    con = open_manifests(stage_dbs)
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for table in ("source_files", "segments", "transcript_checks", "latents", "quarantine"):
        if table not in present:
            con.execute(schema_statements()[table])
    registry = Registry(root / cfg.registry_dir)
    records, checkpoints = [], []
    for folder in lineage_folders([root / cfg.models_dir, root / cfg.registry_dir]):
        location, run = folder.parent, read_records(folder.parent)
        kind, model_id = _kind(location, registry)
        for r in run["records"]:
            records.append({"location": project_path(location, root), "run_id": run["run_id"], "stage": run["stage"],
                            "from_step": r["from_step"], "segments_file": str(folder / r["segments_file"]),
                            "recorded_at": r["recorded_at"], "code_version": r["code_version"],
                            "upstream": dumps_strict(r["upstream"], indent=None)})
        for ckpt in checkpoint_dirs(location):
            checkpoints.append({"checkpoint": project_path(ckpt, root), "location": project_path(location, root),
                                "run_id": run["run_id"], "stage": run["stage"], "step": checkpoint_step(ckpt),
                                "kind": kind, "model_id": model_id})
    _register(con, "lineage_records", records, LINEAGE_RECORDS_COLUMNS)
    _register(con, "checkpoints", checkpoints, CHECKPOINTS_COLUMNS)
    current = registry.current_id()
    rows = [{**{k: row.get(k) for k in REGISTRY_COLUMNS}, "metrics": dumps_strict(row.get("metrics", {}), indent=None),
             "current": row["model_id"] == current} for row in registry.rows()]
    _register(con, "registry", rows, REGISTRY_COLUMNS)
    files = [r["segments_file"] for r in records]
    if files:
        listing = ", ".join(f"'{f}'" for f in files)
        con.execute(f"CREATE TABLE training_segments AS SELECT {', '.join(SEGMENT_COLUMNS)}, "
                    f"filename AS segments_file FROM read_parquet([{listing}], filename = true)")
    else:
        con.execute(f"CREATE TABLE training_segments AS {_EMPTY_SEGMENTS}")
    con.execute("""CREATE VIEW checkpoint_segments AS
        SELECT DISTINCT c.checkpoint, c.stage, c.step, c.kind, c.model_id, c.run_id, t.* EXCLUDE (segments_file)
        FROM checkpoints c
        JOIN lineage_records r ON r.location = c.location AND r.from_step < c.step
        JOIN training_segments t ON t.segments_file = r.segments_file""")
    return con


def _register(con: duckdb.DuckDBPyConnection, name: str, rows: list[dict], columns: dict[str, str]) -> None:
    con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
    if rows:
        con.register(f"_{name}", pd.DataFrame(rows, columns=list(columns)))
        con.execute(f"INSERT INTO {name} SELECT * FROM _{name}")
        con.unregister(f"_{name}")
