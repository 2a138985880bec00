"""Semantic distillation into the codec's latents (train_codec.semantic), as Mimi, SpeechTokenizer and
X-Codec distil self-supervised features into a codec: the codec's semantic head (a k=3 convolution on
the posterior-mean latents, `CodecConfig.semantic_dim` wide) predicts the encoder states of the
packaged Whisper model on the same audio, with the recogniser's distillation loss (DistilHuBERT's L1 +
log-sigmoid cosine, dmospeech.data.whisper_states.distill_loss) on per-channel standardised states.

The states of each whole clip are computed once (in 30-s pieces) and cached in one safetensors file
per clip, named by the clip's id and region, the sha256 of its audio file and the encoder; a rerun
reads them. Training crops then start on the latent grid (a multiple of the hop), so crop frame j is
clip frame offset / hop + j, and each crop carries the states of its frames, resampled from 50 Hz to
the latents' 40 Hz over the whole clip.

A codec with `CodecConfig.semantic_input` reads the same states as an input of its encoder (X-Codec):
`whisper_input` computes them for any audio, standardised with the statistics the codec was trained with.

Shapes: b batch, t samples (48 kHz), n latent frames (40 Hz), m whisper frames (50 Hz), d whisper width.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import soxr
import torch
from safetensors import safe_open
from safetensors.torch import save
from torch.utils.data import Dataset

from dmospeech.config import CodecConfig, CodecSemanticConfig
from dmospeech.data.datasets import Clip, CropDataset, stack_audio
from dmospeech.data.manifest import sha256_file
from dmospeech.data.whisper_states import (WHISPER_RATE, WhisperEncoder, channel_stats, distill_loss,
                                           encoder_identity, read_region_16k, states_at_latent_rate)
from dmospeech.codec.model import Codec, frames_for_samples
from dmospeech.ops.runtime import cached_by_rank_zero

CACHE_VERSION = 1


def clip_states_path(cache_dir: Path, clip: Clip, audio_sha256: str, identity: str) -> Path:
    """The cache file of `clip`'s states: a key of the clip (id, region, audio content) and the encoder."""
    blob = json.dumps([CACHE_VERSION, identity, clip.clip_id, clip.start_s, clip.end_s, audio_sha256])
    key = hashlib.sha256(blob.encode()).hexdigest()[:32]
    return cache_dir / key[:2] / f"{key}.safetensors"


def clip_whisper_states(clips: Sequence[Clip], model: str, cache_dir: str | os.PathLike,
                        threads: int = 1) -> list[torch.Tensor]:
    """Each clip's (m, d) float16 Whisper encoder states (whole clip, 50 Hz), read from `cache_dir` when
    cached, else computed here by one encoder (loaded only then) and written atomically (temp file +
    rename). Under torchrun, rank 0 computes and the other ranks wait for its files."""
    cache_dir = Path(cache_dir)
    identity = encoder_identity(model)
    digests = {path: sha256_file(path) for path in {c.path for c in clips}}   # a file may hold many clips
    paths = [clip_states_path(cache_dir, c, digests[c.path], identity) for c in clips]

    def load() -> list[torch.Tensor] | None:
        if not all(p.exists() for p in paths):
            return None
        out = []
        for p in paths:
            with safe_open(str(p), framework="pt") as f:
                out.append(f.get_tensor("states"))
        return out

    found = cached_by_rank_zero(load, f"Whisper states of {len(clips)} clips in {cache_dir}")
    if found is not None:
        return found
    encoder = WhisperEncoder(model, threads)
    for clip, path in zip(clips, paths):
        if path.exists():
            continue
        audio = read_region_16k(clip.path, clip.start_s, clip.end_s, f"clip {clip.clip_id}")
        states = torch.from_numpy(encoder.encode([audio])[0]).to(torch.float16).contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(save({"states": states}, metadata={"clip_id": clip.clip_id, "encoder": identity}))
        os.replace(tmp, path)
    return load()


class SemanticTargets:
    """The Whisper states of training and validation clips at the latents' 40 Hz, standardised per
    channel with the training clips' statistics (as the recogniser's targets) or the given `stats`
    (mean, std), by clip."""

    def __init__(self, train_clips: Sequence[Clip], valid_clips: Sequence[Clip], cfg: CodecSemanticConfig,
                 sample_rate: int, hop_length: int, stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        if not train_clips:
            raise ValueError("SemanticTargets: no training clips to standardise the Whisper states with")
        clips = [*train_clips, *valid_clips]
        states = clip_whisper_states(clips, cfg.whisper_model, cfg.cache_dir, cfg.threads)
        self.mean, self.std = channel_stats(states[: len(train_clips)]) if stats is None else stats
        self.dim = int(self.mean.numel())
        self.frames: dict[Clip, torch.Tensor] = {}              # clip -> (n, d) float16, n = clip's latent frames
        for clip, s in zip(clips, states):
            n = frames_for_samples(int(clip.duration_s * sample_rate), hop_length)
            self.frames[clip] = ((states_at_latent_rate(s, n) - self.mean) / self.std).to(torch.float16)

    def crop(self, clip: Clip, first: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """States (count, d) float32 of latent frames first .. first + count - 1 of `clip` and their
        mask (count,): False (states 0) past the clip's last frame."""
        frames = self.frames[clip][first: first + count].float()
        states = torch.zeros(count, self.dim)
        states[: len(frames)] = frames
        return states, torch.arange(count) < len(frames)


class SemanticCrops(Dataset):
    """`crops` (aligned to the hop) with the states of each crop's latent frames:
    {"audio": (t,), "states": (n, d), "state_mask": (n,)}."""

    def __init__(self, crops: CropDataset, targets: SemanticTargets, hop_length: int):
        if crops.align % hop_length:
            raise ValueError(f"SemanticCrops: crops start on multiples of {crops.align} samples, not of the hop "
                             f"{hop_length}: their frames would not line up with the states'")
        self.crops, self.targets, self.hop_length = crops, targets, hop_length
        self.num_frames = frames_for_samples(crops.crop, hop_length)

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def durations(self) -> list[float]:
        return self.crops.durations

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        offset = self.crops.random_offset(i)
        states, mask = self.targets.crop(self.crops.clips[i], offset // self.hop_length, self.num_frames)
        return {"audio": self.crops.crop_at(i, offset), "states": states, "state_mask": mask}


def collate_semantic(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Items of SemanticCrops -> {"audio": (b, 1, t), "states": (b, n, d), "state_mask": (b, n)}."""
    return {"audio": stack_audio([it["audio"] for it in items]),
            "states": torch.stack([it["states"] for it in items]),
            "state_mask": torch.stack([it["state_mask"] for it in items])}


def semantic_loss(predicted: torch.Tensor, states: torch.Tensor, state_mask: torch.Tensor
                  ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The recogniser's distillation loss between the semantic head's prediction (b, n, d) and the
    standardised Whisper states (b, n, d) on the frames of `state_mask` (b, n).
    Returns ({"semantic/loss"}, {"semantic/loss", "semantic/cosine"})."""
    return distill_loss(predicted, states, state_mask, family="semantic")


@functools.lru_cache(maxsize=2)
def _whisper_encoder(name: str, threads: int) -> WhisperEncoder:
    return WhisperEncoder(name, threads)


def whisper_input(codec: Codec, audios: Sequence[np.ndarray], num_frames: int) -> torch.Tensor | None:
    """The encoder input of a codec with `semantic_input` (None without): each 48 kHz clip's Whisper
    states at the latents' 40 Hz (`num_frames` each), standardised with the codec's training statistics,
    (b, n, d) on the codec's device."""
    if not codec.cfg.semantic_input:
        return None
    return codec.standardised_whisper(raw_whisper_input(codec.cfg, audios, num_frames).to(codec.whisper_mean.device))


def raw_whisper_input(cfg: CodecConfig, audios: Sequence[np.ndarray], num_frames: int) -> torch.Tensor:
    """Each 48 kHz clip's states of the codec's `semantic_input` Whisper at 40 Hz, (b, num_frames, d), not
    standardised. The Whisper encoder is loaded once per process and model."""
    encoder = _whisper_encoder(cfg.semantic_input, torch.get_num_threads())
    if encoder.dim != cfg.semantic_input_dim:
        raise ValueError(f"the codec reads {cfg.semantic_input_dim}-wide Whisper states but {cfg.semantic_input!r} "
                         f"gives {encoder.dim}")
    states = encoder.encode([soxr.resample(a, cfg.sample_rate, WHISPER_RATE).astype(np.float32) for a in audios])
    return torch.stack([states_at_latent_rate(torch.from_numpy(s), num_frames) for s in states])
