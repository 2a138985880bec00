"""Cut the corpus into training segments with text (paper sec 4.1: 30 s chunks by WhisperX).

The paper's teacher lost ~10 % of sentence endings because WhisperX cut its segments inside speech
(sec 4.3). Here every cut lies in a pause and every segment edge is checked for speech running into it:

- short transcribed utterances keep their given text; leading/trailing silence is trimmed;
- long or untranscribed audio: WhisperX's bundled pyannote VAD finds the pauses, the speech is
  split recursively at the longest pause until every piece fits `max_segment_s`, each cut at the
  quietest frame of its pause, and each piece is transcribed on its own by faster-whisper with word
  timestamps (or aligned by `whisperx.align` when a local wav2vec2 model is configured), so no word
  is assigned across a cut by an imprecise timestamp.

Pieces that are too short or hold no speech, given-text clips the VAD hears no speech in, and pieces
whose Whisper transcript collapsed (speech.py) are quarantined with a reason, never dropped silently.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from dmospeech.config import SegmentAudioConfig
from dmospeech.data import manifest
from dmospeech.data.cutoff import (LastWord, Span, Word, detect_cutoff, first_word_matches, last_word,
                                   leading_fragment_end, piece_bounds, quietest_time, split_at_pauses, time_slice,
                                   trim_silence)
from dmospeech.data.speech import (ClipVad, collapse_detail, filled_window, no_speech_detail, speech_seconds,
                                   words_in_speech)
from dmospeech.data.whisper_models import resolve_whisper_model, single_thread_blas
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash, task_threads, worker_cached

# torch, pyannote and ctranslate2 are imported lazily, after these: OpenMP reads its settings when
# it loads, and ctranslate2 on 2 cores is steady only with passive waiting (../shared/OFFLINE.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

MODEL_SR = 16_000               # input rate of the VAD and of Whisper
PAUSE_MARGIN_S = 0.5            # a piece keeps at most this much of a pause before / after its speech
MIN_VAD_REGION_S = 0.1
BEAM_SIZE = 5
AUDIO_COLUMNS = ("file_id", "audio_path", "sample_rate", "duration_s", "speaker", "split",
                 "source_sha256", "source_name", "text", "transcribed")


@dataclass(frozen=True)
class Piece:
    """One cut of a file, in seconds from the file start; `reject` is a quarantine reason or None."""
    start_s: float
    end_s: float
    text: str
    cutoff_start: bool = False
    cutoff_end: bool = False
    cutoff_reason: str | None = None
    reject: str | None = None
    detail: str = ""


def _checked_piece(audio: np.ndarray, sr: int, start_s: float, end_s: float, text: str, cfg: SegmentAudioConfig,
                   words: Sequence[Word] = (), end_vad_score: float | None = None,
                   heard: LastWord | None = None) -> Piece:
    if end_s - start_s < cfg.min_segment_s:
        return Piece(start_s, end_s, text, reject="too_short",
                     detail=f"{end_s - start_s:.2f} s of sound < min_segment_s {cfg.min_segment_s:g} s")
    cut = detect_cutoff(audio, sr, start_s, end_s, cfg.cutoff, words, end_vad_score, heard)
    return Piece(start_s, end_s, text, *cut)


# ----------------------------------------------------------------------------- short utterances
def segment_utterance(audio: np.ndarray, sr: int, text: str, cfg: SegmentAudioConfig,
                      get_segmenter: Callable[[], Segmenter] | None = None, check_last_word: bool = True) -> Piece:
    """A short transcribed utterance keeps its given text: trim leading/trailing silence, check both
    edges for cut-off speech (sec 4.3) and, with `get_segmenter`'s models, that the sound holds speech,
    that the VAD does not hear speech up to the end (`cutoff.edge_vad_score`) and, if `check_last_word`,
    that Whisper's last word (`words_in_speech`) is the text's or ends clear of the end (`cutoff.last_word_gap_s`).
    With Whisper, a start inside a sound that a pause follows moves to the pause when the text's first word is
    heard there (`cutoff.lead_fragment_s`)."""
    start, end = trim_silence(audio, sr, cfg.trim_top_db, cfg.edge_pad_s)
    if end <= start:
        return Piece(0.0, len(audio) / sr, text, reject="no_speech", detail="the audio is digital silence")
    check_speech, check_end = cfg.speech_check.min_speech_fraction > 0, cfg.cutoff.edge_vad_score > 0
    check_last_word = check_last_word and cfg.cutoff.last_word_gap_s > 0
    vad = heard = None
    if get_segmenter is not None and end - start >= cfg.min_segment_s:
        if check_last_word:
            start, words = _start_and_words(audio, sr, start, end, text, cfg, get_segmenter())
        clip = time_slice(audio, sr, start, end)
        if check_speech or check_end or check_last_word:
            vad = get_segmenter().clip_vad(clip, sr, cfg.cutoff.edge_vad_window_s)
        if check_last_word:
            heard = last_word(words, text, end - start, cfg.cutoff.last_word_max_cer, cfg.cutoff.last_word_max_text_cer,
                              words_in_speech(words, vad.regions, cfg.cutoff.last_word_min_vad_speech))
    piece = _checked_piece(audio, sr, start, end, text.strip(), cfg,
                           end_vad_score=vad.end_score if vad is not None and check_end else None, heard=heard)
    if piece.reject or vad is None or not check_speech:
        return piece
    detail = no_speech_detail(vad.speech_s, end - start, cfg.speech_check)
    return replace(piece, reject="no_speech_detected", detail=detail) if detail else piece


def _start_and_words(audio: np.ndarray, sr: int, start: float, end: float, text: str, cfg: SegmentAudioConfig,
                     segmenter: Segmenter) -> tuple[float, list[Word]]:
    """The clip's start (moved past a leading fragment when Whisper hears the text's first word after it) and
    Whisper's words from there."""
    def heard_from(first: float) -> list[Word]:
        return segmenter.transcribe(soxr.resample(time_slice(audio, sr, first, end), sr, MODEL_SR))

    moved = leading_fragment_end(audio, sr, start, end, cfg.cutoff)
    if moved is not None and first_word_matches(words := heard_from(moved), text, cfg.cutoff.last_word_max_cer):
        return moved, words
    return start, heard_from(start)


# ----------------------------------------------------------------------------- long-form audio
def _load_aligner(cfg: SegmentAudioConfig):
    """`whisperx.load_align_model` on the local wav2vec2 folder `cfg.alignment_model`."""
    folder = Path(cfg.alignment_model)
    if not folder.is_dir():
        raise FileNotFoundError(f"segment_audio.alignment_model={cfg.alignment_model!r} is not a folder; "
                                "point it at a local wav2vec2 CTC model or set it to null")
    import nltk
    import whisperx
    from whisperx.utils import PUNKT_LANGUAGES

    punkt = f"tokenizers/punkt_tab/{PUNKT_LANGUAGES.get(cfg.language, 'english')}/"
    try:
        nltk.data.find(punkt)
    except LookupError as err:
        raise FileNotFoundError(f"whisperx.align needs NLTK data {punkt}, which cannot be downloaded here: "
                                "put it in a folder named by NLTK_DATA, or set alignment_model: null") from err
    return whisperx.load_align_model(cfg.language, cfg.device, model_name=str(folder), model_cache_only=True)


def _timed_words(aligned: Sequence[dict]) -> list[Word]:
    """`whisperx.align` words as `Word`s; a word it could not time (digits, symbols) is attached
    to a timed neighbour so no text is lost."""
    words: list[Word] = []
    pending = ""
    for item in aligned:
        if "start" not in item or "end" not in item:
            if words:
                words[-1] = replace(words[-1], text=f"{words[-1].text} {item['word']}")
            else:
                pending += f" {item['word']}"
            continue
        words.append(Word(float(item["start"]), float(item["end"]), f"{pending} {item['word']}"))
        pending = ""
    return words


class Segmenter:
    """Long-form segmentation (sec 4.1, cut-off checks of sec 4.3): WhisperX's bundled pyannote VAD,
    a faster-whisper model and an optional local wav2vec2 aligner, each loaded once, on first use (given-text
    clips need only the VAD); nothing downloads."""

    def __init__(self, cfg: SegmentAudioConfig):
        import torch

        torch.set_num_threads(cfg.cpu_threads)
        self.cfg = cfg

    @cached_property
    def vad(self):
        from whisperx.vads.pyannote import load_vad_model  # whisperx/assets/pytorch_model.bin

        logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)  # "upgraded checkpoint"
        return load_vad_model(self.cfg.device, self.cfg.vad_onset, self.cfg.vad_offset)

    @cached_property
    def whisper(self):
        from faster_whisper import WhisperModel

        return WhisperModel(str(resolve_whisper_model(self.cfg.whisper_model)), device=self.cfg.device,
                            compute_type=self.cfg.compute_type, cpu_threads=self.cfg.cpu_threads, num_workers=1)

    @cached_property
    def aligner(self):
        return _load_aligner(self.cfg) if self.cfg.alignment_model else None

    def vad_scores(self, audio16k: np.ndarray):
        """The VAD's frame speech scores (a pyannote SlidingWindowFeature)."""
        import torch

        return self.vad({"waveform": torch.from_numpy(np.ascontiguousarray(audio16k, np.float32))[None],
                         "sample_rate": MODEL_SR})

    def speech_regions(self, audio16k: np.ndarray, scores=None) -> list[Span]:
        """Speech regions by the VAD, binarised with `vad_onset` / `vad_offset`; a region too long
        for one piece is split at its lowest VAD score (WhisperX's min-cut)."""
        from whisperx.vads.pyannote import Binarize

        binarize = Binarize(onset=self.cfg.vad_onset, offset=self.cfg.vad_offset,
                            min_duration_on=MIN_VAD_REGION_S,
                            max_duration=self.cfg.max_segment_s - 2 * PAUSE_MARGIN_S)
        scores = self.vad_scores(audio16k) if scores is None else scores
        return [(float(s.start), float(s.end)) for s in binarize(scores).get_timeline()]

    def clip_vad(self, audio: np.ndarray, sr: int, end_window_s: float) -> ClipVad:
        """Seconds of speech the VAD finds in a short clip and its mean score over the last `end_window_s`.
        The clip is repeated to fill a VAD window, so its last copy ends where the window ends."""
        audio16k = soxr.resample(audio, sr, MODEL_SR) if sr != MODEL_SR else audio
        window = filled_window(audio16k, MODEL_SR)
        scores = self.vad_scores(window)
        frames = scores.sliding_window
        centres = np.array([frames[i].middle for i in range(len(scores.data))])
        last = centres >= len(window) / MODEL_SR - end_window_s
        end_score = float(scores.data[last, 0].mean() if last.any() else scores.data[-1, 0])
        duration = len(audio16k) / MODEL_SR
        regions = tuple((start, min(end, duration)) for start, end in self.speech_regions(window, scores) if start < duration)
        return ClipVad(speech_seconds(regions, 0.0, duration), end_score, regions)

    def transcribe(self, audio16k: np.ndarray) -> list[Word]:
        """Words with times (s from the start of `audio16k`), by beam search at temperature 0 only: the same
        audio always gives the same words. faster-whisper's default falls back to sampling, which CTranslate2
        seeds per worker thread, so a sentence read seven times was written down seven times in one run and
        three in the next; a transcript that leaves speech out is caught by `collapse_detail` instead."""
        with single_thread_blas():
            segments, _ = self.whisper.transcribe(audio16k, language=self.cfg.language, beam_size=BEAM_SIZE,
                                                  word_timestamps=True, condition_on_previous_text=False, vad_filter=False,
                                                  temperature=0.0)
            words = [Word(w.start, w.end, w.word) for s in segments for w in (s.words or [])]
        if self.aligner is None or not words:
            return words
        import whisperx

        model, metadata = self.aligner
        transcript = [{"start": 0.0, "end": len(audio16k) / MODEL_SR, "text": "".join(w.text for w in words).strip()}]
        return _timed_words(whisperx.align(transcript, model, metadata, audio16k, self.cfg.device)["word_segments"])

    def segment_long(self, audio: np.ndarray, sr: int) -> list[Piece]:
        """Long or untranscribed audio -> pieces of at most `max_segment_s`, cut in pauses, each
        transcribed on its own. No pieces when the VAD finds no speech."""
        audio16k = soxr.resample(audio, sr, MODEL_SR) if sr != MODEL_SR else audio
        regions = self.speech_regions(audio16k)
        if not regions:
            return []
        groups = split_at_pauses(regions, self.cfg.max_segment_s, PAUSE_MARGIN_S)
        bounds = piece_bounds(groups, len(audio) / sr, PAUSE_MARGIN_S, lambda a, b: quietest_time(audio, sr, a, b))
        return [self._piece(audio, sr, audio16k, b, regions) for b in bounds]

    def _piece(self, audio: np.ndarray, sr: int, audio16k: np.ndarray, bounds: Span, regions: Sequence[Span]) -> Piece:
        """Transcribe the piece between two cuts, check the transcript covers the VAD's speech in it,
        trim it to its sound (and its last word) and check its edges; the last word can only end near
        the segment's end where the cut stopped it."""
        lo, hi = bounds
        piece16k = time_slice(audio16k, MODEL_SR, lo, hi)
        words = [Word(w.start + lo, w.end + lo, w.text) for w in self.transcribe(piece16k)]
        text = "".join(w.text for w in words).strip()
        if not text:
            return Piece(lo, hi, "", reject="no_speech", detail="the recogniser found no words between these cuts")
        collapse = collapse_detail(text, speech_seconds(regions, lo, hi), self.cfg.speech_check)
        if collapse:
            return Piece(lo, hi, text, reject="transcript_collapse", detail=collapse)
        start, end = trim_silence(time_slice(audio, sr, lo, hi), sr, self.cfg.trim_top_db, self.cfg.edge_pad_s)
        end = max(lo + end, min(hi, words[-1].end + self.cfg.edge_pad_s))  # never trim off a word Whisper heard
        return _checked_piece(audio, sr, lo + start, end, text, self.cfg, words)


# ----------------------------------------------------------------------------- corpus
# The modules whose code decides a long-form file's pieces: a cache entry is keyed by their bytes.
SEGMENTATION_MODULES = ("segment.py", "cutoff.py", "speech.py", "whisper_models.py")


@lru_cache(maxsize=1)
def _code_hash() -> str:
    """Read once per process: `_cache_file` asks for it for every long-form file."""
    digest = hashlib.sha256()
    for name in SEGMENTATION_MODULES:
        module = Path(__file__).with_name(name)
        if module.is_file():
            digest.update(module.read_bytes())
    return digest.hexdigest()


def _cache_file(path: Path, cfg: SegmentAudioConfig, root: Path) -> Path:
    """Per-file cache entry in the workspace's `cache_dir` (a persistent DVC output of this stage),
    keyed by audio content, the params that change the result and this code."""
    relevant = manifest.params_hash(replace(cfg, manifest="", cpu_threads=0, cache_dir=""))
    key = hashlib.sha256(f"{manifest.sha256_file(path)}{relevant}{_code_hash()}".encode()).hexdigest()[:32]
    return Path(root) / cfg.cache_dir / f"{key}.json"


def _cached_longform(path: Path, expected_sr: int, cfg: SegmentAudioConfig, root: Path,
                     get_segmenter: Callable[[], Segmenter]) -> list[Piece]:
    """`Segmenter.segment_long` of the file, from the per-file cache when nothing changed."""
    cache = _cache_file(path, cfg, root)
    if cache.is_file():
        return [Piece(**item) for item in json.loads(cache.read_text())]
    pieces = get_segmenter().segment_long(*_read_audio(path, expected_sr))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache.parent, suffix=".tmp", delete=False) as fh:
        json.dump([asdict(p) for p in pieces], fh, allow_nan=False)  # strict JSON: a NaN time is a bug
    os.replace(fh.name, cache)
    return pieces


def _read_audio(path: Path, expected_sr: int) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} (from the audio manifest) does not exist: run `dvc repro resample_audio`")
    audio, sr = sf.read(path, dtype="float32")
    if audio.ndim != 1 or sr != expected_sr:
        raise ValueError(f"{path}: expected mono audio at {expected_sr} Hz as the audio manifest says, got "
                         f"{audio.shape[1] if audio.ndim > 1 else 1} channel(s) at {sr} Hz; re-run resample_audio")
    return audio, sr


def _rows(row, pieces: Sequence[Piece], text_source: str, cfg: SegmentAudioConfig,
          lineage: manifest.Lineage) -> tuple[list[dict], list[dict]]:
    segments, quarantine = [], []
    if not pieces:
        quarantine.append(manifest.quarantine_row(row.file_id, "source_file", row.audio_path, "no_speech",
                                                  "the voice-activity detector found no speech", lineage,
                                                  row.source_sha256, row.file_id))
    for i, p in enumerate(pieces):
        segment_id = f"{row.file_id}_{i:04d}"
        if p.reject:
            quarantine.append(manifest.quarantine_row(segment_id, "segment", row.audio_path, p.reject,
                                                      f"{p.start_s:.2f}-{p.end_s:.2f} s: {p.detail}", lineage,
                                                      row.source_sha256, row.file_id))
            continue
        cut = p.cutoff_start or p.cutoff_end
        segments.append({
            "segment_id": segment_id, "file_id": row.file_id, "audio_path": row.audio_path,
            "start_s": round(p.start_s, 4), "end_s": round(p.end_s, 4),
            "duration_s": round(p.end_s - p.start_s, 4), "sample_rate": int(row.sample_rate),
            "text": p.text, "text_source": text_source, "speaker": row.speaker, "split": row.split,
            "cutoff_start": p.cutoff_start, "cutoff_end": p.cutoff_end, "cutoff_reason": p.cutoff_reason,
            "use_for_training": not (cfg.exclude_cutoff and cut), "source_sha256": row.source_sha256,
            "parent_id": row.file_id, **lineage.columns()})
    return segments, quarantine


def _segment_file(row, path: Path, cfg: SegmentAudioConfig, root: Path,
                  get_segmenter: Callable[[], Segmenter]) -> tuple[list[Piece], str]:
    """The pieces of one audio row and where their text comes from ("given" or "whisper")."""
    if row.transcribed and row.duration_s <= cfg.transcribed_max_s:
        if not isinstance(row.text, str) or not row.text.strip():
            raise ValueError(f"{row.audio_path} (file_id {row.file_id}) is marked transcribed but has no text: "
                             "fix its source or re-run prepare_corpus, which quarantines missing transcripts")
        return [segment_utterance(*_read_audio(path, int(row.sample_rate)), row.text, cfg, get_segmenter,
                                  row.source_name not in cfg.cutoff.last_word_skip_sources)], "given"
    return _cached_longform(path, int(row.sample_rate), cfg, root, get_segmenter), "whisper"


def segment_shard(rows: list[dict], cfg: SegmentAudioConfig, root: str,
                  segmenter: Segmenter | None = None) -> list[tuple[list[Piece], str]]:
    """One executor task: `_segment_file` of each audio row, with this process's models."""
    def get_segmenter() -> Segmenter:
        threads = task_threads(cfg.cpu_threads)  # a Dask worker's own threads, never the whole machine's
        return segmenter or worker_cached(("segmenter", manifest.params_hash(cfg), threads),
                                          lambda: Segmenter(replace(cfg, cpu_threads=threads)))

    return [_segment_file(SimpleNamespace(**row), Path(root) / row["audio_path"], cfg, Path(root), get_segmenter)
            for row in rows]


def segment_corpus(audio_rows: pd.DataFrame, cfg: SegmentAudioConfig, lineage: manifest.Lineage,
                   project_root: Path, segmenter: Segmenter | None = None,
                   executor: Executor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segments rows, quarantine rows) for the `audio` table joined with `source_files`
    (`source_name`, `text`, `transcribed`). Transcribed files up to `transcribed_max_s` keep their text; all
    others are cut and transcribed by Whisper (sec 4.1, 4.3). Files run in shards by `executor`
    (this process when None; on a GPU device only on workers with resources {GPU: 1}); models
    load once per process, on first need; `segmenter` passes already loaded ones (local only)."""
    missing = sorted(set(AUDIO_COLUMNS) - set(audio_rows.columns))
    if missing:
        raise ValueError(f"segment_corpus: audio rows lack column(s) {missing}; join `audio` with "
                         "`source_files` (source_name, text, transcribed) on file_id")
    records = [{c: (None if c == "text" and not isinstance(row[c], str) else row[c]) for c in AUDIO_COLUMNS}
               for row in audio_rows.to_dict("records")]
    resources = {"GPU": 1} if cfg.device.startswith("cuda") else None
    with executor or Executor(LOCAL) as ex:
        results = ex.map(segment_shard, records, cfg, str(Path(project_root).resolve()), segmenter,
                         resources=resources)
    segments, quarantine = [], []
    for row, result in zip(audio_rows.itertuples(index=False), results):
        if isinstance(result, WorkerCrash):
            quarantine.append(manifest.quarantine_row(row.file_id, "source_file", row.audio_path, "worker_crash",
                                                      result.detail, lineage, row.source_sha256, row.file_id))
            continue
        kept, rejected = _rows(row, *result, cfg, lineage)
        segments += kept
        quarantine += rejected
    return manifest.frame("segments", segments), manifest.frame("quarantine", quarantine)
