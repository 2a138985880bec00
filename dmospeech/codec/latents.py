"""The latent cache: every training segment encoded once by the codec, stored in safetensors shards.

Shapes: b batch, t samples (48 kHz), n latent frames (40 Hz), c latent channels (64).

A shard holds one float32 tensor `latents` (frames, c): segments concatenated along time, never
split across shards. The `latents` table gives each segment's shard, frame_offset and num_frames,
with num_frames = ceil(num_samples / hop). `LatentStats` (global per-channel mean and std) is what
the diffusion stages normalise with.

Batches hold segments of equal frame count only. DAC's convolutions see past a segment's end, so
zero-padding a short segment up to a longer one changes its last ~5 frames (by up to 1e-3 for a
randomly initialised tiny codec, 10% of the latents' scale); a segment padded to its own frame
count is exactly what `Codec.encode` does when it encodes that segment alone.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save

from dmospeech.ops.atomic import write_json_atomic
from dmospeech.config import EncodeLatentsConfig
from dmospeech.data.datasets import Clip, load_clip
from dmospeech.data.manifest import Lineage, frame
from dmospeech.codec.model import Codec, frames_for_samples, reparameterize
from dmospeech.codec.semantic import whisper_input
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash, group_by_size
from dmospeech.ops.runtime import release_freed_memory

# The segments that get latents: every segment marked for training (all splits) whose audio row
# exists and that no stage quarantined. Columns feed `clips_from_segments` and the lineage.
TRAINING_SEGMENTS_SQL = """
    SELECT g.segment_id, a.audio_path, g.start_s, g.end_s, g.source_sha256
    FROM segments g JOIN audio a USING (file_id)
    WHERE g.use_for_training
      AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.item_id = g.segment_id)
    ORDER BY g.segment_id"""

SHARD_TENSOR = "latents"
SHARD_GLOB = "shard_*.safetensors"
STD_FLOOR = 1e-5  # normalize() divides by max(std, STD_FLOOR): a constant channel stays finite


class NonFiniteLatentsError(ValueError):
    """The codec produced NaN or Inf latents for a segment."""


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class LatentStats:
    """Global per-channel mean and std over every cached frame (the stats JSON)."""

    mean: tuple[float, ...]   # (c,)
    std: tuple[float, ...]    # (c,)
    frames: int
    codec_checkpoint: str

    def write(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, asdict(self), indent=2, nonfinite="error")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatentStats":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"latent stats {path} do not exist: run `dvc repro encode_latents`")
        data = json.loads(path.read_text())
        return cls(tuple(data["mean"]), tuple(data["std"]), int(data["frames"]), data["codec_checkpoint"])


class ChannelMoments:
    """Running per-channel sums (float64) of (n, c) latents."""

    def __init__(self, channels: int):
        self.sum = np.zeros(channels, np.float64)
        self.sum_sq = np.zeros(channels, np.float64)
        self.frames = 0

    def add(self, latents: np.ndarray) -> None:
        z = latents.astype(np.float64)
        self.sum += z.sum(axis=0)
        self.sum_sq += np.square(z).sum(axis=0)
        self.frames += len(z)

    def stats(self, codec_checkpoint: str) -> LatentStats:
        mean = self.sum / self.frames
        std = np.sqrt(np.maximum(self.sum_sq / self.frames - np.square(mean), 0.0))
        return LatentStats(tuple(mean.tolist()), tuple(std.tolist()), self.frames, codec_checkpoint)


def _channel_stats(latents: torch.Tensor, stats: LatentStats) -> tuple[torch.Tensor, torch.Tensor]:
    if latents.shape[-1] != len(stats.mean):
        raise ValueError(f"latents have {latents.shape[-1]} channels in the last dimension; the stats (codec "
                         f"{stats.codec_checkpoint}) have {len(stats.mean)}: pass (..., c) latents")
    mean = torch.tensor(stats.mean, dtype=latents.dtype, device=latents.device)
    std = torch.tensor(stats.std, dtype=latents.dtype, device=latents.device).clamp(min=STD_FLOOR)
    return mean, std


def normalize(latents: torch.Tensor, stats: LatentStats) -> torch.Tensor:
    """(..., c) codec latents -> zero mean, unit std per channel."""
    mean, std = _channel_stats(latents, stats)
    return (latents - mean) / std


def denormalize(latents: torch.Tensor, stats: LatentStats) -> torch.Tensor:
    """Inverse of `normalize`: (..., c) normalised latents -> codec latents."""
    mean, std = _channel_stats(latents, stats)
    return latents * std + mean


# ----------------------------------------------------------------------------- shards
def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


def remove_stale_shards(out_dir: Path, keep: set[str]) -> None:
    """Delete shards of an earlier run that this run did not write."""
    for path in Path(out_dir).glob(SHARD_GLOB):
        if path.name not in keep:
            path.unlink()


def run_planned_shards(executor: Executor, fn: Callable[..., list], plan: list[tuple[int, list]], out_dir: Path,
                       *args: Any, what: str, resources: Optional[dict] = None,
                       progress: Optional[Callable[[int], None]] = None) -> list:
    """`fn` over a plan of (index, items) groups, one task each writing `shard_name(index)` into
    `out_dir`; fails naming the group whose task killed its workers every time, then deletes the
    shards of an earlier run. Returns each group's result, in plan order."""
    done = executor.map(fn, plan, *args, shard_size=1, resources=resources, progress=progress)
    for (index, group), result in zip(plan, done):
        if isinstance(result, WorkerCrash):
            raise RuntimeError(f"{what}: shard {index} ({len(group)} items) killed its worker every time: "
                               f"{result.detail}")
    remove_stale_shards(out_dir, {shard_name(index) for index, _ in plan})
    return done


def write_shard(path: Path, latents: torch.Tensor) -> None:
    """One (frames, c) shard file, written atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(save({SHARD_TENSOR: latents.contiguous()}))  # save_file would make it 0600
    os.replace(tmp, path)


class ShardWriter:
    """Appends (n, c) segments to the current shard and writes it (temp file + rename) once the
    next segment would take it past `shard_frames`; a longer segment gets a shard of its own."""

    def __init__(self, out_dir: str | os.PathLike, shard_frames: int):
        if shard_frames < 1:
            raise ValueError(f"encode_latents.shard_frames must be at least 1, got {shard_frames}")
        self.out_dir = Path(out_dir)
        self.shard_frames = shard_frames
        self.pending: list[torch.Tensor] = []
        self.pending_frames = 0
        self.written: list[str] = []

    @property
    def current(self) -> str:
        return shard_name(len(self.written))

    def add(self, latents: torch.Tensor) -> tuple[str, int]:
        """Queue (n, c) latents; returns (shard name, frame offset) where they will be stored."""
        if self.pending and self.pending_frames + len(latents) > self.shard_frames:
            self.flush()
        where = (self.current, self.pending_frames)
        self.pending.append(latents)
        self.pending_frames += len(latents)
        return where

    def flush(self) -> None:
        if not self.pending:
            return
        path = self.out_dir / self.current
        write_shard(path, torch.cat(self.pending))
        self.written.append(path.name)
        self.pending, self.pending_frames = [], 0

    def remove_stale(self) -> None:
        """Delete shards of an earlier run that this run did not write."""
        remove_stale_shards(self.out_dir, set(self.written))


INDEX_FILE = "index.json"


def read_keyed_index(cache_dir: Path, key: str) -> Optional[dict]:
    """The index of a cache of derived latents (speaker copies, speed copies) when it was written for
    `key`, else None. The index is written last, so its presence means the shards beside it are whole."""
    index = Path(cache_dir) / INDEX_FILE
    if not index.exists():
        return None
    saved = json.loads(index.read_text(encoding="utf-8"))
    return saved if saved["key"] == key else None


class LatentStore:
    """Reads segments' latents back from the shards in `out_dir` (memory-mapped, one handle per shard)."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self._handles: dict[str, Any] = {}

    def __getstate__(self) -> dict:  # DataLoader workers open their own handles
        return {"out_dir": self.out_dir, "_handles": {}}

    def _slice(self, shard: str) -> Any:
        if shard not in self._handles:
            path = self.out_dir / shard
            if not path.exists():
                raise FileNotFoundError(f"latent shard {path} does not exist: run `dvc repro encode_latents`")
            self._handles[shard] = safe_open(str(path), framework="pt")
        return self._handles[shard].get_slice(SHARD_TENSOR)

    def read(self, shard: str, frame_offset: int, num_frames: int) -> torch.Tensor:
        """One segment's latents, (n, c) float32."""
        tensor = self._slice(shard)
        total = tensor.get_shape()[0]
        if frame_offset < 0 or num_frames < 1 or frame_offset + num_frames > total:
            raise ValueError(f"cannot read frames [{frame_offset}, {frame_offset + num_frames}) of {shard}, which "
                             f"holds {total}: the latents table does not match {self.out_dir}; rerun encode_latents")
        return tensor[frame_offset: frame_offset + num_frames]

    def read_row(self, row: Any) -> torch.Tensor:
        """Latents of one `latents` table row (anything with shard, frame_offset, num_frames)."""
        return self.read(row.shard, int(row.frame_offset), int(row.num_frames))


# ----------------------------------------------------------------------------- encoding
def equal_frame_batches(clips: Sequence[Clip], sample_rate: int, hop_length: int,
                        batch_seconds: float) -> Iterator[list[tuple[Clip, np.ndarray]]]:
    """Clips loaded shortest first and grouped into batches of equal frame count whose padded
    audio totals at most `batch_seconds` (a longer clip is a batch of its own)."""
    batch: list[tuple[Clip, np.ndarray]] = []
    frames = 0
    for clip in sorted(clips, key=lambda c: (c.duration_s, c.clip_id)):
        audio = load_clip(clip, sample_rate)
        if len(audio) == 0:
            raise ValueError(f"segment {clip.clip_id}: no audio in {clip.path} between {clip.start_s} and "
                             f"{clip.end_s} s; the segments manifest does not match the audio: rerun segment_audio")
        n = frames_for_samples(len(audio), hop_length)
        if batch and (n != frames or (len(batch) + 1) * n * hop_length > batch_seconds * sample_rate):
            yield batch
            batch = []
        batch.append((clip, audio))
        frames = n
    if batch:
        yield batch


def _segment_noise(segment_id: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise seeded by the segment id: a sample does not depend on batching."""
    generator = torch.Generator().manual_seed(int(hashlib.sha256(segment_id.encode()).hexdigest()[:15], 16))
    return torch.randn(shape, generator=generator)


@torch.no_grad()
def encode_audio(codec: Codec, audios: Sequence[np.ndarray], segment_ids: Sequence[str],
                 use_mean: bool) -> list[torch.Tensor]:
    """Audio of equal frame count -> one (n, c) float32 CPU tensor per item: the posterior mean, or
    z = mean + exp(logscale) * eps (eq. 11) with eps seeded by the segment id."""
    hop = codec.hop_length
    n = frames_for_samples(len(audios[0]), hop)
    device = next(codec.parameters()).device
    audio = torch.zeros(len(audios), 1, n * hop)  # (b, 1, t) zero-padded as Codec.pad would
    for i, samples in enumerate(audios):
        if frames_for_samples(len(samples), hop) != n:
            raise ValueError(f"encode_audio needs equal frame counts; segment {segment_ids[i]} has "
                             f"{frames_for_samples(len(samples), hop)}, not {n}")
        audio[i, 0, : len(samples)] = torch.from_numpy(samples)
    whisper = whisper_input(codec, list(audios), n)  # (b, n, d) when the encoder reads Whisper states
    mean, logscale = codec.encode(audio.to(device), whisper)  # (b, c, n) each
    latents = mean
    if not use_mean:
        eps = torch.stack([_segment_noise(sid, tuple(mean.shape[1:])) for sid in segment_ids]).to(device)
        latents = reparameterize(mean, logscale, eps)   # eq. 11
    return list(latents.float().cpu().transpose(1, 2).contiguous())  # b x (n, c)


def check_finite(latents: torch.Tensor, clip: Clip, codec_checkpoint: str) -> None:
    """Raise NonFiniteLatentsError naming the segment when any latent value is NaN or Inf."""
    bad = int((~torch.isfinite(latents)).sum())
    if bad:
        raise NonFiniteLatentsError(
            f"segment {clip.clip_id} ({clip.path}, {clip.start_s:.3f}-{clip.end_s:.3f} s): codec {codec_checkpoint} "
            f"produced {bad} non-finite latent values (NaN/Inf) of {latents.numel()}; check that segment's audio "
            "and the codec checkpoint (was its training loss finite?)")


def plan_shards(clips: Sequence[Clip], sample_rate: int, hop_length: int, shard_frames: int) -> list[list[Clip]]:
    """Clips shortest first, grouped into latent shards of at most `shard_frames` frames (a longer
    clip is a shard of its own). The plan depends on the clips and params only, never on the
    executor, so every engine writes the same shard files."""
    if shard_frames < 1:
        raise ValueError(f"encode_latents.shard_frames must be at least 1, got {shard_frames}")
    ordered = sorted(clips, key=lambda c: (c.duration_s, c.clip_id))
    return group_by_size(ordered, [frames_for_samples(round(c.duration_s * sample_rate), hop_length) for c in ordered],
                         shard_frames)


def encode_shard(shards: list[tuple[int, list[Clip]]], codec: Codec, cfg: EncodeLatentsConfig, out_dir: str,
                 sample_rate: int, codec_checkpoint: str,
                 threads: int) -> list[tuple[list[dict], tuple[np.ndarray, np.ndarray, int]]]:
    """One executor task: encode each planned shard's clips (equal-frame batches), check them, write
    `shard_<index>.safetensors` (temp file + rename) and return its rows and channel sums.

    Runs on `threads` intra-op threads in every engine: oneDNN's convolutions sum in an order that
    depends on the thread count, so equal counts are what makes the latents bit-identical."""
    codec = codec.to(cfg.device).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _encode_planned(shards, codec, cfg, out_dir, sample_rate, codec_checkpoint)
    finally:
        torch.set_num_threads(before)


def _encode_planned(shards: list[tuple[int, list[Clip]]], codec: Codec, cfg: EncodeLatentsConfig, out_dir: str,
                    sample_rate: int, codec_checkpoint: str) -> list[tuple[list[dict], tuple[np.ndarray, np.ndarray, int]]]:
    results = []
    for index, clips in shards:
        name, pieces, rows, offset = shard_name(index), [], [], 0
        moments = ChannelMoments(codec.cfg.latent_dim)
        for batch in equal_frame_batches(clips, sample_rate, codec.hop_length, cfg.batch_seconds):
            latents = encode_audio(codec, [audio for _, audio in batch], [clip.clip_id for clip, _ in batch],
                                   cfg.use_mean)
            release_freed_memory()  # every clip length is a new shape: glibc's heap would only grow
            for (clip, audio), z in zip(batch, latents):  # z: (n, c)
                check_finite(z, clip, codec_checkpoint)
                moments.add(z.numpy())
                z64 = z.double()
                rows.append({"segment_id": clip.clip_id, "shard": name, "frame_offset": offset, "num_frames": len(z),
                             "num_samples": len(audio), "mean": float(z64.mean()),
                             "std": float(z64.std(correction=0)), "min": float(z64.min()), "max": float(z64.max())})
                pieces.append(z)
                offset += len(z)
        write_shard(Path(out_dir) / name, torch.cat(pieces))
        results.append((rows, (moments.sum, moments.sum_sq, moments.frames)))
    return results


def encode_segments(codec: Codec, clips: Sequence[Clip], cfg: EncodeLatentsConfig, lineage: Lineage,
                    out_dir: str | os.PathLike, sample_rate: int, *, codec_checkpoint: str,
                    source_sha256: Mapping[str, str], progress: Optional[Callable[[int], None]] = None,
                    executor: Optional[Executor] = None) -> tuple[pd.DataFrame, LatentStats]:
    """Encode every clip (a training segment) with `codec`; write the shards into `out_dir` (removing
    shards of an earlier run) and the global stats to `cfg.stats_path`.

    Each planned shard is one executor task (this process when `executor` is None; on a GPU device
    only on workers with resources {GPU: 1}). Returns the `latents` table rows and the stats.
    `source_sha256` maps each segment id to its source file hash (lineage); `progress`, if given, is
    told the number of segments of each finished task. Raises NonFiniteLatentsError naming the
    first segment whose latents hold NaN or Inf.
    """
    if sample_rate != codec.cfg.sample_rate:
        raise ValueError(f"the codec {codec_checkpoint} is {codec.cfg.sample_rate} Hz but the audio is {sample_rate} Hz")
    if not clips:
        raise ValueError("no segments to encode: the manifests hold no training segments (check validate_manifest)")
    missing = [clip.clip_id for clip in clips if clip.clip_id not in source_sha256]
    if missing:
        raise ValueError(f"no source_sha256 for segment(s) {missing[:5]} ({len(missing)} in all)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = list(enumerate(plan_shards(clips, sample_rate, codec.hop_length, cfg.shard_frames)))
    resources = {"GPU": 1} if cfg.device.startswith("cuda") else None
    with executor or Executor(LOCAL) as ex:
        done = run_planned_shards(ex, encode_shard, plan, out_dir, ex.shared(codec), cfg, str(out_dir.resolve()),
                                  sample_rate, codec_checkpoint, ex.cfg.threads_per_worker, what="encode_latents",
                                  resources=resources, progress=progress)
    moments = ChannelMoments(codec.cfg.latent_dim)
    rows = []
    for shard_rows, (total, total_sq, frames) in done:
        moments.sum += total
        moments.sum_sq += total_sq
        moments.frames += frames
        rows += [{**row, "codec_checkpoint": codec_checkpoint, "source_sha256": source_sha256[row["segment_id"]],
                  "parent_id": row["segment_id"], **lineage.columns()} for row in shard_rows]
    stats = moments.stats(codec_checkpoint)
    stats.write(cfg.stats_path)
    return frame("latents", rows), stats
