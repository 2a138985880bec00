"""Every kind of bad input ends in quarantine with its reason; the run goes on; nothing is lost."""
import shutil

import numpy as np
import pandas as pd
import pytest

from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.ingest import merge_sources, scan_rows
from dmospeech.data.manifest import Lineage, QUARANTINE_REASONS
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
    (root / "z_copy.txt").write_text("The same audio again.")
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
    for name in ("silent", "clipped", "short"):
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
                       "clipped.wav": "clipped", "short.wav": "too_short"}
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
