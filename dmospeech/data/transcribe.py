"""Transcription of short recordings with a packaged faster-whisper model (the one segment_audio
uses, resolved offline by `whisper_models`): the prompt transcript for synthesis and the
recogniser of the WER evaluation."""
from __future__ import annotations

from typing import Optional

import numpy as np
import soxr

from dmospeech.config import SegmentAudioConfig
from dmospeech.data.whisper_models import resolve_whisper_model

WHISPER_SR = 16000


class Transcriber:
    """audio (t,) float at `sample_rate` -> text: beam search at temperature 0 only, so the same audio
    always gives the same text. faster-whisper's default falls back to sampling at rising temperatures
    when a decode looks like a loop, which makes a WER random and, on the unintelligible speech of a
    barely trained model, repeats the whole decode up to six times."""

    def __init__(self, cfg: Optional[SegmentAudioConfig] = None, beam_size: int = 5):
        """Settings of `cfg` (segment_audio params), else the packaged English base model, int8, 2 threads."""
        from faster_whisper import WhisperModel

        model, self.language = (cfg.whisper_model, cfg.language) if cfg else ("base", "en")
        compute_type, threads = (cfg.compute_type, cfg.cpu_threads) if cfg else ("int8", 2)
        self.model_name, self.beam_size = model, beam_size
        self.model = WhisperModel(str(resolve_whisper_model(model)), device="cpu", compute_type=compute_type,
                                  cpu_threads=threads, num_workers=1)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        audio = np.asarray(audio, dtype=np.float32)
        audio16k = soxr.resample(audio, sample_rate, WHISPER_SR) if sample_rate != WHISPER_SR else audio
        segments, _ = self.model.transcribe(audio16k, language=self.language, beam_size=self.beam_size,
                                            temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
