"""Rank 0's view of training (dmospeech/ops/training.py): dvclive metrics in `<report_dir>/dvclive`, a rich
progress bar on a terminal, or one plain line per log step otherwise (CI, `dvc repro` logs).

dvclive writes `<report_dir>/dvclive/plots/metrics/<family>/<name>.tsv` (columns `step`, `<name>`) and
`metrics.json`; no dvc.yaml is written, so the stage declares the plots (x: step) in dvc.yaml. On
resume, rows logged after the checkpoint (by a run killed later) are dropped, so curves stay continuous.
"""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dmospeech.ops.atomic import write_text_atomic
from dmospeech.config import TrainLoopConfig


def truncate_metrics(metrics_dir: Path, step: int) -> None:
    """Drop rows with `step` > `step` from every dvclive metric file under `metrics_dir`."""
    for path in metrics_dir.rglob("*.tsv"):
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if len(r) > col and int(r[col]) <= step]
        if len(kept) < len(rows):
            out = io.StringIO()
            csv.writer(out, delimiter="\t", lineterminator="\n").writerows(kept)
            write_text_atomic(path, out.getvalue())


def logged_metric(report_dir: Path, metric: str) -> dict[int, float] | None:
    """{step: value} of one logged metric ("mel/loss", "valid/per") of a run whose loop wrote to
    `report_dir`, None when the run never logged it."""
    path = Path(report_dir) / "dvclive" / "plots" / "metrics" / f"{metric}.tsv"
    if not path.exists():
        return None
    name = metric.rsplit("/", 1)[-1]
    with path.open(encoding="utf-8") as f:
        return {int(row["step"]): float(row[name]) for row in csv.DictReader(f, delimiter="\t")}


class Monitor:
    """`tick()` once per step, `log()` on log/validation steps; inert when `enabled` is False (rank > 0)."""

    def __init__(self, loop: TrainLoopConfig, step: int, resume: bool, enabled: bool, world_size: int):
        self.dir, self.max_steps, self.step = Path(loop.report_dir) / "dvclive", loop.max_steps, step
        self.resume, self.enabled, self.world_size = resume, enabled, world_size
        self.last: dict[str, float] = {}
        self.live: Any = None
        self.progress: Progress | None = None
        self._items, self._seconds, self._since = 0, 0.0, time.monotonic()

    def __enter__(self) -> "Monitor":
        if not self.enabled:
            return self
        from dvclive import Live  # imported on rank 0 only: it pulls in dvc

        if self.resume:
            truncate_metrics(self.dir / "plots" / "metrics", self.step)
        self.live = Live(dir=str(self.dir), resume=self.resume, save_dvc_exp=False, dvcyaml=None)
        console = Console(stderr=True)
        if console.is_terminal:
            self.progress = Progress(TextColumn("[bold]train"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                     TimeRemainingColumn(compact=True), TextColumn("{task.fields[info]}"), console=console)
            self.progress.start()
            self._bar = self.progress.add_task("train", total=self.max_steps, completed=self.step, info="")
        self._since = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.live is not None:
            self.live.end()

    def tick(self, items: int, seconds: float) -> None:
        """One step done on this rank with `items` items holding `seconds` of audio."""
        self.step += 1
        self._items += items
        self._seconds += seconds
        if self.progress is not None:
            self.progress.update(self._bar, completed=self.step)

    def log(self, step: int, metrics: dict[str, float], throughput: bool = False) -> None:
        """Log `metrics` at `step`; with `throughput`, add items/s and audio s/s (all ranks) since the last such call."""
        if throughput:
            elapsed = max(time.monotonic() - self._since, 1e-9)
            metrics = metrics | {"throughput/items_per_s": self.world_size * self._items / elapsed,
                                 "throughput/audio_s_per_s": self.world_size * self._seconds / elapsed}
            self._items, self._seconds, self._since = 0, 0.0, time.monotonic()
        if not self.enabled or not metrics:
            return
        self.live.step = step
        for key, value in metrics.items():
            if math.isfinite(float(value)):
                self.live.log_metric(key, float(value))
            else:   # dvclive's metrics.json stays strict JSON; the console line below still shows it
                print(f"step {step}: {key} = {float(value)} (not finite: left out of dvclive)", flush=True)
        self.live.make_summary()
        self.last.update(metrics)
        if self.progress is not None:
            shown = [k for k in self.last if not k.startswith(("lr/", "grad_norm/", "throughput/"))][:2]
            info = " ".join(f"{k} {self.last[k]:.4g}" for k in shown)
            rate = self.last.get("throughput/audio_s_per_s")
            self.progress.update(self._bar, info=info + (f" | {rate:.1f} audio s/s" if rate is not None else ""))
        else:
            print(f"step {step}/{self.max_steps} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
