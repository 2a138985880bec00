"""Memory and compute plan of every training stage at paper scale (issue 21).

For each stage of profiles/paper.yaml (layered on params.yaml):
- parameters, trainable and frozen, counted on the meta device at the full widths;
- bytes of weights + gradients + AdamW moments + EMA (+ frozen networks), fp32 master weights
  (dmospeech/ops/memory.py, the same numbers the loop's pre-flight check uses);
- MEASURED on this CPU, fp32, math attention (FlopCounterMode counts no CPU attention kernel): FLOPs of one
  loop step (torch.utils.flop_counter.FlopCounterMode: matmuls, convolutions; elementwise ops are not
  counted) and activation memory (the most bytes saved for backward alive at once, from autograd's
  saved-tensor hooks; parameters excluded; math attention keeps the T^2 attention weights, which flash
  attention on a GPU does not). Crop-trained stages are measured at their crop (0.38 s codec, 0.8 s fast
  decoder, 4 s verifier); the 30-s stages at 1, 2 and 3 s and fitted as c + aT + bT^2; the DiTs at full
  width with 1 + 2 and 2 + 4 layers, extrapolated linearly to Table 9's 8 + 16;
- PROJECTED: FLOPs per step at the profile's batch per GPU (linear in items), GPU-hours at the profile's
  steps on 24 GPUs (the paper's count) on A100 and H100 at a stated utilisation of the bf16 peak, the
  wall-clock days on 24 of them, and memory per GPU at that batch against 40 GB (the paper's A100s) and 80 GB.

    .venv/bin/python benchmarks/paper_plan.py --out reports/paper_plan.json          # ~20 CPU-minutes
    .venv/bin/python benchmarks/paper_plan.py --stages train_teacher --lengths 2 4 6
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_steps import STAGES, StageStep, asr_config, build, dit_config, run_step  # noqa: E402

from dmospeech.config import Params  # noqa: E402
from dmospeech.config.parse import deep_merge, from_dict, read_yaml  # noqa: E402
from dmospeech.ops.memory import GIB, PartMemory, module_memory, on_meta  # noqa: E402
from dmospeech.critics.asr import LatentASR  # noqa: E402
from dmospeech.critics.speaker import LatentSpeakerVerifier  # noqa: E402
from dmospeech.student.trainer import StudentTask  # noqa: E402
from dmospeech.teacher.dit import DiT  # noqa: E402

# Dense bf16 tensor-core peaks from the vendor data sheets: NVIDIA A100 Tensor Core GPU data sheet
# (312 TFLOPS BF16, SXM and PCIe), NVIDIA H100 Tensor Core GPU data sheet (H100 SXM: 989 TFLOPS BF16 dense;
# the sheet's 1,979 is with 2:4 sparsity).
PEAK_BF16 = {"A100": 312e12, "H100": 989e12}
PAPER_GPUS = 24   # section 4.1: "All models were trained on 24 NVIDIA A100 40GB GPUs."
PAPER = {  # what section 4.1 and appendix C state per stage (None: not stated)
    "train_codec": "steps, batch: not stated (DAC: 400k steps, batch 72)",
    "train_fast_decoder": "not in the paper (decodes with the DAC decoder)",
    "train_teacher": "400k steps, batch 384 (16 x 30 s per GPU on 24)",
    "train_asr_critic": "200k steps (app. C.3), batch not stated",
    "train_sv_critic": "400k steps (app. C.4), batch not stated",
    "distill_student": "g_psi 200k, G and D 40k steps, batch 96 (4 per GPU on 24)",
}
DEPTHS = (1, 2)   # DiTs measured with k encoder and 2k decoder layers at full width (Table 9: k = 8)
DIT_STAGES = ("train_teacher", "distill_student")
LENGTH_FIT = ("train_teacher", "train_asr_critic", "distill_student")   # 30 s items: fitted from short ones


def load(profiles: list[str]) -> Params:
    data = read_yaml("params.yaml")
    for p in profiles:
        data = deep_merge(data, read_yaml(p))
    return from_dict(Params, data)


class ActivationMeter:
    """Bytes saved for backward that are alive at once, excluding parameters (autograd saved-tensor hooks)."""

    def __init__(self, params):
        self.params = {p.untyped_storage().data_ptr() for p in params}
        self.live: dict[int, int] = {}
        self.peak = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in self.params and ptr not in self.live:
            self.live[ptr] = storage.nbytes()
            weakref.finalize(t, self.live.pop, ptr, None)
            self.peak = max(self.peak, sum(self.live.values()))
        return t


def measure(stage: StageStep, seconds: float) -> dict:
    """FLOPs and activation bytes of one loop step per kind in `stage.steps`, one item of `seconds`, weighted
    by `stage.step_weights` into the cost of an average loop step."""
    params = [p for part in stage.parts for p in part.module.parameters()]
    params += [p for net in stage.frozen.values() for p in net.parameters()]
    flops, peak, wall = 0.0, 0, 0.0
    for step, weight in zip(stage.steps, stage.step_weights):
        meter = ActivationMeter(params)
        batch = stage.batch(1, seconds, torch.Generator().manual_seed(step))
        started = time.perf_counter()
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, \
                torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda t: t):
            run_step(stage, batch, step, None)   # math attention: FlopCounterMode counts no CPU SDPA kernel
        wall += weight * (time.perf_counter() - started)
        flops += weight * counter.get_total_flops()
        peak = max(peak, meter.peak)
        for part in stage.parts:
            part.module.zero_grad(set_to_none=True)
    return {"flops": flops, "activation_bytes": peak, "cpu_seconds": wall}


def memory_plan(stage: str, params: Params, built: StageStep) -> list[PartMemory]:
    """The run's networks at full width: the DiTs on the meta device (the student: its own `memory_plan`,
    which the training loop checks, on meta-device frozen networks), the others as `built`."""
    if stage == "distill_student":
        asr_model = asr_config(params).model
        frozen = SimpleNamespace(cfg=params.distill_student, teacher=on_meta(lambda: DiT(params.train_teacher.model)),
                                 asr=on_meta(lambda: LatentASR(asr_model)),
                                 sv=on_meta(lambda: LatentSpeakerVerifier(params.train_sv_critic.model,
                                                                          LatentASR(asr_model))))
        return StudentTask.memory_plan(frozen)
    if stage == "train_teacher":
        return [module_memory("teacher", on_meta(lambda: DiT(params.train_teacher.model)), ema=True)]
    plan = [module_memory(p.name, p.module, p.ema) for p in built.parts]
    return plan + [module_memory(n, net, ema=False, optimised=False) for n, net in built.frozen.items()]


def _fit(points: dict[float, dict], target: float) -> dict:
    """Each measured quantity as c + a T + b T^2 through the three lengths T of `points`, at `target`
    (FLOPs and saved bytes of these models are of that form: per-frame layers, attention over frames and
    phonemes, per-item time embeddings)."""
    lengths = sorted(points)
    out = {}
    for key in ("flops", "activation_bytes", "cpu_seconds"):
        coef = np.polyfit(lengths, [points[t][key] for t in lengths], 2)
        out[key] = float(np.polyval(coef, target))
    return out


def measured(stage: str, params: Params, lengths: tuple[float, ...]) -> dict:
    """Per item of the stage's length. Crop-trained stages (codec, fast decoder, verifier): measured at it.
    Segment-trained ones (recogniser, DiTs, 30 s items): at `lengths` and fitted in length (`_fit`); the DiTs
    also at depths 1 and 2 at full width and extrapolated linearly in depth to Table 9's."""
    step = build(stage, params, depth=DEPTHS[0] if stage in DIT_STAGES else None)
    target = step.item_seconds
    if stage not in LENGTH_FIT:
        return measure(step, target) | {"method": "measured at full size and length", "step": step}
    depths = DEPTHS if stage in DIT_STAGES else (None,)
    fitted, raw = [], {}
    for depth in depths:
        points = {}
        for length in lengths:
            points[length] = measure(build(stage, params, depth), length)
        raw[str(depth or "full")] = {str(t): v for t, v in points.items()}
        fitted.append(_fit(points, target))
    method = f"measured at {', '.join(map(str, lengths))} s and fitted as c + aT + bT^2 to {target:g} s"
    if stage not in DIT_STAGES:
        return fitted[0] | {"method": method, "measured_points": raw, "step": step}
    layers = params.train_teacher.model.encoder_layers
    if params.train_teacher.model.decoder_layers != 2 * layers:
        raise ValueError("paper_plan extrapolates DiTs with twice as many decoder as encoder layers")
    out = {k: fitted[0][k] + (fitted[1][k] - fitted[0][k]) * (layers - DEPTHS[0]) / (DEPTHS[1] - DEPTHS[0])
           for k in fitted[0]}
    return out | {"method": f"{method}; at {DEPTHS[0]}+{2 * DEPTHS[0]} and {DEPTHS[1]}+{2 * DEPTHS[1]} layers, "
                            f"extrapolated linearly in depth to {layers}+{2 * layers}",
                  "measured_points": raw, "step": step}


def plan_stage(stage: str, params: Params, lengths: tuple[float, ...], mfu: float) -> dict:
    torch.manual_seed(0)
    per_item = measured(stage, params, lengths)
    meta: StageStep = per_item.pop("step")
    plan = memory_plan(stage, params, meta)
    items, steps, item_seconds = meta.items_per_gpu, meta.max_steps, meta.item_seconds
    static = sum(p.total for p in plan)
    step_flops = per_item["flops"] * items
    per_gpu_bytes = static + per_item["activation_bytes"] * items
    gpu_hours = {gpu: PAPER_GPUS * steps * step_flops / (peak * mfu) / 3600 for gpu, peak in PEAK_BF16.items()}
    return {
        "stage": stage, "paper": PAPER[stage], "notes": meta.notes,
        "parameters": {p.name: {"trainable": p.trainable, "frozen": p.frozen, "ema": p.ema, "optimised": p.optimised}
                       for p in plan},
        "static_bytes": {"weights": sum(p.weights for p in plan), "gradients": sum(p.gradients for p in plan),
                         "optimizer_state": sum(p.optimizer_state for p in plan),
                         "ema": sum(p.ema_bytes for p in plan), "total": static},
        "measured_per_item": {"seconds_of_audio": item_seconds, **per_item},
        "projected": {"items_per_gpu": items, "flops_per_step_per_gpu": step_flops, "steps": steps,
                      "gpus": PAPER_GPUS, "mfu": mfu, "gpu_hours": gpu_hours,
                      "days_on_24_gpus": {g: h / PAPER_GPUS / 24 for g, h in gpu_hours.items()},
                      "memory_per_gpu_bytes": per_gpu_bytes, "fits_40GB": per_gpu_bytes <= 40e9,
                      "fits_80GB": per_gpu_bytes <= 80e9},
    }


def table(rows: list[dict]) -> str:
    """Markdown: one row per stage, projected figures marked."""
    out = ["| stage | params trained / frozen | weights+grads+AdamW+EMA | activations per item (measured) | "
           "TFLOP per step per GPU (projected) | batch per GPU x steps | A100 GPU-h (projected) | "
           "H100 GPU-h (projected) | memory per GPU (projected) | fits 40 / 80 GB | paper states |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        trained = sum(v["trainable"] for v in r["parameters"].values())
        frozen = sum(v["frozen"] for v in r["parameters"].values())
        m, p = r["measured_per_item"], r["projected"]
        out.append(f"| {r['stage']} | {trained / 1e6:.1f}M / {frozen / 1e6:.1f}M | "
                   f"{r['static_bytes']['total'] / GIB:.1f} GiB | {m['activation_bytes'] / GIB:.2f} GiB "
                   f"({m['seconds_of_audio']:g} s) | {p['flops_per_step_per_gpu'] / 1e12:.1f} | "
                   f"{p['items_per_gpu']} x {p['steps']:,} | {p['gpu_hours']['A100']:,.0f} | "
                   f"{p['gpu_hours']['H100']:,.0f} | {p['memory_per_gpu_bytes'] / GIB:.1f} GiB | "
                   f"{'yes' if p['fits_40GB'] else 'no'} / {'yes' if p['fits_80GB'] else 'no'} | {r['paper']} |")
    total = {g: sum(r["projected"]["gpu_hours"][g] for r in rows) for g in PEAK_BF16}
    out.append(f"| all | | | | | | {total['A100']:,.0f} | {total['H100']:,.0f} | | | |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["profiles/paper.yaml"], help="overlays on params.yaml, in order")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--lengths", type=float, nargs=3, default=[1.0, 2.0, 3.0],
                    help="item lengths (s) measured for the 30-s stages, fitted in length")
    ap.add_argument("--mfu", type=float, default=0.4,
                    help="assumed fraction of the bf16 peak reached (model FLOPs utilisation), default 0.4")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="reports/paper_plan.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load(args.profiles)
    rows = []
    for stage in args.stages:
        started = time.perf_counter()
        rows.append(plan_stage(stage, params, tuple(args.lengths), args.mfu))
        print(f"{stage}: planned in {time.perf_counter() - started:.0f} s", flush=True)
    report = {"profiles": args.profiles, "peak_bf16_flops": PEAK_BF16, "mfu": args.mfu,
              "projected_note": "every figure under 'projected' is a projection, not a measurement",
              "teacher_model": asdict(params.train_teacher.model), "stages": rows, "table": table(rows)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(table(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
