"""benchmarks/hold_out.py: the same speakers and recordings are held out every time, nothing is lost or
doubled, and the split folders are recognised as the layouts they came from."""

import numpy as np
import pytest

from dmospeech.codec.folder_corpus import detect_source
from tests.helpers import load_benchmark, write


def corpus(root):
    tone = np.zeros(1600, np.float32)
    for spk in ("11", "22", "33", "44", "55"):
        chapter = root / "libri" / spk / "1"
        write(chapter / f"{spk}-1-0000.flac", tone)
        (chapter / f"{spk}-1.trans.txt").write_text(f"{spk}-1-0000 HELLO\n")
    for i in range(6):
        write(root / "single" / f"r{i}.wav", tone)
        (root / "single" / f"r{i}.txt").write_text("hello")
    write(root / "single" / "untranscribed.wav", tone)
    (root / "lj").mkdir()
    (root / "lj" / "metadata.csv").write_text("a|b|b\n")


def test_held_out_speakers_and_recordings_are_fixed_disjoint_and_complete(tmp_path):
    hold_out = load_benchmark("hold_out")
    corpus(tmp_path / "c")
    for out in ("one", "two"):
        for name in ("libri", "single", "lj"):
            hold_out.split_folder(tmp_path / "c" / name, tmp_path / out, speakers=2, recordings=2)
    listing = lambda out, side, name: sorted(p.name for p in (tmp_path / out / side / name).iterdir())  # noqa: E731
    assert listing("one", "valid", "libri") == listing("two", "valid", "libri") == ["22", "44"]
    assert listing("one", "train", "libri") == ["11", "33", "55"]
    valid = listing("one", "valid", "single")
    assert valid == listing("two", "valid", "single") and len(valid) == 4   # 2 recordings, each with its .txt
    train = listing("one", "train", "single")
    assert not set(train) & set(valid) and len(train) == 8                  # the untranscribed file is left out
    assert detect_source(tmp_path / "one" / "valid" / "libri").kind == "librispeech"
    assert detect_source(tmp_path / "one" / "valid" / "single").kind == "sidecar"
    assert (tmp_path / "one" / "train" / "lj").resolve() == (tmp_path / "c" / "lj").resolve()


def test_holding_out_everything_or_relinking_elsewhere_is_refused(tmp_path):
    hold_out = load_benchmark("hold_out")
    corpus(tmp_path / "c")
    with pytest.raises(ValueError, match="training would be empty"):
        hold_out.split_folder(tmp_path / "c" / "libri", tmp_path / "out", speakers=5, recordings=1)
    hold_out.split_folder(tmp_path / "c" / "libri", tmp_path / "out", speakers=2, recordings=1)
    with pytest.raises(FileExistsError, match="another split of libri"):
        hold_out.split_folder(tmp_path / "c" / "libri", tmp_path / "out", speakers=1, recordings=1)
