"""DuckDB manifests: one database file per stage, one schema file for all tables.

Each stage owns the tables it writes (a DVC output); `open_manifests` attaches every stage's
file read-only and exposes one view per table, so queries join across stages. Every row carries
lineage columns (source hash, parent row, stage, params hash, code version, time).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import warnings
from dataclasses import dataclass, asdict, is_dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import duckdb
import pandas as pd

QUARANTINE_REASONS: dict[str, str] = {
    "unreadable": "the file could not be opened or decoded as audio",
    "worker_crash": "processing this file killed its worker process each time it was tried",
    "transcript_mismatch": "the given transcript disagrees with what Whisper hears in the audio (CER over the threshold)",
    "truncated": "the file holds fewer samples than its header declares",
    "zero_length": "the file holds no audio samples (or is empty)",
    "silent": "the audio is silence throughout",
    "clipped": "too large a fraction of samples sit at full scale",
    "too_short": "shorter than the minimum duration",
    "too_long": "longer than the maximum duration",
    "missing_transcript": "a transcribed source has no transcript for this file",
    "missing_audio": "a transcript or list entry names audio that does not exist",
    "empty_transcript": "the transcript is empty",
    "unpronounceable": "the text holds characters or words espeak cannot pronounce",
    "duplicate": "the same audio content (sha256) is already in the corpus",
    "conflicting_transcripts": "copies of the same audio content (sha256) carry different transcripts",
    "non_finite_samples": "the audio decodes to NaN or infinite sample values",
    "no_speech": "no speech was found by the voice-activity detector or the recogniser",
    "no_speech_detected": "a transcribed clip in which the voice-activity detector finds too little speech",
    "transcript_collapse": "Whisper's transcript is far too short for the speech it covers, or loops",
    "unsupported_format": "the file extension is not an audio format we read",
}


UNION_TABLES = ("quarantine", "scanned_files")  # written by several stage databases, read as one
TIME_COLUMNS = ("created_at", "updated_at")  # lineage times: first produced, content last changed
RUN_STAMPS = ("code_version", "params_hash")   # lineage of the run that wrote a row, not its content


@lru_cache(maxsize=1)
def schema_statements() -> dict[str, str]:
    """CREATE TABLE statements of `schema.sql`, keyed by table name."""
    sql = resources.files("dmospeech.data").joinpath("schema.sql").read_text()
    sql = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    statements = {}
    for stmt in sql.split(";"):
        match = re.search(r"CREATE TABLE\s+(\w+)", stmt)
        if match:
            statements[match.group(1)] = stmt.strip()
    return statements


def table_columns(table: str) -> list[str]:
    """Column names of `table` in schema order."""
    con = duckdb.connect()
    con.execute(schema_statements()[table])
    cols = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
    con.close()
    return cols


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def params_hash(params: Any) -> str:
    """Stable 12-digit hash of a stage's params (a dataclass or plain data)."""
    if is_dataclass(params):
        params = asdict(params)
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """Git revision of the checkout (with '+dirty' when modified), else the package version."""
    from dmospeech import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "dmospeech", "stages"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        return f"{rev}+dirty" if dirty else rev
    except (OSError, subprocess.CalledProcessError):
        return f"dmospeech-{__version__}"


@dataclass(frozen=True)
class Lineage:
    """The lineage columns a stage stamps on every row it writes. `created_at` is the time of this
    run; `write_stage_db` puts back the earlier times of rows a previous run already wrote."""

    stage: str
    params_hash: str
    code_version: str
    created_at: dt.datetime

    @classmethod
    def for_stage(cls, stage: str, params: Any) -> "Lineage":
        return cls(stage, params_hash(params), code_version(), dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))

    def columns(self) -> dict[str, Any]:
        return {**asdict(self), "updated_at": self.created_at}


def quarantine_row(item_id: str, item_kind: str, path: str, reason: str, detail: str,
                   lineage: Lineage, source_sha256: str | None = None,
                   parent_id: str | None = None) -> dict[str, Any]:
    if reason not in QUARANTINE_REASONS:
        raise ValueError(f"unknown quarantine reason {reason!r}; known: {sorted(QUARANTINE_REASONS)}")
    return {"item_id": item_id, "item_kind": item_kind, "path": str(path), "reason": reason,
            "detail": detail, "source_sha256": source_sha256, "parent_id": parent_id,
            **lineage.columns()}


def frame(table: str, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the schema's columns; missing or extra keys are errors."""
    cols = table_columns(table)
    rows = list(rows)
    for i, row in enumerate(rows):
        missing, extra = set(cols) - set(row), set(row) - set(cols)
        if missing or extra:
            raise ValueError(f"row {i} for table {table!r}: missing columns {sorted(missing)}, "
                             f"unknown columns {sorted(extra)}")
    return pd.DataFrame(rows, columns=cols)


def primary_key(table: str) -> str | None:
    """The PRIMARY KEY column of `table` in `schema.sql`, or None."""
    match = re.search(r"(\w+)\s+\w+(?:\[\])?\s+PRIMARY KEY", schema_statements()[table])
    return match.group(1) if match else None


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def keep_first_times(con: duckdb.DuckDBPyConnection, table: str, previous: str) -> None:
    """Give the rows of `table` the times of the same rows in `previous` (the table as the last run wrote it).

    A row with a primary key keeps the earlier `created_at` of its key, and its earlier `updated_at`
    when its content is unchanged; a table without one keeps both times of rows whose content is
    unchanged. Content is every column but the times and the run's stamps (`code_version`,
    `params_hash`), so a row that new code or params reproduce keeps its times (and takes the new
    stamps). A file written before `updated_at` existed counts its `created_at` as the last update.
    """
    new, old = _columns(con, table), _columns(con, previous)
    content = [c for c in new if c not in TIME_COLUMNS + RUN_STAMPS]
    same = (" AND ".join(f'n."{c}" IS NOT DISTINCT FROM o."{c}"' for c in content)
            if set(content) <= set(old) else "false")
    old_updated = "updated_at" if "updated_at" in old else "created_at"
    key = primary_key(table)
    if key is not None and key in old:
        con.execute(f"UPDATE {table} AS n SET created_at = o.created_at, updated_at = CASE WHEN {same} "
                    f"THEN o.{old_updated} ELSE n.updated_at END FROM {previous} AS o WHERE n.{key} = o.{key}")
    elif key is None and same != "false":
        cols = ", ".join(f'"{c}"' for c in content)
        con.execute(f"UPDATE {table} AS n SET created_at = o.created_at, updated_at = o.updated_at "
                    f"FROM (SELECT {cols}, min(created_at) AS created_at, min({old_updated}) AS updated_at "
                    f"FROM {previous} GROUP BY ALL) AS o WHERE {same}")


def _attach_previous(con: duckdb.DuckDBPyConnection, path: Path) -> set[str]:
    """Attach the database at `path` read-only as `previous`; the tables it holds (none when absent)."""
    if not path.is_file():
        return set()
    try:
        con.execute(f"ATTACH '{path}' AS previous (READ_ONLY)")
    except duckdb.Error as err:
        warnings.warn(f"{path}: the previous stage database cannot be read ({err}); every row gets this run's "
                      "time as created_at")
        return set()
    return {row[0] for row in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'previous'").fetchall()}


def write_stage_db(path: str | os.PathLike, tables: Mapping[str, pd.DataFrame]) -> Path:
    """Write `tables` into a fresh DuckDB file at `path`, atomically (temp file + rename).

    When `path` already holds a stage database (DVC keeps it: the manifests are `persist: true`
    outputs), rows it already held keep their `created_at` (and `updated_at` when unchanged;
    `keep_first_times`), so a rerun records when each row was first produced, not when it was rewritten.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        previous = _attach_previous(con, path)
        for table, df in tables.items():
            con.execute(schema_statements()[table])
            if len(df):
                con.register("_rows", df)
                con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
                con.unregister("_rows")
            if table in previous:
                keep_first_times(con, table, f"previous.{table}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, path)
    Path(f"{tmp}.wal").unlink(missing_ok=True)
    return path


def read_table(path: str | os.PathLike, table: str) -> pd.DataFrame:
    """One table of one stage database, as a DataFrame."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table}").df()


def open_manifests(stage_dbs: Iterable[str | os.PathLike]) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with every stage database attached read-only and one view per
    table (`quarantine` is the union of all stages' quarantine tables, `scanned_files` of all sources')."""
    con = duckdb.connect()
    owners: dict[str, list[str]] = {}
    for i, db in enumerate(stage_dbs):
        db = Path(db)
        if not db.exists():
            raise FileNotFoundError(f"manifest {db} does not exist: run `dvc repro` for the stage that writes it")
        alias = f"m{i}"
        con.execute(f"ATTACH '{db}' AS {alias} (READ_ONLY)")
        for (table,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?", [alias]).fetchall():
            owners.setdefault(table, []).append(alias)
    for table, aliases in owners.items():
        if table not in UNION_TABLES and len(aliases) > 1:
            raise ValueError(f"table {table!r} is written by more than one manifest: {aliases}")
        union = " UNION ALL ".join(f"SELECT * FROM {a}.{table}" for a in aliases)
        con.execute(f"CREATE VIEW {table} AS {union}")
    return con
