"""Every kind of bad input ends in quarantine with its reason; the run goes on; nothing is lost."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.ingest import merge_sources, scan_rows
from dmospeech.cli import main
from dmospeech.data.manifest import Lineage, QUARANTINE_REASONS, write_stage_db
from dmospeech.data.phonemize import phonemize_segments
from dmospeech.data.resample import resample_corpus
from dmospeech.data.text import Vocabulary
from tests.helpers import PROJECT_ROOT, params, voiced, write


@pytest.fixture()
def bad_corpus(tmp_path):
    root = tmp_path / "corpus" / "spk"
    good = write(root / "good one é.wav", voiced(1.5))
    (root / "good one é.txt").write_text("A good file with an odd name.")
    shutil.copy(good, root / "z_copy.wav")  # sorts after the original: the copy is the duplicate
    (root / "z_copy.txt").write_text("a good file, with an odd name")  # the same words: a duplicate
    write(root / "silent.wav", np.zeros(16000, np.float32))
    write(root / "clipped.wav", np.sign(voiced(1.0, seed=1)).astype(np.float32))
    write(root / "short.wav", voiced(0.1, seed=2))
    write(root / "notext.wav", voiced(1.0, seed=3))
    write(root / "emptytext.wav", voiced(1.0, seed=4))
    (root / "emptytext.txt").write_text("  ")
    (root / "zero.wav").write_bytes(b"")
    (root / "zero.txt").write_text("zero")
    (root / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (root / "garbage.txt").write_text("garbage")
    trunc = write(root / "trunc.flac", voiced(2.0, seed=5))
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    (root / "trunc.txt").write_text("truncated")
    nan = voiced(1.0, seed=6)
    nan[[100, 200]] = np.nan, np.inf
    sf.write(str(root / "nan.wav"), nan, 16000, subtype="FLOAT")  # a float WAV holds NaN and inf as written
    (root / "orphan.txt").write_text("A transcript whose audio is missing.")
    for name in ("silent", "clipped", "short", "nan"):
        (root / f"{name}.txt").write_text(name)
    return tmp_path / "corpus"


def test_each_bad_input_is_quarantined_with_its_reason(bad_corpus, tmp_path):
    p = params()
    lineage = Lineage.for_stage("test", {})
    scanned = scan_rows(SourceConfig("bad", "sidecar", str(bad_corpus)), (".wav", ".flac"), lineage)
    files, q1 = merge_sources(scanned, SplitConfig(), lineage)
    audio, q2 = resample_corpus(files, p.resample_audio, lineage, project_root=tmp_path)
    reasons = {row.path.split("/")[-1]: row.reason for row in pd.concat([q1, q2]).itertuples()}
    assert reasons == {"z_copy.wav": "duplicate", "notext.wav": "missing_transcript",
                       "emptytext.wav": "empty_transcript", "zero.wav": "zero_length",
                       "garbage.wav": "unreadable", "trunc.flac": "truncated", "silent.wav": "silent",
                       "clipped.wav": "clipped", "short.wav": "too_short", "nan.wav": "non_finite_samples",
                       "orphan.txt": "missing_audio"}
    assert set(reasons.values()) <= set(QUARANTINE_REASONS)
    # every scanned file is accounted for: kept or quarantined, never both, never neither
    assert len(audio) + len(reasons) == len(scanned)
    assert list(files.loc[files.file_id.isin(audio.file_id), "path"]) == [str(bad_corpus / "spk" / "good one é.wav")]
    assert "same content as" in q1.set_index("reason").loc["duplicate", "detail"]


def test_too_long_is_quarantined(tmp_path):
    from dataclasses import replace
    cfg = replace(params().resample_audio, max_duration_s=1.0)
    lineage = Lineage.for_stage("test", {})
    write(tmp_path / "c" / "s" / "long.wav", voiced(2.0))
    (tmp_path / "c" / "s" / "long.txt").write_text("long")
    files, _ = merge_sources(scan_rows(SourceConfig("x", "sidecar", str(tmp_path / "c")), (".wav",), lineage),
                             SplitConfig(), lineage)
    audio, q = resample_corpus(files, cfg, lineage, project_root=tmp_path)
    assert len(audio) == 0 and list(q.reason) == ["too_long"]


def test_unpronounceable_and_empty_text_segments():
    p = params()
    vocab = Vocabulary.load(PROJECT_ROOT / p.phonemize_text.vocab_path)
    segs = pd.DataFrame([
        {"segment_id": "a", "text": "Plain English words.", "duration_s": 2.0, "audio_path": "a", "source_sha256": "x"},
        {"segment_id": "b", "text": "日本語のテキスト", "duration_s": 2.0, "audio_path": "b", "source_sha256": "y"},
        {"segment_id": "c", "text": "hello 😀", "duration_s": 2.0, "audio_path": "c", "source_sha256": "z"},
        {"segment_id": "d", "text": " \t ", "duration_s": 2.0, "audio_path": "d", "source_sha256": "w"},
    ])
    phon, q = phonemize_segments(segs, p.phonemize_text, vocab, Lineage.for_stage("test", {}))
    assert list(phon.segment_id) == ["a"]
    assert dict(zip(q.item_id, q.reason)) == {"b": "unpronounceable", "c": "unpronounceable", "d": "empty_transcript"}
    assert "日" in q.set_index("item_id").loc["b", "detail"]


def test_quarantine_cli_lists_each_item_with_path_reason_and_detail(bad_corpus, tmp_path, monkeypatch, capsys):
    p = params()
    monkeypatch.chdir(tmp_path)
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    scanned = scan_rows(SourceConfig("bad", "sidecar", str(bad_corpus)), (".wav", ".flac"),
                        Lineage.for_stage("scan_source", {}))
    files, q1 = merge_sources(scanned, SplitConfig(), Lineage.for_stage("prepare_corpus", {}))
    audio, q2 = resample_corpus(files, p.resample_audio, Lineage.for_stage("resample_audio", {}), project_root=tmp_path)
    write_stage_db(p.prepare_corpus.manifest, {"source_files": files, "quarantine": q1})
    write_stage_db(p.resample_audio.manifest, {"audio": audio, "quarantine": q2})

    assert main(["quarantine", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(q1) + len(q2)
    assert {(Path(r["path"]).name, r["reason"], r["stage"]) for r in listed} >= {
        ("orphan.txt", "missing_audio", "prepare_corpus"), ("nan.wav", "non_finite_samples", "resample_audio")}
    assert all(r["detail"] and r["item_kind"] == "source_file" for r in listed)

    assert main(["quarantine", "--list", "--reason", "duplicate", "--stage", "prepare_corpus", "--json"]) == 0
    [dup] = json.loads(capsys.readouterr().out)
    assert dup["path"].endswith("z_copy.wav") and "same content as" in dup["detail"]
    assert main(["quarantine", "--list", "--reason", "silent"]) == 0
    out = capsys.readouterr().out
    [line, detail, total] = out.splitlines()
    assert line.startswith("resample_audio\tsilent\tsource_file\t") and line.endswith("silent.wav")
    assert "peak" in detail and total == "1 quarantined item(s)"
    assert main(["quarantine", "--json"]) == 0
    assert {"stage": "resample_audio", "reason": "silent", "count": 1} in json.loads(capsys.readouterr().out)
    assert main(["quarantine", "--list", "--reason", "no_such_reason"]) == 2
