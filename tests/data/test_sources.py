"""Source adapters on fabricated layouts and on the real development corpus."""
from pathlib import Path

import pytest

from dmospeech.config import SourceConfig
from dmospeech.data.sources import SourceError, scan_source
from tests.helpers import voiced, write

EXTS = (".wav", ".flac")


def by_name(items):
    return {Path(i.path).name: i for i in items}


def test_librispeech_layout_with_trans_and_normalized(tmp_path):
    ch = tmp_path / "19" / "198"
    write(ch / "19-198-0000.flac", voiced(1.0))
    write(ch / "19-198-0001.flac", voiced(1.0, seed=1))
    (ch / "19-198.trans.txt").write_text("19-198-0000 HELLO WORLD\n")
    write(tmp_path / "20" / "1" / "20-1-0000.wav", voiced(1.0, seed=2))
    (tmp_path / "20" / "1" / "20-1-0000.normalized.txt").write_text("Hello there.")
    items = by_name(scan_source(SourceConfig("ls", "librispeech", str(tmp_path)), EXTS))
    assert items["19-198-0000.flac"].text == "HELLO WORLD" and items["19-198-0000.flac"].speaker == "19"
    assert items["19-198-0001.flac"].problem == "missing_transcript"
    assert items["20-1-0000.wav"].text == "Hello there." and items["20-1-0000.wav"].speaker == "20"


def test_ljspeech_layout(tmp_path):
    write(tmp_path / "wavs" / "LJ001-0001.wav", voiced(1.0))
    write(tmp_path / "wavs" / "LJ001-0009.wav", voiced(1.0, seed=3))
    (tmp_path / "metadata.csv").write_text("LJ001-0001|Raw text 1|Normalized text one\nLJ001-0002|gone|gone\n")
    items = by_name(scan_source(SourceConfig("lj", "ljspeech", str(tmp_path), speaker="lj"), EXTS))
    assert items["LJ001-0001.wav"].text == "Normalized text one" and items["LJ001-0001.wav"].speaker == "lj"
    assert items["LJ001-0002.wav"].problem == "missing_audio"  # listed, file missing
    assert items["LJ001-0009.wav"].problem == "missing_transcript"  # file, not listed


def test_ljspeech_without_metadata_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="metadata.csv"):
        scan_source(SourceConfig("lj", "ljspeech", str(tmp_path)), EXTS)


def test_sidecar_layout_speaker_from_folder_and_odd_names(tmp_path):
    write(tmp_path / "spk a" / "clip één.wav", voiced(1.0))
    (tmp_path / "spk a" / "clip één.txt").write_text("A name with spaces and unicode.\n")
    write(tmp_path / "spk a" / "empty.wav", voiced(1.0, seed=4))
    (tmp_path / "spk a" / "empty.txt").write_text("   \n")
    items = by_name(scan_source(SourceConfig("sc", "sidecar", str(tmp_path)), EXTS))
    assert items["clip één.wav"].speaker == "spk a" and items["clip één.wav"].problem is None
    assert items["clip één.wav"].text == "A name with spaces and unicode."
    assert items["empty.wav"].problem == "empty_transcript"


def test_csv_manifest(tmp_path):
    write(tmp_path / "a" / "x.wav", voiced(1.0))
    (tmp_path / "m.csv").write_text('path,speaker,text\na/x.wav,alice,"Hi, there."\na/none.wav,bob,Missing file\n')
    items = by_name(scan_source(SourceConfig("c", "csv", str(tmp_path / "m.csv")), EXTS))
    assert items["x.wav"].speaker == "alice" and items["x.wav"].text == "Hi, there."
    assert items["none.wav"].problem == "missing_audio"


def test_csv_manifest_missing_column(tmp_path):
    (tmp_path / "m.csv").write_text("file,text\n")
    with pytest.raises(SourceError, match="missing column"):
        scan_source(SourceConfig("c", "csv", str(tmp_path / "m.csv")), EXTS)


def test_longform_speaker_per_folder(tmp_path):
    write(tmp_path / "1234" / "book" / "chapter.flac", voiced(2.0))
    write(tmp_path / "loose.wav", voiced(1.0, seed=5))
    items = by_name(scan_source(SourceConfig("lf", "longform", str(tmp_path)), EXTS))
    assert items["chapter.flac"].speaker == "1234" and not items["chapter.flac"].transcribed
    assert items["loose.wav"].speaker == "loose" and items["loose.wav"].text is None


def test_missing_source_root(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        scan_source(SourceConfig("x", "sidecar", str(tmp_path / "nope")), EXTS)


@pytest.mark.parametrize("kind,sub,speaker,expected", [
    ("librispeech", "librispeech", None, 125),
    ("ljspeech", "ljspeech", "ljspeech", 32),
    ("sidecar", "kathleen", "kathleen", 201),   # LICENSE.txt: a sidecar text without audio
    ("csv", "arctic/manifest.csv", None, 9),
    ("longform", "longform", None, 2),
])
def test_adapters_on_real_corpus(dev_corpus, kind, sub, speaker, expected):
    items = scan_source(SourceConfig(kind, kind, str(dev_corpus / sub), speaker=speaker), EXTS)
    assert len(items) == expected
    problems = {i.rel_path: i.problem for i in items if i.problem}
    assert problems == ({"LICENSE.txt": "missing_audio"} if kind == "sidecar" else {})
    assert all(i.text for i in items) or kind == "longform"


def test_text_without_audio_is_an_item_of_every_layout(tmp_path):
    """Issue 25: a transcript whose audio is missing ends in an item (problem missing_audio), never nowhere."""
    side = tmp_path / "side"
    write(side / "spk" / "a.wav", voiced(1.0))
    (side / "spk" / "a.txt").write_text("with audio")
    (side / "spk" / "orphan.txt").write_text("no audio beside me")
    (side / "spk" / "song.mp3").write_bytes(b"ID3")
    (side / "spk" / "song.txt").write_text("audio of an extension not configured")
    items = by_name(scan_source(SourceConfig("sc", "sidecar", str(side)), EXTS))
    assert items["a.wav"].problem is None
    assert items["orphan.txt"].problem == "missing_audio" and items["orphan.txt"].text == "no audio beside me"
    assert items["orphan.txt"].speaker == "spk" and "song.mp3" in items["song.txt"].problem_detail

    ls = tmp_path / "ls" / "19" / "198"
    write(ls / "19-198-0000.flac", voiced(1.0))
    (ls / "19-198.trans.txt").write_text("19-198-0000 HELLO\n19-198-0001 GONE AWAY\n")
    (ls / "19-198-0002.normalized.txt").write_text("Gone too.")
    items = by_name(scan_source(SourceConfig("ls", "librispeech", str(tmp_path / "ls")), EXTS))
    assert items["19-198-0000.flac"].problem is None
    gone = items["19-198.trans.txt#19-198-0001"]
    assert (gone.problem, gone.text, gone.speaker) == ("missing_audio", "GONE AWAY", "19")
    assert "19-198.trans.txt:2" in gone.problem_detail
    assert items["19-198-0002.normalized.txt"].problem == "missing_audio"

    lj = tmp_path / "lj"
    write(lj / "elsewhere" / "LJ001-0001.wav", voiced(1.0))   # listed id, but not under wavs/
    (lj / "metadata.csv").write_text("LJ001-0001|text|text\n")
    items = scan_source(SourceConfig("lj", "ljspeech", str(lj)), EXTS)
    assert sorted((i.rel_path, i.problem) for i in items) == [
        ("elsewhere/LJ001-0001.wav", "missing_transcript"), ("wavs/LJ001-0001.wav", "missing_audio")]


def test_librispeech_assembled_from_symlinked_speaker_folders(tmp_path):
    """A split made of links to speaker folders (train/103 -> corpus/103): every linked speaker is
    listed, under the name it has in the split (Path.rglob before 3.13 skipped them all silently)."""
    corpus, split = tmp_path / "corpus", tmp_path / "split"
    for spk in ("19", "20"):
        write(corpus / spk / "1" / f"{spk}-1-0000.flac", voiced(1.0, seed=int(spk)))
        (corpus / spk / "1" / f"{spk}-1.trans.txt").write_text(f"{spk}-1-0000 SPEAKER {spk}\n")
        (split / spk).parent.mkdir(parents=True, exist_ok=True)
        (split / spk).symlink_to(corpus / spk, target_is_directory=True)
    items = by_name(scan_source(SourceConfig("ls", "librispeech", str(split)), EXTS))
    assert sorted(items) == ["19-1-0000.flac", "20-1-0000.flac"]
    assert items["20-1-0000.flac"].text == "SPEAKER 20" and items["20-1-0000.flac"].speaker == "20"
    assert items["19-1-0000.flac"].rel_path == "19/1/19-1-0000.flac"
