"""Whisper's encoder as a teacher of frame features: an offline faster-whisper model (CTranslate2)
encodes 16 kHz audio into states at 50 Hz, which are resampled to the codec latents' 40 Hz,
standardised per channel and regressed onto with DistilHuBERT's loss. Shared by the codec's
semantic term (dmospeech.codec.semantic) and the recogniser's distillation
(dmospeech.critics.whisper_states); each caches the states of its own audio.

A clip is encoded from the start of Whisper's window, without the padding to 30 s (longer clips
in consecutive 30-s pieces). The faster_whisper package is imported only when an encoder is built.

Shapes: n latent frames (40 Hz), m whisper frames (50 Hz), d whisper width, b batch.
"""
from __future__ import annotations

import math
import os
from importlib.metadata import version
from typing import Callable, Optional, Sequence

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from dmospeech.data.whisper_models import resolve_whisper_model, single_thread_blas
from dmospeech.ops.audio import read_region

WHISPER_RATE = 16000
STATE_HOP = 320                       # samples per encoder state (50 Hz)
WINDOW = 30 * WHISPER_RATE            # Whisper's input window


class WhisperEncoder:
    """faster-whisper's encoder (int8 on the CPU): 16 kHz audio -> (m, d) states at 50 Hz."""

    def __init__(self, name: str, threads: int = 1):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(resolve_whisper_model(name)), device="cpu", compute_type="int8",
                                  cpu_threads=threads)
        self.identity = encoder_identity(name)
        self.dim = int(self._encode_piece(np.zeros(WHISPER_RATE, np.float32)).shape[-1])

    def _encode_piece(self, audio: np.ndarray) -> np.ndarray:
        """At most 30 s of audio, at the window's start, without the padding to 30 s ->
        (ceil(len / 320), d) float32. Whisper's states carry their absolute position, so every
        segment starts at position 0; leaving out the padding changes the states little (mean
        cosine 0.98 to the padded window's on a LibriSpeech clip) and costs time in proportion to
        the audio."""
        import ctranslate2

        if len(audio) > WINDOW:
            raise ValueError(f"WhisperEncoder: {len(audio) / WHISPER_RATE:.1f} s does not fit a 30-s window")
        frames = math.ceil(len(audio) / STATE_HOP)
        with single_thread_blas():
            features = self.model.feature_extractor(audio)[:, : 2 * frames]  # (mels, 100 Hz frames)
        if features.shape[1] < 2 * frames:
            features = np.pad(features, ((0, 0), (0, 2 * frames - features.shape[1])), mode="edge")
        out = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
                                      to_cpu=True)
        return np.asarray(out, dtype=np.float32)[0][:frames]

    def encode(self, clips: Sequence[np.ndarray], progress: Optional[Callable[[int], None]] = None) -> list[np.ndarray]:
        """16 kHz mono clips -> each clip's (ceil(len / 320), d) states; a clip longer than 30 s is
        encoded in consecutive 30-s pieces."""
        out = []
        for clip in clips:
            out.append(np.concatenate([self._encode_piece(clip[s: s + WINDOW]) for s in range(0, len(clip), WINDOW)]))
            if progress is not None:
                progress(1)
        return out


def encoder_identity(name: str) -> str:
    """Changes whenever the states would: the model file, CTranslate2 and faster-whisper versions."""
    model_bin = resolve_whisper_model(name) / "model.bin"
    return (f"{name}:{model_bin.stat().st_size}:ctranslate2 {version('ctranslate2')}:"
            f"faster-whisper {version('faster-whisper')}:int8")


def read_region_16k(path: str | os.PathLike, start_s: float, end_s: float, what: str) -> np.ndarray:
    """[start_s, end_s) of an audio file, mono at the encoder's 16 kHz (soxr); ValueError naming `what`
    when the region holds no audio."""
    audio, sr = read_region(path, start_s, end_s)
    if len(audio) == 0:
        raise ValueError(f"{what}: no audio in {path} {start_s:.2f}-{end_s:.2f} s")
    return audio if sr == WHISPER_RATE else soxr.resample(audio, sr, WHISPER_RATE).astype(np.float32)


def states_at_latent_rate(states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(m, d) states at 50 Hz -> (num_frames, d) at the latents' 40 Hz, linearly interpolated at each
    latent frame's centre (both grids start at the segment's first sample)."""
    return F.interpolate(states.float().T[None], size=num_frames, mode="linear", align_corners=False)[0].T


def channel_stats(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (d,) over every frame of `states` (each (m, d)). The
    distillation targets are standardised with them: Whisper's residual stream has a few channels
    about 8x wider than the median one, which would otherwise dominate both the L1 and the cosine."""
    count, total, squares = 0, 0.0, 0.0
    for s in states:
        s = s.double()
        count, total, squares = count + len(s), total + s.sum(0), squares + (s * s).sum(0)
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=1e-8).sqrt()
    return mean.float(), std.float().clamp(min=1e-3)


def distill_loss(predicted: torch.Tensor, target: torch.Tensor, latent_mask: torch.Tensor, family: str = "distill"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """DistilHuBERT's layer-prediction loss (Chang et al., 2022, eq. 1) per real frame,
    (1/d)·|h - y|_1 - log sigmoid(cos(h, y)), averaged over the real frames of the batch; `predicted`
    and `target` are (b, n, d). Returns ({"<family>/loss"}, {"<family>/loss", "<family>/cosine"})."""
    if predicted.shape != target.shape:
        raise ValueError(f"distill_loss: prediction {tuple(predicted.shape)} and target {tuple(target.shape)} differ")
    mask = latent_mask.bool()
    h, y = predicted.float()[mask], target.float()[mask]                           # (frames, d)
    cosine = F.cosine_similarity(h, y, dim=-1)
    loss = ((h - y).abs().mean(-1) - F.logsigmoid(cosine)).mean()
    return ({f"{family}/loss": loss},
            {f"{family}/loss": float(loss.detach()), f"{family}/cosine": float(cosine.detach().mean())})
