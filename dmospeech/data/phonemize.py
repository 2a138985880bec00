"""Phonemize every segment's text to IPA symbol ids (the `phonemes` table)."""
from __future__ import annotations

import pandas as pd

from dmospeech.config import PhonemizeTextConfig
from dmospeech.data.manifest import Lineage, frame, quarantine_row
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash, worker_cached
from dmospeech.data.text import Phonemizer, UnpronounceableText, Vocabulary, normalize_text, unpronounceable_characters


def phonemize_shard(texts: list[str], cfg: PhonemizeTextConfig, batch_size: int = 512) -> list[str]:
    """One executor task: IPA of normalised texts, with this process's espeak backend."""
    phonemizer = worker_cached(("phonemizer", cfg), lambda: Phonemizer(cfg))
    return [ipa for start in range(0, len(texts), batch_size) for ipa in phonemizer(texts[start:start + batch_size])]


def phonemize_segments(segments: pd.DataFrame, cfg: PhonemizeTextConfig, vocab: Vocabulary, lineage: Lineage,
                       executor: Executor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`phonemes`, `quarantine`) rows for `segments` (segment_id, text, duration_s, audio_path, source_sha256);
    espeak runs in shards by `executor` (this process when None)."""
    rows, quarantine, pending = [], [], []
    for seg in segments.itertuples(index=False):
        text = normalize_text(seg.text)
        bad = unpronounceable_characters(text)
        if not text:
            quarantine.append(quarantine_row(seg.segment_id, "segment", seg.audio_path, "empty_transcript",
                                             f"segment {seg.segment_id}: text is empty after normalisation",
                                             lineage, seg.source_sha256, seg.segment_id))
        elif bad:
            quarantine.append(quarantine_row(seg.segment_id, "segment", seg.audio_path, "unpronounceable",
                                             f"segment {seg.segment_id}: characters {bad} cannot be read by "
                                             f"espeak-ng {cfg.language}", lineage, seg.source_sha256, seg.segment_id))
        else:
            pending.append((seg, text))
    with executor or Executor(LOCAL) as ex:
        phonemized = ex.map(phonemize_shard, [text for _, text in pending], cfg)
    for (seg, text), ipa in zip(pending, phonemized):
        if isinstance(ipa, WorkerCrash):
            quarantine.append(quarantine_row(seg.segment_id, "segment", seg.audio_path, "worker_crash",
                                             f"segment {seg.segment_id} ({text!r}): {ipa.detail}", lineage,
                                             seg.source_sha256, seg.segment_id))
            continue
        try:
            ids = vocab.encode(ipa)
            if not any(vocab.symbols[i].isalpha() for i in ids):
                raise UnpronounceableText("espeak-ng produced no phonemes")
        except UnpronounceableText as err:
            quarantine.append(quarantine_row(seg.segment_id, "segment", seg.audio_path, "unpronounceable",
                                             f"segment {seg.segment_id} ({text!r}): {err}", lineage,
                                             seg.source_sha256, seg.segment_id))
            continue
        rows.append({"segment_id": seg.segment_id, "text_normalized": text, "phonemes": ipa,
                     "phoneme_ids": ids, "num_phonemes": len(ids),
                     "phonemes_per_second": len(ids) / seg.duration_s, "vocab_version": vocab.version,
                     "source_sha256": seg.source_sha256, "parent_id": seg.segment_id, **lineage.columns()})
    return frame("phonemes", rows), frame("quarantine", quarantine)
