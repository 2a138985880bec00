"""Transcription of short recordings with a packaged faster-whisper model (the one segment_audio
uses, resolved offline by `whisper_models`): the prompt transcript for synthesis and the
recogniser of the WER evaluation."""
from __future__ import annotations

import numpy as np
import soxr

from dmospeech.config import SegmentAudioConfig
from dmospeech.data.whisper_models import resolve_whisper_model

WHISPER_SR = 16000


class Transcriber:
    """audio (t,) float at `sample_rate` -> text (beam search, no timestamps)."""

    def __init__(self, cfg: SegmentAudioConfig, beam_size: int = 5):
        from faster_whisper import WhisperModel

        self.language, self.beam_size = cfg.language, beam_size
        self.model = WhisperModel(str(resolve_whisper_model(cfg.whisper_model)), device="cpu",
                                  compute_type=cfg.compute_type, cpu_threads=cfg.cpu_threads, num_workers=1)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        audio = np.asarray(audio, dtype=np.float32)
        audio16k = soxr.resample(audio, sample_rate, WHISPER_SR) if sample_rate != WHISPER_SR else audio
        segments, _ = self.model.transcribe(audio16k, language=self.language, beam_size=self.beam_size,
                                            condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
