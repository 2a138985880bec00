"""Audio I/O and conditioning: decoding with truncation checks, soxr resampling, DC removal,
peak or loudness (ITU-R BS.1770) normalisation, per-file statistics, atomic FLAC writes.

Shapes: audio arrays are float32, (c, n) for multi-channel and (n,) for mono.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torchaudio.functional as AF


class AudioError(Exception):
    """Audio that cannot be used; `reason` is a quarantine reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedAudio:
    audio: np.ndarray  # (c, n) float32
    sample_rate: int


def wav_missing_bytes(path: Path) -> int:
    """Bytes a RIFF/WAVE file's `data` chunk declares beyond the end of the file (0 if complete).

    libsndfile silently shortens such files, so truncation is checked against the header here."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return 0
        while chunk := fh.read(8):
            if len(chunk) < 8:
                return 0
            chunk_size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                return max(0, fh.tell() + chunk_size - size) if chunk_size != 0xFFFFFFFF else 0
            fh.seek(chunk_size + (chunk_size & 1), 1)
    return 0


def decode_audio(path: str | os.PathLike, block_frames: int = 1 << 18) -> DecodedAudio:
    """Decode a file to (c, n) float32; raise AudioError('unreadable' | 'truncated' | 'zero_length' |
    'non_finite_samples').

    Reads block by block so a file whose data stops before its header's frame count (or whose
    decoder fails midway) is reported as truncated rather than silently shortened.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError("unreadable", f"{path} does not exist")
    if path.stat().st_size == 0:
        raise AudioError("zero_length", f"{path} is an empty file (0 bytes)")
    missing = wav_missing_bytes(path)
    if missing:
        raise AudioError("truncated", f"{path}: the WAV header declares {missing} more bytes of audio than the file holds")
    try:
        snd = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError("unreadable", f"{path}: {err}") from None
    with snd:
        declared = snd.frames
        blocks, read = [], 0
        try:
            while True:
                block = snd.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    break
                blocks.append(block)
                read += len(block)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError("truncated", f"{path}: decoding failed after {read} of {declared} frames ({err})") from None
        sample_rate = snd.samplerate
    if read == 0:
        raise AudioError("zero_length", f"{path} holds no audio frames")
    if 0 < declared and read < declared:
        raise AudioError("truncated", f"{path}: header declares {declared} frames, only {read} could be read")
    audio = np.concatenate(blocks, axis=0).T.copy()
    bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
    if bad:
        raise AudioError("non_finite_samples", f"{path}: {bad} of {audio.size} samples are NaN or infinite")
    return DecodedAudio(audio, sample_rate)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(c, n) -> (n,) by averaging channels."""
    return audio.mean(axis=0) if audio.ndim == 2 else audio


def resample(audio: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """Band-limited resampling with soxr; (n,) -> (n * sr_out / sr_in,)."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, sr_in, sr_out, quality=quality).astype(np.float32)


@dataclass(frozen=True)
class AudioStats:
    peak: float
    rms: float
    clipped_fraction: float
    dc_offset: float


def audio_stats(audio: np.ndarray, clip_level: float) -> AudioStats:
    """Peak, RMS, fraction of samples at or above `clip_level` (full scale = 1) and DC offset."""
    a = np.abs(audio)
    return AudioStats(peak=float(a.max(initial=0.0)), rms=float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))),
                      clipped_fraction=float(np.mean(a >= clip_level)), dc_offset=float(np.mean(audio)))


def dbfs(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-12)))


def remove_dc(audio: np.ndarray) -> np.ndarray:
    return (audio - audio.mean()).astype(np.float32)


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4) of mono audio, via torchaudio."""
    return float(AF.loudness(torch.from_numpy(np.ascontiguousarray(audio))[None], sample_rate))


def normalization_gain_db(audio: np.ndarray, sample_rate: int, mode: str, peak_dbfs: float,
                          target_lufs: float) -> float:
    """Gain (dB) that brings `audio` to the target peak or loudness, limited so the peak stays
    at or below `peak_dbfs` (loudness mode never clips)."""
    peak = float(np.abs(audio).max(initial=0.0))
    peak_gain = peak_dbfs - dbfs(peak)
    if mode == "none":
        return 0.0
    if mode == "peak":
        return peak_gain
    if mode == "loudness":
        lufs = loudness_lufs(audio, sample_rate)
        gain = target_lufs - lufs if np.isfinite(lufs) else peak_gain
        return min(gain, peak_gain)
    raise ValueError(f"unknown normalisation mode {mode!r}: use peak, loudness or none")


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def write_audio_atomic(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                       subtype: str = "PCM_24") -> Path:
    """Write mono audio (FLAC/WAV by extension) via a temp file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sf.write(str(tmp), audio, sample_rate, subtype=subtype, format=path.suffix.lstrip(".").upper())
    os.replace(tmp, path)
    return path



def read_region(path: str | os.PathLike, start_s: float, end_s: float) -> tuple[np.ndarray, int]:
    """Mono float32 samples of [start_s, end_s) of a file, reading only that region."""
    with sf.SoundFile(str(path)) as snd:
        sr = snd.samplerate
        start = int(round(start_s * sr))
        snd.seek(start)
        block = snd.read(max(0, int(round(end_s * sr)) - start), dtype="float32", always_2d=True)
    return to_mono(block.T), sr
