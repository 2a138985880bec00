"""The user-facing synthesis API: `from dmospeech.synthesis import TTS`."""
from dmospeech.synthesis.tts import TTS

__all__ = ["TTS"]
