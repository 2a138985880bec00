"""Speed-perturbed copies of the recogniser's training segments (train_asr_critic.speed_perturb).

Speed perturbation (Ko et al., 2015, "Audio augmentation for speech recognition"): each segment is
played `factor` times faster by resampling, so tempo and pitch change together and the transcript
stays the same. With 0.9 and 1.1 a half-hour training set becomes three, of other speaking rates
and vocal-tract lengths. The paper's recogniser (100k hours) needs none of this: profiles/paper.yaml
lists no factors.

A copy is a `LatentTextItem` whose latents are the codec's encoding of the changed audio; its id is
"<segment>@x<factor>". The latents go to shards in `cache_dir`, which the item names relative to the
latent store's root (so one `LatentStore` reads originals and copies); the changed audio itself is
not kept (`audio_path` stays the original's). Written once, laid out like the latent cache:

    shard_*.safetensors   raw latents of the copies
    index.json            the copies and the key of their inputs (written last: the commit point)

and reused while the segments, factors and codec stay the same.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import soxr
import torch

from dmospeech.ops.atomic import write_json_atomic
from dmospeech.data.datasets import Clip, load_clip
from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.codec.latents import (INDEX_FILE, encode_audio, read_keyed_index, run_planned_shards, shard_name,
                                    write_shard)
from dmospeech.codec.model import Codec
from dmospeech.ops.executor import LOCAL, Executor, group_by_size
from dmospeech.ops.runtime import cached_by_rank_zero, release_freed_memory

CACHE_VERSION = 1


def speed_perturb(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """(t,) audio played `factor` times faster, at the same sample rate: (round(t / factor),).
    It is read as if recorded at sample_rate * factor and resampled to sample_rate."""
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    if factor == 1:
        return np.asarray(audio, dtype=np.float32)
    return soxr.resample(np.asarray(audio, dtype=np.float32), sample_rate * factor, sample_rate, "HQ").astype(np.float32)


def copy_id(segment_id: str, factor: float) -> str:
    return f"{segment_id}@x{factor:g}"


def original_id(segment_id: str) -> str:
    """The segment a copy was made from (a segment that is no copy is its own original)."""
    head, sep, tail = segment_id.rpartition("@x")
    return head if sep and tail.replace(".", "", 1).isdigit() else segment_id


def copies_key(items: Sequence[LatentTextItem], factors: Sequence[float], codec_checkpoint: str) -> str:
    blob = json.dumps([CACHE_VERSION, [(it.segment_id, it.source_sha256, it.audio_path, it.start_s, it.end_s,
                                        it.num_frames, list(it.phoneme_ids)) for it in items],
                       [float(f) for f in factors], str(Path(codec_checkpoint).resolve())])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load(cache_dir: Path, key: str) -> Optional[list[LatentTextItem]]:
    saved = read_keyed_index(cache_dir, key)
    return None if saved is None else [LatentTextItem.from_dict(c) for c in saved["copies"]]


def speed_copies_shard(groups: list[tuple[int, list[LatentTextItem]]], codec: Codec, factors: tuple[float, ...],
                       cache_dir: str, prefix: str, use_mean: bool) -> list[list[LatentTextItem]]:
    """One executor task: each planned group's copies (item-major) encoded into `shard_<index>`."""
    sample_rate = codec.cfg.sample_rate
    results = []
    with torch.inference_mode():
        for index, items in groups:
            name, pieces, copies, offset = shard_name(index), [], [], 0
            for item in items:
                audio = load_clip(Clip(item.segment_id, item.audio_path, item.start_s, item.end_s), sample_rate)
                for factor in factors:
                    cid = copy_id(item.segment_id, factor)
                    latents = encode_audio(codec, [speed_perturb(audio, sample_rate, factor)], [cid], use_mean)[0]
                    release_freed_memory()  # a new length each time: glibc's heap would only grow
                    copies.append(replace(item, segment_id=cid, shard=os.path.join(prefix, name), frame_offset=offset,
                                          num_frames=len(latents)))
                    pieces.append(latents)
                    offset += len(latents)
            write_shard(Path(cache_dir) / name, torch.cat(pieces))
            results.append(copies)
    return results


def build_speed_copies(items: Sequence[LatentTextItem], codec: Codec, codec_checkpoint: str,
                       factors: Sequence[float], cache_dir: str | os.PathLike, store_root: str | os.PathLike,
                       shard_frames: int, use_mean: bool, progress: Optional[Callable[[int], None]] = None,
                       executor: Optional[Executor] = None) -> list[LatentTextItem]:
    """The copies of `items` at each of `factors` (item-major order). `codec` must be the checkpoint
    that encoded the originals; `store_root` is the root of the `LatentStore` that will read them.
    Shards of about `shard_frames` copy frames are encoded by `executor` (this process when None)."""
    if not factors:
        return []
    if any(f <= 0 or f == 1 for f in factors):
        raise ValueError(f"train_asr_critic.speed_perturb {list(factors)}: factors must be positive and not 1 "
                         "(the original is always included)")
    cache_dir = Path(cache_dir)
    key = copies_key(items, factors, codec_checkpoint)
    found = cached_by_rank_zero(lambda: _load(cache_dir, key), f"speed copies with key {key} in {cache_dir}")
    if found is not None:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / INDEX_FILE).unlink(missing_ok=True)
    prefix = os.path.relpath(cache_dir.resolve(), Path(store_root).resolve())
    plan = list(enumerate(group_by_size(items, [it.num_frames * sum(1 / f for f in factors) for it in items],
                                        shard_frames)))
    with executor or Executor(LOCAL) as ex:
        done = run_planned_shards(ex, speed_copies_shard, plan, cache_dir, ex.shared(codec), tuple(factors),
                                  str(cache_dir), prefix, use_mean, what="speed copies", progress=progress)
    copies = [copy for group in done for copy in group]
    write_json_atomic(cache_dir / INDEX_FILE, {"key": key, "copies": [asdict(c) for c in copies]}, indent=None,
                      nonfinite="error")
    return copies


def with_copies_states(states: dict[str, torch.Tensor], copies: Sequence[LatentTextItem]) -> dict[str, torch.Tensor]:
    """Whisper states for the copies too: each copy shares its original's states, which the recogniser's
    distillation resamples to the copy's frame count (`states_at_latent_rate`), i.e. warps in time by
    the speed factor. Whisper is not run on the changed audio."""
    return {**states, **{c.segment_id: states[original_id(c.segment_id)] for c in copies}}


def recogniser_speed_copies(items: Sequence[LatentTextItem], factors: Sequence[float], cache_dir: str | os.PathLike,
                            codec_checkpoint: str, store_root: str | os.PathLike, shard_frames: int, use_mean: bool,
                            max_frames: int, executor: Optional[Executor] = None) -> list[LatentTextItem]:
    """The recogniser's copies of its training `items` (train_asr_critic.speed_perturb), cached; copies
    longer than `max_frames` (a slowed segment grows by 1 / factor) are left out, as the originals are."""
    if not factors:
        return []
    codec = Codec.from_checkpoint(codec_checkpoint).eval()
    copies = build_speed_copies(items, codec, codec_checkpoint, factors, cache_dir, store_root, shard_frames, use_mean,
                                executor=executor)
    return [c for c in copies if c.num_frames <= max_frames]
