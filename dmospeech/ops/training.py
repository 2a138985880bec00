"""The one training loop: parts (network + AdamW + warmup-cosine LR + EMA), DDP, gradient clipping,
pickle-free checkpoints with exact resume, dvclive metrics and a progress bar.

A task owns its networks (`Part`s) and the maths of one step; the loop owns everything else.
A two-part (GAN-style) task:

    def train_step(self, batch, step, update):           # self.gen, self.disc: Part
        fake = self.gen.model(batch["x"])                  # (b, t)
        logs = update("disc", d_loss(self.disc.model, fake.detach(), batch["y"]))
        return logs | update("gen", g_loss(self.disc.model, fake, batch["y"]))

Reaching the networks: `part.module` is the plain network (attributes, `.sample()`, state dict);
`part.model` is what to call for a forward pass whose loss goes to `update()` (the
DistributedDataParallel wrapper under torchrun, else the module itself); `with part.ema_weights()
as net:` swaps the EMA weights into the module for validation. `validate` runs on rank 0 only while
the other ranks wait, so it must never call `part.model` (DDP would wait for the other ranks).
"""
from __future__ import annotations

import json
import math
import re
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from dmospeech.ops.checkpoint import (check_run_config, latest_checkpoint, load_part_weights, read_run_config,
                                  read_state, save_checkpoint)
from dmospeech.config import OptimizerConfig, TrainLoopConfig
from dmospeech.ops.batching import LengthBucketSampler
from dmospeech.ops.memory import borrowed_state, preflight
from dmospeech.ops.runtime import (StopRequest, device, rank_and_world, rng_state, seed_everything, seeded, set_rng_state,
                               start_process_group)
from dmospeech.ops.train_monitor import Monitor

__all__ = ["EMA", "Part", "Task", "TrainResult", "Update", "device", "latest_checkpoint", "load_part_weights",
           "lr_at", "read_run_config", "seed_everything", "train"]

Update = Callable[[str, torch.Tensor], dict[str, float]]  # update(part_name, loss) -> {"grad_norm/<part>": ...}


# ----------------------------------------------------------------------------- parts, EMA, LR
class EMA:
    """Exponential moving average of a module's state dict: `shadow <- decay * shadow + (1 - decay) * live`
    for floating-point entries (parameters, float buffers); other buffers are copied. Holds tensors, not a
    module copy, so modules that cannot be deep-copied (old-style weight_norm) work."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, decay: float) -> None:
        live = self.module.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in floats], [live[k] for k in floats], 1.0 - decay)
        for k, v in self.shadow.items():
            if not v.is_floating_point():
                v.copy_(live[k])

    @contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """The module with the EMA weights loaded; the training weights are restored bit-exactly after
        (the module borrows the shadow tensors: no second copy of the model)."""
        with borrowed_state(self.module, self.shadow) as module:
            yield module


@dataclass(eq=False)
class Part:
    """One trained network: its own AdamW (`optimizer`), LR schedule, gradient clipping and EMA.
    `name` names its checkpoint files (`<name>.safetensors`) and log keys (`grad_norm/<name>`)."""
    name: str
    module: nn.Module
    optimizer: OptimizerConfig
    ema: bool = True
    find_unused_parameters: bool = False  # DDP: set when some parameters get no gradient in a step
    _model: nn.Module | None = field(default=None, init=False, repr=False)
    _ema: EMA | None = field(default=None, init=False, repr=False)

    @property
    def model(self) -> nn.Module:
        """The module to call in `train_step`: the DDP wrapper when distributed, else `module`."""
        return self.module if self._model is None else self._model

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @contextmanager
    def ema_weights(self) -> Iterator[nn.Module]:
        """`module` holding the EMA weights within the block (the plain weights for `ema=False`)."""
        with self._ema.swapped() if self._ema is not None else nullcontext(self.module) as module:
            yield module


class Task(Protocol):
    """What `train` needs. Optionally also `validate(step: int) -> dict[str, float]`: metrics keyed
    `<family>/<name>`, run every `valid_every` steps on rank 0 in eval mode under `torch.no_grad()`."""
    dataset: Dataset                 # map-style: dataset[i] -> one item
    durations: Sequence[float]       # seconds of audio of item i (length bucketing, throughput)

    def collate(self, items: list) -> Any:
        """Items -> one batch (nested dicts/lists/tuples of tensors; the loop moves it to the device)."""

    def parts(self) -> list[Part]:
        """The trained networks, built after `seed_everything(loop.seed)` (DDP syncs them from rank 0)."""

    def train_step(self, batch: Any, step: int, update: Update) -> dict[str, float]:
        """One step (0-based): compute losses, call `update(part_name, loss)` per part in any order,
        return floats to log (`"loss/total"`, plus whatever `update` returned)."""


def lr_at(step: int, cfg: OptimizerConfig, max_steps: int) -> float:
    """Learning rate of 0-based `step`: linear warmup to `lr` over `warmup_steps`, then cosine decay
    to `min_lr` at `max_steps`. A function of the loop's step, so a part updated several times per
    step, or first at a late step, still follows the global schedule."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min((step - cfg.warmup_steps) / max(max_steps - cfg.warmup_steps, 1), 1.0)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


# ----------------------------------------------------------------------------- state and update
@dataclass
class State:
    """Everything the loop mutates. `step` counts completed steps; (`epoch`, `batch_index`) is the next batch."""
    parts: dict[str, Part]
    optimizers: dict[str, torch.optim.AdamW]
    loop: TrainLoopConfig
    device: torch.device
    rank: int
    world_size: int
    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    window: dict = field(default_factory=lambda: {"sums": {}, "counts": {}})  # logged values since the last log

    def update(self, name: str, loss: torch.Tensor) -> dict[str, float]:
        """zero_grad, backward (DDP all-reduces the gradients), clip, AdamW step at `lr_at(step)`, EMA."""
        if name not in self.parts:
            raise KeyError(f"update({name!r}): no such part (parts: {sorted(self.parts)})")
        if loss.ndim != 0 or not loss.requires_grad:
            raise ValueError(f"update({name!r}): loss must be a scalar tensor that requires grad, got "
                             f"shape {tuple(loss.shape)}, requires_grad={loss.requires_grad}")
        part, opt, cfg = self.parts[name], self.optimizers[name], self.parts[name].optimizer
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False):
            loss.backward()
        params = [p for p in part.module.parameters() if p.grad is not None]
        if not params:
            raise RuntimeError(f"update({name!r}): the loss has no gradient for any parameter of this part")
        norm = nn.utils.get_total_norm([p.grad for p in params])
        if cfg.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, norm)
        lr = lr_at(self.step, cfg, self.loop.max_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        if part._ema is not None and (self.step + 1) % self.loop.ema_every == 0:
            part._ema.update(self.loop.ema_decay)
        return {f"grad_norm/{name}": float(norm), f"lr/{name}": lr}


@dataclass(frozen=True)
class TrainResult:
    step: int                     # completed steps
    finished: bool                # reached loop.max_steps
    stop_reason: str              # "max_steps" | "time_budget" | "signal"
    checkpoint: Path | None       # the newest checkpoint
    resumed_from: int | None      # step of the checkpoint this run resumed from
    metrics: dict[str, float]     # the last logged values (rank 0)


# ----------------------------------------------------------------------------- data
class _Batches(Dataset):
    """Keys (epoch, batch index, item indices) -> (key, collated batch). Each batch is loaded with RNGs
    seeded from (seed, rank, epoch, batch index): random crops do not depend on the worker that loads
    them or on where a run resumed."""

    def __init__(self, task: Task, seed: int, rank: int):
        self.dataset, self.collate, self.seed, self.rank = task.dataset, task.collate, seed, rank

    def __getitem__(self, key: tuple[int, int, list[int]]) -> tuple[tuple[int, int, list[int]], Any]:
        epoch, index, items = key
        with seeded(self.seed, self.rank, epoch, index, cuda=False):
            return key, self.collate([self.dataset[i] for i in items])


def _keys(sampler: LengthBucketSampler, epoch: int, start: int) -> Iterator[tuple[int, int, list[int]]]:
    """Endless (epoch, batch index, items) from a position on: the rest of `epoch`, then later epochs."""
    while True:
        sampler.set_epoch(epoch, start)
        for index, items in enumerate(sampler, start):
            yield epoch, index, items
        epoch, start = epoch + 1, 0


def _identity(x: Any) -> Any:
    return x


def _to_device(x: Any, dev: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dev, non_blocking=True)
    if isinstance(x, dict):
        return {k: _to_device(v, dev) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, dev) for v in x)
    return x


# ----------------------------------------------------------------------------- setup, checkpoints
def _setup(task: Task, loop: TrainLoopConfig) -> State:
    rank, world = rank_and_world()
    dev = device()
    seed_everything(loop.seed)
    preflight(task, dev, loop.out_dir)  # ops/memory.py: stop before allocating what cannot fit
    parts = task.parts()
    preflight(task, dev, loop.out_dir, parts)
    names = [p.name for p in parts]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_-]+", n)]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"part names must be unique and made of letters, digits, '_' or '-': {names}")
    for part in parts:
        part.module.to(dev).train()
        if world > 1:
            part._model = DistributedDataParallel(part.module, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                  find_unused_parameters=part.find_unused_parameters)
        part._ema = EMA(part.module) if part.ema else None  # after DDP broadcast rank 0's weights
    optimizers = {p.name: torch.optim.AdamW([q for q in p.module.parameters() if q.requires_grad], lr=p.optimizer.lr,
                                            betas=tuple(p.optimizer.betas), weight_decay=p.optimizer.weight_decay)
                  for p in parts}
    return State({p.name: p for p in parts}, optimizers, loop, dev, rank, world)


def _restore(state: State, checkpoint: Path) -> None:
    saved = read_state(checkpoint)
    if sorted(saved["parts"]) != sorted(state.parts):
        raise RuntimeError(f"{checkpoint} holds parts {saved['parts']}, the task has {sorted(state.parts)}")
    for name, part in state.parts.items():
        part.module.load_state_dict(load_part_weights(checkpoint, name, ema=False))
        if part._ema is not None:
            part._ema.shadow = {k: v.to(state.device) for k, v in load_part_weights(checkpoint, name).items()}
        state.optimizers[name].load_state_dict(saved["optimizers"][name])
    state.step, state.epoch, state.batch_index = saved["step"], saved["epoch"], saved["batch_index"]
    state.window = saved["window"]
    if saved["world_size"] != state.world_size:
        print(f"warning: {checkpoint} was written with {saved['world_size']} rank(s), this run has "
              f"{state.world_size}: resuming, but the batch order differs from an uninterrupted run")
    if state.rank < len(saved["rng"]):
        set_rng_state(saved["rng"][state.rank])
    else:
        seed_everything(state.loop.seed + state.rank + state.step)


def _checkpoint(state: State, run_config: dict) -> Path:
    """All ranks: gather RNG states; rank 0 writes; everyone waits until the folder is committed."""
    rngs = [rng_state()]
    if state.world_size > 1:
        rngs = [None] * state.world_size
        dist.all_gather_object(rngs, rng_state())
    out_dir = Path(state.loop.out_dir)
    path = out_dir / f"step_{state.step}"
    if state.rank == 0:
        weights: dict[str, dict[str, torch.Tensor]] = {}
        for name, part in state.parts.items():
            weights[name] = part.module.state_dict()
            if part._ema is not None:
                weights[f"{name}.ema"] = part._ema.shadow
        saved = {"step": state.step, "epoch": state.epoch, "batch_index": state.batch_index,
                 "world_size": state.world_size, "parts": sorted(state.parts), "window": state.window,
                 "optimizers": {n: o.state_dict() for n, o in state.optimizers.items()}, "rng": rngs}
        save_checkpoint(out_dir, state.step, weights, saved, run_config, state.loop.keep_checkpoints)
    if state.world_size > 1:
        dist.barrier()
    return path


# ----------------------------------------------------------------------------- stopping
def _stop_reason(state: State, stop: StopRequest, started: float) -> str | None:
    """Why to stop after this step, agreed by all ranks (any rank's signal or budget stops all)."""
    code = 2 if stop.signum is not None else 0
    if state.loop.max_minutes > 0 and time.monotonic() - started > 60 * state.loop.max_minutes:
        code = max(code, 1)
    if state.world_size > 1:
        flag = torch.tensor([code], device=state.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        code = int(flag.item())
    return {0: None, 1: "time_budget", 2: "signal"}[code]


def _every(step: int, n: int) -> bool:
    return n > 0 and step % n == 0


# ----------------------------------------------------------------------------- the loop
def _validate(task: Task, state: State) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if state.rank == 0:
        modes = {m: m.training for p in state.parts.values() for m in p.module.modules()}
        for p in state.parts.values():
            p.module.eval()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if state.device.type == "cuda" else nullcontext()
        try:
            with seeded(state.loop.seed, cuda=True), torch.no_grad(), autocast:
                metrics = {k: float(v) for k, v in task.validate(state.step).items()}
        finally:
            for m, training in modes.items():
                m.train(training)
    if state.world_size > 1:
        dist.barrier()
    return metrics


def _check(loop: TrainLoopConfig, run_config: dict) -> None:
    if loop.max_steps < 1 or loop.ema_every < 1 or not 0.0 <= loop.ema_decay < 1.0 or loop.keep_checkpoints < 0:
        raise ValueError(f"TrainLoopConfig: need max_steps >= 1, ema_every >= 1, 0 <= ema_decay < 1 and "
                         f"keep_checkpoints >= 0 (0 keeps all), got {loop}")
    try:
        json.dumps(run_config, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"train: run_config must be strict JSON (plain dicts, lists, finite numbers, strings; "
                        f"use dataclasses.asdict for configs): {err}") from None


def train(task: Task, loop: TrainLoopConfig, run_config: dict) -> TrainResult:
    """Train `task` to `loop.max_steps`, resuming from the newest complete checkpoint in `loop.out_dir`
    (the one `<out_dir>/latest` names) when there is one. Stops early, with a checkpoint, on SIGTERM/SIGINT
    or when `loop.max_minutes` (this process's wall clock) runs out.

    `run_config` (JSON-serialisable) is stored with every checkpoint so the models can be rebuilt from
    it alone; resuming with a different `run_config` is an error. Under torchrun (WORLD_SIZE > 1) the
    process group is started here (nccl on GPU, gloo on CPU) and each rank trains on its own shard.
    """
    _check(loop, run_config)
    started_group = start_process_group()
    try:
        with StopRequest() as stop:
            return _run(task, loop, run_config, stop)
    finally:
        if started_group:
            dist.destroy_process_group()


def _run(task: Task, loop: TrainLoopConfig, run_config: dict, stop: StopRequest) -> TrainResult:
    started = time.monotonic()
    state = _setup(task, loop)
    checkpoint = latest_checkpoint(loop.out_dir)
    resumed_from = None
    if checkpoint is not None:
        check_run_config(checkpoint, run_config)
        _restore(state, checkpoint)
        resumed_from = state.step
    else:
        seed_everything(loop.seed + state.rank)
    sampler = LengthBucketSampler(task.durations, loop.batch_seconds, loop.max_batch_items, loop.seed,
                                  state.rank, state.world_size)
    loader = DataLoader(_Batches(task, loop.seed, state.rank), sampler=_keys(sampler, state.epoch, state.batch_index),
                        batch_size=None, collate_fn=_identity, num_workers=loop.num_workers,
                        pin_memory=state.device.type == "cuda", generator=torch.Generator())  # not the global RNG
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if state.device.type == "cuda" else nullcontext()
    reason = None
    monitor = Monitor(loop, state.step, resumed_from is not None, enabled=state.rank == 0, world_size=state.world_size)
    with monitor:
        batches = iter(loader) if state.step < loop.max_steps else iter(())
        for (epoch, index, items), batch in batches:
            with autocast:
                logs = task.train_step(_to_device(batch, state.device), state.step, state.update)
            state.step, state.epoch, state.batch_index = state.step + 1, epoch, index + 1
            sums, counts = state.window["sums"], state.window["counts"]
            for k, v in logs.items():
                sums[k], counts[k] = sums.get(k, 0.0) + float(v), counts.get(k, 0) + 1
            monitor.tick(len(items), sampler.seconds(items))
            reason = _stop_reason(state, stop, started)
            if _every(state.step, loop.log_every):
                monitor.log(state.step, {k: v / counts[k] for k, v in sums.items()}, throughput=True)
                state.window = {"sums": {}, "counts": {}}
            if reason is None and _every(state.step, loop.valid_every) and hasattr(task, "validate"):
                monitor.log(state.step, _validate(task, state))
            if reason is not None or _every(state.step, loop.checkpoint_every) or state.step >= loop.max_steps:
                checkpoint = _checkpoint(state, run_config)
            if reason is not None or state.step >= loop.max_steps:
                break
        del batches
    finished = state.step >= loop.max_steps
    return TrainResult(state.step, finished, "max_steps" if finished else reason, checkpoint, resumed_from, monitor.last)
