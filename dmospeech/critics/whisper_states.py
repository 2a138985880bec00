"""Frame targets of the recogniser's auxiliary distillation: the encoder states of an offline
faster-whisper model (CTranslate2) on each training segment's audio.

Why: at the tiny CPU scale the recogniser sees about half an hour of speech, and CTC from scratch
spends most of a 30-minute budget in its blank plateau (the same recipe on log-mel frames learns at
the same rate, so the latents are not what holds it back). A per-frame regression of one block's
output onto Whisper's encoder states (DistilHuBERT's loss, `distill_loss`) gives every frame a
dense phonetic target from the first step. The paper's recogniser is trained on 100k hours and needs
none of this: profiles/paper.yaml sets the weight to 0, and then nothing here runs.

Each segment is encoded on its own by dmospeech.data.whisper_states' encoder (from the start of
Whisper's window, longer ones in 30-s pieces): (frames at 50 Hz, d). They are cached in one safetensors
file per cache folder, keyed by the segments, their audio and the encoder, written atomically and
reused while those stay the same.

Shapes: m whisper frames (50 Hz), d whisper width.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.data.whisper_states import WhisperEncoder, encoder_identity, read_region_16k
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash, task_threads, worker_cached
from dmospeech.ops.runtime import cached_by_rank_zero

CACHE_VERSION = 2
CACHE_FILE = "encoder_states.safetensors"


def states_key(items: Sequence[LatentTextItem], encoder_identity: str) -> str:
    blob = json.dumps([CACHE_VERSION, encoder_identity, [(it.segment_id, it.source_sha256, it.audio_path,
                                                          it.start_s, it.end_s) for it in items]])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load(path: Path, key: str) -> Optional[dict[str, torch.Tensor]]:
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        return {name: f.get_tensor(name) for name in f.keys()}


def segment_audio_16k(item: LatentTextItem) -> np.ndarray:
    return read_region_16k(item.audio_path, item.start_s, item.end_s, f"segment {item.segment_id}")


def whisper_states_shard(items: list[LatentTextItem], model: str, threads: int) -> list[torch.Tensor]:
    """One executor task: (m, d) float16 states of each item, with this process's encoder."""
    threads = task_threads(threads)
    encoder = worker_cached(("whisper-encoder", model, threads), lambda: WhisperEncoder(model, threads))
    return [torch.from_numpy(s).to(torch.float16).contiguous()
            for s in encoder.encode([segment_audio_16k(it) for it in items])]


def whisper_encoder_states(items: Sequence[LatentTextItem], model: str, cache_dir: str | os.PathLike,
                           threads: int = 1, progress: Optional[Callable[[int], None]] = None,
                           executor: Optional[Executor] = None) -> dict[str, torch.Tensor]:
    """segment_id -> (m, d) float16 Whisper encoder states of its audio, from `cache_dir` when the
    same segments were encoded by the same model before, else computed (in shards by `executor`,
    this process when None) and cached."""
    cache_dir = Path(cache_dir)
    path = cache_dir / CACHE_FILE
    identity = encoder_identity(model)
    key = states_key(items, identity)
    found = cached_by_rank_zero(lambda: _load(path, key), f"Whisper states with key {key} in {cache_dir}")
    if found is not None:
        return found
    with executor or Executor(LOCAL) as ex:
        states = ex.map(whisper_states_shard, list(items), model, threads, progress=progress)
    crashed = [it.segment_id for it, s in zip(items, states) if isinstance(s, WorkerCrash)]
    if crashed:
        raise RuntimeError(f"Whisper states: segment(s) {crashed[:5]} killed their worker every time they ran")
    table = dict(zip((it.segment_id for it in items), states))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{CACHE_FILE}.tmp{os.getpid()}"
    tmp.write_bytes(save(table, metadata={"key": key, "encoder": identity}))
    os.replace(tmp, path)
    return table

