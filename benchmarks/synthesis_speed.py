"""Synthesis speed on this machine, one run, same inputs: real-time factor (wall time / seconds of
generated speech) of the teacher (128 DDPM steps with classifier-free guidance, eq. 27-28) and of
the student (4 steps of algorithm 1, no guidance), without decoding, with the codec's own (DAC)
decoder and with the fast (Vocos-style) decoder of train_fast_decoder, and the wall-clock ratio
teacher / student for each (the paper reports 13.7x).

Usage: python benchmarks/synthesis_speed.py [--profile tiny|paper] [--prompt-seconds 3] [--seconds 5]
       [--repeats 5] [--student-runs 5] [--threads 2] [--steps 128] [--models teacher student]

Weights are random (speed does not depend on them); shapes follow params.yaml (tiny) or
profiles/paper.yaml (paper). The runs are paired: after one warm-up of each, every repeat times
one teacher run and, right after it, the median of --student-runs student runs, so both see the
machine in the same state (on a shared VM a 0.2-s student run varies by +-25 % from minute to
minute). Each figure is the median over --repeats; the ratio is that of the medians.
The header prints OMP_WAIT_POLICY as OpenMP read it when torch loaded (dmospeech sets PASSIVE
only when it is imported first; here torch is).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "unset")  # what libgomp reads when torch loads

import torch  # noqa: E402

from dmospeech.config import load_params
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.teacher.sampling import student_latents, teacher_latents


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_medians(fns: dict, repeats: int, student_runs: int) -> dict[str, float]:
    """Median seconds per model over `repeats`: each repeat runs the teacher once, then the student
    `student_runs` times (their median), one after the other."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {model: [] for model in fns}
    for _ in range(repeats):
        for model, fn in fns.items():
            runs = 1 if model == "teacher" else student_runs
            times[model].append(statistics.median(seconds(fn) for _ in range(runs)))
    return {model: statistics.median(values) for model, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="generated speech per sentence")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--student-runs", type=int, default=5, help="student runs per repeat (their median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="teacher steps (default: evaluate.teacher_sampler's, 128)")
    parser.add_argument("--models", nargs="+", choices=["teacher", "student"], default=["teacher", "student"],
                        help="e.g. only the student for the paper profile (its teacher takes ~30 min per sentence here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params("params.yaml", "profiles/paper.yaml" if args.profile == "paper" else None)
    cfg = params.train_teacher
    torch.manual_seed(0)
    net = DiT(cfg.model).eval()
    decoders = {"codec decoder": Codec(params.train_codec.model).eval(),
                "fast decoder": Codec(replace(params.train_codec.model,
                                              fast_decoder=params.train_fast_decoder.decoder)).eval()}
    n_prompt, n_new = round(args.prompt_seconds * FRAME_RATE), round(args.seconds * FRAME_RATE)
    prompt = torch.randn(n_prompt, cfg.model.latent_dim)
    phonemes = torch.randint(1, cfg.model.vocab_size, (round(14 * (args.prompt_seconds + args.seconds)),))
    sampler = params.evaluate.teacher_sampler
    if args.steps:
        sampler = replace(sampler, steps=args.steps)

    def latents() -> torch.Tensor:
        return teacher_latents(net, phonemes, prompt, n_prompt + n_new, cfg.diffusion.shift, sampler,
                               torch.Generator().manual_seed(0))

    def student() -> torch.Tensor:
        return student_latents(net, phonemes, prompt, n_prompt + n_new, params.distill_student.student_times,
                               cfg.diffusion.shift, torch.Generator().manual_seed(0))

    def decoded(make_latents, codec: Codec):
        def run() -> None:
            with torch.no_grad():
                codec.decode_after(make_latents().T[None], n_prompt)  # the continuation, as Synthesizer does
        return run

    sizes = ", ".join(f"{name} {sum(p.numel() for p in codec.decoder.parameters()) / 1e6:.1f}M"
                      for name, codec in decoders.items())
    print(f"profile {args.profile}: DiT {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M parameters; {sizes}; "
          f"{args.threads} thread(s), OMP_WAIT_POLICY {OMP_WAIT_POLICY}; "
          f"prompt {args.prompt_seconds:g} s + {args.seconds:g} s generated, "
          f"{len(phonemes)} phonemes")
    runs = {"teacher": latents, "student": student}
    ways = ["latents only", *(f"with {name}" for name in decoders)]
    times = {}
    for way in ways:
        codec = decoders.get(way.removeprefix("with "))
        fns = {model: runs[model] if codec is None else decoded(runs[model], codec) for model in args.models}
        for model, value in paired_medians(fns, args.repeats, args.student_runs).items():
            times[(model, way)] = value
    n_student = len(params.distill_student.student_times)
    for (model, way), seconds in times.items():
        what = f"{sampler.steps} steps, CFG {sampler.cfg_scale:g}" if model == "teacher" else f"{n_student} steps"
        print(f"{model} ({what}) {way:>20}: {seconds:.3f} s, RTF {seconds / args.seconds:.4f}")
    for way in ways if len(args.models) == 2 else ():
        print(f"teacher / student wall-clock ratio ({way}): {times[('teacher', way)] / times[('student', way)]:.1f}x")

if __name__ == "__main__":
    main()
