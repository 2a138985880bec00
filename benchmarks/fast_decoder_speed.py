"""CPU cost of candidate fast decoders (train_fast_decoder.decoder), side by side in one run.

Usage: python benchmarks/fast_decoder_speed.py [--seconds 5] [--rounds 5] [--runs 15] [--threads 2]
       [--configs DIM,INTERMEDIATE,LAYERS,N_FFT_HOPS ...]

For each candidate prints its parameter count, its FLOPs per decode (torch.utils.flop_counter, the
matrix products) and the median wall time of one decode of `--seconds` of latents plus the context
frames `Codec.decode_after` adds, split into the learned part (backbone and head's linear layer) and
the fixed inverse STFT. Weights are random (speed does not depend on them). The candidates are timed
in alternation, `--rounds` times `--runs` decodes each, so all see the machine in the same state; each
figure is the median over all runs. The first candidate is params.yaml's. Why it matters: with a
decoder of fixed cost d the teacher/student ratio is (T + d) / (S + d), so d must stay well below a
tenth of the student's latent time S for the ratio to stay near T / S (see synthesis_speed.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.codec.model import FastDecoder
from dmospeech.config import load_params
from dmospeech.config.codec import FastDecoderConfig


def parse_config(text: str) -> FastDecoderConfig:
    dim, intermediate, layers, hops = (int(x) for x in text.split(","))
    return FastDecoderConfig(dim, intermediate, layers, hops)


def label(cfg: FastDecoderConfig) -> str:
    return f"dim {cfg.dim}, ff {cfg.intermediate_dim}, layers {cfg.layers}, n_fft_hops {cfg.n_fft_hops}"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--configs", nargs="*", default=[], help="more candidates: DIM,INTERMEDIATE,LAYERS,N_FFT_HOPS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    codec_cfg = params.train_codec.model
    hop = codec_cfg.hop_length
    configs = [params.train_fast_decoder.decoder] + [parse_config(c) for c in args.configs]
    torch.manual_seed(0)
    decoders = [FastDecoder(codec_cfg.latent_dim, hop, cfg).eval() for cfg in configs]
    print(f"{load()}; {args.threads} thread(s); "
          f"{args.seconds:g} s of latents at {FRAME_RATE} Hz plus context frames; hop {hop}")
    learned: list[list[float]] = [[] for _ in decoders]
    fixed: list[list[float]] = [[] for _ in decoders]
    inputs, flops = [], []
    with torch.inference_mode():
        for decoder in decoders:
            frames = round(args.seconds * FRAME_RATE) + decoder.context_frames  # as decode_after
            latents = torch.randn(1, codec_cfg.latent_dim, frames)
            inputs.append(latents)
            counter = FlopCounterMode(display=False)
            with counter:
                decoder(latents)
            flops.append(counter.get_total_flops())
            decoder(latents)  # warm-up
        for _ in range(args.rounds):
            for i, decoder in enumerate(decoders):
                for _ in range(args.runs):
                    start = time.perf_counter()
                    spectral = decoder.spectral_frames(inputs[i])
                    middle = time.perf_counter()
                    decoder.waveform(spectral)
                    end = time.perf_counter()
                    learned[i].append(middle - start)
                    fixed[i].append(end - middle)
    print(load())
    for i, cfg in enumerate(configs):
        a, b = statistics.median(learned[i]) * 1e3, statistics.median(fixed[i]) * 1e3
        total = statistics.median([x + y for x, y in zip(learned[i], fixed[i])]) * 1e3
        size = sum(p.numel() for p in decoders[i].parameters()) / 1e6
        print(f"{label(cfg):>44}: {size:5.2f}M parameters, {flops[i] / 1e9:5.2f} GFLOP, "
              f"{total:6.1f} ms per decode (learned {a:5.1f} ms, inverse STFT {b:4.1f} ms)")


if __name__ == "__main__":
    main()
