"""Size and CPU speed of the codec (DAC-VAE, appendix C.1) in the tiny and the paper profile.

Usage: python benchmarks/codec_speed.py [--seconds 10] [--repeats 3] [--threads 2]

For each profile prints the parameter counts (encoder, decoder, total) and the encode (audio ->
posterior mean) and decode (latents -> audio) speed on `--seconds` of noise at 48 kHz as multiples
of real time: randomly initialised weights, no_grad, one warm-up run, median of `--repeats`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from dmospeech.config import CodecConfig, load_params, read_yaml  # noqa: E402
from dmospeech.codec.model import Codec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# DAC's widths, used when profiles/paper.yaml has no train_codec.model group
PAPER_FALLBACK = CodecConfig(sample_rate=48000, encoder_dim=64, strides=(2, 6, 10, 10), latent_dim=64,
                             decoder_dim=1536)


def profiles() -> dict[str, CodecConfig]:
    paper_yaml = ROOT / "profiles" / "paper.yaml"
    has_paper = "model" in read_yaml(paper_yaml).get("train_codec", {})
    paper = load_params(ROOT / "params.yaml", paper_yaml).train_codec.model if has_paper else PAPER_FALLBACK
    return {"tiny": load_params(ROOT / "params.yaml").train_codec.model, "paper": paper}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def bench(cfg: CodecConfig, seconds: float, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    codec = Codec(cfg).eval()
    audio = 0.1 * torch.randn(1, 1, int(seconds * cfg.sample_rate))  # (b, 1, t)
    latents = codec.encode(audio)[0]  # (b, c, n)
    return {"encoder": count(codec.encoder), "decoder": count(codec.decoder), "total": count(codec),
            "encode_x_rt": seconds / median_seconds(lambda: codec.encode(audio), repeats),
            "decode_x_rt": seconds / median_seconds(lambda: codec.decode(latents), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"codec on CPU, {args.threads} threads, {args.seconds:g} s of 48 kHz audio, median of {args.repeats}")
    print(f"{'profile':8} {'encoder':>12} {'decoder':>12} {'total':>12} {'encode xRT':>11} {'decode xRT':>11}")
    for name, cfg in profiles().items():
        r = bench(cfg, args.seconds, args.repeats)
        print(f"{name:8} {r['encoder']:12,d} {r['decoder']:12,d} {r['total']:12,d} "
              f"{r['encode_x_rt']:11.2f} {r['decode_x_rt']:11.2f}", flush=True)


if __name__ == "__main__":
    main()
