"""Offline pretrained speaker encoders (the teachers of eq. 31) and the pitch shift that turns a
training speaker into new identities (appendix C.4, footnote 7).

Nothing is downloaded. Resemblyzer (GE2E, 256-d) ships its weights and is the default. A WeSpeaker
ResNet34 state dict (the paper's first teacher) and a local transformers `WavLMForXVector` folder
(standing in for the paper's WavLM-Large ECAPA, whose UniSpeech code fetches WavLM through
torch.hub) are used when their paths are configured; with both, their embeddings are concatenated
as in the paper. Every teacher maps mono float audio at any rate to an L2-normalised (e,) vector.
"""
from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import soxr
import torch

from dmospeech.config import SpeakerTeachersConfig
from dmospeech.ops.files import files_below

TEACHER_RATE = 16000  # all three teachers read 16 kHz audio
MIN_VOICED_S = 0.5    # Resemblyzer: shorter VAD-trimmed audio falls back to the untrimmed clip


class SpeakerTeacher(Protocol):
    name: str
    dim: int
    identity: str       # changes whenever the embeddings would (weights, package version)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(t,) float audio -> (dim,) float32 embedding of unit length."""


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return x / max(float(np.linalg.norm(x)), 1e-12)


def _to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or len(audio) == 0:
        raise ValueError(f"speaker teacher: expected non-empty mono (t,) audio, got shape {audio.shape}")
    return audio if sample_rate == TEACHER_RATE else soxr.resample(audio, sample_rate, TEACHER_RATE).astype(np.float32)


def _file_identity(path: Path) -> str:
    files = [path] if path.is_file() else files_below(path)
    digest = hashlib.sha256()
    for p in files:
        name = p.relative_to(path) if path.is_dir() else p.name
        digest.update(f"{name}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class ResemblyzerTeacher:
    """Resemblyzer's GE2E speaker encoder (Wan et al., 2018) on its VAD-trimmed, loudness-normalised input."""
    name, dim = "resemblyzer", 256

    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device="cpu", verbose=False)
        self.identity = f"resemblyzer-{version('resemblyzer')}"

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import normalize_volume
        from resemblyzer.hparams import audio_norm_target_dBFS

        wav = _to_16k(audio, sample_rate)
        trimmed = preprocess_wav(wav, TEACHER_RATE)
        if len(trimmed) < MIN_VOICED_S * TEACHER_RATE:
            trimmed = normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
        return _unit(self.encoder.embed_utterance(trimmed))


class WeSpeakerTeacher:
    """WeSpeaker ResNet34 (pyannote's implementation, 80 fbanks at 16 kHz). `path`: a state dict loadable
    with torch.load(weights_only=True): WeSpeaker's own (`avg_model.pt`, keys of the ResNet) or a plain
    `{"state_dict": ...}` of pyannote's `WeSpeakerResNet34` (keys prefixed `resnet.`)."""
    name, dim = "wespeaker", 256

    def __init__(self, path: str | Path):
        from pyannote.audio.models.embedding import WeSpeakerResNet34

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"train_sv_critic.teachers.wespeaker_path {path} is not a file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickled objects beyond tensors: refuse rather than unpickle them
            raise ValueError(f"{path} cannot be loaded with weights_only=True ({err}); save its tensors once, in a "
                             "trusted environment, as a plain state dict: torch.save(ckpt['state_dict'], out)") from None
        state = state.get("state_dict", state)
        self.model = WeSpeakerResNet34().eval()
        if all(k.startswith("resnet.") for k in state):
            self.model.load_state_dict(state)
        else:
            self.model.resnet.load_state_dict({k: v for k, v in state.items() if k != "projection.weight"})
        self.identity = f"wespeaker-{_file_identity(path)}"

    @torch.no_grad()
    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        wav = torch.from_numpy(_to_16k(audio, sample_rate))[None, None]        # (1, 1, t)
        return _unit(self.model(wav)[0].numpy())


class WavLMTeacher:
    """A transformers `WavLMForXVector` from a local folder (config, weights, preprocessor config)."""
    name = "wavlm"

    def __init__(self, path: str | Path):
        from transformers import AutoFeatureExtractor, WavLMForXVector

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"train_sv_critic.teachers.wavlm_path {path} is not a transformers model folder "
                                    "(no config.json); save one with WavLMForXVector.save_pretrained")
        self.model = WavLMForXVector.from_pretrained(path, local_files_only=True).eval()
        self.features = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        self.dim = int(self.model.config.xvector_output_dim)
        self.identity = f"wavlm-{_file_identity(path)}"

    @torch.no_grad()
    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        inputs = self.features(_to_16k(audio, sample_rate), sampling_rate=TEACHER_RATE, return_tensors="pt")
        return _unit(self.model(**inputs).embeddings[0].numpy())


class ConcatTeacher:
    """Several teachers' unit embeddings concatenated and scaled to unit length, so the cosine of
    eq. 31 is the mean of the teachers' cosines (the paper's e_teacher)."""

    def __init__(self, teachers: Sequence[SpeakerTeacher]):
        self.teachers = list(teachers)
        self.name = "+".join(t.name for t in self.teachers)
        self.dim = sum(t.dim for t in self.teachers)
        self.identity = "+".join(t.identity for t in self.teachers)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return _unit(np.concatenate([t.embed(audio, sample_rate) for t in self.teachers]))


def build_teacher(cfg: SpeakerTeachersConfig) -> SpeakerTeacher:
    """Resemblyzer when no path is configured, else the configured encoder(s)."""
    teachers: list[SpeakerTeacher] = []
    if cfg.wespeaker_path:
        teachers.append(WeSpeakerTeacher(cfg.wespeaker_path))
    if cfg.wavlm_path:
        teachers.append(WavLMTeacher(cfg.wavlm_path))
    if not teachers:
        return ResemblyzerTeacher()
    return teachers[0] if len(teachers) == 1 else ConcatTeacher(teachers)


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float, n_fft: int = 2048) -> np.ndarray:
    """Shift (t,) audio by `semitones` keeping its length: phase-vocoder time stretch by 2^(s/12),
    then resampling back by the same factor (as sox `pitch` and WavAugment do). Formants move with
    the pitch, so the result sounds like another speaker."""
    import torchaudio.functional as AF

    if semitones == 0:
        return np.asarray(audio, dtype=np.float32)
    hop = n_fft // 4
    rate = 2.0 ** (-semitones / 12)          # < 1 lengthens for an upward shift
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)       # (freq, frames)
    advance = torch.linspace(0, np.pi * hop, spec.shape[0])[:, None]
    stretched = AF.phase_vocoder(spec, rate, advance)
    y = torch.istft(stretched, n_fft, hop, window=window, length=int(round(len(x) / rate))).numpy()
    y = soxr.resample(y, sample_rate / rate, sample_rate).astype(np.float32)
    return np.pad(y, (0, max(len(x) - len(y), 0)))[: len(x)]
