"""Resample every source file to 48 kHz mono FLAC (soxr), with DC removal and peak or loudness
normalisation, recording the original rate, duration, peak, RMS and clipped fraction.

Outputs are content-addressed (`<file_id[:2]>/<file_id>-<params_hash>.flac` plus a JSON of the statistics), so
a rerun only processes new or changed files; files no longer referenced are removed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dmospeech.ops import audio as A
from dmospeech.ops.atomic import write_json_atomic
from dmospeech.config import ResampleAudioConfig
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash
from dmospeech.data.manifest import Lineage, frame, quarantine_row


def condition_file(path: str, cfg: ResampleAudioConfig) -> tuple[np.ndarray, dict]:
    """Decode, check and condition one file. Returns the 48 kHz mono audio and its statistics;
    raises AudioError with a quarantine reason for unusable audio."""
    decoded = A.decode_audio(path)
    channels, frames = decoded.audio.shape
    duration = frames / decoded.sample_rate
    mono = A.to_mono(decoded.audio)
    stats = A.audio_stats(mono, cfg.clip_level)
    if duration < cfg.min_duration_s:
        raise A.AudioError("too_short", f"{path}: {duration:.2f} s < min_duration_s {cfg.min_duration_s}")
    if duration > cfg.max_duration_s:
        raise A.AudioError("too_long", f"{path}: {duration:.0f} s > max_duration_s {cfg.max_duration_s}")
    if A.dbfs(stats.peak) < cfg.silence_dbfs:
        raise A.AudioError("silent", f"{path}: peak {A.dbfs(stats.peak):.1f} dBFS < silence_dbfs {cfg.silence_dbfs}")
    if stats.clipped_fraction > cfg.max_clipped_fraction:
        raise A.AudioError("clipped", f"{path}: {100 * stats.clipped_fraction:.2f} % of samples at full scale "
                                      f"(> {100 * cfg.max_clipped_fraction:.2f} %)")
    out = A.resample(mono, decoded.sample_rate, cfg.sample_rate, cfg.quality)
    if cfg.remove_dc:
        out = A.remove_dc(out)
    gain = A.normalization_gain_db(out, cfg.sample_rate, cfg.normalize, cfg.peak_dbfs, cfg.loudness_lufs)
    out = A.apply_gain(out, gain)
    info = {"sample_rate": cfg.sample_rate, "num_samples": int(len(out)), "duration_s": len(out) / cfg.sample_rate,
            "orig_sample_rate": int(decoded.sample_rate), "orig_channels": int(channels), "orig_duration_s": duration,
            "peak": stats.peak, "rms": stats.rms, "clipped_fraction": stats.clipped_fraction,
            "dc_offset": stats.dc_offset, "gain_db": float(gain)}
    return out, info


def shard_name(file_id: str, params_hash: str) -> str:
    """`<file_id[:2]>/<file_id>-<params>`: the outputs spread over up to 256 shard folders, which
    DVC hashes ~4x faster than one flat folder (100,000 files: `dvc status` 10 s vs 40 s, measured by
    benchmarks/dvc_outputs.py; see README "Clusters")."""
    return f"{file_id[:2]}/{file_id}-{params_hash[:8]}"


def resample_shard(files: list[tuple[str, str]], cfg: ResampleAudioConfig, out_dir: str) -> list[dict]:
    """One executor task: condition each (path, output name) and write `<name>.flac` plus its
    statistics JSON (atomically) unless present; returns each file's statistics or error record."""
    results = []
    for path, name in files:
        flac, stats_json = Path(out_dir) / f"{name}.flac", Path(out_dir) / f"{name}.json"
        flac.parent.mkdir(exist_ok=True)
        cached = json.loads(stats_json.read_text()) if stats_json.exists() else None
        if cached is None or ("info" in cached and not flac.exists()):
            try:
                audio, info = condition_file(path, cfg)
                A.write_audio_atomic(flac, audio, cfg.sample_rate)
                cached = {"info": info}
            except A.AudioError as err:
                cached = {"error": {"reason": err.reason, "detail": err.detail}}
            write_json_atomic(stats_json, cached, indent=1, nonfinite="error")
        results.append(cached)
    return results


def resample_corpus(sources: pd.DataFrame, cfg: ResampleAudioConfig, lineage: Lineage,
                    project_root: Path = Path("."), progress=None,
                    executor: Executor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`audio`, `quarantine`) rows for every row of `source_files`; writes the FLAC files.

    The files are conditioned in shards by `executor` (this process when None); `progress`, if
    given, is called with the number of files of each finished shard (for a progress bar)."""
    out_dir = (project_root / cfg.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [shard_name(src.file_id, lineage.params_hash) for src in sources.itertuples(index=False)]
    files = [(str((project_root / src.path).resolve()), name)
             for src, name in zip(sources.itertuples(index=False), names)]
    with executor or Executor(LOCAL) as ex:
        results = ex.map(resample_shard, files, cfg, str(out_dir), progress=progress)
    rows, quarantine, keep = [], [], set()
    for src, name, cached in zip(sources.itertuples(index=False), names, results):
        flac = out_dir / f"{name}.flac"
        keep.update({f"{name}.flac", f"{name}.json"})
        if isinstance(cached, WorkerCrash):
            cached = {"error": {"reason": "worker_crash", "detail": f"{src.path}: {cached.detail}"}}
        if "error" in cached:
            quarantine.append(quarantine_row(src.file_id, "source_file", src.path, cached["error"]["reason"],
                                             cached["error"]["detail"], lineage, src.source_sha256, src.file_id))
        else:
            rows.append({"file_id": src.file_id, "audio_path": str(Path(cfg.out_dir) / f"{name}.flac"),
                         **cached["info"], "speaker": src.speaker, "split": src.split,
                         "source_sha256": src.source_sha256, "parent_id": src.file_id, **lineage.columns()})
    for stale in out_dir.rglob("*"):
        if stale.is_file() and str(stale.relative_to(out_dir)) not in keep:
            stale.unlink()
    for folder in out_dir.iterdir():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return frame("audio", rows), frame("quarantine", quarantine)
