"""A toy GAN-shaped task for the training-loop tests: an MLP regressor ("net", with EMA) and a linear
critic ("critic", no EMA) that predicts the net's squared error from (x, prediction); each step updates
the critic on the detached prediction, then the net on its error plus a small term through the critic.
Items carry a duration so length bucketing applies; loading and the step both draw random numbers,
so exact resume needs every RNG restored.

Run as a script (subprocess, torchrun): `python -m tests.toy_task '<json>'` with keys
`loop` (TrainLoopConfig overrides; out_dir and report_dir required), `sleep` (seconds per step),
`kill_in_save_at` (SIGKILL itself while writing that step's checkpoint), `hash_file` (a path with
`{rank}`: each rank writes its weight hash there). Prints the TrainResult as JSON on its last line.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sys
import time

import numpy as np
import torch
from torch import nn

from dmospeech.config import OptimizerConfig, TrainLoopConfig
from dmospeech.ops.training import Part, seed_everything, train

OPT = OptimizerConfig(lr=1e-2, min_lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01, warmup_steps=3, grad_clip=1.0)
RUN_CONFIG = {"model": {"hidden": 16}, "data": {"items": 48}}


def loop_config(out_dir, report_dir, **overrides) -> TrainLoopConfig:
    base = dict(max_steps=12, max_minutes=0.0, seed=0, batch_seconds=4.0, max_batch_items=6, num_workers=0,
                checkpoint_every=4, keep_checkpoints=2, log_every=2, valid_every=4, ema_decay=0.9, ema_every=1,
                out_dir=str(out_dir), report_dir=str(report_dir))
    return TrainLoopConfig(**(base | overrides))


class ToyData:
    """48 items: x (4,), y (1,) = x . w + noise; durations 0.3-2.0 s."""

    def __init__(self, n: int = 48):
        rng = np.random.default_rng(123)
        self.x = rng.standard_normal((n, 4)).astype(np.float32)
        self.y = (self.x @ np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32))[:, None]
        self.durations = rng.uniform(0.3, 2.0, n).tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        jitter = np.random.normal(0.0, 0.01, 4).astype(np.float32)  # the loader's (seeded) numpy RNG
        return {"x": torch.from_numpy(self.x[i] + jitter), "y": torch.from_numpy(self.y[i])}


class ToyTask:
    def __init__(self, sleep: float = 0.0, signal_at: int | None = None):
        self.dataset = ToyData()
        self.durations = self.dataset.durations
        self.sleep, self.signal_at = sleep, signal_at
        seed_everything(0)
        self.net = Part("net", nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)), OPT, ema=True)
        self.critic = Part("critic", nn.Linear(5, 1), dataclasses.replace(OPT, grad_clip=0.0), ema=False)

    def parts(self) -> list[Part]:
        return [self.net, self.critic]

    def collate(self, items: list[dict]) -> dict:
        return {k: torch.stack([it[k] for it in items]) for k in ("x", "y")}  # (b, 4), (b, 1)

    def train_step(self, batch: dict, step: int, update) -> dict[str, float]:
        if step == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.sleep:
            time.sleep(self.sleep)
        x = batch["x"] + 0.01 * torch.randn_like(batch["x"])  # the training RNG
        pred = self.net.model(x)                                              # (b, 1)
        err = (pred.detach() - batch["y"]).pow(2)
        critic_loss = (self.critic.model(torch.cat([x, pred.detach()], 1)) - err).pow(2).mean()
        logs = update("critic", critic_loss)
        loss = (pred - batch["y"]).pow(2).mean() + 0.01 * self.critic.model(torch.cat([x, pred], 1)).mean()
        logs |= update("net", loss)
        return {"loss/net": loss.item(), "loss/critic": critic_loss.item()} | logs

    def validate(self, step: int) -> dict[str, float]:
        x, y = torch.from_numpy(self.dataset.x[:8]), torch.from_numpy(self.dataset.y[:8])
        with self.net.ema_weights() as net:
            return {"valid/mse": float((net(x) - y).pow(2).mean())}


def weights_hash(task: ToyTask) -> str:
    """sha256 over every part's weights and EMA weights."""
    h = hashlib.sha256()
    for part in task.parts():
        states = [part.module.state_dict()] + ([part._ema.shadow] if part._ema is not None else [])
        for sd in states:
            for k in sorted(sd):
                h.update(k.encode())
                h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _kill_while_saving(step: int) -> None:
    """Make the checkpoint writer SIGKILL this process after the first file of `step_<step>`."""
    from dmospeech.ops import checkpoint

    write = checkpoint._write_safetensors

    def killing_write(path, tensors, metadata):
        write(path, tensors, metadata)
        if metadata["step"] == str(step):
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint._write_safetensors = killing_write


def main(spec: dict) -> None:
    loop = loop_config(**spec["loop"])
    if spec.get("kill_in_save_at") is not None:
        _kill_while_saving(spec["kill_in_save_at"])
    task = ToyTask(sleep=spec.get("sleep", 0.0))
    result = train(task, loop, RUN_CONFIG)
    if spec.get("hash_file"):
        rank = int(os.environ.get("RANK", 0))
        with open(spec["hash_file"].format(rank=rank), "w") as f:
            f.write(weights_hash(task))
    print(json.dumps({"step": result.step, "finished": result.finished, "stop_reason": result.stop_reason,
                      "resumed_from": result.resumed_from, "checkpoint": str(result.checkpoint)}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
