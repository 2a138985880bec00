"""Throughput of the data half as multiples of real time per core.

Usage: python benchmarks/data_pipeline.py --corpus ../shared/corpora/dev [--longform DIR] [--max-files N]

Resampling (decode + checks + soxr to 48 kHz + DC removal + normalisation) and phonemization run
in one process on one thread; segmentation (WhisperX VAD + faster-whisper word times + cutting)
runs on the long-form files with `segment_audio.cpu_threads` threads, and its figure is divided by
that thread count. Prints one line per step.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from dmospeech.config import SourceConfig, load_params  # noqa: E402
from dmospeech.data.resample import condition_file  # noqa: E402
from dmospeech.data.sources import scan_source  # noqa: E402
from dmospeech.data.text import Phonemizer, normalize_text  # noqa: E402

KINDS = {"librispeech": "librispeech", "ljspeech": "ljspeech", "kathleen": "sidecar", "arctic/manifest.csv": "csv"}


def transcribed_items(corpus: Path, exts: tuple[str, ...], max_files: int):
    items = []
    for sub, kind in KINDS.items():
        if (corpus / sub).exists():
            items += [i for i in scan_source(SourceConfig(sub, kind, str(corpus / sub), speaker="s"), exts)
                      if i.problem is None]
    return items[:max_files] if max_files else items


def bench_resample(items, cfg) -> tuple[float, float]:
    seconds = sum(sf.info(str(i.path)).duration for i in items)
    start = time.perf_counter()
    for item in items:
        condition_file(str(item.path), cfg)
    return seconds, time.perf_counter() - start


def bench_phonemize(items, cfg) -> tuple[float, float]:
    seconds = sum(sf.info(str(i.path)).duration for i in items)
    texts = [normalize_text(i.text) for i in items]
    phonemizer = Phonemizer(cfg)
    start = time.perf_counter()
    for k in range(0, len(texts), 512):
        phonemizer(texts[k:k + 512])
    return seconds, time.perf_counter() - start


def bench_segment(files: list[Path], params) -> tuple[float, float, int]:
    import numpy as np

    from dmospeech.ops import audio as A
    from dmospeech.data.segment import Segmenter

    cfg = params.segment_audio
    segmenter = Segmenter(cfg)
    seconds, elapsed = 0.0, 0.0
    for path in files:
        decoded = A.decode_audio(path)
        audio = A.resample(A.to_mono(decoded.audio), decoded.sample_rate, 48000)
        seconds += len(audio) / 48000
        start = time.perf_counter()
        segmenter.segment_long(np.asarray(audio), 48000)
        elapsed += time.perf_counter() - start
    return seconds, elapsed, cfg.cpu_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=os.environ.get("DMOSPEECH_DEV_CORPUS", "../shared/corpora/dev"))
    parser.add_argument("--longform", type=Path, default=None, help="folder of long recordings (default CORPUS/longform)")
    parser.add_argument("--max-files", type=int, default=0, help="limit the transcribed files (0 = all)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params(args.params)
    items = transcribed_items(args.corpus, params.prepare_corpus.audio_extensions, args.max_files)
    rs, rt = bench_resample(items, params.resample_audio)
    print(f"resample_audio : {len(items)} files, {rs / 60:.1f} min of audio in {rt:.1f} s "
          f"-> {rs / rt:.0f}x real time per core")
    ps, pt = bench_phonemize(items, params.phonemize_text)
    print(f"phonemize_text : {len(items)} texts ({ps / 60:.1f} min of audio) in {pt:.2f} s "
          f"-> {ps / pt:.0f}x real time per core")
    print(f"resample + phonemize: {rs / (rt + pt):.0f}x real time per core")
    longform = sorted((args.longform or args.corpus / "longform").glob("*.flac"))
    if longform:
        ss, st, threads = bench_segment(longform, params)
        print(f"segment_audio  : {len(longform)} long files, {ss / 60:.1f} min in {st:.1f} s on {threads} threads "
              f"-> {ss / st:.1f}x real time ({ss / st / threads:.1f}x per core)")


if __name__ == "__main__":
    main()
