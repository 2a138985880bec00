"""Is the int8 denoiser (`dmospeech export --format onnx OUT_DIR --int8`) good enough to use? On
held-out trials (evaluate's trials CSV: prompt, its transcript, a target text), the exported student
speaks each target with the fp32 and with the int8 denoiser from the same noise, and the script
prints per trial and on average:

- the log-mel distance (mean Euclidean distance per 10-ms frame, 80 mels) int8 vs fp32: both
  renditions have the same length and alignment, so no DTW;
- the same distance between fp32 renditions of two seeds, the scale of a "different rendition";
- Resemblyzer SIM to the prompt of the fp32 and of the int8 rendition, and their difference.

Verdict: int8 passes when its mean mel distance to fp32 is under --max-mel-fraction (0.25) of the
seed-to-seed distance and its mean SIM is at most --max-sim-drop (0.01) below fp32's.

Usage: python benchmarks/int8_quality.py --export OUT_DIR --trials data/evaluate/trials.csv
       [--max-trials 30] [--threads 2] [--seed 0]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from dmospeech.evaluation.distances import log_mel
from dmospeech.evaluation.evaluate import load, read_trials
from dmospeech.evaluation.metrics import ResemblyzerEncoder, speaker_similarity
from dmospeech.synthesis.synthesizer import SynthesisError
from dmospeech.synthesis.tts import TTS


def mel_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Mean Euclidean distance between the log-mel frames of two equally long renditions."""
    x, y = log_mel(a, sample_rate), log_mel(b, sample_rate)
    return float(np.linalg.norm(x - y, axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="a `dmospeech export --format onnx --int8` folder")
    parser.add_argument("--trials", required=True, help="evaluate's trials CSV (held-out prompts and texts)")
    parser.add_argument("--max-trials", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-mel-fraction", type=float, default=0.25)
    parser.add_argument("--max-sim-drop", type=float, default=0.01)
    args = parser.parse_args()
    fp32 = TTS.from_pretrained(args.export, runtime="onnx", threads=args.threads)
    int8 = TTS.from_pretrained(args.export, runtime="onnx-int8", threads=args.threads)
    encoder = ResemblyzerEncoder()
    rows = []
    for trial in read_trials(args.trials)[:args.max_trials]:
        try:
            prompt = fp32.prompt(trial.prompt_path, trial.prompt_text)
            a, rate = fp32.synthesize(trial.target_text, prompt, seed=args.seed)
            b, _ = int8.synthesize(trial.target_text, prompt, seed=args.seed)
            other, _ = fp32.synthesize(trial.target_text, prompt, seed=args.seed + 1)
        except SynthesisError as err:
            print(f"{trial.trial_id}: skipped ({err})")
            continue
        prompt_audio, prompt_rate = load(trial.prompt_path)
        row = {"mel_int8": mel_distance(b, a, rate), "mel_seed": mel_distance(other, a, rate),
               "sim_fp32": speaker_similarity(encoder, a, rate, prompt_audio, prompt_rate),
               "sim_int8": speaker_similarity(encoder, b, rate, prompt_audio, prompt_rate)}
        rows.append(row)
        print(f"{trial.trial_id}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
    if not rows:
        raise SystemExit(f"no usable trial in {args.trials}")
    mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    passed = (mean["mel_int8"] < args.max_mel_fraction * mean["mel_seed"]
              and mean["sim_fp32"] - mean["sim_int8"] <= args.max_sim_drop)
    print(f"{len(rows)} trials: mel distance int8 vs fp32 {mean['mel_int8']:.4f} (two fp32 seeds "
          f"{mean['mel_seed']:.4f}); SIM to the prompt fp32 {mean['sim_fp32']:.4f}, int8 {mean['sim_int8']:.4f}; "
          f"int8 {'passes' if passed else 'FAILS'} (mel < {args.max_mel_fraction:g} x seed distance, "
          f"SIM drop <= {args.max_sim_drop:g})")


if __name__ == "__main__":
    main()
