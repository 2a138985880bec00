"""Distances between recordings used by the learning checks and the evaluation.

Shapes: t samples.
"""
from __future__ import annotations

import numpy as np


def log_mel(audio: np.ndarray, sample_rate: int, n_mels: int = 80, hop_s: float = 0.01) -> np.ndarray:
    """Log-mel spectrogram (frames, n_mels), 25 ms windows every `hop_s`."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), sr=sample_rate,
                                         n_fft=int(0.025 * sample_rate), hop_length=int(hop_s * sample_rate),
                                         n_mels=n_mels, fmax=min(8000, sample_rate // 2))
    return np.log(mel + 1e-5).T


def mel_dtw_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Mean Euclidean distance between log-mel frames of `a` and `b` along their DTW alignment
    (accumulated cost / path length): how different two renditions of one sentence sound, whatever
    their timing."""
    import librosa

    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"mel_dtw_distance: empty audio ({len(a)} and {len(b)} samples)")
    x, y = log_mel(a, sample_rate), log_mel(b, sample_rate)
    cost, path = librosa.sequence.dtw(X=x.T, Y=y.T, metric="euclidean")
    return float(cost[-1, -1] / len(path))
