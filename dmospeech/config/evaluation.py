"""Params group of evaluation (sections 4.2-4.4): evaluate."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from dmospeech.config.teacher import TeacherSamplerConfig


@dataclass(frozen=True)
class EvaluateConfig:
    trials: Optional[str]      # trials CSV (prompt_path, prompt_text, target_text, reference_path); null: held-out split
    max_trials: int
    prompt_seconds: float      # longest prompt taken whole; longer ones are cut to this and transcribed
    cv_f0_trials: int          # trials synthesised cv_f0_repeats times for CV_f0 (section 4.4)
    cv_f0_repeats: int
    seed: int
    whisper_model: str         # packaged faster-whisper model of the WER (base | tiny.en | local folder)
    hubert_path: Optional[str]  # local HuBERT-CTC folder: the paper's WER evaluator instead of Whisper
    wavlm_path: Optional[str]   # local WavLM-ECAPA (x-vector) folder: the paper's SIM evaluator instead of Resemblyzer
    decoder: Literal["codec", "fast"]  # latents -> audio: the codec's own (DAC) decoder or train_fast_decoder's
    out_dir: str
    teacher_sampler: TeacherSamplerConfig = TeacherSamplerConfig()  # the student samples its own schedule
