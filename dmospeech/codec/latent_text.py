"""Training items of the latent models (teacher, critics, student): a segment's cached codec
latents (normalised with the global `LatentStats`) with its IPA phoneme ids and speaker.

Shapes: b batch, n latent frames (40 Hz), c latent channels, nt phonemes.

`latent_text_items(con, splits)` reads the items from the manifests (the `latents`, `segments`
and `phonemes` tables); `LatentTextDataset` serves them; `collate_latent_text` pads a batch:

    latents        (b, n, c) float, zero after each item's end
    latent_mask    (b, n)    bool, True on real frames
    phonemes       (b, nt)   long, 0 (the vocabulary's pad "_") after each item's end
    phoneme_mask   (b, nt)   bool
    speakers       (b,)      long, index into the dataset's sorted speaker list
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils.data import Dataset

from dmospeech.codec.latents import LatentStats, LatentStore, normalize

FRAME_RATE = 40  # latent frames per second (codec hop 1200 at 48 kHz)

LATENT_TEXT_SQL = """
    SELECT l.segment_id, s.speaker, s.split, p.phoneme_ids, l.shard, l.frame_offset, l.num_frames,
           s.audio_path, s.start_s, s.end_s, s.source_sha256
    FROM latents l JOIN segments s USING (segment_id) JOIN phonemes p USING (segment_id)
    WHERE s.split IN ({marks})
      AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.item_id = l.segment_id)
    ORDER BY l.num_frames DESC, l.segment_id"""


@dataclass(frozen=True)
class LatentTextItem:
    """One cached segment: where its latents are and what it says."""
    segment_id: str
    speaker: str
    split: str
    phoneme_ids: tuple[int, ...]
    shard: str
    frame_offset: int
    num_frames: int
    audio_path: str      # 48 kHz audio the latents were encoded from (critics' teachers read it)
    start_s: float
    end_s: float
    source_sha256: str

    @classmethod
    def from_dict(cls, saved: dict) -> "LatentTextItem":
        """Inverse of `dataclasses.asdict` after a JSON round trip (phoneme_ids come back as a list)."""
        return cls(**{**saved, "phoneme_ids": tuple(saved["phoneme_ids"])})


def training_and_held_out(manifests: Sequence[str], max_seconds: float, stage: str
                          ) -> tuple[list[LatentTextItem], list[LatentTextItem]]:
    """(train items, held-out valid + test items, longest first) of at most `max_seconds`, read from
    `manifests` (the data half's plus encode_latents'). Raises ValueError naming `stage` when either
    is empty."""
    from dmospeech.data.manifest import open_manifests

    con = open_manifests(manifests)
    max_frames = int(max_seconds * FRAME_RATE)
    train, held_out = latent_text_items(con, ["train"], max_frames), latent_text_items(con, ["valid", "test"], max_frames)
    con.close()
    if not train or not held_out:
        raise ValueError(f"{stage}: {len(train)} training and {len(held_out)} held-out segments with latents of at "
                         f"most {max_seconds} s; need at least one of each (check prepare_corpus.split, "
                         f"encode_latents and {stage}.max_seconds)")
    return train, held_out


def latent_text_items(con, splits: Sequence[str], max_frames: int | None = None) -> list[LatentTextItem]:
    """Items of `splits` that have latents and phonemes and are not quarantined, longest first.
    `con` is `open_manifests([...params.manifests(), encode_latents.manifest])`; items longer than
    `max_frames` (when given) are left out."""
    marks = ", ".join("?" for _ in splits)
    rows = con.execute(LATENT_TEXT_SQL.format(marks=marks), list(splits)).fetchall()
    items = [LatentTextItem(r[0], r[1], r[2], tuple(int(i) for i in r[3]), r[4], int(r[5]), int(r[6]), r[7],
                            float(r[8]), float(r[9]), r[10]) for r in rows]
    return [it for it in items if max_frames is None or it.num_frames <= max_frames]


class LatentTextDataset(Dataset):
    """Map-style dataset of `LatentTextItem`s: dataset[i] -> {"latents" (n, c) normalised,
    "phonemes" (nt,), "speaker" ()}."""

    def __init__(self, items: Sequence[LatentTextItem], store: LatentStore, stats: LatentStats, frame_rate: float,
                 speakers: Sequence[str] | None = None):
        if not items:
            raise ValueError("LatentTextDataset: no items (are there latents for these splits? run encode_latents)")
        empty = [it.segment_id for it in items if not it.phoneme_ids]
        if empty:
            raise ValueError(f"LatentTextDataset: segments without phonemes: {empty[:5]}")
        self.items = list(items)
        self.store, self.stats, self.frame_rate = store, stats, frame_rate
        self.speakers = sorted(speakers if speakers is not None else {it.speaker for it in self.items})
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def durations(self) -> list[float]:
        return [it.num_frames / self.frame_rate for it in self.items]

    def latents(self, i: int) -> torch.Tensor:
        """Normalised latents of item i, (n, c) float32."""
        item = self.items[i]
        return normalize(self.store.read(item.shard, item.frame_offset, item.num_frames).float(), self.stats)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.items[i]
        return {"latents": self.latents(i), "phonemes": torch.tensor(item.phoneme_ids, dtype=torch.long),
                "speaker": torch.tensor(self.speaker_index.get(item.speaker, -1)), "index": torch.tensor(i)}


def pad_stack(tensors: Sequence[torch.Tensor], value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors (l_i, ...) -> padded (b, max l, ...) and mask (b, max l), True on real positions."""
    longest = max(len(t) for t in tensors)
    out = tensors[0].new_full((len(tensors), longest, *tensors[0].shape[1:]), value)
    mask = torch.zeros(len(tensors), longest, dtype=torch.bool)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
        mask[i, : len(t)] = True
    return out, mask


def collate_latent_text(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of dataset items into one batch (see the module docstring)."""
    latents, latent_mask = pad_stack([it["latents"] for it in items])
    phonemes, phoneme_mask = pad_stack([it["phonemes"] for it in items], 0)
    return {"latents": latents, "latent_mask": latent_mask, "phonemes": phonemes, "phoneme_mask": phoneme_mask,
            "speakers": torch.stack([it["speaker"] for it in items]), "index": torch.stack([it["index"] for it in items])}
