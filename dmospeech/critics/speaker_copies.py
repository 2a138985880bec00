"""What the latent speaker verifier learns from and is checked on (appendix C.4).

Training copies: every training segment as recorded plus one pitch-shifted copy per configured
shift, each copy a new identity. A copy holds the codec latents of its audio (the cached latents
for the original, a fresh encoding of the shifted audio otherwise) and the teacher's embedding of
that same audio. They are written once to `cache_dir`, laid out like the latent cache:

    shard_*.safetensors   raw (unnormalised) latents of the copies, as encode_latents writes them
    teacher.safetensors   {"embeddings": (copies, e) float32}
    index.json            the copies and the key of their inputs (written last: the commit point)

and reused while the segments, shifts, codec and teacher stay the same.

Trials: held-out segments cut into windows of `trial_seconds` (frames and the matching audio),
with the teacher's embedding of each window's audio; windows of one speaker are target trials.

Shapes: n latent frames (40 Hz), c latent channels, e teacher embedding size.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from safetensors.torch import load_file, save

from dmospeech.ops.atomic import write_json_atomic
from dmospeech.data.datasets import Clip, load_clip
from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.codec.latents import (INDEX_FILE, LatentStats, LatentStore, encode_audio, normalize,
                                    read_keyed_index, run_planned_shards, shard_name, write_shard)
from dmospeech.codec.model import Codec
from dmospeech.ops.executor import LOCAL, Executor, group_by_size
from dmospeech.ops.runtime import cached_by_rank_zero, release_freed_memory
from dmospeech.critics.speaker_teachers import SpeakerTeacher, pitch_shift

CACHE_VERSION = 1


@dataclass(frozen=True)
class SpeakerCopy:
    """One training identity's segment: where its latents are and which teacher embedding is its target."""
    segment_id: str
    speaker: str          # "<speaker>" for the original, "<speaker>@<+s>st" for a shifted copy
    semitones: float
    shard: str
    frame_offset: int
    num_frames: int


def copy_speaker(speaker: str, semitones: float) -> str:
    return speaker if semitones == 0 else f"{speaker}@{semitones:+g}st"


def copies_key(items: Sequence[LatentTextItem], semitones: Sequence[float], codec_checkpoint: str,
               teacher_identity: str) -> str:
    blob = json.dumps([CACHE_VERSION, [(it.segment_id, it.source_sha256, it.audio_path, it.start_s, it.end_s,
                                        it.num_frames) for it in items], list(semitones),
                       str(Path(codec_checkpoint).resolve()), teacher_identity])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load(cache_dir: Path, key: str) -> Optional[tuple[list[SpeakerCopy], torch.Tensor]]:
    saved = read_keyed_index(cache_dir, key)
    if saved is None:
        return None
    return [SpeakerCopy(**c) for c in saved["copies"]], load_file(str(cache_dir / "teacher.safetensors"))["embeddings"]


def speaker_copies_shard(groups: list[tuple[int, list[LatentTextItem]]], store: LatentStore, codec: Codec,
                         teacher: SpeakerTeacher, semitones: tuple[float, ...], cache_dir: str,
                         use_mean: bool) -> list[tuple[list[SpeakerCopy], torch.Tensor]]:
    """One executor task: each planned group's copies (item-major, the original first) written into
    `shard_<index>`, with the teacher's embeddings of their audio."""
    sample_rate = codec.cfg.sample_rate
    results = []
    for index, items in groups:
        name, pieces, copies, embeddings, offset = shard_name(index), [], [], [], 0
        for item in items:
            audio = load_clip(Clip(item.segment_id, item.audio_path, item.start_s, item.end_s), sample_rate)
            for shift in (0.0, *semitones):
                shifted = pitch_shift(audio, sample_rate, shift)
                if shift == 0:
                    latents = store.read(item.shard, item.frame_offset, item.num_frames)
                else:
                    latents = encode_audio(codec, [shifted], [f"{item.segment_id}@{shift:+g}"], use_mean)[0]
                    release_freed_memory()  # a new length each time: glibc's heap would only grow
                if len(latents) != item.num_frames:
                    raise ValueError(f"segment {item.segment_id}: its audio ({item.audio_path}, {item.start_s:.2f}-"
                                     f"{item.end_s:.2f} s) encodes to {len(latents)} frames but the latent cache "
                                     f"holds {item.num_frames}: the cache is stale; rerun encode_latents")
                copies.append(SpeakerCopy(item.segment_id, copy_speaker(item.speaker, shift), shift, name, offset,
                                          len(latents)))
                pieces.append(latents)
                offset += len(latents)
                embeddings.append(torch.from_numpy(teacher.embed(shifted, sample_rate)))
        write_shard(Path(cache_dir) / name, torch.cat(pieces))
        results.append((copies, torch.stack(embeddings)))
    return results


def build_speaker_copies(items: Sequence[LatentTextItem], store: LatentStore, codec: Codec, codec_checkpoint: str,
                         teacher: SpeakerTeacher, semitones: Sequence[float], cache_dir: str | os.PathLike,
                         shard_frames: int, use_mean: bool, progress: Optional[Callable[[int], None]] = None,
                         executor: Optional[Executor] = None) -> tuple[list[SpeakerCopy], torch.Tensor]:
    """(copies, teacher embeddings (copies, e)) of `items` as recorded and shifted by each of `semitones`.
    `codec` must be the checkpoint that encoded `store` (its latents and the new ones must agree).
    Shards of about `shard_frames` copy frames are built by `executor` (this process when None)."""
    if any(s == 0 for s in semitones):
        raise ValueError(f"train_sv_critic.pitch_shifts {list(semitones)}: 0 is the original, which is always "
                         "included; list only the shifts")
    cache_dir = Path(cache_dir)
    key = copies_key(items, semitones, codec_checkpoint, teacher.identity)
    found = cached_by_rank_zero(lambda: _load(cache_dir, key), f"speaker copies with key {key} in {cache_dir}")
    if found is not None:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / INDEX_FILE).unlink(missing_ok=True)
    plan = list(enumerate(group_by_size(items, [it.num_frames * (1 + len(semitones)) for it in items], shard_frames)))
    with executor or Executor(LOCAL) as ex:
        done = run_planned_shards(ex, speaker_copies_shard, plan, cache_dir, store, ex.shared(codec),
                                  ex.shared(teacher), tuple(semitones), str(cache_dir), use_mean,
                                  what="speaker copies", progress=progress)
    copies = [copy for group_copies, _ in done for copy in group_copies]
    table = torch.cat([embeddings for _, embeddings in done])
    tmp = cache_dir / f".teacher.safetensors.tmp{os.getpid()}"
    tmp.write_bytes(save({"embeddings": table.contiguous()}))
    os.replace(tmp, cache_dir / "teacher.safetensors")
    write_json_atomic(cache_dir / INDEX_FILE, {"key": key, "teacher": teacher.identity,
                                               "copies": [asdict(c) for c in copies]}, indent=None, nonfinite="error")
    return copies, table


@dataclass
class TrialSet:
    """Held-out windows: normalised latents, the teacher's embeddings of their audio, their speakers."""
    latents: list[torch.Tensor]      # each (n, c)
    teacher: torch.Tensor            # (windows, e)
    speakers: list[str]


def speaker_trials(items: Sequence[LatentTextItem], store: LatentStore, stats: LatentStats, teacher: SpeakerTeacher,
                   trial_seconds: float, sample_rate: int, frame_rate: float) -> TrialSet:
    """Each item cut into non-overlapping windows of `trial_seconds` (the remainder dropped; an item
    shorter than one window is one window)."""
    frames = max(int(round(trial_seconds * frame_rate)), 1)
    hop = int(round(sample_rate / frame_rate))
    latents, embeddings, speakers = [], [], []
    for item in items:
        z = normalize(store.read(item.shard, item.frame_offset, item.num_frames).float(), stats)
        audio = load_clip(Clip(item.segment_id, item.audio_path, item.start_s, item.end_s), sample_rate)
        for start in range(0, max(item.num_frames - frames, 0) + 1, frames):
            window = audio[start * hop: (start + frames) * hop]
            if len(window) == 0:
                continue
            latents.append(z[start: start + frames])
            embeddings.append(torch.from_numpy(teacher.embed(window, sample_rate)))
            speakers.append(item.speaker)
    if not latents:
        raise ValueError("speaker_trials: the held-out segments gave no windows (are they empty?)")
    return TrialSet(latents, torch.stack(embeddings), speakers)

