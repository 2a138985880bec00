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
    (tmp_path / "b" / "m.csv").write_text("path,speaker,text\ny.wav,s2,two\n")
    lin = Lineage.for_stage("test", {})
    scanned = pd.concat([scan_rows(SourceConfig("a", "sidecar", str(tmp_path / "a")), (".wav",), lin),
                         scan_rows(SourceConfig("b", "csv", str(tmp_path / "b" / "m.csv")), (".wav",), lin)])
    files, q = merge_sources(scanned, SplitConfig(), lin)
    assert list(files.file_id) == [sha256_file(a)[:16]]
    assert list(q.reason) == ["duplicate"] and q.path[0].endswith("y.wav")
    assert files.stage[0] == "test" and len(files.params_hash[0]) == 12 and files.code_version[0]
