"""Phonemize every segment's text to IPA symbol ids (the `phonemes` table)."""
from __future__ import annotations

import pandas as pd

from dmospeech.config import PhonemizeTextConfig
from dmospeech.data.manifest import Lineage, frame, quarantine_row
from dmospeech.data.text import Phonemizer, UnpronounceableText, Vocabulary, normalize_text, unpronounceable_characters


def phonemize_segments(segments: pd.DataFrame, cfg: PhonemizeTextConfig, vocab: Vocabulary, lineage: Lineage,
                       batch_size: int = 512) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`phonemes`, `quarantine`) rows for `segments` (segment_id, text, duration_s, audio_path, source_sha256)."""
    phonemizer = Phonemizer(cfg)
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
    for start in range(0, len(pending), batch_size):
        batch = pending[start:start + batch_size]
        for (seg, text), ipa in zip(batch, phonemizer([t for _, t in batch])):
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
