"""Text normalisation, IPA phonemization (phonemizer + espeak-ng) and the versioned IPA vocabulary.

Phoneme sequences are symbol-level: one id per IPA character (stress and length marks,
punctuation and word spaces included), ids indexing `symbols` of the vocabulary file.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dmospeech.config import PhonemizeTextConfig

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "–": "-", "‐": "-"})


class UnpronounceableText(ValueError):
    """Text that espeak cannot turn into phonemes of the configured language."""


def normalize_text(text: str) -> str:
    """NFKC, straight quotes, no control characters, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def unpronounceable_characters(text: str) -> list[str]:
    """Characters a Latin-script espeak voice would not read as written: letters of other scripts,
    symbols and emoji (category S* except currency and math signs espeak names), unassigned."""
    bad = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat.startswith("L") and "LATIN" not in unicodedata.name(ch, ""):
            bad.append(ch)
        elif cat in ("So", "Sk", "Co", "Cn"):
            bad.append(ch)
    return sorted(set(bad))


@dataclass(frozen=True)
class Vocabulary:
    version: str
    symbols: tuple[str, ...]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"IPA vocabulary {path} not found (params phonemize_text.vocab_path)")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["version"], tuple(data["symbols"]))

    @cached_property
    def index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, phonemes: str) -> list[int]:
        """Symbol ids of an IPA string; a symbol outside the vocabulary is an UnpronounceableText."""
        index = self.index
        unknown = sorted({ch for ch in phonemes if ch not in index})
        if unknown:
            raise UnpronounceableText(f"IPA symbols {unknown} are not in vocabulary {self.version}")
        return [index[ch] for ch in phonemes]


class Phonemizer:
    """One espeak-ng backend, reused for every call (starting espeak is the slow part)."""

    def __init__(self, cfg: PhonemizeTextConfig):
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator

        self.backend = EspeakBackend(cfg.language, preserve_punctuation=cfg.preserve_punctuation,
                                     with_stress=cfg.with_stress, language_switch="remove-flags",
                                     words_mismatch="ignore")
        self.separator = Separator(phone="", word=" ", syllable="")

    def __call__(self, texts: list[str]) -> list[str]:
        """IPA strings for already-normalised texts (one espeak call for the whole batch)."""
        if not texts:
            return []
        return [p.strip() for p in self.backend.phonemize(texts, separator=self.separator, strip=True, njobs=1)]
