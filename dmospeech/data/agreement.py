"""Transcript <-> audio agreement: every segment whose text was given (not Whisper's) is transcribed
by the packaged Whisper (`Transcriber`, the evaluation's recogniser) and its character error rate
against the given text decides its verdict:

- `mismatch`: CER > `mismatch_cer`, quarantined `transcript_mismatch` (a swapped sidecar, a CSV off
  by one line, a recording cut short): it would teach the recogniser and the CTC term wrong targets;
- `doubtful`: CER in (`doubtful_cer`, `mismatch_cer`], still trains, counted in the report;
- `ok`, or `skipped` for a source listed in `skip_sources`.

Both texts are compared after Whisper's English normaliser (as WER is); CER = (S + D + I) / reference
characters (jiwer), so a transcript that holds half the words spoken scores about 1.0, as a swapped
one does. Transcriptions are cached per segment in `cache_dir` (keyed by audio content, segment
bounds, model and this code), so changing a threshold recomputes nothing but the verdicts.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
import json
import os
from pathlib import Path

import pandas as pd

from dmospeech.config import CheckTranscriptsConfig, SegmentAudioConfig
from dmospeech.data.manifest import Lineage, frame, quarantine_row
from dmospeech.data.transcribe import Transcriber, normalize_for_wer
from dmospeech.ops.atomic import write_json_atomic
from dmospeech.ops.audio import read_region
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash, task_threads, worker_cached

SEGMENT_COLUMNS = ("segment_id", "file_id", "audio_path", "start_s", "end_s", "text", "text_source",
                   "source_sha256", "source_name")


def character_error_rate(reference: str, hypothesis: str) -> float:
    """CER of `hypothesis` against `reference`, both normalised as WER does; 1.0 when the reference
    normalises to nothing but something was heard, 0.0 when neither holds text."""
    import jiwer

    ref, hyp = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    if not ref.strip():
        return 0.0 if not hyp.strip() else 1.0
    return float(jiwer.cer(ref, hyp))


@lru_cache(maxsize=1)
def _code_key() -> str:
    """Read once per process: `cache_file` asks for it for every segment."""
    here = Path(__file__)
    return hashlib.sha256(here.read_bytes() + here.with_name("transcribe.py").read_bytes()).hexdigest()


def cache_file(cache_dir: str | os.PathLike, segment: dict, seg_cfg: SegmentAudioConfig) -> Path:
    blob = json.dumps([segment["source_sha256"], round(segment["start_s"], 4), round(segment["end_s"], 4),
                       seg_cfg.whisper_model, seg_cfg.language, seg_cfg.compute_type, _code_key()])
    key = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return Path(cache_dir) / key[:2] / f"{key}.json"


def transcribe_shard(segments: list[dict], seg_cfg: SegmentAudioConfig, cache_dir: str,
                     batch_size: int = 1) -> list[str]:
    """One executor task: Whisper's text of each segment, from the cache or transcribed (and cached);
    with `batch_size` > 1 the uncached ones are decoded in batches (a GPU's way)."""
    threads = task_threads(seg_cfg.cpu_threads)
    files = [cache_file(cache_dir, seg, seg_cfg) for seg in segments]
    texts = {i: json.loads(f.read_text())["asr_text"] for i, f in enumerate(files) if f.is_file()}
    todo = [i for i in range(len(segments)) if i not in texts]
    if todo:
        transcriber = worker_cached(("transcriber", seg_cfg.whisper_model, seg_cfg.language, seg_cfg.compute_type,
                                     seg_cfg.device, threads), lambda: Transcriber(seg_cfg, threads=threads))
        audio = [read_region(segments[i]["audio_path"], segments[i]["start_s"], segments[i]["end_s"]) for i in todo]
        if batch_size > 1 and len(todo) > 1 and len({sr for _, sr in audio}) == 1:
            heard = transcriber.transcribe_batch([a for a, _ in audio], audio[0][1], batch_size)
        else:
            heard = [transcriber(a, sr) for a, sr in audio]
        for i, text in zip(todo, heard):
            files[i].parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(files[i], {"asr_text": text}, indent=None, nonfinite="error")
            texts[i] = text
    return [texts[i] for i in range(len(segments))]


def verdict(cer: float, cfg: CheckTranscriptsConfig) -> str:
    return "mismatch" if cer > cfg.mismatch_cer else "doubtful" if cer > cfg.doubtful_cer else "ok"


def check_transcripts(segments: pd.DataFrame, cfg: CheckTranscriptsConfig, seg_cfg: SegmentAudioConfig,
                      lineage: Lineage, project_root: Path = Path("."),
                      executor: Executor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`transcript_checks`, `quarantine`) rows for the given-text segments of `segments` (the
    segments table joined with source_files.source_name); Whisper runs in shards by `executor`
    (this process when None; on a GPU device only on workers with resources {GPU: 1})."""
    if not 0 <= cfg.doubtful_cer <= cfg.mismatch_cer:
        raise ValueError(f"check_transcripts: need 0 <= doubtful_cer <= mismatch_cer, got {cfg.doubtful_cer} and "
                         f"{cfg.mismatch_cer}")
    missing = sorted(set(SEGMENT_COLUMNS) - set(segments.columns))
    if missing:
        raise ValueError(f"check_transcripts: segment rows lack column(s) {missing}")
    given = segments[segments.text_source == "given"]
    checked = given[~given.source_name.isin(cfg.skip_sources)]
    records = [{**{c: row[c] for c in SEGMENT_COLUMNS},
                "audio_path": str((Path(project_root) / row["audio_path"]).resolve())}
               for row in checked.to_dict("records")]
    cache_dir = str((Path(project_root) / cfg.cache_dir).resolve())
    resources = {"GPU": 1} if seg_cfg.device.startswith("cuda") else None
    with executor or Executor(LOCAL) as ex:
        batch = cfg.gpu_batch_size if seg_cfg.device.startswith("cuda") else 1
        heard = dict(zip(checked.segment_id, ex.map(transcribe_shard, records, seg_cfg, cache_dir, batch,
                                                     resources=resources)))
    rows, quarantine = [], []
    for seg in given.itertuples(index=False):
        asr = heard.get(seg.segment_id)
        if isinstance(asr, WorkerCrash):
            quarantine.append(quarantine_row(seg.segment_id, "segment", seg.audio_path, "worker_crash", asr.detail,
                                             lineage, seg.source_sha256, seg.segment_id))
            continue
        cer = None if asr is None else character_error_rate(seg.text, asr)
        result = "skipped" if asr is None else verdict(cer, cfg)
        rows.append({"segment_id": seg.segment_id, "file_id": seg.file_id, "source_name": seg.source_name,
                     "text": seg.text, "asr_text": asr, "cer": cer, "verdict": result,
                     "whisper_model": seg_cfg.whisper_model, "source_sha256": seg.source_sha256,
                     "parent_id": seg.segment_id, **lineage.columns()})
        if result == "mismatch":
            quarantine.append(quarantine_row(
                seg.segment_id, "segment", seg.audio_path, "transcript_mismatch",
                f"CER {cer:.2f} > {cfg.mismatch_cer}: given {seg.text!r}; Whisper {seg_cfg.whisper_model} heard {asr!r}",
                lineage, seg.source_sha256, seg.segment_id))
    return frame("transcript_checks", rows), frame("quarantine", quarantine)


def agreement_report(checks: pd.DataFrame, cfg: CheckTranscriptsConfig, worst: int = 20) -> dict:
    """Verdict counts, CER percentiles (50/95/99) per source and the `worst` rows with both texts."""
    measured = checks.dropna(subset=["cer"])
    percentiles = {name: {f"p{q}": round(float(group.cer.quantile(q / 100)), 4) for q in (50, 95, 99)}
                   for name, group in measured.groupby("source_name")}
    rows = measured.sort_values("cer", ascending=False).head(worst)
    return {"thresholds": {"mismatch_cer": cfg.mismatch_cer, "doubtful_cer": cfg.doubtful_cer},
            "verdicts": {str(k): int(v) for k, v in checks.verdict.value_counts().items()},
            "cer_percentiles": percentiles,
            "worst": [{"segment_id": r.segment_id, "source": r.source_name, "cer": round(float(r.cer), 4),
                       "verdict": r.verdict, "text": r.text, "asr_text": r.asr_text}
                      for r in rows.itertuples(index=False)]}
