"""Does DMD2 distillation work on real speech? From a trained teacher and critics, distils students on
CPU (distill_student params, `--minutes` per run) and prints, on held-out sentences continued from
their own first 30 % (same seeds for every model):
  (a) distance of 4-step student samples to the teacher's 128-step samples, next to the distance of
      the teacher's own 4-step DDPM samples to them: the mean mel-DTW distance of paired samples (same
      sentence, prompt and seed), and the Frechet distance between the log-mel frame distributions of
      all samples (the samplers draw different renditions, so a distribution distance is the one DMD
      optimises); --floor adds both distances for the teacher's own samples (evaluate.teacher_sampler) with other seeds;
  (b) the recogniser's CTC loss on student samples with lambda_CTC on vs off (ablation run);
  (c) the verifier's cosine between student samples and their prompt with lambda_SV on vs off.

Usage: python benchmarks/learn_student.py --minutes 15 --train DIR [DIR ...] --valid DIR [DIR ...]
       --codec CKPT --teacher CKPT --asr CKPT --sv CKPT [--runs full no_ctc no_sv] [--sentences 8]
       [--seeds 2] [--threads 2] [--out runs/learn_student] [--corpus DIR] [--weight TERM=VALUE ...] [--floor]
       [--params params.yaml]

Each run writes OUT/<run>/result.json; the comparisons also use runs that other processes wrote to the
same OUT on the same inputs, so the runs can go one per core (say `--runs full` and `--runs no_ctc`
with `--threads 1` side by side). All terms start at generator step 0 here (the paper's 5k/10k delays are for 40k-step runs).
Each run prints the mean gradient norm every weighted term gives G's output: section 3.4 sets each
lambda so that its term's norm is comparable to DMD's, and `--weight ctc=...` applies that rule to
critics of another strength than the paper's (a weak recogniser's gradient is orders of magnitude smaller).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from dmospeech.ops.atomic import write_json_atomic
from dmospeech.ops.checkpoint import read_run_config
from dmospeech.config import DiffusionConfig, load_params
from dmospeech.codec.folder_corpus import build_folder_corpus
from dmospeech.codec.latent_text import LatentTextDataset
from dmospeech.codec.latents import LatentStore, denormalize
from dmospeech.evaluation.distances import frechet_distance, log_mel, mel_dtw_distance
from dmospeech.critics.asr import LatentASR, ctc_loss
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.critics.speaker import LatentSpeakerVerifier
from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.teacher.sampling import student_latents, teacher_latents
from dmospeech.ops.train_monitor import logged_metric
from dmospeech.ops.training import train
from dmospeech.student.metric_losses import speaker_cosine
from dmospeech.student.trainer import PROMPT_FRACTION, StudentTask

RUNS = {"full": {}, "no_ctc": {"ctc": 0.0}, "no_sv": {"sv": 0.0}}


def sentence_latents(sampler, data: LatentTextDataset, indices, seeds, seed_offset: int = 0) -> list[torch.Tensor]:
    out = []
    for i in indices:
        truth = data.latents(i)
        n_prompt = max(1, int(PROMPT_FRACTION * len(truth)))
        for seed in range(seeds):
            out.append(sampler(torch.tensor(data.items[i].phoneme_ids), truth[:n_prompt], len(truth),
                               torch.Generator().manual_seed(1000 * i + seed + seed_offset)))
    return out


def grad_norms(report_dir: Path) -> dict[str, float]:
    """Mean of the logged grad_norm_x0/<term> curves of a run (dvclive's tsv files)."""
    out = {}
    for path in sorted((report_dir / "dvclive" / "plots" / "metrics" / "grad_norm_x0").glob("*.tsv")):
        values = list(logged_metric(report_dir, f"grad_norm_x0/{path.stem}").values())
        out[path.stem] = float(np.mean(values)) if values else float("nan")
    return out


def critic_scores(latents, data, indices, seeds, asr, sv) -> tuple[float, float]:
    """Mean CTC loss of the recogniser and mean verifier cosine to the prompt over the samples."""
    ctc, cosines = [], []
    pairs = [(i, s) for i in indices for s in range(seeds)]
    with torch.no_grad():
        for z, (i, _) in zip(latents, pairs):
            ids = torch.tensor(data.items[i].phoneme_ids)[None]
            mask = torch.ones(1, len(z), dtype=torch.bool)
            ctc.append(float(ctc_loss(asr(z[None], mask)["logits"], mask, ids, torch.ones_like(ids, dtype=torch.bool))[0]
                             ["ctc/loss"]))
            prompt = torch.arange(len(z))[None] < max(1, int(PROMPT_FRACTION * len(z)))
            cos, _ = speaker_cosine(sv, z[None], ~prompt, prompt)
            cosines += cos.tolist()
    return float(np.mean(ctc)), float(np.mean(cosines))


def generated_audio(latents, codec: Codec, stats, n_prompts) -> list[np.ndarray]:
    """Each sample decoded by the codec, without its prompt."""
    hop = codec.hop_length
    with torch.no_grad():
        return [codec.decode(denormalize(z, stats).T[None])[0, 0].numpy()[n * hop:] for z, n in zip(latents, n_prompts)]


def distances(audio, reference, rate: int) -> tuple[float, float]:
    """(mean paired mel-DTW distance, Fréchet distance between the log-mel frame distributions) of
    generated audio to the reference renditions of the same sentences and seeds."""
    dtw = float(np.mean([mel_dtw_distance(x, y, rate) for x, y in zip(audio, reference)]))
    frames = lambda clips: np.concatenate([log_mel(c, rate) for c in clips])  # noqa: E731
    return dtw, frechet_distance(frames(audio), frames(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="per distillation run")
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True)
    for name in ("codec", "teacher", "asr", "sv"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"{name} checkpoint folder (step_<n>)")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/learn_student"))
    parser.add_argument("--corpus", type=Path, default=None,
                        help="latent cache of the folders (default OUT/corpus; shared with learn_asr.py/learn_sv.py)")
    parser.add_argument("--floor", action="store_true",
                        help="also print the distance between two seeds of the teacher's own samples (evaluate.teacher_sampler)")
    parser.add_argument("--weight", action="append", default=[], metavar="TERM=VALUE",
                        help="set a loss weight of every run before its ablation, e.g. ctc=1000 (distill_student.loss_weights)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    teacher_run = read_run_config(args.teacher)
    diffusion = DiffusionConfig.from_run_config(teacher_run["diffusion"])
    sampler = params.evaluate.teacher_sampler
    base = params.distill_student
    try:
        chosen = {k: float(v) for k, v in (w.split("=", 1) for w in args.weight)}
    except ValueError:
        parser.error(f"--weight takes TERM=VALUE (say ctc=1000), got {args.weight}")
    unknown = set(chosen) - set(base.loss_weights)
    if unknown:
        parser.error(f"--weight: unknown term(s) {sorted(unknown)}; known: {sorted(base.loss_weights)}")
    base = replace(base, loss_weights=dict(base.loss_weights) | chosen)
    corpus = args.corpus or args.out / "corpus"
    train_items, valid_items, stats = build_folder_corpus(args.train, args.valid, corpus, args.codec, params)
    max_frames = int(base.max_seconds * FRAME_RATE)  # one cache for every benchmark; each keeps its own length limit
    train_items = [it for it in train_items if it.num_frames <= max_frames]
    valid_items = [it for it in valid_items if it.num_frames <= max_frames]
    store = LatentStore(corpus)
    train_set = LatentTextDataset(train_items, store, stats, FRAME_RATE)
    valid_set = LatentTextDataset(valid_items, store, stats, FRAME_RATE)
    codec = Codec.from_checkpoint(args.codec).eval()
    teacher = DiT.from_checkpoint(args.teacher, "teacher")
    asr, sv = LatentASR.from_checkpoint(args.asr), LatentSpeakerVerifier.from_checkpoint(args.sv)
    indices = [int(i) for i in np.linspace(0, len(valid_set) - 1, min(args.sentences, len(valid_set))).round()]
    n_prompts = [max(1, int(PROMPT_FRACTION * valid_set.items[i].num_frames)) for i in indices for _ in range(args.seeds)]
    teacher_steps = lambda steps: (lambda ph, pr, n, g: teacher_latents(  # noqa: E731
        teacher, ph, pr, n, diffusion.shift, replace(sampler, steps=steps), g))
    rate = codec.cfg.sample_rate
    reference = generated_audio(sentence_latents(teacher_steps(sampler.steps), valid_set, indices, args.seeds),
                                codec, stats, n_prompts)
    teacher4 = generated_audio(sentence_latents(teacher_steps(4), valid_set, indices, args.seeds), codec, stats, n_prompts)
    print(f"train: {len(train_set)} segments ({sum(train_set.durations) / 60:.1f} min); {len(indices)} held-out "
          f"sentences x {args.seeds} seeds; teacher {args.teacher}")
    print("distances to the teacher's {}-step samples: mel-DTW (paired, same sentence and seed) and Frechet "
          "distance of the log-mel frame distributions".format(sampler.steps))
    print("teacher 4-step DDPM: mel-DTW {:.3f}, Frechet {:.3f}".format(*distances(teacher4, reference, rate)))
    if args.floor:   # two renditions of the teacher itself: the distance a sampler of the same distribution gets
        again = generated_audio(sentence_latents(teacher_steps(sampler.steps), valid_set, indices, args.seeds,
                                                 seed_offset=500), codec, stats, n_prompts)
        print("teacher {}-step, other seeds (floor): mel-DTW {:.3f}, Frechet {:.3f}".format(
            sampler.steps, *distances(again, reference, rate)))
    results = {}
    inputs = {"sentences": indices, "seeds": args.seeds, "teacher": str(args.teacher.resolve()),
              "asr": str(args.asr.resolve()), "sv": str(args.sv.resolve()), "minutes": args.minutes,
              "weights": dict(base.loss_weights)}
    for run in args.runs:
        weights = dict(base.loss_weights) | RUNS[run]
        loop = replace(base.loop, max_minutes=args.minutes, max_steps=10**9, checkpoint_every=10**9, valid_every=10**9,
                       log_every=25, out_dir=str(args.out / run / "checkpoints"), report_dir=str(args.out / run / "report"))
        cfg = replace(base, loss_weights=weights, loss_start_steps={k: 0 for k in weights}, loop=loop)
        shutil.rmtree(args.out / run, ignore_errors=True)
        extra = {"codec_checkpoint": str(args.codec), "latent_stats": asdict(stats),
                 "resample_audio": asdict(params.resample_audio), "phonemize_text": asdict(params.phonemize_text)}
        task = StudentTask(cfg, train_set, valid_set, teacher, diffusion, asr, sv, extra)
        start = time.perf_counter()
        result = train(task, loop, task.run_config())
        student = DiT.from_checkpoint(result.checkpoint, "generator")
        samples = sentence_latents(lambda ph, pr, n, g: student_latents(student, ph, pr, n, cfg.student_times,
                                                                       diffusion.shift, g), valid_set, indices, args.seeds)
        ctc, cosine = critic_scores(samples, valid_set, indices, args.seeds, asr, sv)
        dtw, frechet = distances(generated_audio(samples, codec, stats, n_prompts), reference, rate)
        results[run] = (ctc, cosine)
        write_json_atomic(args.out / run / "result.json",
                          {"inputs": inputs, "ctc": ctc, "cosine": cosine, "mel_dtw": dtw, "frechet": frechet,
                           "loop_steps": result.step}, indent=None)
        print(f"[{run}] weights {weights}: {result.step} loop steps ({result.step // cfg.score_updates_per_generator} "
              f"generator steps) in {(time.perf_counter() - start) / 60:.1f} min; student 4-step vs teacher "
              f"{sampler.steps}-step: mel-DTW {dtw:.3f}, Frechet {frechet:.3f}; recogniser CTC loss {ctc:.3f}; "
              f"verifier cosine to prompt {cosine:.3f}")
        norms = grad_norms(args.out / run / "report")
        print(f"[{run}] mean gradient norm each weighted term gives G's output (section 3.4): "
              + ", ".join(f"{k} {v:.3g}" for k, v in norms.items()))
    for other in RUNS:  # runs made by other processes (say one run per core) on the same inputs
        saved = args.out / other / "result.json"
        if other not in results and saved.exists() and json.loads(saved.read_text())["inputs"] == inputs:
            results[other] = tuple(json.loads(saved.read_text())[k] for k in ("ctc", "cosine"))
            print(f"[{other}] from {saved}: recogniser CTC loss {results[other][0]:.3f}; verifier cosine to prompt "
                  f"{results[other][1]:.3f}")
    if "full" in results and "no_ctc" in results:
        print(f"(b) CTC loss on student samples: lambda_CTC on {results['full'][0]:.3f} vs off {results['no_ctc'][0]:.3f}")
    if "full" in results and "no_sv" in results:
        print(f"(c) verifier cosine to prompt: lambda_SV on {results['full'][1]:.3f} vs off {results['no_sv'][1]:.3f}")


if __name__ == "__main__":
    main()
