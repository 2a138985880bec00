"""Source adapters: each turns one corpus layout into `SourceItem`s (path, speaker, text).

Layouts (params `prepare_corpus.sources[].kind`):
- librispeech: `spk/chapter/*.flac|wav` with `spk-chapter.trans.txt` (LibriSpeech) or
  `<utt>.normalized.txt` next to each file (LibriTTS);
- ljspeech: `metadata.csv` (`id|text|normalized text`) and `wavs/<id>.wav`;
- sidecar: `x.wav` + `x.txt` anywhere below the root (every `.txt` is a transcript);
- csv: a CSV manifest with columns path, speaker, text (paths relative to the CSV's folder);
- longform: untranscribed audio, one speaker per top-level folder (LibriLight style).
Problems found here (missing or empty transcript, missing file) travel with the item as a
quarantine reason; nothing is dropped. Text without audio becomes a `missing_audio` item, so every
input, audio or text, ends in the manifests: a sidecar or `.normalized.txt` file is named by its
path, a `.trans.txt` line by `<trans file>#<utterance>`, a metadata or CSV row by the audio it names.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dmospeech.config import SourceConfig
from dmospeech.ops.files import files_below


class SourceError(ValueError):
    """A source whose layout is wrong as a whole (not one bad file)."""


@dataclass(frozen=True)
class SourceItem:
    path: Path
    rel_path: str
    speaker: str
    text: str | None
    transcribed: bool
    problem: str | None = None
    problem_detail: str | None = None


def _default_speaker(source: SourceConfig, root: Path, path: Path) -> str:
    """The configured speaker, else the first folder below the root, else the root's name."""
    if source.speaker:
        return source.speaker
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else root.name


def _item(source: SourceConfig, root: Path, path: Path, text: str | None, transcribed: bool = True,
          speaker: str | None = None) -> SourceItem:
    speaker = speaker or _default_speaker(source, root, path)
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    if not path.exists():
        return SourceItem(path, rel, speaker, text, transcribed, "missing_audio", f"{path} is listed but does not exist")
    if transcribed and text is None:
        return SourceItem(path, rel, speaker, None, True, "missing_transcript", f"no transcript found for {rel}")
    if transcribed and not text.strip():
        return SourceItem(path, rel, speaker, text, True, "empty_transcript", f"the transcript of {rel} is empty")
    return SourceItem(path, rel, speaker, text.strip() if text else text, transcribed)


def _missing_audio(source: SourceConfig, root: Path, path: Path, text: str, detail: str) -> SourceItem:
    """A transcript with no audio: an item named by the transcript (`path`) with problem missing_audio."""
    return SourceItem(path, str(path.relative_to(root)), _default_speaker(source, root, path), text.strip(), True,
                      "missing_audio", detail)


def scan_librispeech(source: SourceConfig, root: Path, exts: tuple[str, ...]) -> Iterator[SourceItem]:
    transcripts: dict[str, tuple[str, Path, int]] = {}
    for trans in files_below(root, "*.trans.txt"):
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                utt, _, text = line.strip().partition(" ")
                transcripts[utt] = (text, trans, n)
    audio = files_below(root, suffixes=exts)
    for path in audio:
        text = transcripts[path.stem][0] if path.stem in transcripts else None
        normalized = path.with_name(f"{path.stem}.normalized.txt")
        if text is None and normalized.exists():
            text = normalized.read_text(encoding="utf-8")
        yield _item(source, root, path, text)
    stems, beside = {path.stem for path in audio}, {(path.parent, path.stem) for path in audio}
    for utt, (text, trans, n) in transcripts.items():
        if utt not in stems:
            yield _missing_audio(source, root, Path(f"{trans}#{utt}"), text,
                                 f"{trans}:{n} transcribes {utt}, but no audio file {utt}.* ({', '.join(exts)}) exists")
    for normalized in files_below(root, "*.normalized.txt"):
        utt = normalized.name.removesuffix(".normalized.txt")
        if (normalized.parent, utt) not in beside:
            yield _missing_audio(source, root, normalized, normalized.read_text(encoding="utf-8"),
                                 f"no audio file {utt}.* ({', '.join(exts)}) beside {normalized}")


def scan_ljspeech(source: SourceConfig, root: Path, exts: tuple[str, ...]) -> Iterator[SourceItem]:
    metadata = root / "metadata.csv"
    if not metadata.exists():
        raise SourceError(f"source {source.name!r}: {metadata} not found (kind ljspeech needs metadata.csv)")
    speaker = source.speaker or root.name
    listed = {}
    for n, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise SourceError(f"{metadata}:{n}: expected 'id|text|normalized text', got {line!r}")
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        listed[fields[0]] = text
    for utt, text in listed.items():
        yield _item(source, root, root / "wavs" / f"{utt}.wav", text, speaker=speaker)
    wavs = {root / "wavs" / f"{utt}.wav" for utt in listed}
    for path in files_below(root, suffixes=exts):
        if path not in wavs:
            yield _item(source, root, path, None, speaker=speaker)


def scan_sidecar(source: SourceConfig, root: Path, exts: tuple[str, ...]) -> Iterator[SourceItem]:
    audio = files_below(root, suffixes=exts)
    for path in audio:
        txt = path.with_suffix(".txt")
        yield _item(source, root, path, txt.read_text(encoding="utf-8") if txt.exists() else None)
    with_audio = {path.with_suffix(".txt") for path in audio}
    for txt in (p for p in files_below(root, "*.txt") if p not in with_audio):
        others = sorted(p.name for p in txt.parent.iterdir() if p.stem == txt.stem and p != txt)
        beside = f"; {', '.join(others)} beside it is not in prepare_corpus.audio_extensions" if others else ""
        yield _missing_audio(source, root, txt, txt.read_text(encoding="utf-8"),
                             f"no audio file {txt.stem}.* ({', '.join(exts)}) beside {txt}{beside}")


def scan_csv(source: SourceConfig, root: Path, exts: tuple[str, ...]) -> Iterator[SourceItem]:
    manifest = root
    if not manifest.is_file():
        raise SourceError(f"source {source.name!r}: kind csv needs a CSV file, {manifest} is not one")
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "speaker", "text"} - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"{manifest}: missing column(s) {sorted(missing)}; need path, speaker, text")
        for row in reader:
            path = (manifest.parent / row["path"]).resolve()
            speaker = (row["speaker"] or "").strip() or source.speaker or manifest.parent.name
            yield _item(source, manifest.parent, path, row["text"] or "", speaker=speaker)


def scan_longform(source: SourceConfig, root: Path, exts: tuple[str, ...]) -> Iterator[SourceItem]:
    for path in files_below(root, suffixes=exts):
        speaker = source.speaker or (path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1
                                     else path.stem)
        yield _item(source, root, path, None, transcribed=False, speaker=speaker)


ADAPTERS: dict[str, Callable[[SourceConfig, Path, tuple[str, ...]], Iterator[SourceItem]]] = {
    "librispeech": scan_librispeech, "ljspeech": scan_ljspeech, "sidecar": scan_sidecar,
    "csv": scan_csv, "longform": scan_longform,
}


def scan_source(source: SourceConfig, extensions: tuple[str, ...], base: Path = Path(".")) -> list[SourceItem]:
    """Every item of one source, sorted by path. Relative source paths resolve against `base`."""
    root = (base / source.path).resolve()
    if not root.exists():
        raise SourceError(f"source {source.name!r}: path {root} does not exist (params prepare_corpus.sources)")
    return sorted(ADAPTERS[source.kind](source, root, extensions), key=lambda item: str(item.path))
