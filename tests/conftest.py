"""Shared fixtures. Real speech comes from the folder named by DMOSPEECH_DEV_CORPUS
(`.ci/run` and `make test` point it at ../shared/corpora/dev); tests that need it skip without it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dev_corpus() -> Path:
    """Root of the real-speech development corpus (../shared/corpora/dev)."""
    root = os.environ.get("DMOSPEECH_DEV_CORPUS")
    if not root:
        pytest.skip("DMOSPEECH_DEV_CORPUS is not set (make test sets it to ../shared/corpora/dev)")
    path = Path(root)
    if not path.is_dir():
        pytest.fail(f"DMOSPEECH_DEV_CORPUS={root} is not a directory")
    return path


@pytest.fixture()
def fake_whisper(monkeypatch):
    """tests.codec_run.FakeEncoder in place of the Whisper encoder of dmospeech.codec.semantic (the
    codec's semantic term and Whisper input), with its counters reset."""
    import dmospeech.codec.semantic as semantic
    from tests.codec_run import FakeEncoder

    monkeypatch.setattr(FakeEncoder, "built", [])
    monkeypatch.setattr(FakeEncoder, "encoded", 0)
    monkeypatch.setattr(semantic, "WhisperEncoder", FakeEncoder)
    monkeypatch.setattr(semantic, "encoder_identity", lambda name: f"fake {name}")
    semantic._whisper_encoder.cache_clear()
    yield FakeEncoder
    semantic._whisper_encoder.cache_clear()
