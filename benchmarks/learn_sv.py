"""Does the latent speaker verifier learn on real speech? Distils it (params.yaml's train_sv_critic, the
tiny CPU profile) from the offline teacher (Resemblyzer unless train_sv_critic.teachers names local
weights) for a time budget, then checks it on the speakers of `--valid`, which it never saw: the
equal error rate of same/different-speaker window pairs, and the Pearson and Spearman correlation
of its pair scores with the teacher's. Pass held-out speakers' folders as --valid (LibriSpeech
speaker folders work one by one); windows of one speaker make the same-speaker pairs.

Usage: python benchmarks/learn_sv.py --minutes 30 --train DIR [DIR ...] --valid DIR [DIR ...]
       --codec CKPT [--asr CKPT] [--pitch-shifts S ...] [--steps N] [--threads 1] [--out runs/learn_sv]
       [--corpus DIR] [--params params.yaml]

--asr: a train_asr_critic / learn_asr.py checkpoint, the feature extractor (appendix C.4), fine-tuned or
kept as trained per train_sv_critic.fine_tune_recogniser; without it the recogniser inside starts from scratch. --pitch-shifts (semitones) replaces
train_sv_critic.pitch_shifts (the demo profile keeps one shift to stay fast). The pitch-shifted training copies and their
teacher embeddings are cached in OUT/copies (reused on a rerun with the same inputs); the folders'
latents in --corpus (default OUT/corpus), as for learn_asr.py.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from dmospeech.config import load_params
from dmospeech.codec.folder_corpus import build_folder_corpus
from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.codec.latents import LatentStore
from dmospeech.critics.speaker_copies import build_speaker_copies, speaker_trials
from dmospeech.critics.asr import LatentASR
from dmospeech.codec.model import Codec
from dmospeech.critics.speaker_teachers import build_teacher
from dmospeech.ops.training import train
from dmospeech.critics.sv_trainer import SpeakerCopyDataset, SVCriticTask, pair_scores



def show(name: str, metrics: dict[str, float]) -> str:
    return (f"{name}: EER {100 * metrics['valid/eer']:.1f} %, Pearson {metrics['valid/pearson']:.3f}, Spearman "
            f"{metrics['valid/spearman']:.3f} with the teacher's scores, cosine to the teacher "
            f"{metrics['valid/teacher_cosine']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True)
    parser.add_argument("--codec", type=Path, required=True, help="codec checkpoint folder (train_codec step_<n>)")
    parser.add_argument("--asr", type=Path, default=None, help="recogniser checkpoint (the feature extractor)")
    parser.add_argument("--pitch-shifts", type=float, nargs="+", default=None, help="semitones of the copies")
    parser.add_argument("--steps", type=int, default=0, help="cosine schedule length (0: constant after warmup)")
    parser.add_argument("--valid-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/learn_sv"))
    parser.add_argument("--corpus", type=Path, default=None, help="latent cache of the folders (default OUT/corpus)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    cfg = params.train_sv_critic
    if args.pitch_shifts is not None:
        cfg = replace(cfg, pitch_shifts=tuple(args.pitch_shifts))
    corpus = args.corpus or args.out / "corpus"
    started = time.perf_counter()
    train_items, valid_items, stats = build_folder_corpus(args.train, args.valid, corpus, args.codec, params)
    train_items = [it for it in train_items if it.num_frames <= int(cfg.max_seconds * FRAME_RATE)]
    teacher, store = build_teacher(cfg.teachers), LatentStore(corpus)
    codec = Codec.from_checkpoint(args.codec)
    copies, embeddings = build_speaker_copies(train_items, store, codec, str(args.codec), teacher, cfg.pitch_shifts,
                                              args.out / "copies", params.encode_latents.shard_frames,
                                              params.encode_latents.use_mean)
    trials = speaker_trials(valid_items, store, stats, teacher, cfg.trial_seconds, codec.cfg.sample_rate, FRAME_RATE)
    _, same = pair_scores(trials.teacher, trials.speakers)
    print(f"data ready in {(time.perf_counter() - started) / 60:.1f} min: {len(copies)} training copies "
          f"({len(train_items)} segments x {1 + len(cfg.pitch_shifts)} pitches, "
          f"{len({c.speaker for c in copies})} identities); {len(trials.speakers)} held-out windows of "
          f"{cfg.trial_seconds:g} s from {len(set(trials.speakers))} unseen speakers, {int(same.sum())} same- and "
          f"{int((~same).sum())} different-speaker pairs; teacher {teacher.identity}")
    for sub in ("checkpoints", "report"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    loop = replace(cfg.loop, max_minutes=args.minutes, max_steps=args.steps or 10**9, checkpoint_every=10**9,
                   valid_every=args.valid_every, log_every=20, out_dir=str(args.out / "checkpoints"),
                   report_dir=str(args.out / "report"))
    dataset = SpeakerCopyDataset(copies, embeddings, LatentStore(args.out / "copies"), stats,
                                 int(cfg.crop_seconds * FRAME_RATE), FRAME_RATE)
    asr_model = LatentASR.from_checkpoint(args.asr).cfg if args.asr else params.train_asr_critic.model
    task = SVCriticTask(replace(cfg, loop=loop), dataset, trials, asr_model, str(args.asr) if args.asr else None,
                        teacher.identity)
    torch.manual_seed(loop.seed)
    task.parts()
    before = task.evaluate(task._part.module)
    start = time.perf_counter()
    result = train(task, loop, task.run_config())
    minutes = (time.perf_counter() - start) / 60
    after = task.validate(result.step)
    recogniser = "trained from scratch" if not args.asr else (
        f"{'fine-tuned' if cfg.fine_tune_recogniser else 'frozen'} from {args.asr}")
    print(f"steps: {result.step} in {minutes:.1f} min ({result.stop_reason}); checkpoint {result.checkpoint}; "
          f"recogniser {recogniser}")
    print(f"teacher ({teacher.name}) on the same pairs: EER {100 * after['valid/teacher_eer']:.1f} %")
    print(show("latent verifier at step 0", before))
    print(show(f"latent verifier at step {result.step} (EMA)", after))
    print(f"curves: {Path(loop.report_dir) / 'dvclive' / 'plots' / 'metrics' / 'valid'}")


if __name__ == "__main__":
    main()
