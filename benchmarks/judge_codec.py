"""Issue 22's whole measurement of one codec recipe, resumable across sessions: trains the codec for a fixed
number of steps, then the fast decoder on its frozen encoder, and judges both the way every codec here is
judged (decoder_quality.py, probe_phones.py, learn_asr.py). Each stage is the benchmark script itself, run
as a child process with its output in RUN/<stage>.log; a stage that finished leaves RUN/<stage>.done and
is skipped on a rerun, and the two training stages continue from their latest checkpoint (`--resume`),
so the same command picks the work up after a machine stops.

  codec    learn_codec.py --steps CODEC_STEPS --checkpoint-every 100 [CODEC_ARG ...]   -> RUN/codec
  fast     learn_codec.py --steps FAST_STEPS --encoder-from RUN/codec's last checkpoint -> RUN/fast
  quality  decoder_quality.py --codec ... --fast ... --valid QUALITY_VALID
  probe    probe_phones.py --codec ... --skip-mel --valid QUALITY_VALID
  asr      learn_asr.py --codec ... --minutes ASR_MINUTES --steps ASR_STEPS --valid QUALITY_VALID --valid VALID...

Step counts stand in for CPU time, so that a run shared with other jobs gets the same training: 1739
codec steps are what 150 one-thread minutes gave the codec the README compares against, 837 fast-decoder
steps what 90 minutes gave its fast decoder.

Usage: python benchmarks/judge_codec.py --run RUN --train DIR... --valid DIR... --quality-valid DIR
       [--codec-steps 1739] [--fast-steps 837] [--asr-minutes 30] [--asr-steps 3000] [--threads 1]
       [--params params.yaml] [--only STAGE ...] [-- CODEC_ARG ...]
e.g.   ... --params my_params.yaml            (a recipe in its own params file)
       ... -- --semantic-weight 0             (arguments after -- go to the codec's learn_codec.py)
Prints each finished stage's figures at the end.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from dmospeech.ops.checkpoint import latest_checkpoint

HERE = Path(__file__).resolve().parent
STAGES = ("codec", "fast", "quality", "probe", "asr")
FIGURES = ("validation mel loss", "validation semantic loss", "steps:", "mel loss", "WER per recording", "phone error rate",
           " % on the ")


def last_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint of a learn_codec.py run in `out` (the one its --resume continues)."""
    return latest_checkpoint(out / "checkpoints")


def commands(args, extra: list[str]) -> dict[str, list[str]]:
    py, run = [sys.executable], args.run
    folders = ["--train", *map(str, args.train), "--valid", *map(str, args.valid)]
    common = ["--threads", str(args.threads), "--params", args.params]
    codec = run / "codec"
    codec_ckpt = last_checkpoint(codec)
    codec_arg = str(codec_ckpt)
    fast_ckpt = last_checkpoint(run / "fast")
    quality = str(args.quality_valid)
    return {
        "codec": py + [str(HERE / "learn_codec.py"), "--minutes", "100000", "--steps", str(args.codec_steps),
                       "--checkpoint-every", "100", "--out", str(codec), *folders, *common, *extra]
                 + (["--resume"] if codec_ckpt else []),
        "fast": py + [str(HERE / "learn_codec.py"), "--minutes", "100000", "--steps", str(args.fast_steps),
                      "--checkpoint-every", "100", "--encoder-from", codec_arg, "--out", str(run / "fast"),
                      *folders, *common] + (["--resume"] if fast_ckpt else []),
        "quality": py + [str(HERE / "decoder_quality.py"), "--codec", codec_arg, "--valid", quality, *common]
                   + (["--fast", str(fast_ckpt)] if fast_ckpt else []),   # without a fast stage: the codec's own decoder
        "probe": py + [str(HERE / "probe_phones.py"), "--codec", codec_arg, "--skip-mel", "--corpus",
                       str(run / "probe_corpus"), "--train", *map(str, args.train), "--valid", quality, *common],
        "asr": py + [str(HERE / "learn_asr.py"), "--codec", codec_arg, "--minutes", str(args.asr_minutes),
                     "--steps", str(args.asr_steps), "--out", str(run / "asr"), "--train", *map(str, args.train),
                     "--valid", quality, "--valid", *map(str, args.valid), *common],
    }


def run_stage(name: str, cmd: list[str], run: Path) -> None:
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    with open(run / f"{name}.log", "a") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
    if code:
        raise SystemExit(f"[{name}] failed with exit code {code}; see {run / f'{name}.log'}")
    (run / f"{name}.done").write_text("")


def figures(run: Path, name: str) -> list[str]:
    log = run / f"{name}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if any(key in line for key in FIGURES) and not line.startswith("step ")]


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True, help="the codec's validation folders")
    parser.add_argument("--quality-valid", type=Path, required=True, help="held-out speakers for WER, probe, recogniser")
    parser.add_argument("--codec-steps", type=int, default=1739)
    parser.add_argument("--fast-steps", type=int, default=837)
    parser.add_argument("--asr-minutes", type=float, default=30.0)
    parser.add_argument("--asr-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES))
    args = parser.parse_args(argv)
    args.run.mkdir(parents=True, exist_ok=True)
    for name in STAGES:
        if name in args.only and not (args.run / f"{name}.done").exists():
            if name != "codec" and not (args.run / "codec.done").exists():
                raise SystemExit(f"[{name}] needs the trained codec: run the codec stage first (its {args.run}/codec.done)")
            run_stage(name, commands(args, extra)[name], args.run)   # rebuilt: later stages need earlier outputs
    for name in STAGES:
        for line in figures(args.run, name):
            print(f"[{name}] {line.strip()}")


if __name__ == "__main__":
    main()
