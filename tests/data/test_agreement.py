"""Transcript <-> audio agreement: wrong transcripts of real speech are caught, right ones pass."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.transcript_agreement import damaged_copy, run_checks
from dmospeech.config import SourceConfig, load_params
from dmospeech.data.agreement import agreement_report, character_error_rate, check_transcripts, verdict
from dmospeech.data.manifest import Lineage
from dmospeech.ops.executor import Executor
from tests.conftest import PROJECT_ROOT


def params():
    return load_params(PROJECT_ROOT / "params.yaml")


def test_cer_compares_normalised_text():
    assert character_error_rate("Hello, World!", "hello world") == 0.0
    assert character_error_rate("twenty five", "25") == 0.0                 # Whisper's number normalisation
    assert character_error_rate("abcd", "abxd") == pytest.approx(0.25)
    assert character_error_rate("the cat", "the cat sat on the mat") > 0.5   # words heard but not given
    assert character_error_rate("[noise]", "") == 0.0 and character_error_rate("[noise]", "hi") == 1.0


def test_verdicts_follow_the_two_thresholds():
    cfg = dataclasses.replace(params().check_transcripts, doubtful_cer=0.2, mismatch_cer=0.5)
    assert [verdict(c, cfg) for c in (0.0, 0.2, 0.21, 0.5, 0.51)] == ["ok", "ok", "doubtful", "doubtful", "mismatch"]


def test_whisper_text_and_skipped_sources_are_not_checked(tmp_path):
    p = params()
    segments = pd.DataFrame([
        {"segment_id": "a_0000", "file_id": "a", "audio_path": "x.flac", "start_s": 0.0, "end_s": 1.0,
         "text": "hi", "text_source": "whisper", "source_sha256": "0" * 64, "source_name": "s1"},
        {"segment_id": "b_0000", "file_id": "b", "audio_path": "y.flac", "start_s": 0.0, "end_s": 1.0,
         "text": "hi", "text_source": "given", "source_sha256": "1" * 64, "source_name": "trusted"}])
    cfg = dataclasses.replace(p.check_transcripts, skip_sources=("trusted",), cache_dir=str(tmp_path))
    checks, quarantine = check_transcripts(segments, cfg, p.segment_audio, Lineage.for_stage("t", {}))
    assert checks[["segment_id", "verdict"]].values.tolist() == [["b_0000", "skipped"]]
    assert checks.cer.isna().all() and quarantine.empty
    assert agreement_report(checks, cfg)["verdicts"] == {"skipped": 1}


@pytest.mark.slow
def test_swapped_and_truncated_transcripts_of_real_speech_are_caught(dev_corpus, tmp_path):
    subset = tmp_path / "subset"
    subset.mkdir()
    for flac in sorted((dev_corpus / "kathleen" / "wavs").glob("*.flac"))[:24]:
        shutil.copy(flac, subset / flac.name)
        shutil.copy(flac.with_suffix(".txt"), subset / f"{flac.stem}.txt")
    damage = damaged_copy(subset, tmp_path / "damaged", swap=10, truncate=5)
    p = params()
    with Executor(dataclasses.replace(p.compute, engine="local")) as ex:
        checks = run_checks((SourceConfig("damaged", "sidecar", str(tmp_path / "damaged")),), tmp_path / "work",
                            ex, p)
    judged = {Path(r.path).stem: r.verdict for r in checks.itertuples(index=False)}
    assert len(judged) == 24
    swapped = [stem for stem, what in damage.items() if what == "swapped"]
    truncated = [stem for stem, what in damage.items() if what == "truncated"]
    assert len(swapped) == 10 and all(judged[s] == "mismatch" for s in swapped), judged
    assert len(truncated) == 5 and all(judged[s] in ("mismatch", "doubtful") for s in truncated), judged
    assert all(v == "ok" for s, v in judged.items() if s not in damage), judged


@pytest.mark.slow
def test_batched_decoding_gives_each_clip_its_own_text(dev_corpus):
    """The GPU path (BatchedInferencePipeline, one chunk per clip), run here on the CPU."""
    import soundfile as sf

    from dmospeech.data.transcribe import Transcriber

    clips = [sf.read(f, dtype="float32") for f in sorted((dev_corpus / "kathleen" / "wavs").glob("*.flac"))[:4]]
    transcriber = Transcriber()
    one_by_one = [transcriber(audio, sr) for audio, sr in clips]
    batched = transcriber.transcribe_batch([audio for audio, _ in clips], clips[0][1], batch_size=4)
    assert len(batched) == 4 and all(character_error_rate(a, b) < 0.1 for a, b in zip(one_by_one, batched))
    assert character_error_rate(one_by_one[0], batched[1]) > 0.5   # texts are not shifted between clips
