"""Acoustic analysis for the evaluation: F0 and log-energy tracks, CV_f0 (sec 4.4), Wasserstein
distances of F0 and energy distributions (appendix A, Table 6) and prosody features correlated with
the prompt's (appendix B, Table 7). Pitch, HNR, jitter and shimmer come from Praat (parselmouth).

Shapes: t samples, f frames (10 ms apart), k renditions.

Rules for degenerate audio, the same in every function:
- not a non-empty 1-D array of finite samples, or a non-positive rate: ValueError;
- shorter than MIN_PITCH_SECONDS (3 periods of the 75 Hz pitch floor, Praat's shortest pitch
  analysis window) for anything using pitch: ValueError;
- silent or unvoiced audio is valid: it has no voiced frames, so its F0 contour is empty and the
  features Praat cannot measure on it (pitch mean/std; HNR, jitter, shimmer of silence) are NaN.
  Aggregates skip those (rules in each docstring) and are NaN when nothing is left.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PITCH_FLOOR_HZ = 75.0     # Praat's defaults for speech
PITCH_CEILING_HZ = 600.0
FRAME_STEP_S = 0.01       # pitch and energy frames
ENERGY_WINDOW_S = 0.025
ENERGY_FLOOR_DB = -100.0  # digital silence is clipped to this level instead of -inf
MIN_PITCH_SECONDS = 3.0 / PITCH_FLOOR_HZ
MIN_CORRELATION_PAIRS = 3  # Pearson r of 2 points is always +-1
PROSODY_KEYS = ("pitch_mean", "pitch_std", "energy_mean", "energy_std", "hnr", "jitter", "shimmer")
# Praat's standard jitter/shimmer arguments: period floor and ceiling (s), max period and amplitude factors
PERIOD_FLOOR_S, PERIOD_CEILING_S, MAX_PERIOD_FACTOR, MAX_AMPLITUDE_FACTOR = 1e-4, 0.02, 1.3, 1.6


def checked_audio(audio: np.ndarray, sample_rate: int, min_seconds: float = 0.0) -> np.ndarray:
    """(t,) float64 copy of `audio`, or ValueError saying what is wrong with it (rules above)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (t,), got shape {x.shape}: average the channels first")
    if x.size == 0:
        raise ValueError("empty audio (0 samples): nothing to analyse")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if not np.isfinite(x).all():
        raise ValueError(f"audio holds {int((~np.isfinite(x)).sum())} NaN or infinite samples")
    if x.size / sample_rate < min_seconds:
        raise ValueError(f"audio of {x.size / sample_rate * 1000:.1f} ms is shorter than the "
                         f"{min_seconds * 1000:.0f} ms "
                         f"a pitch analysis needs (3 periods of the {PITCH_FLOOR_HZ:.0f} Hz pitch floor)")
    return x


def _sound(audio: np.ndarray, sample_rate: int):
    import parselmouth

    return parselmouth.Sound(checked_audio(audio, sample_rate, MIN_PITCH_SECONDS), sampling_frequency=sample_rate)


def f0_track(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(t,) audio -> (f,) F0 in Hz every 10 ms, 0 where unvoiced (Praat autocorrelation pitch,
    75-600 Hz). Frames are placed by Praat from the duration alone, so equal-length renditions
    are frame-aligned: the input of `cv_f0`."""
    pitch = _sound(audio, sample_rate).to_pitch(time_step=FRAME_STEP_S, pitch_floor=PITCH_FLOOR_HZ,
                                                pitch_ceiling=PITCH_CEILING_HZ)
    return np.asarray(pitch.selected_array["frequency"], dtype=np.float64)


def f0_contour(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(t,) audio -> F0 in Hz of the voiced frames only (Figure 2's frame-level F0 values);
    empty for silent or unvoiced audio."""
    track = f0_track(audio, sample_rate)
    return track[track > 0]


def log_energy(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(t,) audio -> (f,) log energy of every frame as RMS level in dB re full scale,
    20 log10(RMS), over 25 ms windows every 10 ms (librosa, centred frames), floored at -100 dB.
    All frames count, pauses included (appendix A's log-energy distributions)."""
    import librosa

    x = checked_audio(audio, sample_rate)
    rms = librosa.feature.rms(y=x, frame_length=max(1, round(ENERGY_WINDOW_S * sample_rate)),
                              hop_length=max(1, round(FRAME_STEP_S * sample_rate)), center=True)[0]
    return 20.0 * np.log10(np.maximum(rms.astype(np.float64), 10.0 ** (ENERGY_FLOOR_DB / 20.0)))


def cv_f0(tracks: Sequence[np.ndarray], voiced_only: bool = False) -> float:
    """Coefficient of variation of frame-level F0 across K renditions of one text and prompt,
    averaged over the speech frames (sec 4.4, Table 5's CV_f0; the paper then averages it over
    prompts, the caller's job).

    `tracks`: K >= 2 outputs of `f0_track` (Hz, 0 = unvoiced). They are compared frame by frame,
    truncated to the shortest: DMOSpeech's renditions of one text and prompt all have the length
    L of sec 3.1, so their frames are aligned. For each frame f, CV_f = std_k(F0[k, f]) /
    mean_k(F0[k, f]) (population std); the result is the mean of CV_f over the speech frames.

    voiced_only=False (default): speech frames are those voiced in at least one rendition and an
    unvoiced rendition counts as 0 Hz, so disagreement on voicing is variation too (this is what
    makes CV values as large as the paper's 0.57-0.70 possible). voiced_only=True: only frames
    voiced in every rendition count, so the value measures pitch variation alone.
    NaN when no frame qualifies (e.g. every rendition silent)."""
    if len(tracks) < 2:
        raise ValueError(f"cv_f0 needs at least 2 renditions, got {len(tracks)}")
    arrays = [np.asarray(t, dtype=np.float64) for t in tracks]
    for i, t in enumerate(arrays):
        if t.ndim != 1 or not np.isfinite(t).all() or (t < 0).any():
            raise ValueError(f"cv_f0: rendition {i} is not a 1-D track of finite F0 >= 0 Hz (use f0_track)")
    n = min(len(t) for t in arrays)
    f0 = np.stack([t[:n] for t in arrays])                                  # (k, f)
    voiced = f0 > 0
    speech = voiced.all(axis=0) if voiced_only else voiced.any(axis=0)
    if not speech.any():
        return math.nan
    frames = f0[:, speech]
    return float(np.mean(frames.std(axis=0) / frames.mean(axis=0)))


def wasserstein(a_values: np.ndarray, b_values: np.ndarray) -> float:
    """1-D Wasserstein (earth mover's) distance between two samples of values (appendix A, Table 6),
    in their unit (Hz for F0, dB for `log_energy`); scipy.stats.wasserstein_distance."""
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(a_values, dtype=np.float64), np.asarray(b_values, dtype=np.float64)
    for name, x in (("a_values", a), ("b_values", b)):
        if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
            raise ValueError(f"wasserstein: {name} must be a non-empty 1-D array of finite values, got shape {x.shape}")
    return float(wasserstein_distance(a, b))


def conditional_wasserstein(list_a: Sequence[np.ndarray], list_b: Sequence[np.ndarray]) -> float:
    """Table 6's conditional case: item i of both lists holds the values (e.g. voiced-frame F0, or
    log energy) of condition i, i.e. one text and prompt (its K renditions concatenated); the result
    is the mean over conditions of their Wasserstein distance. Conditions where either side has no
    values (an unvoiced rendition's F0) are skipped; NaN when none is left."""
    if len(list_a) != len(list_b):
        raise ValueError(f"conditional_wasserstein pairs item i of both lists: "
                         f"got {len(list_a)} and {len(list_b)} items")
    pairs = [(a, b) for a, b in zip(list_a, list_b) if len(a) and len(b)]
    return float(np.mean([wasserstein(a, b) for a, b in pairs])) if pairs else math.nan


def unconditional_wasserstein(list_a: Sequence[np.ndarray], list_b: Sequence[np.ndarray]) -> float:
    """Table 6's unconditional case: every item's values pooled per side (varying texts and prompts),
    one Wasserstein distance between the two pools. The lists may differ in length; NaN when a pool
    is empty."""
    pool_a = [np.asarray(a, dtype=np.float64) for a in list_a if len(a)]
    pool_b = [np.asarray(b, dtype=np.float64) for b in list_b if len(b)]
    if not pool_a or not pool_b:
        return math.nan
    return wasserstein(np.concatenate(pool_a), np.concatenate(pool_b))


def prosody_features(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Appendix B's acoustic features (after Li et al., 2022) of one recording, all from Praat:
    pitch_mean, pitch_std (Hz, voiced frames of `f0_track`), energy_mean, energy_std (dB, all frames
    of `log_energy`), hnr (dB, mean of Harmonicity (cc) over its non-silent frames), jitter (local)
    and shimmer (local) (fractions, over the periodic pulses of PointProcess (periodic, cc)).
    Pitch mean/std are NaN without voiced frames; HNR, jitter and shimmer are NaN where Praat finds
    nothing to measure (silence, no periodic pulses)."""
    from parselmouth.praat import call

    sound = _sound(audio, sample_rate)
    f0 = f0_contour(audio, sample_rate)
    energy = log_energy(audio, sample_rate)
    harmonicity = sound.to_harmonicity_cc(time_step=FRAME_STEP_S, minimum_pitch=PITCH_FLOOR_HZ)
    pulses = call(sound, "To PointProcess (periodic, cc)", PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
    jitter = call(pulses, "Get jitter (local)", 0, 0, PERIOD_FLOOR_S, PERIOD_CEILING_S, MAX_PERIOD_FACTOR)
    shimmer = call([sound, pulses], "Get shimmer (local)", 0, 0, PERIOD_FLOOR_S, PERIOD_CEILING_S,
                   MAX_PERIOD_FACTOR, MAX_AMPLITUDE_FACTOR)
    return {"pitch_mean": float(f0.mean()) if f0.size else math.nan,
            "pitch_std": float(f0.std()) if f0.size else math.nan,
            "energy_mean": float(energy.mean()), "energy_std": float(energy.std()),
            "hnr": float(call(harmonicity, "Get mean", 0, 0)),
            "jitter": float(jitter), "shimmer": float(shimmer)}


def prompt_correlations(prompt_features: Sequence[dict[str, float]],
                        generated_features: Sequence[dict[str, float]]) -> dict[str, float]:
    """Appendix B, Table 7: Pearson r, per feature of PROSODY_KEYS, between the prompts' features and
    those of the speech generated from them (item i of both lists belongs to trial i). Per feature,
    pairs where either value is NaN are dropped; r is NaN when fewer than MIN_CORRELATION_PAIRS (3)
    pairs remain or one side is constant (r undefined)."""
    from scipy.stats import pearsonr

    if len(prompt_features) != len(generated_features):
        raise ValueError(f"prompt_correlations pairs item i of both lists: got {len(prompt_features)} prompts "
                         f"and {len(generated_features)} generated items")
    out = {}
    for key in PROSODY_KEYS:
        try:
            x = np.array([p[key] for p in prompt_features], dtype=np.float64)
            y = np.array([g[key] for g in generated_features], dtype=np.float64)
        except KeyError:
            raise ValueError(f"prompt_correlations: a feature dict lacks {key!r}; "
                             "make them with prosody_features") from None
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        undefined = x.size < MIN_CORRELATION_PAIRS or np.ptp(x) == 0 or np.ptp(y) == 0
        out[key] = math.nan if undefined else float(pearsonr(x, y).statistic)
    return out
