"""Speech presence and transcript collapse (issue 25 points 2 and 3): noise with a transcript is quarantined
`no_speech_detected`, a Whisper transcript that left repeated speech out is quarantined `transcript_collapse`,
and real dev speech is neither."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import soxr

from benchmarks.cutoff_snr import load_clips, noise
from dmospeech.data.cutoff import Word
from dmospeech.data.resample import condition_file
from dmospeech.data.segment import Segmenter, segment_utterance
from dmospeech.data.speech import ClipVad, collapse_detail, filled_window, speech_seconds
from tests.helpers import noise_with_weak_end, params

SR = 48_000
CFG = params().segment_audio
SENTENCE = " A very few years saw the birth of Roman character not only in Italy, but in Germany and France."


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_given_text_clip_without_vad_speech_is_no_speech_detected():
    # 0.2 s of speech in 3 s of sound
    vad = SimpleNamespace(clip_vad=lambda audio, sr, window: ClipVad(0.2, 0.0), transcribe=lambda a, **_: [])
    piece = segment_utterance(clip(3.0), SR, "A plausible transcript.", CFG, lambda: vad)
    assert piece.reject == "no_speech_detected" and "0.20 s of speech" in piece.detail
    heard = SimpleNamespace(clip_vad=lambda audio, sr, window: ClipVad(2.0, 0.1), transcribe=lambda a, **_: [])
    assert segment_utterance(clip(3.0), SR, "Speech.", CFG, lambda: heard).reject is None
    off = replace(CFG, speech_check=replace(CFG.speech_check, min_speech_fraction=0.0),
                  cutoff=replace(CFG.cutoff, edge_vad_score=0.0, last_word_gap_s=0.0))
    assert segment_utterance(clip(3.0), SR, "Speech.", off, lambda: pytest.fail("loaded the VAD")).reject is None


def test_vad_hearing_speech_up_to_the_end_flags_the_end_as_cut_off():
    """Noise hides a weak last phone from the energy tests (5 dB above the noise, under their 8-dB floor
    margin); the VAD still scores speech up to the cut. Noise alone at the end is not flagged."""
    audio, weak = noise_with_weak_end()
    speaking = SimpleNamespace(clip_vad=lambda audio, sr, window: ClipVad(2.5, 0.9), transcribe=lambda a, **_: [])
    assert not segment_utterance(weak, SR, "A plausible transcript.", CFG).cutoff_end     # energy tests only
    piece = segment_utterance(weak, SR, "A plausible transcript.", CFG, lambda: speaking)
    assert piece.reject is None and piece.cutoff_end and "VAD speech score 0.90 over the last 0.1 s" in piece.cutoff_reason
    quiet_end = SimpleNamespace(clip_vad=lambda audio, sr, window: ClipVad(2.5, 0.3), transcribe=lambda a, **_: [])
    assert not segment_utterance(weak, SR, "A plausible transcript.", CFG, lambda: quiet_end).cutoff_end
    assert not segment_utterance(audio, SR, "A plausible transcript.", CFG, lambda: speaking).cutoff_end


def test_short_clips_fill_a_vad_window_and_speech_is_summed_inside_a_piece():
    assert len(filled_window(np.ones(16_000, np.float32), 16_000)) == 5 * 16_000
    assert len(filled_window(np.ones(6 * 16_000, np.float32), 16_000)) == 6 * 16_000
    assert speech_seconds([(0.0, 2.0), (3.0, 5.0), (9.0, 12.0)], 1.0, 10.0) == pytest.approx(4.0)


def test_whisper_piece_holding_a_repeated_sentence_once_is_transcript_collapse(monkeypatch):
    """A 23-s piece: the VAD hears 18 s of speech, Whisper wrote one 75-letter sentence (issue 25: 2.7 phonemes/s)."""
    segmenter = Segmenter(CFG)
    monkeypatch.setattr(segmenter, "transcribe", lambda audio16k: [Word(0.5, 5.6, SENTENCE)])
    audio = clip(23.0)
    piece = segmenter._piece(audio, SR, soxr.resample(audio, SR, 16_000), (0.0, 23.0), [(0.4, 18.4)])
    assert piece.reject == "transcript_collapse" and "75 letters for 18.0 s of VAD speech" in piece.detail
    assert collapse_detail(SENTENCE, 6.0, CFG.speech_check) is None   # the same sentence read once


def dev_folders(root):
    return [root / name for name in ("librispeech", "ljspeech", "kathleen", "arctic")]


@pytest.mark.slow  # ~25 s on 2 cores: the VAD on 40 dev clips and 12 noise clips
def test_vad_flags_noise_with_a_transcript_and_no_dev_speech(dev_corpus):
    segmenter = Segmenter(CFG)
    clips = load_clips(dev_folders(dev_corpus), 40, params())
    flagged = [c.name for c in clips if segment_utterance(c.audio, SR, c.text, CFG, lambda: segmenter).reject]
    assert not flagged, f"real speech quarantined: {flagged}"
    rng = np.random.default_rng(0)
    for i in range(12):
        audio = (0.5 * noise(int(rng.uniform(1.0, 8.0) * SR), ("white", "pink")[i % 2], rng)).astype(np.float32)
        piece = segment_utterance(audio, SR, "A plausible transcript of this clip.", CFG, lambda: segmenter)
        assert piece.reject == "no_speech_detected", (i, piece)


@pytest.mark.slow  # ~50 s on 2 cores: VAD + Whisper base on 34 s of audio and on a 136-s dev recording
def test_phrase_read_fifteen_times_is_transcript_collapse_dev_longform_is_not(dev_corpus):
    """Whisper (beam search at temperature 0, so the same every run) writes the first 18 s of a 1.9-s phrase
    read 15 times down once: 30 letters for 18 s of VAD speech. Read 7 times, a 6.9-s sentence is written
    down whole at temperature 0; it collapsed only in some runs of the sampling fallback, now off."""
    one, _ = condition_file(str(dev_corpus / "ljspeech" / "wavs" / "LJ001-0002.wav"), params().resample_audio)
    rng = np.random.default_rng(0)   # "in being comparatively modern", 1.9 s, 15 times with 0.2-0.5 s pauses
    audio = np.concatenate([part for _ in range(15)
                            for part in (one, np.zeros(int(rng.uniform(0.2, 0.5) * SR), np.float32))])
    segmenter = Segmenter(CFG)
    pieces = segmenter.segment_long(audio, SR)
    assert [p.reject for p in pieces].count("transcript_collapse") >= 1, [(p.text, p.reject) for p in pieces]
    assert segmenter.segment_long(audio, SR) == pieces                      # reproducible
    long_audio, sr = sf.read(dev_corpus / "longform" / "kathleen_run.flac", dtype="float32")
    pieces = segmenter.segment_long(soxr.resample(long_audio, sr, SR), SR)
    assert pieces and not [p for p in pieces if p.reject], [p for p in pieces if p.reject]
