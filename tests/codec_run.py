"""Runs a few steps of codec training on fabricated 48 kHz clips, for the torchrun test.

`python -m tests.codec_run '<json>'` with keys `work` (folder for clips, checkpoints, reports) and
`hash_file` (a path with `{rank}`: each rank writes the sha256 of its codec and discriminator weights).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from dmospeech.data.datasets import Clip
from dmospeech.data.whisper_states import STATE_HOP
from dmospeech.ops.training import train
from dmospeech.codec.trainer import CodecTask
from tests.helpers import params, voiced, write


class FakeEncoder:
    """Stands in for WhisperEncoder: the 'states' of 16 kHz audio are the mean and the peak of each
    20-ms frame. Counts the encoders built and the clips encoded."""
    built: list[str] = []
    encoded = 0
    dim = 2

    def __init__(self, name: str, threads: int = 1):
        FakeEncoder.built.append(name)

    def encode(self, clips):
        out = []
        for clip in clips:
            frames = np.zeros(-(-len(clip) // STATE_HOP) * STATE_HOP, np.float32)
            frames[: len(clip)] = clip
            frames = frames.reshape(-1, STATE_HOP)
            out.append(np.stack([frames.mean(1), np.abs(frames).max(1)], axis=1))
        FakeEncoder.encoded += len(clips)
        return out


def tiny_codec_config(work: Path, **loop):
    """The params.yaml codec shrunk to seconds per step: 0.1 s crops, 2 per batch, small STFTs, no
    semantic term and no Whisper input (tests/unit/test_codec_semantic.py and test_codec_semantic_input.py
    turn them on with a fake Whisper)."""
    cfg = params().train_codec
    loop_cfg = replace(cfg.loop, **({"max_steps": 4, "checkpoint_every": 2, "log_every": 1, "valid_every": 1000,
                                     "batch_seconds": 0.2, "max_batch_items": 2, "out_dir": str(work / "ckpt"),
                                     "report_dir": str(work / "report")} | loop))
    return replace(cfg, crop_seconds=0.1, valid_clips=1, valid_seconds=0.5, loop=loop_cfg,
                   mel=replace(cfg.mel, n_mels=(10, 20), window_lengths=(128, 256)),
                   discriminator=replace(cfg.discriminator, periods=(), fft_sizes=(256,)),
                   model=replace(cfg.model, semantic_dim=0, semantic_input="", semantic_input_dim=0),
                   semantic=replace(cfg.semantic, weight=0.0), whisper_input_dropout=0.0)


def fabricated_clips(work: Path, n: int = 6) -> list[Clip]:
    clips = []
    for i in range(n):
        path = write(work / "audio" / f"{i}.flac", voiced(1.0, sr=48000, f0=110 + 20 * i, seed=i), sr=48000)
        clips.append(Clip(f"clip{i}", str(path), 0.0, 1.0))
    return clips


def weights_hash(task: CodecTask) -> str:
    h = hashlib.sha256()
    for part in task.parts():
        for key, value in sorted(part.module.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(spec: dict) -> None:
    work = Path(spec["work"])
    cfg = tiny_codec_config(work)
    clips = fabricated_clips(work)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    result = train(task, cfg.loop, task.run_config())
    Path(spec["hash_file"].format(rank=os.environ.get("RANK", "0"))).write_text(weights_hash(task))
    print(json.dumps({"step": result.step}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
