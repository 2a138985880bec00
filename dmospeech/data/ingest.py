"""Ingest: scan each source (content hash per file) and merge the sources into `source_files`,
with duplicates and scan problems sent to quarantine and speakers assigned to splits."""
from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import pandas as pd

from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.manifest import Lineage, frame, quarantine_row, sha256_file
from dmospeech.data.sources import scan_source
from dmospeech.data.text import normalize_text, unpronounceable_characters
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


def _transcript_key(text: str) -> str:
    """A transcript as copies of one audio are compared: normalised as phonemize_text does, case-folded,
    letters and digits only (so 'HELLO WORLD' and 'Hello, world.' agree)."""
    kept = "".join(ch if unicodedata.category(ch)[0] in "LN" else " " for ch in normalize_text(text).casefold())
    return " ".join(kept.split())


def _text_problem(row) -> tuple[str, str] | None:
    """(reason, detail) when a transcribed row's text fails phonemize_text's text checks (empty after
    normalisation, characters espeak-ng cannot read), else None."""
    if not row.transcribed:
        return None
    text = normalize_text(row.text)
    if not text:
        return "empty_transcript", f"the transcript of {row.path} is empty after normalisation"
    bad = unpronounceable_characters(text)
    return ("unpronounceable", f"the transcript of {row.path} holds characters {bad} espeak-ng cannot read"
            ) if bad else None


def merge_sources(scanned: pd.DataFrame, split: SplitConfig, lineage: Lineage) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`source_files`, `quarantine`) from all sources' scanned rows (in source order, then path).

    A row with a scan problem is quarantined with that problem. Rows with one content hash are copies
    of one audio. When their transcripts differ (`_transcript_key`; an untranscribed copy differs from
    none), which is right is unknown: every copy is quarantined as `conflicting_transcripts`. Else one
    copy is kept: the first whose text passes phonemize_text's text checks, a transcribed one before an
    untranscribed one; each other copy is quarantined with its own text problem if it has one, else
    as a `duplicate` naming the kept copy. Quarantined files are identified by a hash of their path
    (no file id is theirs)."""
    order = {row.path: i for i, row in enumerate(scanned.itertuples(index=False))}
    good, quarantine, copies = [], [], {}

    def quarantined(row, reason: str, detail: str) -> None:
        sha = row.source_sha256 if isinstance(row.source_sha256, str) else None
        quarantine.append(quarantine_row(_path_id(row.path), "source_file", row.path, reason, detail, lineage, sha))

    for row in scanned.itertuples(index=False):
        if isinstance(row.problem, str):
            quarantined(row, row.problem, row.problem_detail)
        else:
            copies.setdefault(row.source_sha256, []).append(row)
    for sha, group in copies.items():
        if len({_transcript_key(row.text) for row in group if row.transcribed}) > 1:
            for row in group:
                others = "; ".join(f"{o.path}: {o.text!r}" for o in group if o is not row and o.transcribed)
                says = f"this copy says {row.text!r}, " if row.transcribed else ""
                quarantined(row, "conflicting_transcripts",
                            f"{says}other copies of the same audio (sha256 {sha[:16]}) say {others}")
            continue
        problems = [_text_problem(row) for row in group]
        kept = min(range(len(group)), key=lambda i: (problems[i] is not None, not group[i].transcribed, i))
        good.append(group[kept])
        for row, problem in zip(group, problems):
            if row is group[kept]:
                continue
            if problem is not None:
                quarantined(row, problem[0], f"{problem[1]}; the same audio is kept as {group[kept].path}")
            else:
                quarantined(row, "duplicate", f"same content as {group[kept].path}")
    good.sort(key=lambda row: order[row.path])
    quarantine.sort(key=lambda q: order[q["path"]])
    splits = assign_splits([row.speaker for row in good], split)
    rows = [{
        "file_id": row.source_sha256[:16], "source_name": row.source_name, "source_kind": row.source_kind,
        "path": row.path, "rel_path": row.rel_path, "size_bytes": int(row.size_bytes), "speaker": row.speaker,
        "text": row.text if isinstance(row.text, str) else None, "transcribed": bool(row.transcribed),
        "split": splits[row.speaker], "source_sha256": row.source_sha256, "parent_id": None, **lineage.columns(),
    } for row in good]
    return frame("source_files", rows), frame("quarantine", quarantine)
