"""Frame targets of the recogniser's auxiliary distillation: the encoder states of an offline
faster-whisper model (CTranslate2) on each training segment's audio.

Why: at the tiny CPU scale the recogniser sees about half an hour of speech, and CTC from scratch
spends most of a 30-minute budget in its blank plateau (the same recipe on log-mel frames learns at
the same rate, so the latents are not what holds it back). A per-frame regression of one block's
output onto Whisper's encoder states (DistilHuBERT's loss, `distill_loss`) gives every frame a
dense phonetic target from the first step. The paper's recogniser is trained on 100k hours and needs
none of this: profiles/paper.yaml sets the weight to 0, and then nothing here runs.

Each segment is encoded on its own from the start of Whisper's window (longer ones in 30-s pieces):
(frames at 50 Hz, d). They are cached in one safetensors file per cache folder, keyed by the segments, their
audio and the encoder, written atomically and reused while those stay the same.

Shapes: n latent frames (40 Hz), m whisper frames (50 Hz), d whisper width.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save

from dmospeech.ops.audio import read_region
from dmospeech.codec.latent_text import LatentTextItem
from dmospeech.data.whisper_models import resolve_whisper_model
from dmospeech.ops.executor import LOCAL, Executor, WorkerCrash, task_threads, worker_cached
from dmospeech.ops.runtime import cached_by_rank_zero

CACHE_VERSION = 2
WHISPER_RATE = 16000
STATE_HOP = 320                       # samples per encoder state (50 Hz)
WINDOW = 30 * WHISPER_RATE            # Whisper's input window
CACHE_FILE = "encoder_states.safetensors"


class WhisperEncoder:
    """faster-whisper's encoder (int8 on the CPU): 16 kHz audio -> (m, d) states at 50 Hz."""

    def __init__(self, name: str, threads: int = 1):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(resolve_whisper_model(name)), device="cpu", compute_type="int8",
                                  cpu_threads=threads)
        self.identity = encoder_identity(name)
        self.dim = int(self._encode_piece(np.zeros(WHISPER_RATE, np.float32)).shape[-1])

    def _encode_piece(self, audio: np.ndarray) -> np.ndarray:
        """At most 30 s of audio, at the window's start, without the padding to 30 s ->
        (ceil(len / 320), d) float32. Whisper's states carry their absolute position, so every
        segment starts at position 0; leaving out the padding changes the states little (mean
        cosine 0.98 to the padded window's on a LibriSpeech clip) and costs time in proportion to
        the audio."""
        import ctranslate2

        if len(audio) > WINDOW:
            raise ValueError(f"WhisperEncoder: {len(audio) / WHISPER_RATE:.1f} s does not fit a 30-s window")
        frames = math.ceil(len(audio) / STATE_HOP)
        features = self.model.feature_extractor(audio)[:, : 2 * frames]      # (mels, 100 Hz frames)
        if features.shape[1] < 2 * frames:
            features = np.pad(features, ((0, 0), (0, 2 * frames - features.shape[1])), mode="edge")
        out = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
                                      to_cpu=True)
        return np.asarray(out, dtype=np.float32)[0][:frames]

    def encode(self, clips: Sequence[np.ndarray], progress: Optional[Callable[[int], None]] = None) -> list[np.ndarray]:
        """16 kHz mono clips -> each clip's (ceil(len / 320), d) states; a clip longer than 30 s is
        encoded in consecutive 30-s pieces."""
        out = []
        for clip in clips:
            out.append(np.concatenate([self._encode_piece(clip[s: s + WINDOW]) for s in range(0, len(clip), WINDOW)]))
            if progress is not None:
                progress(1)
        return out


def encoder_identity(name: str) -> str:
    """Changes whenever the states would: the model file, CTranslate2 and faster-whisper versions."""
    model_bin = resolve_whisper_model(name) / "model.bin"
    return (f"{name}:{model_bin.stat().st_size}:ctranslate2 {version('ctranslate2')}:"
            f"faster-whisper {version('faster-whisper')}:int8")


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
    audio, sr = read_region(item.audio_path, item.start_s, item.end_s)
    if len(audio) == 0:
        raise ValueError(f"segment {item.segment_id}: no audio in {item.audio_path} {item.start_s:.2f}-{item.end_s:.2f} s")
    return audio if sr == WHISPER_RATE else soxr.resample(audio, sr, WHISPER_RATE).astype(np.float32)


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


def states_at_latent_rate(states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(m, d) states at 50 Hz -> (num_frames, d) at the latents' 40 Hz, linearly interpolated at each
    latent frame's centre (both grids start at the segment's first sample)."""
    return F.interpolate(states.float().T[None], size=num_frames, mode="linear", align_corners=False)[0].T
