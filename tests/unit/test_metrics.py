"""Distances of dmospeech.evaluation.distances: the Fréchet distance against its closed form, and the mel-DTW
distance's invariance to timing."""
from __future__ import annotations

import numpy as np
import pytest

from dmospeech.evaluation.distances import frechet_distance, mel_dtw_distance


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 3))
    b = rng.standard_normal((20000, 3)) * 2.0 + np.array([1.0, 0.0, 0.0])
    # mean term 1; trace term per dimension (1 + 4 - 2 * sqrt(1 * 4)) = 1, three dimensions
    assert frechet_distance(a, b) == pytest.approx(1.0 + 3.0, abs=0.15)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    with pytest.raises(ValueError, match="one width"):
        frechet_distance(a, b[:, :2])


def test_mel_dtw_distance_ignores_timing_but_not_content():
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    slower = np.sin(2 * np.pi * 440 * np.arange(int(1.3 * rate)) / rate).astype(np.float32)
    other = np.sin(2 * np.pi * 2000 * t).astype(np.float32)
    assert mel_dtw_distance(tone, slower, rate) < 0.2 * mel_dtw_distance(tone, other, rate)
