"""Resident memory of encoding a corpus of clips of many lengths, with glibc's heap left as it is and
with encode_shard's release of the freed pages after each batch (dmospeech.ops.runtime.release_freed_memory).

Usage: python benchmarks/encode_memory.py [--clips 120] [--audio DIR ...] [--codec CHECKPOINT]
                                          [--threads 1] [--seed 0]

Each clip length is a new tensor shape, and glibc keeps the freed buffers in a heap that fragments:
encoding a probe corpus once grew to 13 GB. This runs encode_shard over the same clips in two fresh
processes, one without the release (replaced by a no-op) and one as shipped, and prints the peak and
final resident memory and the time of each, and their ratios.

Clips: every audio file under `--audio` (resampled to the codec's rate into a temporary folder),
or `--clips` seeded noise files of 1-10 s. Codec: `--codec` (a training checkpoint directory) or
the tiny profile's codec with random weights; memory depends on the shapes, not the weights.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg"}


def resident_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def write_clips(folder: Path, sample_rate: int, audio_dirs: list[str], count: int, seed: int) -> list[Path]:
    """The clips as `sample_rate` wav files in `folder`: the files under `audio_dirs`, else noise."""
    import soundfile as sf

    from dmospeech.ops.audio import decode_audio, resample, to_mono

    paths = []
    if audio_dirs:
        sources = sorted(p for d in audio_dirs for p in Path(d).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not sources:
            raise SystemExit(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {audio_dirs}")
        for i, source in enumerate(sources):
            decoded = decode_audio(source)
            audio = resample(to_mono(decoded.audio), decoded.sample_rate, sample_rate)
            paths.append(folder / f"clip_{i:05d}.wav")
            sf.write(paths[-1], audio, sample_rate)
        return paths
    rng = np.random.default_rng(seed)
    for i in range(count):
        seconds = rng.uniform(1.0, 10.0)
        paths.append(folder / f"clip_{i:05d}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32), sample_rate)
    return paths


def load_codec(checkpoint: str | None):
    import torch

    from dmospeech.codec.model import Codec
    from dmospeech.config import load_params

    if checkpoint:
        return Codec.from_checkpoint(checkpoint)
    torch.manual_seed(0)
    return Codec(load_params(ROOT / "params.yaml").train_codec.model)


def child(mode: str, folder: str, checkpoint: str | None, threads: int) -> None:
    """Encode every clip in `folder` with encode_shard; print one JSON line of memory and time."""
    import soundfile as sf
    import torch

    from dmospeech.codec import latents
    from dmospeech.config import load_params
    from dmospeech.data.datasets import Clip

    if mode == "kept":
        latents.release_freed_memory = lambda: False
    codec = load_codec(checkpoint)
    cfg = load_params(ROOT / "params.yaml").encode_latents
    clips = [Clip(p.stem, str(p), 0.0, sf.info(p).duration) for p in sorted(Path(folder).glob("clip_*.wav"))]
    plan = list(enumerate(latents.plan_shards(clips, codec.cfg.sample_rate, codec.hop_length, cfg.shard_frames)))
    start_rss, start = resident_mb(), time.perf_counter()
    with tempfile.TemporaryDirectory() as out, torch.no_grad():
        latents.encode_shard(plan, codec, cfg, out, codec.cfg.sample_rate, "benchmark", threads)
    print(json.dumps({"mode": mode, "clips": len(clips), "seconds": time.perf_counter() - start,
                      "start_rss_mb": start_rss, "end_rss_mb": resident_mb(),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=120, help="noise clips when no --audio is given")
    parser.add_argument("--audio", nargs="*", default=[], help="folders of audio files to encode instead")
    parser.add_argument("--codec", help="a codec checkpoint directory (default: the tiny profile, random weights)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["kept", "released"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.codec, args.threads)
        return
    with tempfile.TemporaryDirectory() as folder:
        sample_rate = load_codec(args.codec).cfg.sample_rate
        paths = write_clips(Path(folder), sample_rate, args.audio, args.clips, args.seed)
        print(f"{len(paths)} clips at {sample_rate} Hz, threads {args.threads}", flush=True)
        results = {}
        for mode in ("kept", "released"):
            command = [sys.executable, __file__, "--child", mode, "--folder", folder, "--threads", str(args.threads)]
            command += ["--codec", args.codec] if args.codec else []
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"the {mode} run failed:\n{out.stderr}")
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[mode]
            print(f"{mode:8s} peak RSS {r['peak_rss_mb']:8.0f} MB  final RSS {r['end_rss_mb']:8.0f} MB  "
                  f"(at start {r['start_rss_mb']:.0f} MB)  {r['seconds']:7.1f} s", flush=True)
    kept, released = results["kept"], results["released"]
    print(f"peak RSS kept/released: {kept['peak_rss_mb'] / released['peak_rss_mb']:.2f}x; "
          f"time released/kept: {released['seconds'] / kept['seconds']:.2f}x")


if __name__ == "__main__":
    main()
