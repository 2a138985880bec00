"""Synthesis speed on this machine, one run, same inputs: real-time factor (wall time / seconds of
generated speech) of the teacher (128 DDPM steps with classifier-free guidance, eq. 27-28) and of
the student (4 steps of algorithm 1, no guidance) in each runtime side by side: torch fp32,
onnxruntime fp32 and onnxruntime with the int8 denoiser (the student exported by
synthesis/export.py to a temporary folder). Each is timed without decoding, with the codec's own
(DAC) decoder (torch only; the export holds the fast decoder) and with the fast (Vocos-style)
decoder of train_fast_decoder; then the wall-clock ratio teacher / student (the paper reports 13.7x).

Usage: python benchmarks/synthesis_speed.py [--profile tiny|paper] [--prompt-seconds 3] [--seconds 5]
       [--repeats 5] [--student-runs 5] [--threads 2] [--steps 128] [--models teacher student]
       [--runtimes torch onnx onnx-int8]

Weights are random (speed does not depend on them; every DiT weight is jittered so that no layer is
zero and the parity figures mean something); shapes follow params.yaml (tiny) or profiles/paper.yaml
(paper). The runs are sandwiched: after one warm-up of each, a block of student runs (the median of
--student-runs runs in each runtime) comes before the first teacher run and after every one, so all
see the machine in the same state (on a shared VM a 0.2-s student run varies by +-25 % from minute to
minute, the teacher's 8-s run by +-20 %). Each time is the median over its runs. The ratio is the
median over the teacher runs of each one's time over the mean of the two student blocks around it
(a drift of the machine's speed cancels to first order), with its range and, beside it, the ratio of
the median times. The load average is printed before and after. Parity: the onnxruntime latents
(same inputs, same noise) against torch's, relative L2 over the generated frames, and the fast
decoder's waveform from them.
The header prints OMP_WAIT_POLICY as OpenMP read it when torch loaded (dmospeech sets PASSIVE
only when it is imported first; here torch is).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "unset")  # what libgomp reads when torch loads

import torch  # noqa: E402

from dmospeech.config import load_params
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.synthesis.export import export_models
from dmospeech.synthesis.onnx_runtime import OnnxCodec, OnnxStudent
from dmospeech.teacher.sampling import student_latents, teacher_latents


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sandwiched_times(fns: dict, repeats: int, student_runs: int) -> dict[str, list[float]]:
    """Seconds per run of each model, timed in the order S T S T ... T S: a block of the students
    (each the median of `student_runs` runs) before the first teacher run and after every one, so
    that each teacher run has a student block on both sides. After one warm-up of each. Returns the
    teacher's `repeats` times and each student's `repeats + 1` block medians (`repeats` without a teacher)."""
    for fn in fns.values():
        fn()  # warm-up
    teacher = fns.get("teacher")
    students = [model for model in fns if model != "teacher"]
    times: dict[str, list[float]] = {model: [] for model in fns}

    def student_block() -> None:
        for model in students:
            times[model].append(statistics.median(seconds(fns[model]) for _ in range(student_runs)))
    student_block()
    for _ in range(repeats if teacher else repeats - 1):   # without a teacher: `repeats` blocks
        if teacher:
            times["teacher"].append(seconds(teacher))
        student_block()
    return times


def sandwich_ratios(teacher: list[float], student: list[float]) -> list[float]:
    """Per teacher run i: its time over the mean of the student blocks just before and after it, so
    that a drift of the machine's speed over the run cancels to first order."""
    return [t / ((student[i] + student[i + 1]) / 2) for i, t in enumerate(teacher)]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def build_models(profile: str):
    """The params, the jittered DiT and both decoders, the same for the same profile in any process (seed 0)."""
    params = load_params("params.yaml", "profiles/paper.yaml" if profile == "paper" else None)
    torch.manual_seed(0)
    net = DiT(params.train_teacher.model).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    decoders = {"codec decoder": Codec(params.train_codec.model).eval(),
                "fast decoder": Codec(replace(params.train_codec.model,
                                              fast_decoder=params.train_fast_decoder.decoder)).eval()}
    return params, net, decoders


def export_child(profile: str, out_dir: Path, int8: bool) -> None:
    _, net, decoders = build_models(profile)
    export_models(net, decoders["fast decoder"], out_dir, int8=int8)


def export(profile: str, out_dir: Path, int8: bool) -> None:
    """The export in a child process, so that its peak memory (~4 GB more at the paper size) is gone
    before the timed runs."""
    child = multiprocessing.get_context("spawn").Process(target=export_child, args=(profile, out_dir, int8))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"the ONNX export failed (exit code {child.exitcode})")


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
    parser.add_argument("--runtimes", nargs="+", choices=["torch", "onnx", "onnx-int8"],
                        default=["torch", "onnx", "onnx-int8"], help="the student's runtimes (the teacher runs in torch)")
    parser.add_argument("--ways", nargs="+", choices=["latents", "codec", "fast"], default=["latents", "codec", "fast"],
                        help="latents only, with the codec's (DAC) decoder, with the fast decoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"start: {load()}")
    params, net, decoders = build_models(args.profile)
    cfg = params.train_teacher
    n_prompt, n_new = round(args.prompt_seconds * FRAME_RATE), round(args.seconds * FRAME_RATE)
    prompt = torch.randn(n_prompt, cfg.model.latent_dim)
    phonemes = torch.randint(1, cfg.model.vocab_size, (round(14 * (args.prompt_seconds + args.seconds)),))
    sampler = params.evaluate.teacher_sampler
    if args.steps:
        sampler = replace(sampler, steps=args.steps)
    times, shift = params.distill_student.student_times, cfg.diffusion.shift
    onnx_runtimes = [r for r in args.runtimes if r != "torch"] if "student" in args.models else []
    export_dir = Path(tempfile.mkdtemp(prefix="synthesis_speed_onnx."))   # /tmp: the paper export is ~2.5 GB
    try:
        if onnx_runtimes:
            start = time.perf_counter()
            export(args.profile, export_dir / "export", int8="onnx-int8" in onnx_runtimes)
            print(f"exported to {export_dir} in {time.perf_counter() - start:.0f} s (torch.onnx.export, dynamo=False)")
        onnx, text = {}, None
        for runtime in onnx_runtimes:
            onnx[runtime] = OnnxStudent(export_dir / "export", runtime == "onnx-int8", args.threads, text)
            text = onnx[runtime].text
        onnx_codec = OnnxCodec(export_dir / "export", args.threads) if onnx_runtimes else None
        run(args, net, decoders, onnx, onnx_codec, prompt, phonemes, sampler, times, shift, n_prompt)
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
    print(f"end: {load()}")


def run(args, net, decoders, onnx, onnx_codec, prompt, phonemes, sampler, times, shift, n_prompt) -> None:
    total = n_prompt + round(args.seconds * FRAME_RATE)
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    makers = {"teacher": lambda: teacher_latents(net, phonemes, prompt, total, shift, sampler, seed()),
              "student torch": lambda: student_latents(net, phonemes, prompt, total, times, shift, seed())}
    for runtime, student in onnx.items():
        makers[f"student {runtime}"] = (lambda s: lambda: s.latents(phonemes, prompt, total, times, shift, seed()))(student)
    wanted = ((["teacher"] if "teacher" in args.models else [])
              + ([f"student {r}" for r in args.runtimes] if "student" in args.models else []))

    def decoded(model: str, codec):
        make = makers[model]
        if model.startswith("student onnx"):
            return lambda: onnx_codec.decode_after(make().T[None], n_prompt)
        return lambda: codec.decode_after(make().T[None], n_prompt)  # the continuation, as Synthesizer does

    sizes = ", ".join(f"{name} {sum(p.numel() for p in codec.decoder.parameters()) / 1e6:.1f}M"
                      for name, codec in decoders.items())
    print(f"profile {args.profile}: DiT {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M parameters; {sizes}; "
          f"{args.threads} thread(s), OMP_WAIT_POLICY {OMP_WAIT_POLICY}; prompt {args.prompt_seconds:g} s + "
          f"{args.seconds:g} s generated, {len(phonemes)} phonemes; student runtimes {', '.join(args.runtimes)}")
    ways = {"latents": "latents only", "codec": "with codec decoder", "fast": "with fast decoder"}
    results = {}
    with torch.inference_mode():
        for way in args.ways:
            codec = decoders.get(ways[way].removeprefix("with "))
            fns = {m: makers[m] if codec is None else decoded(m, codec) for m in wanted
                   if not (way == "codec" and m.startswith("student onnx"))}
            for model, values in sandwiched_times(fns, args.repeats, args.student_runs).items():
                results[(model, ways[way])] = values
            print(f"  {ways[way]} done, {load()}", flush=True)
    for (model, way), values in results.items():
        what = f"{sampler.steps} steps, CFG {sampler.cfg_scale:g}" if model == "teacher" else f"{len(times)} steps"
        secs = statistics.median(values)
        print(f"{model:>18} ({what}) {way:>20}: {secs:.3f} s, RTF {secs / args.seconds:.4f} "
              f"(median of {len(values)}, {min(values):.3f}-{max(values):.3f})")
    for (model, way), values in results.items():
        if model != "teacher" and ("teacher", way) in results:
            ratios = sandwich_ratios(results[("teacher", way)], values)
            print(f"teacher / {model} wall-clock ratio ({way}): {statistics.median(ratios):.1f}x, median of "
                  f"{len(ratios)} sandwiched runs ({min(ratios):.1f}-{max(ratios):.1f}x); ratio of the medians "
                  f"{statistics.median(results[('teacher', way)]) / statistics.median(values):.1f}x")
    if onnx and "student" in args.models:
        parity(makers, onnx, onnx_codec, decoders["fast decoder"], n_prompt)


def parity(makers, onnx, onnx_codec, fast, n_prompt) -> None:
    """Same inputs and noise: onnxruntime latents and fast-decoder waveforms against torch's."""
    with torch.inference_mode():
        ref = makers["student torch"]()
        ref_audio = fast.decode_after(ref.T[None], n_prompt)
        for runtime in onnx:
            got = makers[f"student {runtime}"]()
            audio = onnx_codec.decode_after(got.T[None], n_prompt)
            print(f"parity {runtime} vs torch: latents rel L2 {rel(got[n_prompt:], ref[n_prompt:]):.2e}, "
                  f"max abs {float((got - ref).abs().max()):.2e}; fast-decoder waveform rel L2 "
                  f"{rel(audio, ref_audio):.2e}")


if __name__ == "__main__":
    main()
