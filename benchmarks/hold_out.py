"""Splits corpus folders into OUT/train and OUT/valid with symbolic links, the same way every time, for the
learning benchmarks' `--train DIR... --valid DIR...` (no audio is copied).

Each folder's layout is recognised as the benchmarks read it (`dmospeech.codec.folder_corpus.detect_source`):
- a LibriSpeech-style root (one folder per speaker): `--speakers N` speakers are held out, taken evenly
  spaced through the sorted speaker ids; the others are linked into train;
- a folder of audio with same-stem .txt transcripts (one speaker): `--recordings N` recordings are held out,
  evenly spaced through the sorted file names;
- any other layout (metadata.csv, manifest.csv): linked whole into train.

Usage: python benchmarks/hold_out.py --out OUT [--speakers 10] [--recordings 10] [--params params.yaml]
       FOLDER [FOLDER ...]
Prints what went where. OUT/train/<folder name> and OUT/valid/<folder name> are the folders to pass.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from dmospeech.codec.folder_corpus import detect_source
from dmospeech.config import PrepareCorpusConfig, load_params
from dmospeech.data.sources import scan_source


def evenly_spaced(names: list[str], n: int) -> set[str]:
    """`n` of the sorted `names`, spread over the whole list (the same ones on every machine)."""
    names = sorted(names)
    if n <= 0:
        return set()
    if n >= len(names):
        raise ValueError(f"cannot hold out {n} of {len(names)}: training would be empty")
    return {names[(2 * i + 1) * len(names) // (2 * n)] for i in range(n)}


def plan(folder: Path, out: Path, speakers: int, recordings: int, extensions: tuple[str, ...]
         ) -> tuple[dict[Path, Path], dict[str, int]]:
    """{link in OUT: what it points to} for one corpus folder, and the counts. A one-speaker folder's
    recordings are those its source adapter finds usable (audio with a non-empty transcript)."""
    source = detect_source(folder)
    train, valid = out / "train" / folder.name, out / "valid" / folder.name
    if source.kind == "librispeech" and source.speaker is None:
        ids = [p.name for p in folder.iterdir() if p.is_dir()]
        held = evenly_spaced(ids, speakers)
        links = {(valid if spk in held else train) / spk: folder / spk for spk in ids}
        return links, {"train speakers": len(ids) - len(held), "valid speakers": len(held)}
    if source.kind == "sidecar":
        items = [item for item in scan_source(source, extensions) if item.problem is None]
        held = evenly_spaced([item.rel_path for item in items], recordings)
        links = {}
        for item in items:
            side = valid if item.rel_path in held else train
            links |= {side / part.name: part for part in (item.path, item.path.with_suffix(".txt"))}
        return links, {"train recordings": len(items) - len(held), "valid recordings": len(held)}
    return {train: folder}, {"train": 1}


def existing_links(out: Path, name: str) -> dict[Path, Path]:
    found = {}
    for side in ("train", "valid"):
        top = out / side / name
        if top.is_symlink():
            found[top] = top.resolve()
        elif top.is_dir():
            found |= {p: p.resolve() for p in top.iterdir()}
    return found


def split_folder(folder: Path, out: Path, speakers: int, recordings: int,
                 extensions: tuple[str, ...] = PrepareCorpusConfig.audio_extensions) -> dict[str, int]:
    """Links `folder`'s split into OUT/train/<name> and OUT/valid/<name>; a rerun with the same split is a
    no-op, and OUT holding another split of the folder is refused (a speaker must never be on both sides)."""
    links, counts = plan(folder, out, speakers, recordings, extensions)
    wanted = {path: target.resolve() for path, target in links.items()}
    existing = existing_links(out, folder.name)
    if existing and existing != wanted:
        raise FileExistsError(f"{out} already holds another split of {folder.name}; use a new --out")
    for path, target in wanted.items():
        if path not in existing:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, path)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--speakers", type=int, default=10, help="speakers held out of a LibriSpeech-style root")
    parser.add_argument("--recordings", type=int, default=10, help="recordings held out of a one-speaker folder")
    parser.add_argument("--params", default="params.yaml", help="its prepare_corpus.audio_extensions")
    args = parser.parse_args()
    extensions = tuple(load_params(args.params).prepare_corpus.audio_extensions)
    for folder in args.folders:
        print(f"{folder.name}: {split_folder(folder, args.out, args.speakers, args.recordings, extensions)}")


if __name__ == "__main__":
    main()
