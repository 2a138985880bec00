"""One GPU check of the paper-scale code paths (issue 21), at most ~8 minutes on one GPU, one JSON out.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check.json                 # a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny --out check.json  # CI (tests/unit/test_gpu_check.py)

Sections of the JSON (README "Paper scale" lists every key):
- `environment`: torch, CUDA, the GPU, bf16 support;
- `trainers`: each training stage at the profile's widths (profiles/paper.yaml; --tiny: params.yaml) for
  --steps loop steps of its own Task.train_step under bf16 autocast (on CUDA) at the profile's batch per GPU
  (--items overrides): losses finite, seconds per step, torch.cuda.max_memory_allocated, and the loop's
  memory pre-flight verdict for the stage's static memory on this device;
- `torchrun_codec`: `torchrun --nproc_per_node N` running the training loop itself (dmospeech.ops.training.train)
  on the codec for 2 steps over fabricated audio files, in a process group (NCCL on CUDA; gloo with --tiny);
- `segmentation`: segment_audio's Segmenter (WhisperX VAD + faster-whisper, the packaged offline model) on
  --audio, float16 on CUDA, seconds per second of audio;
- `synthesis`: the teacher (128 steps with CFG) and the student (4 steps) on one sentence at the profile's
  widths (random weights: speed does not depend on them), latents only and with the codec's decoder, RTF
  and the ratio, next to the paper's V100 figures (RTF 0.96 and 0.07, 13.7x).
Anything not run is listed in `skipped` with the reason.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_steps import STAGES, build, optimizers, run_step  # noqa: E402

from dmospeech.config import Params, TeacherSamplerConfig  # noqa: E402
from dmospeech.config.parse import deep_merge, from_dict, read_yaml  # noqa: E402
from dmospeech.ops.memory import GIB, MemoryBudgetError, check, module_memory  # noqa: E402

PAPER_RTF_V100 = {"teacher": 0.96, "student": 0.07, "ratio": 13.7}   # Table 3 and section 4.3
ROOT = Path(__file__).resolve().parents[1]


def load(tiny: bool) -> Params:
    data = read_yaml(ROOT / "params.yaml")
    if not tiny:
        data = deep_merge(data, read_yaml(ROOT / "profiles" / "paper.yaml"))
    return from_dict(Params, data)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def environment(dev: torch.device) -> dict:
    out = {"torch": torch.__version__, "python": platform.python_version(), "device": str(dev),
           "cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda,
           "gpu_count": torch.cuda.device_count()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        out |= {"gpu_name": props.name, "gpu_memory_bytes": props.total_memory,
                "compute_capability": f"{props.major}.{props.minor}", "bf16_supported": torch.cuda.is_bf16_supported()}
    return out


def trainer(stage: str, params: Params, dev: torch.device, args) -> dict:
    """A few loop steps of one stage's Task at the profile's widths."""
    torch.manual_seed(0)
    step_def = build(stage, params)
    plan = [module_memory(p.name, p.module, p.ema) for p in step_def.parts]
    plan += [module_memory(n, m, ema=False, optimised=False) for n, m in step_def.frozen.items()]
    try:
        check(stage, plan, dev, resident=sum(p.weights for p in plan))
        preflight = {"fits": True}
    except MemoryBudgetError as err:
        preflight = {"fits": False, "message": str(err)}
    for part in step_def.parts:
        part.module.to(dev).train()
    for net in step_def.frozen.values():
        net.to(dev)
    items = args.items or step_def.items_per_gpu
    seconds = min(step_def.item_seconds, args.max_item_seconds) if args.max_item_seconds else step_def.item_seconds
    opts = optimizers(step_def)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, finite, losses = [], True, {}
    g = torch.Generator().manual_seed(0)
    kinds = list(step_def.steps)
    for i in range(args.steps):
        step = kinds[i % len(kinds)]
        batch = step_def.batch(items, seconds, g)
        sync(dev)
        started = time.perf_counter()
        logs = run_step(step_def, batch, step, opts)
        sync(dev)
        times.append(time.perf_counter() - started)
        losses = {k: v for k, v in logs.items() if "loss" in k}
        finite = finite and all(math.isfinite(v) for v in logs.values())
    out = {"items": items, "item_seconds": seconds, "steps": args.steps, "losses_finite": finite,
           "last_losses": losses, "step_seconds": times, "static_bytes": sum(p.total for p in plan),
           "preflight": preflight, "autocast": "bf16" if dev.type == "cuda" else "none (CPU fp32)"}
    if dev.type == "cuda":
        out["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(dev)
    return out


def torchrun_codec(args, dev: torch.device) -> dict:
    """`torchrun --nproc_per_node N gpu_check.py --ddp-worker` and its result file."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "worker.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc), "--master_port",
               str(29500 + os.getpid() % 1000), str(Path(__file__).resolve()), "--ddp-worker", str(result),
               "--device", dev.type] + (["--tiny"] if args.tiny else [])
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.torchrun_timeout)
        out = {"command": " ".join(cmd[2:]), "returncode": proc.returncode, "seconds": time.perf_counter() - started}
        if result.exists():
            out |= json.loads(result.read_text())
        if proc.returncode:
            out["stderr_tail"] = proc.stderr[-3000:]
        return out


def ddp_worker(result: str, tiny: bool) -> None:
    """Under torchrun: a process group (NCCL on CUDA, gloo on CPU), one all_reduce, then the training loop
    itself on the codec for 2 steps over fabricated 48 kHz files."""
    import soundfile as sf
    import torch.distributed as dist

    from dmospeech.codec.trainer import CodecTask
    from dmospeech.data.datasets import Clip
    from dmospeech.ops.runtime import device
    from dmospeech.ops.training import train

    params = load(tiny)
    cfg = params.train_codec
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    dist.init_process_group(backend)
    total = torch.ones(1, device=device())
    dist.all_reduce(total)
    with tempfile.TemporaryDirectory() as tmp:
        sr, g = cfg.model.sample_rate, torch.Generator().manual_seed(0)
        clips = []
        for i in range(4):
            path = Path(tmp) / f"clip{i}.wav"
            sf.write(path, (0.1 * torch.randn(sr, generator=g)).numpy(), sr)
            clips.append(Clip(f"clip{i}", str(path), 0.0, 1.0))
        loop = replace(cfg.loop, max_steps=2, num_workers=0, checkpoint_every=2, keep_checkpoints=1, log_every=1,
                       valid_every=0, out_dir=f"{tmp}/codec", report_dir=f"{tmp}/report",
                       batch_seconds=2 * cfg.crop_seconds, max_batch_items=2)
        cfg = replace(cfg, semantic=replace(cfg.semantic, cache_dir=f"{tmp}/whisper_states"))  # on in the tiny profile
        task = CodecTask(cfg, clips, [], loop.report_dir)
        started = time.perf_counter()
        out = train(task, loop, task.run_config())
        seconds = time.perf_counter() - started
    if dist.get_rank() == 0:
        Path(result).write_text(json.dumps({
            "backend": backend, "world_size": dist.get_world_size(), "all_reduce": float(total.item()),
            "steps": out.step, "finished": out.finished, "train_seconds": seconds,
            "losses_finite": all(math.isfinite(v) for v in out.metrics.values()),
            "ddp_wrapped": dist.get_world_size() > 1}))
    dist.destroy_process_group()


def segmentation(params: Params, dev: torch.device, audio_path: str | None, tiny: bool) -> dict:
    import soundfile as sf

    from dmospeech.data.segment import Segmenter
    from dmospeech.ops.audio import resample, to_mono

    cfg = replace(params.segment_audio, device=dev.type,
                  compute_type="float16" if dev.type == "cuda" else "int8",
                  whisper_model="tiny.en" if tiny else params.segment_audio.whisper_model)
    audio, sr_in = sf.read(audio_path, dtype="float32")
    sr = params.resample_audio.sample_rate           # what segment_audio reads: resample_audio's output
    audio = resample(to_mono(audio)[: int(sr_in * (10.0 if tiny else 120.0))], sr_in, sr)
    segmenter = Segmenter(cfg)
    segmenter.whisper, segmenter.vad  # noqa: B018 (load both before timing)
    started = time.perf_counter()
    pieces = segmenter.segment_long(audio, sr)
    seconds = time.perf_counter() - started
    return {"audio": audio_path, "audio_seconds": len(audio) / sr, "whisper_model": cfg.whisper_model,
            "compute_type": cfg.compute_type, "seconds": seconds, "seconds_per_audio_second": seconds / (len(audio) / sr),
            "pieces": len(pieces)}


def synthesis(params: Params, dev: torch.device, generate_seconds: float, steps: int) -> dict:
    """Wall time of one sentence: teacher (`steps` with CFG) vs student (4 steps), latents and decoded."""
    from dmospeech.codec.model import Codec
    from dmospeech.teacher.dit import DiT
    from dmospeech.teacher.sampling import student_latents, teacher_latents

    torch.manual_seed(0)
    net, codec = DiT(params.train_teacher.model).to(dev).eval(), Codec(params.train_codec.model).to(dev).eval()
    prompt_frames, total = 120, int(round((3.0 + generate_seconds) * 40))
    phonemes = torch.randint(1, params.train_teacher.model.vocab_size, (int(generate_seconds * 14),), device=dev)
    prompt = torch.randn(prompt_frames, params.train_teacher.model.latent_dim, device=dev)
    sampler = TeacherSamplerConfig(steps=steps, cfg_scale=2.0)
    shift = params.train_teacher.diffusion.shift
    runs = {"teacher": lambda: teacher_latents(net, phonemes, prompt, total, shift, sampler),
            "student": lambda: student_latents(net, phonemes, prompt, total, params.distill_student.student_times, shift)}
    out = {"generated_seconds": generate_seconds, "teacher_steps": steps, "paper_v100": PAPER_RTF_V100,
           "autocast": "bf16" if dev.type == "cuda" else "none (CPU fp32)"}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), autocast:
        for model, fn in runs.items():
            fn()  # warm-up
            for decoded in (False, True):
                sync(dev)
                started = time.perf_counter()
                latents = fn()
                if decoded:
                    codec.decode(latents.T[None].float())
                sync(dev)
                wall = time.perf_counter() - started
                out[f"{model}_{'decoded' if decoded else 'latents'}_rtf"] = wall / generate_seconds
    out["ratio_latents"] = out["teacher_latents_rtf"] / out["student_latents_rtf"]
    out["ratio_decoded"] = out["teacher_decoded_rtf"] / out["student_decoded_rtf"]
    return out


def section(report: dict, name: str, fn) -> None:
    started = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as err:  # noqa: BLE001: one failing check must not hide the others
        report[name] = {"error": f"{type(err).__name__}: {err}"}
        report["errors"].append(name)
    print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required="--ddp-worker" not in sys.argv)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="params.yaml's tiny widths (CI); default: the paper's")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--steps", type=int, default=3, help="loop steps per trainer")
    ap.add_argument("--items", type=int, default=None, help="items per batch (default: the profile's per GPU)")
    ap.add_argument("--max-item-seconds", type=float, default=None, help="cap each item's length")
    ap.add_argument("--nproc", type=int, default=1, help="torchrun processes (one per GPU)")
    ap.add_argument("--torchrun-timeout", type=float, default=300.0)
    ap.add_argument("--audio", default=os.environ.get("DMOSPEECH_DEV_CORPUS") and
                    str(Path(os.environ["DMOSPEECH_DEV_CORPUS"]) / "longform" / "kathleen_run.flac"),
                    help="long-form speech for the segmentation timing")
    ap.add_argument("--synthesis-seconds", type=float, default=10.0)
    ap.add_argument("--teacher-steps", type=int, default=128)
    ap.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker, args.tiny)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no CUDA device (CUDA_VISIBLE_DEVICES, driver?); "
                         "--device cpu --tiny runs the CPU version")
    dev = torch.device(args.device)
    params = load(args.tiny)
    report: dict = {"profile": "tiny (params.yaml)" if args.tiny else "paper (profiles/paper.yaml)",
                    "environment": environment(dev), "trainers": {}, "skipped": {}, "errors": []}
    started = time.perf_counter()
    for stage in args.stages:
        t0 = time.perf_counter()
        try:
            report["trainers"][stage] = trainer(stage, params, dev, args)
        except Exception as err:  # noqa: BLE001
            report["trainers"][stage] = {"error": f"{type(err).__name__}: {err}"}
            report["errors"].append(f"trainers.{stage}")
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        print(f"trainers.{stage}: {time.perf_counter() - t0:.1f} s", flush=True)
    if dev.type == "cpu":
        report["skipped"]["nccl"] = "CPU run: NCCL needs CUDA; torchrun_codec uses gloo"
    section(report, "torchrun_codec", lambda: torchrun_codec(args, dev))
    if args.audio and Path(args.audio).is_file():
        section(report, "segmentation", lambda: segmentation(params, dev, args.audio, args.tiny))
    else:
        report["skipped"]["segmentation"] = f"no long-form audio (--audio {args.audio!r}; or set DMOSPEECH_DEV_CORPUS)"
    if dev.type == "cpu":
        report["skipped"]["segmentation_float16"] = "CPU run: faster-whisper float16 needs CUDA (int8 used)"
    section(report, "synthesis", lambda: synthesis(params, dev, args.synthesis_seconds, args.teacher_steps))
    report["total_seconds"] = time.perf_counter() - started
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}; errors: {report['errors'] or 'none'}; peak GiB per trainer: " + ", ".join(
        f"{s}={r.get('max_memory_allocated_bytes', 0) / GIB:.1f}" for s, r in report["trainers"].items()))


if __name__ == "__main__":
    main()
