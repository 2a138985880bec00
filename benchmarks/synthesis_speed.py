"""Synthesis speed on this machine: real-time factor (wall time / seconds of generated speech) of the
teacher (128 DDPM steps with classifier-free guidance, eq. 27-28) with and without codec decoding,
and the parameter count of each profile's network.

Usage: python benchmarks/synthesis_speed.py [--profile tiny|paper] [--prompt-seconds 3] [--seconds 5]
       [--repeats 3] [--threads 2] [--steps 128]

Weights are random (speed does not depend on them); shapes follow params.yaml (tiny) or
profiles/paper.yaml (paper). Each figure is the median of --repeats runs after one warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from dmospeech.config import load_params
from dmospeech.models.codec import Codec
from dmospeech.models.dit import DiT
from dmospeech.synthesize import FRAME_RATE, teacher_latents


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="generated speech per sentence")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="teacher steps (default: the profile's, 128)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params("params.yaml", "profiles/paper.yaml" if args.profile == "paper" else None)
    cfg = params.train_teacher
    torch.manual_seed(0)
    net, codec = DiT(cfg.model).eval(), Codec(params.train_codec.model).eval()
    n_prompt, n_new = round(args.prompt_seconds * FRAME_RATE), round(args.seconds * FRAME_RATE)
    prompt = torch.randn(n_prompt, cfg.model.latent_dim)
    phonemes = torch.randint(1, cfg.model.vocab_size, (round(14 * (args.prompt_seconds + args.seconds)),))
    steps = args.steps or cfg.diffusion.sample_steps

    def latents() -> torch.Tensor:
        return teacher_latents(net, phonemes, prompt, n_prompt + n_new, cfg.diffusion, steps,
                               generator=torch.Generator().manual_seed(0))

    def with_audio() -> None:
        with torch.no_grad():
            codec.decode(latents().T[None])

    print(f"profile {args.profile}: DiT {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M parameters, codec "
          f"{sum(p.numel() for p in codec.parameters()) / 1e6:.1f}M; {args.threads} thread(s); prompt "
          f"{args.prompt_seconds:g} s + {args.seconds:g} s generated, {len(phonemes)} phonemes")
    t_latent = median_seconds(latents, args.repeats)
    t_audio = median_seconds(with_audio, args.repeats)
    print(f"teacher ({steps} steps, CFG {cfg.diffusion.cfg_scale:g}): {t_latent:.2f} s latents only "
          f"(RTF {t_latent / args.seconds:.3f}), {t_audio:.2f} s with codec decoding (RTF {t_audio / args.seconds:.3f})")


if __name__ == "__main__":
    main()
