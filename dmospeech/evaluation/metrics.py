"""The objective measures of the evaluation (sec 4.2-4.4, appendices A-B) as pure functions plus
the two models they need: a recogniser for WER and a speaker encoder for SIM.

The paper's evaluators (HuBERT-large CTC for WER, WavLM-TDCNN for SIM) cannot be downloaded here
(OFFLINE.md): by default WER uses the packaged faster-whisper model
(`dmospeech.data.transcribe.Transcriber`) and SIM Resemblyzer's GE2E encoder; a local HuBERT-CTC
or WavLM x-vector folder replaces them when configured. Reports should name the evaluator used
(`recognizer.model_name`, `encoder.name`). The acoustic measures (F0, energy, CV_f0, Wasserstein,
prosody correlations) live in `dmospeech.evaluation.prosody` and are re-exported here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from dmospeech.evaluation.prosody import (PROSODY_KEYS, checked_audio, conditional_wasserstein, cv_f0, f0_contour, f0_track,
                               log_energy, prompt_correlations, prosody_features, unconditional_wasserstein,
                               wasserstein)
from dmospeech.critics.speaker_teachers import ResemblyzerTeacher, WavLMTeacher
from dmospeech.data.transcribe import english_normalizer, normalize_for_wer  # noqa: F401 (re-exported)

__all__ = ["PROSODY_KEYS", "HubertRecognizer", "Recognizer", "ResemblyzerEncoder", "SpeakerEncoder", "WavLMEncoder",
           "conditional_wasserstein", "cv_f0", "english_normalizer", "f0_contour", "f0_track", "log_energy",
           "normalize_for_wer", "prompt_correlations", "prosody_features", "speaker_similarity",
           "unconditional_wasserstein", "wasserstein", "word_error_rate"]

EVAL_RATE = 16000  # HuBERT and WavLM read 16 kHz audio


# ---- WER (sec 4.2) -------------------------------------------------------------------------------

def word_error_rate(hypotheses: Sequence[str], references: Sequence[str],
                    normalize: Callable[[str], str] = normalize_for_wer) -> float:
    """Corpus-level WER (sec 4.2): (substitutions + deletions + insertions) over all utterances /
    number of reference words, computed by jiwer on normalised texts. A fraction (0.25 = 25 %)."""
    import jiwer

    if len(hypotheses) != len(references):
        raise ValueError(f"word_error_rate pairs item i of both lists: got {len(hypotheses)} hypotheses "
                         f"and {len(references)} references")
    if not references:
        raise ValueError("word_error_rate needs at least one reference")
    refs = [normalize(r) for r in references]
    empty = [i for i, r in enumerate(refs) if not r.strip()]
    if empty:
        raise ValueError(f"reference(s) {empty[:5]} are empty after normalisation ({references[empty[0]]!r}): "
                         "WER needs reference words; drop those items")
    return float(jiwer.wer(refs, [normalize(h) for h in hypotheses]))


class Recognizer(Protocol):
    """audio (t,) float at `sample_rate` -> text. `Transcriber` (faster-whisper) and
    `HubertRecognizer` implement it."""
    model_name: str

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str: ...


def _require_model_folder(path: str | Path, files: Sequence[str], what: str, how: str) -> Path:
    path = Path(path)
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        state = "does not exist" if not path.exists() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(f"{what} folder {path} {state}. Nothing is downloaded at run time: {how}")
    return path


class HubertRecognizer:
    """Greedy CTC transcription by a local transformers `HubertForCTC` folder with its
    `Wav2Vec2Processor` (the paper's facebook/hubert-large-ls960-ft, sec 4.2), loaded with
    local_files_only. Output is upper-case LibriSpeech style; `normalize_for_wer` lower-cases it."""

    def __init__(self, path: str | Path):
        path = _require_model_folder(
            path, ("config.json", "preprocessor_config.json", "vocab.json"), "HuBERT-CTC recogniser",
            "save facebook/hubert-large-ls960-ft there with HubertForCTC.save_pretrained and "
            "Wav2Vec2Processor.save_pretrained on a connected machine, or unset the path to use faster-whisper")
        from transformers import HubertForCTC, Wav2Vec2Processor

        self.processor = Wav2Vec2Processor.from_pretrained(path, local_files_only=True)
        self.model = HubertForCTC.from_pretrained(path, local_files_only=True).eval()
        self.model_name = f"hubert-ctc:{path.name}"

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        import soxr
        import torch

        x = checked_audio(audio, sample_rate).astype(np.float32)
        x = soxr.resample(x, sample_rate, EVAL_RATE) if sample_rate != EVAL_RATE else x
        inputs = self.processor(x, sampling_rate=EVAL_RATE, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(inputs.input_values).logits                     # (1, f, vocab)
        return self.processor.batch_decode(logits.argmax(dim=-1), skip_special_tokens=True)[0].strip()


# ---- SIM (sec 4.2) -------------------------------------------------------------------------------

class SpeakerEncoder(Protocol):
    """audio (t,) float at `sample_rate` -> (e,) embedding; `name` goes into reports."""
    name: str

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray: ...


class ResemblyzerEncoder(ResemblyzerTeacher):
    """SIM's default encoder: Resemblyzer's GE2E (256-d, 16 kHz, ships its weights), the offline
    substitute for the paper's WavLM-TDCNN. Same model and preprocessing as the SV critic's teacher."""


class WavLMEncoder(WavLMTeacher):
    """A local transformers `WavLMForXVector` folder (e.g. microsoft/wavlm-base-plus-sv), loaded with
    local_files_only: the nearest offline-loadable relative of the paper's WavLM-TDCNN."""

    def __init__(self, path: str | Path):
        super().__init__(_require_model_folder(
            path, ("config.json", "preprocessor_config.json"), "WavLM speaker encoder",
            "save a WavLMForXVector and its feature extractor there with save_pretrained on a connected "
            "machine, or unset the path to use Resemblyzer"))


def speaker_similarity(encoder: SpeakerEncoder, a: np.ndarray, a_sr: int, b: np.ndarray, b_sr: int) -> float:
    """SIM (sec 4.2): cosine similarity of the speaker embeddings of recordings `a` and `b`."""
    ea = np.asarray(encoder.embed(checked_audio(a, a_sr), a_sr), dtype=np.float64)
    eb = np.asarray(encoder.embed(checked_audio(b, b_sr), b_sr), dtype=np.float64)
    return float(ea @ eb / max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12))
