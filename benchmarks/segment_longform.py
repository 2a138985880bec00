"""Long-form segmentation against true utterance boundaries (paper sec 4.1 chunks, sec 4.3 cut-offs).

Usage: python benchmarks/segment_longform.py --files F.flac [F2.flac ...] [--model base] [--params params.yaml]

Each F.flac needs a sibling F.segments.json: a list of {start, end, text} per true utterance. The
audio is resampled to 48 kHz (as `resample_audio` does) and cut by `Segmenter.segment_long`, with
`params.segment_audio` apart from the model. Prints per file: WER of the joined segment texts vs
the joined true texts (lowercase, punctuation stripped), the segment count, the longest segment,
how many segment ends (and starts) fall inside a true utterance (50 ms tolerance), how many
segments are flagged as cut off or quarantined, and the speed as multiples of real time.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import jiwer
import soundfile as sf
import soxr

from dmospeech.config import load_params
from dmospeech.data.segment import Piece, Segmenter

SR = 48_000
TOLERANCE_S = 0.05


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def inside_utterance(t: float, truth: list[dict]) -> bool:
    return any(u["start"] + TOLERANCE_S < t < u["end"] - TOLERANCE_S for u in truth)


def score_file(path: Path, segmenter: Segmenter) -> dict:
    truth_path = path.with_name(path.name.removesuffix(path.suffix) + ".segments.json")
    if not truth_path.is_file():
        raise SystemExit(f"{truth_path} is missing: every --files entry needs its true segments beside it")
    truth = json.loads(truth_path.read_text())
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = soxr.resample(audio.mean(axis=1), sr, SR)
    start = time.perf_counter()
    pieces: list[Piece] = segmenter.segment_long(audio, SR)
    elapsed = time.perf_counter() - start
    kept = [p for p in pieces if p.reject is None]
    hypothesis = normalized(" ".join(p.text for p in kept))
    return {
        "file": path.name, "seconds": len(audio) / SR, "xrt": len(audio) / SR / elapsed,
        "wer": jiwer.wer(normalized(" ".join(u["text"] for u in truth)), hypothesis),
        "segments": len(kept), "quarantined": len(pieces) - len(kept),
        "longest": max((p.end_s - p.start_s for p in kept), default=0.0),
        "ends_inside": sum(inside_utterance(p.end_s, truth) for p in kept),
        "starts_inside": sum(inside_utterance(p.start_s, truth) for p in kept),
        "cutoff": sum(p.cutoff_start or p.cutoff_end for p in kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=Path, nargs="+", required=True, help="long recordings (.flac)")
    parser.add_argument("--model", default=None, help="base | tiny.en | a CTranslate2 folder (default: params)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    cfg = load_params(args.params).segment_audio
    cfg = replace(cfg, whisper_model=args.model or cfg.whisper_model)
    start = time.perf_counter()
    segmenter = Segmenter(cfg)
    _ = (segmenter.vad, segmenter.whisper)  # they load lazily: load them now, so the speeds below exclude it
    print(f"models: VAD (whisperx/assets) + Whisper {cfg.whisper_model} ({cfg.compute_type}, "
          f"{cfg.cpu_threads} threads) loaded in {time.perf_counter() - start:.1f} s")
    for path in args.files:
        r = score_file(path, segmenter)
        print(f"{r['file']}: {r['seconds']:.1f} s, WER {r['wer']:.1%}, {r['segments']} segments "
              f"(longest {r['longest']:.2f} s), ends inside a true utterance {r['ends_inside']} "
              f"(starts {r['starts_inside']}), flagged cut off {r['cutoff']}, quarantined {r['quarantined']}, "
              f"{r['xrt']:.1f}x real time")


if __name__ == "__main__":
    main()
