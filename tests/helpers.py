"""Fabricated audio and configs for fast tests."""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from dmospeech.config import load_params

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def params():
    return load_params(PROJECT_ROOT / "params.yaml")


def codec_model(**changes):
    """params.yaml's codec without the Whisper input (`semantic_input`): a test codec never loads Whisper;
    the tests of that input turn it on with a fake encoder."""
    return replace(params().train_codec.model, semantic_input="", semantic_input_dim=0, **changes)


def voiced(seconds: float, sr: int = 16000, f0: float = 140.0, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A speech-like signal: a harmonic tone with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    x = tone * envelope + 0.01 * rng.standard_normal(len(t))
    return (level * x / np.abs(x).max()).astype(np.float32)


def write(path: Path, audio: np.ndarray, sr: int = 16000) -> Path:
    """Writes through a per-process temp file and a rename: torchrun's ranks fabricate the same clips at
    the same paths, and a rank must never read a file another rank is half-way through writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    sf.write(str(tmp), audio, sr)
    os.replace(tmp, path)
    return path


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_env() -> dict:
    """Environment for script subprocesses. With PYTHONDONTWRITEBYTECODE and no .pyc files in the venv every
    interpreter recompiles torch and dvc (~15 s); the children cache their bytecode outside the venv instead."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "dmospeech-pycache"))
    return env


def noise_with_weak_end(seconds: float = 3.0, sr: int = 48_000) -> tuple[np.ndarray, np.ndarray]:
    """White noise, and the same with a weak tone in its last 0.3 s (5 dB above the noise: under the cut-off
    energy tests' floor margin, so only the VAD rule or the last word can flag that end)."""
    audio = (0.3 * np.random.default_rng(0).standard_normal(int(seconds * sr))).astype(np.float32)
    weak = audio.copy()
    weak[-int(0.3 * sr):] += (0.62 * np.sin(2 * np.pi * 300.0 * np.arange(int(0.3 * sr)) / sr)).astype(np.float32)
    return audio, weak
