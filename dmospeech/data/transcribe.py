"""Transcription of short recordings with a packaged faster-whisper model (the one segment_audio
uses, resolved offline by `whisper_models`): the prompt transcript for synthesis, the recogniser of
the WER evaluation and of the transcript agreement check, and the text normaliser they compare with."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import soxr

from dmospeech.config import SegmentAudioConfig
from dmospeech.data.whisper_models import resolve_whisper_model, single_thread_blas

WHISPER_SR = 16000


@lru_cache(maxsize=None)
def english_normalizer(spelling_mapping: str | None = None) -> Callable[[str], str]:
    """Whisper's English text normaliser (`transformers.models.whisper.english_normalizer.
    EnglishTextNormalizer`, the copy of openai/whisper's): lower-case; text in [brackets] or
    <angle brackets> and fillers (uh, um, hmm) removed; contractions and titles expanded (won't ->
    will not, Mr -> mister); spelled-out numbers turned into digits ("twenty five percent" -> "25%");
    punctuation and diacritics removed; whitespace collapsed.

    Two changes: Whisper drops text in (parentheses) as a non-speech annotation, but in the texts
    given to a TTS model parentheses hold words that are read aloud (LJ Speech has many), so only
    the parentheses themselves are removed here; and tokens without a letter or digit (the "." it
    leaves of an ellipsis) are dropped.

    Its British -> American spelling table (`normalizer.json`) ships with Whisper tokenizers, not
    with any installed package: pass that file's path as `spelling_mapping` to apply it; without it
    spellings are compared as written."""
    import json
    import re

    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    mapping = {}
    if spelling_mapping is not None:
        path = Path(spelling_mapping)
        if not path.is_file():
            raise FileNotFoundError(f"spelling mapping {path} not found: give the normalizer.json of a Whisper "
                                    "tokenizer, or None to compare spellings as written")
        mapping = json.loads(path.read_text(encoding="utf-8"))
    whisper = EnglishTextNormalizer(mapping)
    # Whisper's normaliser leaves a lone "." of an ellipsis ("and me..." -> "and me ."): not a word
    return lambda text: " ".join(t for t in whisper(re.sub(r"[()]", " ", text)).split() if any(c.isalnum() for c in t))


def normalize_for_wer(text: str) -> str:
    """`text` as WER compares it: Whisper's English normaliser without the spelling table."""
    return english_normalizer()(text)


class Transcriber:
    """audio (t,) float at `sample_rate` -> text: beam search at temperature 0 only, so the same audio
    always gives the same text. faster-whisper's default falls back to sampling at rising temperatures
    when a decode looks like a loop, which makes a WER random and, on the unintelligible speech of a
    barely trained model, repeats the whole decode up to six times."""

    def __init__(self, cfg: Optional[SegmentAudioConfig] = None, beam_size: int = 5, threads: Optional[int] = None):
        """Settings of `cfg` (segment_audio params), else the packaged English base model, int8, 2 threads
        on the CPU; `threads` overrides the thread count (a Dask worker's own)."""
        from faster_whisper import WhisperModel

        model, self.language = (cfg.whisper_model, cfg.language) if cfg else ("base", "en")
        compute_type, cpu_threads, device = (cfg.compute_type, cfg.cpu_threads, cfg.device) if cfg else ("int8", 2, "cpu")
        self.model_name, self.beam_size = model, beam_size
        self.model = WhisperModel(str(resolve_whisper_model(model)), device=device, compute_type=compute_type,
                                  cpu_threads=threads or cpu_threads, num_workers=1)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        audio = np.asarray(audio, dtype=np.float32)
        audio16k = soxr.resample(audio, sample_rate, WHISPER_SR) if sample_rate != WHISPER_SR else audio
        with single_thread_blas():
            segments, _ = self.model.transcribe(audio16k, language=self.language, beam_size=self.beam_size,
                                                temperature=0.0, condition_on_previous_text=False, vad_filter=False)
            return " ".join(s.text.strip() for s in segments).strip()

    def transcribe_batch(self, clips: list[np.ndarray], sample_rate: int, batch_size: int) -> list[str]:
        """Texts of many clips of at most 30 s, decoded `batch_size` at a time: faster-whisper's
        BatchedInferencePipeline over the clips laid end to end with 1-s gaps, one chunk per clip
        (`clip_timestamps`). Worth it on a GPU; on 2 CPU cores it is slower than one clip at a time
        (16 LibriVox clips: 42 s against 28 s)."""
        from faster_whisper import BatchedInferencePipeline

        clips16k = [soxr.resample(np.asarray(c, np.float32), sample_rate, WHISPER_SR) if sample_rate != WHISPER_SR
                    else np.asarray(c, np.float32) for c in clips]
        gap = np.zeros(WHISPER_SR, np.float32)
        bounds, position = [], 0
        for clip in clips16k:
            bounds.append((position / WHISPER_SR, (position + len(clip)) / WHISPER_SR))
            position += len(clip) + len(gap)
        audio = np.concatenate([part for clip in clips16k for part in (clip, gap)])
        with single_thread_blas():
            segments, _ = BatchedInferencePipeline(self.model).transcribe(
                audio, language=self.language, beam_size=self.beam_size, temperature=0.0,
                condition_on_previous_text=False, vad_filter=False, without_timestamps=True, batch_size=batch_size,
                clip_timestamps=[{"start": start, "end": end} for start, end in bounds])
            segments = list(segments)
        texts: list[list[str]] = [[] for _ in clips]
        for segment in segments:   # each clip's chunk starts at its own offset
            index = max(i for i, (start, _) in enumerate(bounds) if start <= segment.start + 1e-3)
            texts[index].append(segment.text.strip())
        return [" ".join(t).strip() for t in texts]
