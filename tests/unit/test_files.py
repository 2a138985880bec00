"""files_below: symlinked folders followed, each real folder once, broken links skipped."""
from pathlib import Path

from dmospeech.ops.files import files_below


def make(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_follows_linked_folders_once_and_names_files_through_the_link(tmp_path):
    data, root = tmp_path / "data", tmp_path / "root"
    make(data / "spk" / "a.wav")
    make(data / "spk" / "deep" / "b.FLAC")
    make(root / "own" / "c.wav")
    make(root / "own" / "notes.txt")
    (root / "linked").symlink_to(data / "spk", target_is_directory=True)
    (root / "again").symlink_to(data / "spk", target_is_directory=True)    # a second link to the same folder
    (root / "own" / "loop").symlink_to(root, target_is_directory=True)       # a cycle
    (root / "own" / "dangling.wav").symlink_to(tmp_path / "missing.wav")     # a broken link is no file
    found = files_below(root, suffixes=(".wav", ".flac"))
    assert [p.relative_to(root).as_posix() for p in found] == ["again/a.wav", "again/deep/b.FLAC", "own/c.wav"]
    assert [p.name for p in files_below(root, "*.txt")] == ["notes.txt"]
    assert len(files_below(root)) == 4


def test_a_plain_tree_is_listed_sorted(tmp_path):
    for name in ("b/2.wav", "a/1.wav", "a/z/3.wav"):
        make(tmp_path / name)
    assert [p.relative_to(tmp_path).as_posix() for p in files_below(tmp_path, "*.wav")] == ["a/1.wav", "a/z/3.wav",
                                                                                             "b/2.wav"]
