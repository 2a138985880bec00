"""Does the tiny codec learn on real speech? Trains it on CPU for a time budget and prints the
multi-scale mel loss on held-out clips at step 0 and at the end (EMA weights), and with the semantic
term (train_codec.semantic, --semantic-weight; 0 trains without it and its head) its held-out
semantic loss beside it. The Whisper states are cached in OUT/whisper_states, which a rerun keeps.

With --encoder-from CODEC_CHECKPOINT it trains the fast decoder instead (train_fast_decoder's
settings): that codec's encoder is frozen and a Vocos-style decoder learns its latents. It also
prints the mel loss of the codec's own (DAC) decoder on the same held-out clips.

Usage: python benchmarks/learn_codec.py --minutes 30 --train DIR [DIR ...] --valid DIR [DIR ...]
       [--valid-clips 8] [--out runs/learn_codec] [--params params.yaml] [--encoder-from CKPT]
       [--valid-every N] [--threads 2] [--semantic-weight W] [--steps N]
       [--checkpoint-every N] [--resume]

`--steps` sets the length of the cosine learning-rate schedule (warmup, then `lr` down to `min_lr` at
step N; the run stops at step N or at --minutes, whichever comes first): set it to the steps the
budget allows (a constant-rate run's figure) to end the budget at the low rate. Without it the rate
stays at its peak.

A budget can be spent in parts: `--checkpoint-every N` saves every N steps (besides the end), and
`--resume` with the same arguments continues OUT's run from its latest checkpoint (exact resume:
weights, optimisers, schedule, RNG and data order) for another --minutes.

Every audio file below the folders is used (any rate; converted to 48 kHz mono FLAC with the
resample_audio settings). Decoded clips and a spectrogram comparison go to OUT/report/samples.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from dmospeech.ops.audio import AudioError, write_audio_atomic
from dmospeech.ops.files import files_below
from dmospeech.config import load_params
from dmospeech.data.datasets import Clip
from dmospeech.data.resample import condition_file
from dmospeech.codec.model import Codec
from dmospeech.ops.training import train
from dmospeech.codec.trainer import CodecTask

EXTS = {".wav", ".flac", ".mp3", ".ogg"}


def prepare_clips(folders: list[Path], work: Path, cfg) -> list[Clip]:
    """Every audio file below `folders` as a 48 kHz mono FLAC clip in `work`."""
    clips = []
    for folder in folders:
        for path in files_below(folder, suffixes=EXTS):
            out = work / f"{len(clips):06d}.flac"
            try:
                audio, info = condition_file(str(path), cfg)
            except AudioError as err:
                print(f"skipped {path}: {err}")
                continue
            write_audio_atomic(out, audio, cfg.sample_rate)
            clips.append(Clip(path.stem, str(out), 0.0, info["duration_s"]))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True)
    parser.add_argument("--valid-clips", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("runs/learn_codec"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--encoder-from", type=Path, default=None,
                        help="a trained codec checkpoint: train the fast decoder on its frozen encoder")
    parser.add_argument("--valid-every", type=int, default=10**9, help="validation curve in OUT/report/dvclive")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--semantic-weight", type=float, default=None,
                        help="train_codec.semantic.weight (default: the params'); 0 also drops the semantic head "
                             "(the fast decoder never has the term)")
    parser.add_argument("--steps", type=int, default=0, help="cosine schedule length (0: constant after warmup)")
    parser.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (0: at the end)")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT's run from its latest checkpoint (same arguments) for another --minutes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    states_dir = args.out / "whisper_states"
    if args.resume and not list((args.out / "checkpoints").glob("step_*")):
        raise SystemExit(f"--resume: no checkpoint in {args.out / 'checkpoints'} to continue")
    for child in [] if args.resume else args.out.glob("*"):   # a fresh run, except for the cached Whisper states
        if child != states_dir:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    train_clips = prepare_clips(args.train, args.out / "audio" / "train", params.resample_audio)
    valid_clips = prepare_clips(args.valid, args.out / "audio" / "valid", params.resample_audio)
    valid_clips = sorted(valid_clips, key=lambda c: -c.duration_s)[: args.valid_clips]
    base = params.train_codec if args.encoder_from is None else params.train_fast_decoder
    loop = replace(base.loop, max_minutes=args.minutes, max_steps=args.steps or 10**9, checkpoint_every=args.checkpoint_every or 10**9,
                   valid_every=args.valid_every, out_dir=str(args.out / "checkpoints"),
                   report_dir=str(args.out / "report"))
    if args.encoder_from is None:
        cfg = params.train_codec
        weight = cfg.semantic.weight if args.semantic_weight is None else args.semantic_weight
        cfg = replace(cfg, loop=loop, semantic=replace(cfg.semantic, weight=weight, cache_dir=str(states_dir)),
                      model=replace(cfg.model, semantic_dim=cfg.model.semantic_dim if weight > 0 else 0))
    else:
        own_codec = Codec.from_checkpoint(args.encoder_from)
        cfg = replace(params.train_fast_decoder, loop=loop).codec_training(own_codec.cfg)
        cfg = replace(cfg, semantic=replace(cfg.semantic, cache_dir=str(states_dir)))  # a Whisper input's states
    started = time.perf_counter()
    task = CodecTask(cfg, train_clips, valid_clips, loop.report_dir, encoder_from=args.encoder_from)
    print(f"train: {len(train_clips)} clips, {sum(c.duration_s for c in train_clips) / 60:.1f} min; "
          f"valid: {len(valid_clips)} clips of up to {cfg.valid_seconds:g} s")
    if task.targets is not None:
        print(f"semantic term: weight {cfg.semantic.weight:g} from step {cfg.semantic.start_step}; Whisper "
              f"{cfg.semantic.whisper_model} states in {time.perf_counter() - started:.1f} s ({states_dir})")
    if cfg.whisper_feature.weight > 0:
        print(f"Whisper feature loss: weight {cfg.whisper_feature.weight:g}, Whisper {cfg.whisper_feature.whisper_model} "
              "(a torch copy of its encoder)")
    torch.manual_seed(loop.seed)
    task.parts()
    if args.encoder_from is not None:
        print(f"fast decoder on the frozen encoder of {args.encoder_from}; that codec's own decoder scores "
              f"validation mel loss {task.validation_mel_loss(own_codec):.3f}")
    codec = task._parts["codec"].module
    before = task.validation_losses(codec)
    start = time.perf_counter()
    result = train(task, loop, task.run_config())
    minutes = (time.perf_counter() - start) / 60
    after = task.validate(result.step)
    part = f" (resumed at step {result.resumed_from})" if result.resumed_from is not None else ""
    print(f"steps: {result.step} in {minutes:.1f} min{part} ({result.stop_reason})")
    for key, name in (("valid/mel_loss", "mel"), ("valid/semantic_loss", "semantic"),
                      ("valid/whisper_feature_loss", "Whisper feature")):
        if key in before:
            print(f"validation {name} loss: step 0 {before[key]:.3f} -> step {result.step} {after[key]:.3f} "
                  f"({100 * (before[key] - after[key]) / before[key]:.1f} % lower)")
    print(f"samples: {Path(loop.report_dir) / 'samples'}")


if __name__ == "__main__":
    main()
