"""dmospeech: a reproducible training pipeline for DMOSpeech (Li, Kumar, Jin, ICML 2025)."""

import os

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning: with several processes on few cores (a training
# stage next to a data stage, CI), spinning threads made training up to 10x slower. Read by libgomp
# when torch loads, so it only helps when dmospeech is imported first (the stages and scripts do).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str):
    """`from dmospeech import TTS` without importing torch for every `import dmospeech`."""
    if name == "TTS":
        from dmospeech.synthesis.tts import TTS

        return TTS
    raise AttributeError(f"module 'dmospeech' has no attribute {name!r}")
