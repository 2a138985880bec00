"""Does the latent CTC recogniser learn on real speech? Trains it (params.yaml's train_asr_critic, the
tiny CPU profile) for a time budget on the latents of `--train` and prints the phone error rate of
greedy decoding on the held-out `--valid` recordings at step 0 and at the end (EMA weights).

Usage: python benchmarks/learn_asr.py --minutes 30 --train DIR [DIR ...] --valid DIR [DIR ...]
       [--valid DIR ...] --codec CKPT [--steps N] [--threads 1] [--out runs/learn_asr] [--corpus DIR]
       [--params params.yaml] [--distill-weight W] [--posterior-weight W] [--speed-perturb F ...]

Folders of any layout `dmospeech.codec.folder_corpus` recognises (LibriSpeech, LJ Speech, sidecar
.txt, manifest.csv) are conditioned, phonemized and encoded by the codec checkpoint once (cached in
--corpus, default OUT/corpus). Each `--valid` is a group (say unseen speakers, and held-out
recordings of training speakers) validated together and reported apart at the end; groups are told
apart by speaker, so a speaker must not be in two groups. `--steps` sets the cosine schedule's
length (the run still stops at --minutes); without it the learning rate stays at its peak after
warmup. Writes OUT/per_curve.tsv
(step, phone error rate), the dvclive curves in OUT/report and reference/hypothesis examples in
OUT/report/examples.txt; the final checkpoint is in OUT/checkpoints (input of learn_sv.py --asr).
With train_asr_critic.distill.weight or posterior_weight > 0 (or --distill-weight, --posterior-weight),
the Whisper encoder states of the training segments are computed once before the budget starts
(cached in CORPUS/whisper_states, like the codec latents) and the time they took is printed apart.
With posterior_weight > 0, fitting the Whisper phone head (dmospeech.critics.whisper_phones) is
training and comes out of the budget; its own phone error rate on the held-out segments' Whisper
states is printed as the ceiling of what the latent recogniser is distilled toward.
train_asr_critic.speed_perturb.factors (or --speed-perturb 0.9 1.1; --speed-perturb 1 for none) adds
the training segments played at those speeds (dmospeech.critics.speed_copies), encoded once before the
budget starts (cached in CORPUS/speed_copies); the validation segments are never changed.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from dmospeech.ops.atomic import write_text_atomic
from dmospeech.config import load_params
from dmospeech.codec.folder_corpus import build_folder_corpus, items_below
from dmospeech.codec.latent_text import FRAME_RATE, LatentTextDataset
from dmospeech.codec.latents import LatentStore
from dmospeech.critics.speed_copies import recogniser_speed_copies, with_copies_states
from dmospeech.critics.whisper_states import whisper_encoder_states
from dmospeech.critics.whisper_phones import head_phone_error_rate
from dmospeech.data.text import Vocabulary
from dmospeech.ops.train_monitor import logged_metric
from dmospeech.ops.training import train
from dmospeech.critics.asr_trainer import ASRCriticTask



def curve(report_dir: Path, first: tuple[int, float], last: tuple[int, float]) -> list[tuple[int, float]]:
    """(step, PER) at step 0, at every validation of the run (dvclive's file) and at the end."""
    points = [first]
    points += list((logged_metric(report_dir, "valid/per") or {}).items())
    return sorted({step: per for step, per in points + [last]}.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True, action="append", help="a validation group")
    parser.add_argument("--codec", type=Path, required=True, help="codec checkpoint folder (train_codec step_<n>)")
    parser.add_argument("--steps", type=int, default=0, help="cosine schedule length (0: constant after warmup)")
    parser.add_argument("--valid-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/learn_asr"))
    parser.add_argument("--corpus", type=Path, default=None, help="latent cache of the folders (default OUT/corpus)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--distill-weight", type=float, default=None,
                        help="train_asr_critic.distill.weight for this run (0: no Whisper-state prediction)")
    parser.add_argument("--posterior-weight", type=float, default=None,
                        help="train_asr_critic.distill.posterior_weight for this run (0: no phone-posterior KL)")
    parser.add_argument("--speed-perturb", type=float, nargs="+", default=None,
                        help="train_asr_critic.speed_perturb.factors for this run (1: no copies)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    corpus = args.corpus or args.out / "corpus"
    started = time.perf_counter()
    train_items, valid_items, stats = build_folder_corpus(args.train, [f for g in args.valid for f in g], corpus,
                                                          args.codec, params)
    max_frames = int(params.train_asr_critic.max_seconds * FRAME_RATE)
    train_items = [it for it in train_items if it.num_frames <= max_frames]
    print(f"corpus ready in {(time.perf_counter() - started) / 60:.1f} min")
    factors = params.train_asr_critic.speed_perturb.factors
    if args.speed_perturb is not None:
        factors = tuple(f for f in args.speed_perturb if f != 1)
    started = time.perf_counter()
    copies = recogniser_speed_copies(train_items, factors, corpus / "speed_copies", str(args.codec), corpus,
                                     params.encode_latents.shard_frames, params.encode_latents.use_mean, max_frames)
    if copies:
        print(f"{len(copies)} speed-perturbed copies (x{' x'.join(f'{f:g}' for f in factors)}) ready in "
              f"{(time.perf_counter() - started) / 60:.1f} min (outside the training budget)")
    for sub in ("checkpoints", "report"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    loop = replace(params.train_asr_critic.loop, max_minutes=args.minutes, max_steps=args.steps or 10**9,
                   checkpoint_every=10**9, valid_every=args.valid_every, log_every=20,
                   out_dir=str(args.out / "checkpoints"), report_dir=str(args.out / "report"))
    cfg = replace(params.train_asr_critic, loop=loop)
    if args.distill_weight is not None:
        cfg = replace(cfg, distill=replace(cfg.distill, weight=args.distill_weight))
    if args.posterior_weight is not None:
        cfg = replace(cfg, distill=replace(cfg.distill, posterior_weight=args.posterior_weight))
    encoder_states = None
    if cfg.distill.uses_whisper:
        started = time.perf_counter()
        encoder_states = whisper_encoder_states(train_items, cfg.distill.whisper_model, corpus / "whisper_states",
                                                threads=args.threads)
        print(f"whisper {cfg.distill.whisper_model} encoder states of {len(train_items)} segments ready in "
              f"{(time.perf_counter() - started) / 60:.1f} min (outside the training budget)")
        encoder_states = with_copies_states(encoder_states, copies)
    cfg = replace(cfg, speed_perturb=replace(cfg.speed_perturb, factors=factors))
    store = LatentStore(corpus)
    started = time.perf_counter()
    task = ASRCriticTask(cfg, LatentTextDataset(train_items + copies, store, stats, FRAME_RATE),
                         LatentTextDataset(valid_items, store, stats, FRAME_RATE),
                         Vocabulary.load(params.phonemize_text.vocab_path).symbols, loop.report_dir, encoder_states)
    head_minutes = (time.perf_counter() - started) / 60
    if task.phone_head is not None:  # its fitting is training: it comes out of the budget
        loop = replace(loop, max_minutes=args.minutes - head_minutes)
        valid_states = whisper_encoder_states(valid_items, cfg.distill.whisper_model, corpus / "whisper_states_valid",
                                              threads=args.threads)
        head_per = head_phone_error_rate(
            task.phone_head, [task.standardised_states(it.segment_id, it.num_frames, valid_states) for it in valid_items],
            [it.phoneme_ids for it in valid_items])
        print(f"Whisper phone head ({cfg.distill.phone_head.steps} steps) fitted in {head_minutes:.1f} min (inside "
              f"the budget): phone error rate {100 * head_per:.1f} % on the held-out segments' Whisper states (not "
              f"latents), the ceiling of posterior distillation (weight {cfg.distill.posterior_weight})")
    print(f"train: {len(train_items)} segments + {len(copies)} speed copies, {sum(task.durations) / 60:.1f} min; "
          f"valid: {len(valid_items)} segments, {sum(it.num_frames for it in valid_items) / FRAME_RATE / 60:.1f} min; "
          f"threads {args.threads}; "
          f"distill weight {cfg.distill.weight}, posterior weight {cfg.distill.posterior_weight}")
    torch.manual_seed(loop.seed)
    task.parts()
    before = task.evaluate(task._part.module)
    start = time.perf_counter()
    result = train(task, loop, task.run_config())
    minutes = (time.perf_counter() - start) / 60
    after = task.validate(result.step)
    groups = {}
    if len(args.valid) > 1:
        with task._part.ema_weights() as asr:
            for group in args.valid:
                items = items_below(valid_items, group, tuple(params.prepare_corpus.audio_extensions))
                if not items:
                    print(f"  no held-out segment comes from {' '.join(map(str, group))[:80]}")
                    continue
                groups[" ".join(f.name for f in group)] = (len(items), task.evaluate(
                    asr, valid=LatentTextDataset(items, store, stats, FRAME_RATE))["valid/per"])
    points = curve(Path(loop.report_dir), (0, before["valid/per"]), (result.step, after["valid/per"]))
    write_text_atomic(args.out / "per_curve.tsv", "step\tper\n" + "".join(f"{s}\t{p:.4f}\n" for s, p in points))
    print(f"steps: {result.step} in {minutes:.1f} min ({result.stop_reason}); checkpoint {result.checkpoint}")
    print(f"phone error rate on held-out segments: step 0 {100 * before['valid/per']:.1f} % -> step {result.step} "
          f"{100 * after['valid/per']:.1f} % (EMA); CTC loss {before['valid/ctc_loss']:.3f} -> "
          f"{after['valid/ctc_loss']:.3f}")
    for name, (count, per) in groups.items():
        print(f"  {100 * per:.1f} % on the {count} segments of {name[:80]}")
    print(f"curve: {args.out / 'per_curve.tsv'}; examples: {Path(loop.report_dir) / 'examples.txt'}")


if __name__ == "__main__":
    main()
