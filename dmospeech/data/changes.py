"""What changed in the configured sources since the manifests were written, by content hash.

A file whose path, size and modification time (older than its scan) match its `scanned_files` row
keeps that row's sha256; every other file is hashed (transcripts without audio are not content).
Added files are those whose content hash the manifests do not hold; removed ones are manifest hashes
no longer found in any source. A source whose folder does not exist is reported as missing (the
demo's sources are made by a stage).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dmospeech.config import PrepareCorpusConfig
from dmospeech.data.ingest import scan_db_path
from dmospeech.data.manifest import read_table, sha256_file
from dmospeech.data.sources import scan_source


@dataclass(frozen=True)
class SourceChanges:
    added: tuple[str, ...]      # paths whose content is not in the manifests
    removed: tuple[str, ...]    # manifest paths whose content no source holds any more
    unchanged: int              # files whose content the manifests hold
    hashed: int                 # files hashed now (the others passed the quick check)
    fingerprint: str            # sha256 of the sorted content hashes now in the sources
    missing: tuple[str, ...]    # sources whose folder does not exist (yet: a stage may create it)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.missing)


def _manifest_rows(cfg: PrepareCorpusConfig, base: Path) -> pd.DataFrame:
    """(path, size_bytes, source_sha256, created_at) of every scanned and merged file on record."""
    frames = [read_table(base / scan_db_path(cfg.manifest, s.name), "scanned_files") for s in cfg.sources
              if (base / scan_db_path(cfg.manifest, s.name)).is_file()]
    frames = [f[f.problem.ne("missing_audio")] for f in frames]   # transcripts without audio hold no speech
    if (base / cfg.manifest).is_file():
        frames.append(read_table(base / cfg.manifest, "source_files"))
    cols = ["path", "size_bytes", "source_sha256", "created_at"]
    rows = pd.concat([f[cols] for f in frames], ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return rows.dropna(subset=["source_sha256"])


def source_changes(cfg: PrepareCorpusConfig, base: Path = Path(".")) -> SourceChanges:
    """Compare the files of `cfg.sources` (relative paths resolve against `base`) with the manifests."""
    on_record = _manifest_rows(cfg, base)
    known = {row.path: row for row in on_record.itertuples(index=False)}
    now: dict[str, str] = {}
    hashed, missing = 0, tuple(s.name for s in cfg.sources if not (base / s.path).exists())
    for source in cfg.sources:
        for item in scan_source(source, cfg.audio_extensions, base) if source.name not in missing else []:
            if item.problem == "missing_audio" or not item.path.is_file():
                continue
            stat, row = item.path.stat(), known.get(str(item.path))
            mtime = dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc).replace(tzinfo=None)
            if row is not None and row.size_bytes == stat.st_size and mtime < row.created_at:
                now[str(item.path)] = row.source_sha256
            else:
                now[str(item.path)] = sha256_file(item.path)
                hashed += 1
    recorded, present = set(on_record.source_sha256), set(now.values())
    added = sorted(p for p, h in now.items() if h not in recorded)
    removed = sorted(set(on_record.path[~on_record.source_sha256.isin(present)]))
    fingerprint = hashlib.sha256("\n".join(sorted(present)).encode()).hexdigest()
    return SourceChanges(tuple(added), tuple(removed), len(now) - len(added), hashed, fingerprint, missing)
