"""Datasets over the 48 kHz segments of the manifests.

Shapes: b batch, t samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from dmospeech.ops.audio import read_region


@dataclass(frozen=True)
class Clip:
    """A region of a 48 kHz mono file."""
    clip_id: str
    path: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def clips_from_segments(segments: pd.DataFrame, project_root: Path = Path(".")) -> list[Clip]:
    """Clips for `segments` rows (segment_id, audio_path, start_s, end_s)."""
    return [Clip(s.segment_id, str(project_root / s.audio_path), float(s.start_s), float(s.end_s))
            for s in segments.itertuples(index=False)]


def load_clip(clip: Clip, sample_rate: int) -> np.ndarray:
    audio, sr = read_region(clip.path, clip.start_s, clip.end_s)
    if sr != sample_rate:
        raise ValueError(f"{clip.path} is {sr} Hz, expected {sample_rate}: run resample_audio")
    return audio


class CropDataset(Dataset):
    """Random fixed-length crops of clips (codec training). A clip shorter than the crop is
    zero-padded. Crop positions come from torch's RNG, so a resumed run repeats them; with `align`
    they are multiples of `align` samples (the codec's hop: crops then start on a latent frame)."""

    def __init__(self, clips: Sequence[Clip], crop_seconds: float, sample_rate: int, align: int = 1):
        self.clips = list(clips)
        self.crop = int(round(crop_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.align = align

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def durations(self) -> list[float]:
        return [self.crop / self.sample_rate] * len(self.clips)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.crop_at(i, self.random_offset(i))

    def random_offset(self, i: int) -> int:
        """A crop start in samples from clip i's start: a multiple of `align`, the crop inside the clip
        when the clip is long enough."""
        n = int(self.clips[i].duration_s * self.sample_rate)
        return int(torch.randint(0, max(1, (n - self.crop) // self.align + 1), ()).item()) * self.align

    def crop_at(self, i: int, offset: int) -> torch.Tensor:
        """(t,) samples of clip i from `offset`, zero-padded to the crop length."""
        clip, start = self.clips[i], offset / self.sample_rate
        audio, _ = read_region(clip.path, clip.start_s + start, clip.start_s + start + self.crop / self.sample_rate)
        out = torch.zeros(self.crop)
        out[: len(audio)] = torch.from_numpy(audio[: self.crop])
        return out


def stack_audio(items: Sequence[torch.Tensor]) -> torch.Tensor:
    """Equal-length (t,) crops -> (b, 1, t)."""
    return torch.stack(list(items))[:, None]


def validated_segments(con, splits: Sequence[str]) -> pd.DataFrame:
    """Segments usable for training (not flagged as cut off) in `splits`, with phonemes, longest first.
    `con` is `open_manifests(params.manifests())`."""
    marks = ", ".join("?" for _ in splits)
    return con.execute(
        f"SELECT s.* FROM segments s JOIN phonemes p USING (segment_id) "
        f"WHERE s.use_for_training AND s.split IN ({marks}) ORDER BY s.duration_s DESC, s.segment_id",
        list(splits)).df()


def audio_training_clips(manifests: Sequence[str], valid_clips: int, stage: str) -> tuple[list[Clip], list[Clip]]:
    """The validated training segments and the first `valid_clips` held-out ones (valid, test) as
    clips, for the stages that train on audio crops (train_codec, train_fast_decoder). Raises
    ValueError naming `stage` when either list is empty."""
    from dmospeech.data.manifest import open_manifests

    con = open_manifests(manifests)
    train = clips_from_segments(validated_segments(con, ["train"]))
    valid = clips_from_segments(validated_segments(con, ["valid", "test"]).head(valid_clips))
    if not train or not valid:
        raise ValueError(f"{stage}: {len(train)} training and {len(valid)} validation segments; need at least one "
                         "of each (check prepare_corpus.split and the manifests)")
    return train, valid
