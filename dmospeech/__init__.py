"""dmospeech: a reproducible training pipeline for DMOSpeech (Li, Kumar, Jin, ICML 2025)."""

__version__ = "0.1.0"
