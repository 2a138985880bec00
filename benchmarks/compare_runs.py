"""Training curves of several runs side by side: the mean of each logged metric over step windows, read
from the dvclive files every trainer writes (OUT/report/dvclive/plots/metrics/<family>/<name>.tsv), and
each run's ratio to the first. Issue 22's codecs are judged this way while they train: where the Whisper
input helps the mel loss, where it falls behind, how the latents' KL (their information rate) moves.

Usage: python benchmarks/compare_runs.py RUN_DIR [RUN_DIR ...] [--metric mel/loss kl/loss] [--window 100]

RUN_DIR is a learn_codec.py / learn_asr.py --out folder (or a judge_codec.py stage folder such as
RUN/codec). Windows are [k * window, (k + 1) * window) up to the longest run's last logged step; a run
shows "-" in a window it has not finished (so every row compares the same steps) and for a metric it
never logged (say, no semantic term).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dmospeech.ops.train_monitor import logged_metric


def logged(run: Path, metric: str) -> dict[int, float] | None:
    """{step: value} of one metric of one run, None when the run never logged it."""
    return logged_metric(run / "report", metric)


def windowed(curves: list[dict[int, float] | None], window: int) -> list[tuple[int, list[float | None]]]:
    """(window start, each run's mean over the window): windows up to the longest run's last step, a run's
    mean only for the windows it covers to their end (so a row compares the same steps)."""
    present = [c for c in curves if c]
    if not present:
        return []
    end = max(max(c) for c in present) + 1
    rows = []
    for start in range(0, end, window):
        stop = min(start + window, end)
        means = [float(np.mean([v for s, v in c.items() if start <= s < stop])) if c and max(c) >= stop - 1
                 else None for c in curves]
        rows.append((start, means))
    return rows


STAGE_FOLDERS = ("codec", "fast", "asr")   # judge_codec.py's stage folders: named with their run folder


def run_names(runs: list[Path]) -> list[str]:
    """Column names: each run's shortest trailing path that tells the runs apart (a judge_codec.py stage
    folder with its run's), without a last folder they all share (nosem/codec, xin/codec -> nosem, xin;
    xin/fast, xin_fm/fast -> xin, xin_fm)."""
    parts = [run.absolute().parts for run in runs]

    def names(depth: int) -> list[tuple[str, ...]]:
        return [p[-max(depth, 2 if p[-1] in STAGE_FOLDERS else 1):] for p in parts]

    depth = 1
    while depth < max(map(len, parts)) and len(set(names(depth))) < len(parts):
        depth += 1
    chosen = names(depth)
    if len(runs) > 1 and all(len(c) > 1 for c in chosen) and len({c[-1] for c in chosen}) == 1:
        chosen = [c[:-1] for c in chosen]
    return ["/".join(c) for c in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--metric", nargs="+", default=["mel/loss", "kl/loss"])
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    names = run_names(args.runs)
    for metric in args.metric:
        curves = [logged(run, metric) for run in args.runs]
        if not any(curves):
            print(f"{metric}: not logged by any run")
            continue
        print(f"{metric}, mean per {args.window} steps (ratio to {names[0]}):")
        print("  steps        " + "".join(f"{n[:18]:>20}" for n in names))
        for start, means in windowed(curves, args.window):
            cells = []
            for i, mean in enumerate(means):
                if mean is None:
                    cells.append(f"{'-':>20}")
                else:
                    ratio = f" ({mean / means[0]:.3f})" if i and means[0] else ""
                    cells.append(f"{mean:.3f}{ratio}".rjust(20))
            print(f"  {start:>5}-{start + args.window - 1:<6}" + "".join(cells))


if __name__ == "__main__":
    main()
