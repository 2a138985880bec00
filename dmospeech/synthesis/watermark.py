"""A watermark meant to be inaudible in every synthesised file (Resemble AI's PerTh implicit model, offline:
its weights ship in the resemble-perth wheel), and its detector.

PerTh works on 32 kHz audio and hides its mark in the magnitude spectrum below 2 kHz. Output is
48 kHz: the audio is resampled to 32 kHz (soxr HQ), marked, and only the change the mark made is
resampled back and added to the original, so the band above 16 kHz is kept and the file keeps its
rate and length. The detector gives a score in [0, 1] (PerTh's decoder averaged over frames);
`THRESHOLD` separates marked output from recordings (benchmarks/watermark.py measures both rates).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dmospeech.ops.audio import AudioError, decode_audio, resample, to_mono, write_audio_atomic

METHOD = "resemble-perth 1.0.1, PerthImplicitWatermarker"
THRESHOLD = 0.5            # score >= THRESHOLD: watermarked
MIN_SECONDS = 0.1          # shorter audio holds too few STFT frames to carry or show the mark


@dataclass(frozen=True)
class Detection:
    path: str
    score: float
    watermarked: bool

    @property
    def verdict(self) -> str:
        return ("watermarked: synthesised by dmospeech (or another PerTh-marked generator), not a recording"
                if self.watermarked else "no watermark found (a recording, or audio synthesised with --no-watermark)")


@lru_cache(maxsize=1)
def _perth():
    """PerTh's implicit watermarker, loaded once per process (about 1 s, no download)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its notices, its "loaded" line
        warnings.simplefilter("ignore")
        from perth.perth_net.perth_net_implicit.perth_watermarker import PerthImplicitWatermarker

        model = PerthImplicitWatermarker()
    model.perth_net.eval()
    return model


def _model_rate() -> int:
    return int(_perth().perth_net.hp.sample_rate)


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad (t,) to n samples (PerTh's STFT round trip drops up to a hop at the end)."""
    return audio[:n] if len(audio) >= n else np.pad(audio, (0, n - len(audio)))


def _check(audio: np.ndarray, sample_rate: int, what: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"{what}: expected mono audio (t,), got shape {audio.shape}")
    if len(audio) < MIN_SECONDS * sample_rate:
        raise ValueError(f"{what}: {len(audio) / sample_rate:.3f} s is too short for the watermark "
                         f"(at least {MIN_SECONDS} s)")
    return audio


def mark(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The watermarked copy of (t,) float audio: same rate, same length."""
    import torch

    audio = _check(audio, sample_rate, "watermark")
    rate = _model_rate()
    low = resample(audio, sample_rate, rate)
    with torch.inference_mode():
        marked = _fit(np.asarray(_perth().apply_watermark(low, sample_rate=rate), dtype=np.float32), len(low))
    change = _fit(resample(marked - low, rate, sample_rate), len(audio))
    return np.clip(audio + change, -1.0, 1.0).astype(np.float32)


def score(audio: np.ndarray, sample_rate: int) -> float:
    """PerTh's detector on (t,) audio at any rate: about 1 for marked audio, about 0 for other audio."""
    import torch

    audio = _check(audio, sample_rate, "watermark detection")
    rate = _model_rate()
    with torch.inference_mode():
        return float(_perth().get_watermark(resample(audio, sample_rate, rate), sample_rate=rate, round=False))


def write_speech(path: str | Path, audio: np.ndarray, sample_rate: int, watermark: bool = True) -> Path:
    """Write synthesised speech as 16-bit PCM (format by extension), watermarked unless `watermark`
    is False, atomically. Every synthesis path (CLI, TTS API, batch, web page) writes through here."""
    if watermark:
        audio = mark(audio, sample_rate)
    return write_audio_atomic(path, audio, sample_rate, subtype="PCM_16")


def synthesis_record() -> dict:
    """What the registry records about this code's synthesis outputs (a row per registered model)."""
    return {"outputs_watermarked_by_default": True, "opt_out": "--no-watermark / watermark=False",
            "method": METHOD, "threshold": THRESHOLD}


def detect_file(path: str | Path) -> Detection:
    """Score and verdict of an audio file (any format libsndfile reads: WAV, FLAC, OGG, MP3; channels averaged)."""
    try:
        decoded = decode_audio(path)
    except AudioError as err:
        raise ValueError(f"cannot read {path}: {err.detail}; give a readable audio file") from None
    value = score(to_mono(decoded.audio), decoded.sample_rate)
    return Detection(str(path), value, value >= THRESHOLD)


def file_verdict(path: str | Path) -> dict:
    """For `dmospeech lineage source FILE`: whether the file carries the watermark (score, verdict), or
    why it could not be checked."""
    try:
        found = detect_file(path)
    except ValueError as err:
        return {"watermarked": None, "verdict": f"not checked: {err}"}
    return {"watermarked": found.watermarked, "score": round(found.score, 3), "verdict": found.verdict}
