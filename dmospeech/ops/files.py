"""Listing the files below a folder as a user who links corpora together expects.

`Path.rglob` before Python 3.13 does not descend into symlinked folders, so a corpus assembled from
links (`train/librispeech/103 -> /data/LibriSpeech/103`, a common way to split one corpus several
ways) lost every linked speaker without a word. `files_below` follows linked folders, visits each
real folder once (two links to one folder, or a link cycle, do not repeat or loop), and names files
by their path below `root` through the links, so relative names stay those the user laid out.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Iterable, Iterator, Optional


def files_below(root: str | os.PathLike, pattern: str = "*", suffixes: Optional[Iterable[str]] = None) -> list[Path]:
    """Sorted files below `root` (through symlinked folders) whose name matches the glob `pattern`
    and, with `suffixes` (".wav", ...; any case), whose suffix is one of them. Broken links are not files."""
    return sorted(iter_files_below(root, pattern, suffixes))


def iter_files_below(root: str | os.PathLike, pattern: str = "*", suffixes: Optional[Iterable[str]] = None
                     ) -> Iterator[Path]:
    """`files_below` as it walks, unsorted: `next()` on it stops at the first match."""
    wanted = None if suffixes is None else {s.lower() for s in suffixes}
    seen: set[str] = set()
    for folder, dirs, names in os.walk(Path(root), followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:          # a second link to a folder already listed, or a cycle
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in names:
            path = Path(folder, name)
            if (fnmatch.fnmatchcase(name, pattern) and (wanted is None or path.suffix.lower() in wanted)
                    and path.is_file()):
                yield path
