"""Ingest: scan each source (content hash per file) and merge the sources into `source_files`,
with duplicates and scan problems sent to quarantine and speakers assigned to splits."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.manifest import Lineage, frame, quarantine_row, sha256_file
from dmospeech.data.sources import scan_source
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash

SPLITS = ("train", "valid", "test")


def scan_db_path(manifest: str, name: str) -> Path:
    """Where the scan of source `name` is written: `<manifest folder>/sources/<name>.duckdb`."""
    return Path(manifest).parent / "sources" / f"{name}.duckdb"


def hash_files(paths: list[str]) -> list[str]:
    """One executor task: the sha256 of each file."""
    return [sha256_file(path) for path in paths]


def scan_rows(source: SourceConfig, extensions: tuple[str, ...], lineage: Lineage,
              base: Path = Path("."), executor: Executor | None = None) -> pd.DataFrame:
    """The `scanned_files` rows of one source: every item with its sha256 (NULL when missing),
    hashed in shards by `executor` (this process when None)."""
    items = scan_source(source, extensions, base)
    present = [item for item in items if item.path.exists()]
    with executor or Executor(LOCAL) as ex:
        digests = dict(zip((id(item) for item in present),
                           ex.map(hash_files, [str(item.path.resolve()) for item in present])))
    rows = []
    for item in items:
        digest = digests.get(id(item))
        problem, detail = item.problem, item.problem_detail
        if isinstance(digest, WorkerCrash):
            digest, problem, detail = None, "worker_crash", f"hashing {item.path}: {digest.detail}"
        exists = id(item) in digests
        rows.append({
            "source_name": source.name, "source_kind": source.kind, "path": str(item.path),
            "rel_path": item.rel_path, "size_bytes": item.path.stat().st_size if exists else None,
            "speaker": item.speaker, "text": item.text, "transcribed": item.transcribed,
            "problem": problem, "problem_detail": detail, "source_sha256": digest, "parent_id": None,
            **lineage.columns(),
        })
    return frame("scanned_files", rows)


def assign_splits(speakers: list[str], cfg: SplitConfig) -> dict[str, str]:
    """Speaker -> split. Speakers are ranked by a seeded hash; the first `test_fraction` go to
    test, the next `valid_fraction` to valid (at least one each once there are 3 speakers)."""
    ranked = sorted(set(speakers), key=lambda s: hashlib.sha256(f"{cfg.seed}:{s}".encode()).hexdigest())
    n = len(ranked)

    def count(fraction: float) -> int:
        return 0 if fraction <= 0 or n < 3 else max(1, round(fraction * n))

    n_test, n_valid = count(cfg.test_fraction), count(cfg.valid_fraction)
    return {s: "test" if i < n_test else "valid" if i < n_test + n_valid else "train" for i, s in enumerate(ranked)}


def _path_id(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def merge_sources(scanned: pd.DataFrame, split: SplitConfig, lineage: Lineage) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`source_files`, `quarantine`) from all sources' scanned rows. The first file with a given
    content hash (in source order, then path) is kept; later copies are quarantined as duplicates."""
    good, quarantine, first_path = [], [], {}
    for row in scanned.itertuples(index=False):
        sha = row.source_sha256
        item_id = sha[:16] if isinstance(sha, str) else _path_id(row.path)
        if isinstance(row.problem, str):
            quarantine.append(quarantine_row(item_id, "source_file", row.path, row.problem, row.problem_detail,
                                             lineage, sha if isinstance(sha, str) else None))
        elif sha in first_path:
            quarantine.append(quarantine_row(item_id, "source_file", row.path, "duplicate",
                                             f"same content as {first_path[sha]}", lineage, sha))
        else:
            first_path[sha] = row.path
            good.append(row)
    splits = assign_splits([row.speaker for row in good], split)
    rows = [{
        "file_id": row.source_sha256[:16], "source_name": row.source_name, "source_kind": row.source_kind,
        "path": row.path, "rel_path": row.rel_path, "size_bytes": int(row.size_bytes), "speaker": row.speaker,
        "text": row.text if isinstance(row.text, str) else None, "transcribed": bool(row.transcribed),
        "split": splits[row.speaker], "source_sha256": row.source_sha256, "parent_id": None, **lineage.columns(),
    } for row in good]
    return frame("source_files", rows), frame("quarantine", quarantine)
