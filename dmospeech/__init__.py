"""dmospeech: a reproducible training pipeline for DMOSpeech (Li, Kumar, Jin, ICML 2025)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from dmospeech import TTS` without importing torch for every `import dmospeech`."""
    if name == "TTS":
        from dmospeech.tts import TTS

        return TTS
    raise AttributeError(f"module 'dmospeech' has no attribute {name!r}")
