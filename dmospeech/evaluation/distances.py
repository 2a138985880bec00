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


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of frames (rows), as FID/FAD use it:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). It compares distributions, not pairs, so it
    suits samplers that draw different (equally valid) renditions of the same sentence."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance: need two (frames >= 2, d) arrays of one width, got {a.shape} and {b.shape}")
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()  # Tr (S_a S_b)^(1/2)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
