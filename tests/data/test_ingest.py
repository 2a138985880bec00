"""Merging sources: content-hash ids, duplicates across sources, speaker splits, rescans."""
import shutil

from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.ingest import assign_splits, merge_sources, scan_rows
from dmospeech.data.manifest import Lineage, sha256_file
import pandas as pd

from tests.helpers import voiced, write


def test_splits_are_by_speaker_deterministic_and_non_empty():
    speakers = [f"spk{i}" for i in range(20)]
    splits = assign_splits(speakers, SplitConfig(0.1, 0.1, 0))
    assert splits == assign_splits(list(reversed(speakers)), SplitConfig(0.1, 0.1, 0))
    assert sorted(splits.values()).count("valid") == 2 and sorted(splits.values()).count("test") == 2
    assert set(assign_splits(["a", "b"], SplitConfig(0.1, 0.1, 0)).values()) == {"train"}
    assert assign_splits(speakers, SplitConfig(0.1, 0.1, 1)) != splits


def test_duplicates_across_sources_and_stable_ids(tmp_path):
    a = write(tmp_path / "a" / "s1" / "x.wav", voiced(1.0))
    (tmp_path / "a" / "s1" / "x.txt").write_text("one")
    (tmp_path / "b").mkdir()
    shutil.copy(a, tmp_path / "b" / "y.wav")
    (tmp_path / "b" / "m.csv").write_text("path,speaker,text\ny.wav,s2,ONE.\n")  # the same transcript
    lin = Lineage.for_stage("test", {})
    scanned = pd.concat([scan_rows(SourceConfig("a", "sidecar", str(tmp_path / "a")), (".wav",), lin),
                         scan_rows(SourceConfig("b", "csv", str(tmp_path / "b" / "m.csv")), (".wav",), lin)])
    files, q = merge_sources(scanned, SplitConfig(), lin)
    assert list(files.file_id) == [sha256_file(a)[:16]]
    assert list(q.reason) == ["duplicate"] and q.path[0].endswith("y.wav")
    assert files.stage[0] == "test" and len(files.params_hash[0]) == 12 and files.code_version[0]


def scanned_copies(tmp_path, texts: dict[str, str | None]) -> pd.DataFrame:
    """One byte-identical file under each name, a sidecar transcript each (None: in a long-form
    source, untranscribed); sources in name order."""
    audio = voiced(1.0)
    lin, frames = Lineage.for_stage("test", {}), []
    for name, text in texts.items():
        root = tmp_path / name
        write(root / "spk" / f"{name}.wav", audio)
        if text is not None:
            (root / "spk" / f"{name}.txt").write_text(text)
        frames.append(scan_rows(SourceConfig(name, "sidecar" if text is not None else "longform", str(root)),
                                (".wav",), lin))
    return pd.concat(frames, ignore_index=True)


def reasons(q: pd.DataFrame) -> dict[str, str]:
    return {path.rsplit("/", 1)[-1]: reason for path, reason in zip(q.path, q.reason)}


def test_identical_audio_with_different_transcripts_quarantines_every_copy(tmp_path):
    scanned = scanned_copies(tmp_path, {"a": "The birch canoe.", "b": "A different sentence.", "c": None})
    files, q = merge_sources(scanned, SplitConfig(), Lineage.for_stage("test", {}))
    assert files.empty
    assert reasons(q) == {"a.wav": "conflicting_transcripts", "b.wav": "conflicting_transcripts",
                          "c.wav": "conflicting_transcripts"}
    detail = q.set_index("reason").detail.iloc[0]
    assert "b.wav: 'A different sentence.'" in detail and "The birch canoe." in detail
    assert len(set(q.item_id)) == 3   # each copy its own id, none another file's file_id


def test_the_kept_copy_is_one_whose_transcript_passes(tmp_path):
    scanned = scanned_copies(tmp_path, {"a": "The birch canoe 😀", "b": "the BIRCH canoe.", "c": None})
    files, q = merge_sources(scanned, SplitConfig(), Lineage.for_stage("test", {}))
    assert [p.rsplit("/", 1)[-1] for p in files.path] == ["b.wav"] and files.text[0] == "the BIRCH canoe."
    assert reasons(q) == {"a.wav": "unpronounceable", "c.wav": "duplicate"}   # each its own defect first
    assert q.detail[0].endswith(f"kept as {files.path[0]}") and q.detail[1] == f"same content as {files.path[0]}"
    assert set(q.item_id).isdisjoint(files.file_id)


def test_a_copy_with_its_own_scan_problem_is_not_a_duplicate(tmp_path):
    scanned = scanned_copies(tmp_path, {"a": "   ", "b": "Words."})
    files, q = merge_sources(scanned, SplitConfig(), Lineage.for_stage("test", {}))
    assert [p.rsplit("/", 1)[-1] for p in files.path] == ["b.wav"] and reasons(q) == {"a.wav": "empty_transcript"}
