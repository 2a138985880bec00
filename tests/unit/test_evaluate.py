"""Trials files and the evaluation's plot data."""
import numpy as np
import pandas as pd
import pytest

from dmospeech.evaluation.evaluate import f0_histogram_rows, read_trials, trials_from_segments, write_trials
from tests.helpers import voiced, write


def test_trials_from_held_out_segments_pair_each_target_with_another_clip_of_its_speaker(tmp_path):
    a = write(tmp_path / "a.wav", voiced(6.0, 48000, seed=1), 48000)
    b = write(tmp_path / "b.wav", voiced(2.0, 48000, seed=2), 48000)
    c = write(tmp_path / "c.wav", voiced(2.0, 48000, seed=3), 48000)
    segments = pd.DataFrame([
        {"segment_id": "s1", "audio_path": str(a), "start_s": 0.0, "end_s": 6.0, "text": "long one", "speaker": "x"},
        {"segment_id": "s2", "audio_path": str(b), "start_s": 0.0, "end_s": 2.0, "text": "short one", "speaker": "x"},
        {"segment_id": "s3", "audio_path": str(c), "start_s": 0.0, "end_s": 2.0, "text": "alone", "speaker": "y"}])
    trials = trials_from_segments(segments, tmp_path / "trials", max_trials=5, prompt_seconds=3.0)
    assert [t.target_text for t in trials] == ["long one", "short one"]        # speaker y has one clip only
    assert trials[0].prompt_text == "short one"                                # whole 2 s prompt: its own text
    assert trials[1].prompt_text == ""                                         # 6 s prompt cut to 3 s: transcribed later
    import soundfile as sf
    assert sf.info(trials[1].prompt_path).duration == pytest.approx(3.0, abs=0.01)
    path = write_trials(trials, tmp_path / "trials" / "trials.csv")
    again = read_trials(path)
    assert [(t.trial_id, t.prompt_path, t.target_text) for t in again] == \
           [(t.trial_id, t.prompt_path, t.target_text) for t in trials]


def test_trials_file_needs_its_columns(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("prompt_path,target_text\nx.wav,hello\n")
    with pytest.raises(ValueError, match="missing column"):
        read_trials(bad)


def test_f0_histogram_rows_are_densities_over_shared_bins():
    f0 = {"ground_truth": [np.full(100, 120.0), np.full(50, 130.0)], "student": [np.full(80, 200.0)]}
    rows = f0_histogram_rows(f0, bins=10)
    assert len(rows) == 10 and set(rows[0]) == {"f0_hz", "ground_truth", "student"}
    width = rows[1]["f0_hz"] - rows[0]["f0_hz"]
    for model in ("ground_truth", "student"):
        assert sum(r[model] for r in rows) * width == pytest.approx(1.0, rel=0.02)
