"""segment_audio (paper sec 4.3): trimming, cut-off flags, cutting at pauses, the stage, and a
real long-form recording segmented by the packaged VAD + Whisper base."""
from __future__ import annotations

import json
import re
import runpy
from dataclasses import replace

import jiwer
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
import yaml

from dmospeech.data import manifest
from dmospeech.data.cutoff import Word, detect_cutoff, piece_bounds, quietest_time, split_at_pauses, trim_silence
from dmospeech.data.segment import _load_aligner, _timed_words, segment_corpus, segment_utterance
from dmospeech.data.whisper_models import BASE_MODEL_SHA256, resolve_whisper_model
from tests.helpers import PROJECT_ROOT, params, write

SR = 48_000
CFG = params().segment_audio
CUTOFF = replace(CFG.cutoff, edge_window_s=0.05, edge_energy_db=-20.0, word_margin_s=0.04)


def tone(seconds: float, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def hiss(seconds: float, amp: float = 1e-4, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_trim_silence_finds_the_tone_and_pads_it():
    audio = np.concatenate([hiss(1.0), tone(1.0), hiss(1.0, seed=1)])
    start, end = trim_silence(audio, SR, top_db=40.0, pad_s=0.1)
    assert start == pytest.approx(0.9, abs=0.03) and end == pytest.approx(2.1, abs=0.03)
    assert trim_silence(np.zeros(SR, np.float32), SR, 40.0, 0.1) == (0.0, 0.0)


def test_cutoff_flags_an_edge_inside_the_tone_only():
    cut_mid_tone = np.concatenate([hiss(0.5), tone(1.0)])  # the recording stops inside the sound
    assert detect_cutoff(cut_mid_tone, SR, 0.0, 1.5, CUTOFF)[:2] == (False, True)
    starts_in_tone = np.concatenate([tone(1.0), hiss(0.5)])
    assert detect_cutoff(starts_in_tone, SR, 0.0, 1.5, CUTOFF)[:2] == (True, False)
    ends_in_silence = np.concatenate([hiss(0.5), tone(1.0), hiss(0.5)])
    assert detect_cutoff(ends_in_silence, SR, 0.0, 2.0, CUTOFF) == (False, False, None)


def test_cutoff_flags_a_word_ending_at_the_cut():
    audio = np.concatenate([hiss(0.5), tone(1.0), hiss(0.5)])
    words = [Word(0.5, 1.0, " hello"), Word(1.1, 1.98, " world")]
    start, end, reason = detect_cutoff(audio, SR, 0.0, 2.0, CUTOFF, words)
    assert (start, end) == (False, True) and "'world' ends 0.020 s before the cut" in reason
    assert detect_cutoff(audio, SR, 0.0, 2.0, CUTOFF, words[:1]) == (False, False, None)


def test_segment_utterance_trims_and_rejects_too_short_sound():
    piece = segment_utterance(np.concatenate([hiss(0.7), tone(1.2), hiss(0.7)]), SR, " Hi there. ", CFG)
    assert piece.reject is None and piece.text == "Hi there."
    assert piece.start_s == pytest.approx(0.6, abs=0.03) and piece.end_s == pytest.approx(2.0, abs=0.03)
    short = segment_utterance(np.concatenate([hiss(0.5), tone(0.1), hiss(0.5)]), SR, "Oh.", CFG)
    assert short.reject == "too_short"


def words_with_pauses(pauses_after: dict[int, float], count: int = 40) -> list[tuple[float, float]]:
    """`count` words of 0.4 s, 0.05 s apart, with longer pauses after the given word indices."""
    spans, t = [], 0.0
    for i in range(count):
        spans.append((t, t + 0.4))
        t += 0.4 + pauses_after.get(i, 0.05)
    return spans


def test_split_at_pauses_cuts_at_the_longest_pauses_until_everything_fits():
    spans = words_with_pauses({9: 0.6, 19: 0.9, 29: 0.7})  # 40 words, ~20 s
    groups = split_at_pauses(spans, max_s=12.0, margin_s=0.5)
    assert [len(g) for g in groups] == [20, 20]  # one cut suffices: at the longest pause
    groups = split_at_pauses(spans, max_s=6.0, margin_s=0.5)
    assert [len(g) for g in groups] == [10, 10, 10, 10]
    assert [s for g in groups for s in g] == spans
    assert all(g[-1][1] - g[0][0] + 1.0 <= 6.0 for g in groups)
    assert split_at_pauses([(0.0, 40.0), (40.5, 41.0)], max_s=30.0) == [[(0.0, 40.0)], [(40.5, 41.0)]]


def test_piece_bounds_share_short_pauses_and_keep_little_of_long_ones():
    groups = [[(0.2, 5.0)], [(5.6, 9.0)], [(15.0, 20.0)]]
    bounds = piece_bounds(groups, 30.0, 0.5, lambda a, b: (a + b) / 2)
    assert [t for b in bounds for t in b] == pytest.approx([0.0, 5.3, 5.3, 9.25, 14.75, 20.25])


def test_quietest_time_lands_in_the_middle_of_the_silence():
    audio = np.concatenate([tone(1.0), np.zeros(int(0.3 * SR), np.float32), hiss(0.4, 1e-3), tone(1.0)])
    assert quietest_time(audio, SR, 0.9, 1.8) == pytest.approx(1.15, abs=0.02)


def test_packaged_whisper_base_is_joined_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("DMOSPEECH_CACHE", str(tmp_path))
    folder = resolve_whisper_model("base")
    assert folder == tmp_path / "whisper-base"
    assert manifest.sha256_file(folder / "model.bin") == BASE_MODEL_SHA256
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}
    (folder / "model.bin").write_bytes(b"half a model")  # a damaged file is rebuilt
    assert manifest.sha256_file(resolve_whisper_model("base") / "model.bin") == BASE_MODEL_SHA256
    with pytest.raises(FileNotFoundError, match="model.bin"):
        resolve_whisper_model(str(tmp_path / "no-such-model"))


def test_aligned_words_without_times_keep_their_text():
    aligned = [{"word": "In"}, {"word": "1455,", "start": 0.3, "end": 0.9}, {"word": "it"},
               {"word": "rained.", "start": 1.0, "end": 1.4}, {"word": "42"}]
    words = _timed_words(aligned)
    assert [(w.start, w.end) for w in words] == [(0.3, 0.9), (1.0, 1.4)]
    assert "".join(w.text for w in words).split() == ["In", "1455,", "it", "rained.", "42"]


def test_alignment_model_must_be_a_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="alignment_model.*is not a folder"):
        _load_aligner(replace(CFG, alignment_model=str(tmp_path / "wav2vec2")))


def write_upstream(root, clips: dict[str, np.ndarray], texts: dict[str, str | None]) -> None:
    """Fabricated `source_files` and `audio` manifests for 48 kHz clips under `root`."""
    lineage = manifest.Lineage.for_stage("test", {})
    sources, audio = [], []
    for file_id, samples in clips.items():
        rel = f"data/audio48k/{file_id}.flac"
        write(root / rel, samples, SR)
        common = {"source_sha256": file_id * 4, "parent_id": None, **lineage.columns()}
        sources.append({"file_id": file_id, "source_name": "s", "source_kind": "sidecar", "path": str(root / rel),
                        "rel_path": rel, "size_bytes": 1, "speaker": "spk", "text": texts[file_id],
                        "transcribed": texts[file_id] is not None, "split": "train", **common})
        audio.append({"file_id": file_id, "audio_path": rel, "sample_rate": SR, "num_samples": len(samples),
                      "duration_s": len(samples) / SR, "orig_sample_rate": SR, "orig_channels": 1,
                      "orig_duration_s": len(samples) / SR, "peak": 0.5, "rms": 0.1, "clipped_fraction": 0.0,
                      "dc_offset": 0.0, "gain_db": 0.0, "speaker": "spk", "split": "train", **common,
                      "parent_id": file_id})
    p = params()
    manifest.write_stage_db(root / p.prepare_corpus.manifest, {"source_files": manifest.frame("source_files", sources)})
    manifest.write_stage_db(root / p.resample_audio.manifest, {"audio": manifest.frame("audio", audio)})


def test_stage_writes_given_text_segments_and_quarantines_short_ones(tmp_path, monkeypatch):
    clips = {"a" * 16: np.concatenate([hiss(0.5), tone(1.5), hiss(0.5)]),
             "b" * 16: np.concatenate([hiss(0.5), tone(1.5)]),          # ends inside the sound
             "c" * 16: np.concatenate([hiss(0.5), tone(0.1), hiss(0.5)])}
    write_upstream(tmp_path, clips, {"a" * 16: "Complete.", "b" * 16: "Cut off.", "c" * 16: "Oh."})
    data = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    data["segment_audio"]["speech_check"]["min_speech_fraction"] = 0.0  # tones are no speech: no VAD here,
    data["segment_audio"]["cutoff"]["last_word_gap_s"] = 0.0             # nor Whisper's last word
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(PROJECT_ROOT / "stages" / "segment_audio.py"), run_name="__main__")
    db = tmp_path / CFG.manifest
    segments = manifest.read_table(db, "segments").set_index("segment_id")
    quarantine = manifest.read_table(db, "quarantine")
    assert list(segments.index) == ["a" * 16 + "_0000", "b" * 16 + "_0000"]
    assert list(segments.text_source) == ["given", "given"] and list(segments.text) == ["Complete.", "Cut off."]
    assert list(segments.cutoff_end) == [False, True] and list(segments.use_for_training) == [True, False]
    assert list(segments.parent_id) == ["a" * 16, "b" * 16]
    assert quarantine[["item_id", "reason"]].values.tolist() == [["c" * 16 + "_0000", "too_short"]]


def test_transcribed_file_without_text_is_an_error(tmp_path):
    write(tmp_path / "d.flac", tone(1.0), SR)
    rows = pd.DataFrame([{"file_id": "d" * 16, "audio_path": "d.flac", "sample_rate": SR, "duration_s": 1.0,
                          "speaker": "s", "split": "train", "source_sha256": "0", "source_name": "s", "text": "  ", "transcribed": True}])
    with pytest.raises(ValueError, match="marked transcribed but has no text"):
        segment_corpus(rows, CFG, manifest.Lineage.for_stage("segment_audio", CFG), tmp_path)


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.mark.slow  # ~50 s on 2 cores: importing pyannote alone takes ~25 s
def test_longform_recording_is_cut_in_pauses_with_low_wer(dev_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("DMOSPEECH_CACHE", str(tmp_path / "cache"))
    source = dev_corpus / "longform" / "ljspeech_LJ001_run.flac"
    audio, sr = sf.read(source, dtype="float32")
    write(tmp_path / "long.flac", soxr.resample(audio, sr, SR), SR)
    rows = pd.DataFrame([{"file_id": "e" * 16, "audio_path": "long.flac", "sample_rate": SR,
                          "duration_s": len(audio) / sr, "speaker": "lj",
                          "split": "train", "source_sha256": "0", "source_name": "s", "text": None,
                          "transcribed": False}])
    cfg = replace(CFG, whisper_model="base")
    segments, quarantine = segment_corpus(rows, cfg, manifest.Lineage.for_stage("segment_audio", cfg), tmp_path)
    truth = json.loads(source.with_name("ljspeech_LJ001_run.segments.json").read_text())

    assert len(segments) >= 4 and quarantine.empty and set(segments.text_source) == {"whisper"}
    assert segments.duration_s.max() <= cfg.max_segment_s
    assert (segments.start_s.iloc[1:].values >= segments.end_s.iloc[:-1].values).all()
    wer = jiwer.wer(normalized(" ".join(u["text"] for u in truth)), normalized(" ".join(segments.text)))
    assert wer <= 0.10, f"WER {wer:.3f}"
    cut_ins = [(end, u["text"]) for end in segments.end_s for u in truth if u["start"] + 0.05 < end < u["end"] - 0.05]
    assert not cut_ins, f"segment ends inside true utterances: {cut_ins}"
