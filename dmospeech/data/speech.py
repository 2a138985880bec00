"""Is there speech, and did the recogniser write all of it down? Checks of segment_audio on the bundled
VAD's speech regions (issue 25: noise with a transcript became a training segment; a sentence read
seven times became segments whose transcript holds it once).

- A given-text clip in whose trimmed sound the VAD finds too little speech is `no_speech_detected`.
- A Whisper piece whose transcript has far fewer letters per second of VAD speech than anyone reads
  is `transcript_collapse` (Whisper wrote repeated speech down once). Whisper's compression ratio is
  not used: a correct transcript of a sentence read several times compresses as well as a loop does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dmospeech.config import SpeechCheckConfig
from dmospeech.data.cutoff import Span, Word

# The bundled pyannote segmentation model scores 5-s windows and zero-pads shorter input, on which it
# hears speech in 1-3 s of plain noise or hum; a short clip repeated to fill a window is judged correctly.
VAD_WINDOW_S = 5.0


@dataclass(frozen=True)
class ClipVad:
    """What the VAD hears in a given-text clip: seconds of speech, and its mean speech score over the
    clip's last `edge_vad_window_s` (cut-off check: a clip cut inside a weak phone that noise hides from
    the energy tests still sounds like speech to the VAD up to its last frame)."""
    speech_s: float
    end_score: float
    regions: tuple[Span, ...] | None = None   # speech regions, s from the clip start (None: not known)


def speech_seconds(regions: Sequence[Span], start_s: float, end_s: float) -> float:
    """Seconds of [start_s, end_s] covered by the (disjoint) speech `regions`."""
    return float(sum(max(0.0, min(end, end_s) - max(start, start_s)) for start, end in regions))


def words_in_speech(words: Sequence[Word], regions: Sequence[Span] | None, min_fraction: float) -> list[Word]:
    """`words` without the trailing ones that have less than `min_fraction` of their time in the VAD's speech
    `regions` (a word timed at one instant: outside them): Whisper ends a decode over the noise after the last
    word with words nobody said ("you", "I'm sorry"). All of them when `regions` is None or `min_fraction` 0."""
    kept = list(words)
    while kept and regions is not None and min_fraction > 0:
        word = kept[-1]
        if word.end > word.start:
            in_speech = speech_seconds(regions, word.start, word.end) / (word.end - word.start)
        else:
            in_speech = float(any(start <= word.start <= end for start, end in regions))
        if in_speech >= min_fraction:
            break
        kept.pop()
    return kept


def filled_window(audio: np.ndarray, sr: int) -> np.ndarray:
    """`audio` repeated until it fills one VAD window (unchanged when it already does)."""
    return np.tile(audio, max(1, math.ceil(VAD_WINDOW_S * sr / max(len(audio), 1))))


def no_speech_detail(speech_s: float, duration_s: float, cfg: SpeechCheckConfig) -> str | None:
    """Why a given-text clip of `duration_s` (trimmed) with `speech_s` of VAD speech holds no speech, or None."""
    fraction = speech_s / max(duration_s, 1e-9)
    if fraction >= cfg.min_speech_fraction:
        return None
    return (f"the VAD finds {speech_s:.2f} s of speech in {duration_s:.2f} s of sound ({fraction:.0%} < "
            f"min_speech_fraction {cfg.min_speech_fraction:.0%})")


def letters(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def collapse_detail(text: str, speech_s: float, cfg: SpeechCheckConfig) -> str | None:
    """Why the transcript `text` of a piece with `speech_s` of VAD speech has collapsed, or None."""
    if speech_s <= 0 or letters(text) / speech_s >= cfg.min_letters_per_speech_s:
        return None
    return (f"{letters(text)} letters for {speech_s:.1f} s of VAD speech ({letters(text) / speech_s:.1f}/s < "
            f"min_letters_per_speech_s {cfg.min_letters_per_speech_s:g}): Whisper left speech out, e.g. repeats")
