"""Memory pre-flight of the training loop: what a run will hold (weights, gradients, AdamW moments, EMA
copies, frozen networks) against what the device has free, checked before the bulk is allocated, so a
run that cannot fit stops with the numbers instead of being OOM-killed minutes later.

`train` calls `preflight` twice: before `task.parts()` with the task's own `memory_plan()` when it has one
(built on the meta device: nothing allocated yet), otherwise after `parts()` with the plan of the built
parts (their weights exist; gradients, AdamW moments and EMA copies, four times more, do not).
The budget is the free memory of the device: MemAvailable of the machine (psutil) on CPU, free CUDA memory
on a GPU; `DMOSPEECH_MEMORY_BUDGET_GB` lowers it (a shared machine), `DMOSPEECH_MEMORY_BUDGET_GB=0` turns
the check off.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

GIB = 1024 ** 3
BUDGET_ENV = "DMOSPEECH_MEMORY_BUDGET_GB"


class MemoryBudgetError(MemoryError):
    """The run's static memory does not fit the device's free memory."""


@dataclass(frozen=True)
class PartMemory:
    """One network of a run. `trainable`/`frozen`: parameter counts; `ema`: an EMA copy of the whole state;
    `optimised`: AdamW holds two moments and a gradient per trainable parameter (False: a frozen network)."""
    name: str
    trainable: int
    frozen: int
    ema: bool
    optimised: bool = True
    element_size: int = 4     # fp32 master weights (bf16 autocast keeps them fp32)
    allocated: bool = False   # its weights are in memory already (a frozen network loaded by the stage)

    @property
    def weights(self) -> int:
        return (self.trainable + self.frozen) * self.element_size

    @property
    def gradients(self) -> int:
        return self.trainable * self.element_size if self.optimised else 0

    @property
    def optimizer_state(self) -> int:
        return 2 * self.trainable * self.element_size if self.optimised else 0   # AdamW exp_avg, exp_avg_sq

    @property
    def ema_bytes(self) -> int:
        return self.weights if self.ema else 0

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.ema_bytes


def module_memory(name: str, module: nn.Module, ema: bool, optimised: bool = True) -> PartMemory:
    """The plan of one module (also on the meta device: `on_meta`); a parameter shared within it counts once.
    `optimised=False`: a frozen network already loaded (weights only)."""
    seen: set[int] = set()
    trainable = frozen = 0
    size = 4
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        size = p.element_size()
        if p.requires_grad and optimised:
            trainable += p.numel()
        else:
            frozen += p.numel()
    return PartMemory(name, trainable, frozen, ema, optimised, size, allocated=not optimised)


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` on the meta device: the module's shapes without allocating its weights."""
    with torch.device("meta"):
        return build()


def budget(dev: torch.device) -> tuple[int | None, str]:
    """(bytes free for this run or None when the check is off, where that number comes from)."""
    env = os.environ.get(BUDGET_ENV)
    if dev.type == "cuda":
        free, source = torch.cuda.mem_get_info(dev)[0], f"free memory of {dev} (torch.cuda.mem_get_info)"
    else:
        import psutil

        free, source = psutil.virtual_memory().available, "MemAvailable of this machine (psutil)"
    if env is not None:
        limit = float(env) * GIB
        if limit <= 0:
            return None, f"{BUDGET_ENV}=0: check off"
        if limit < free:
            return int(limit), f"{BUDGET_ENV}={env}"
    return int(free), source


def describe(plan: Sequence[PartMemory]) -> str:
    """One line per network: parameters and bytes by kind (GiB)."""
    rows = []
    for p in plan:
        kind = "frozen" if not p.optimised else f"{p.trainable / 1e6:.1f}M trained + {p.frozen / 1e6:.1f}M frozen"
        params = f"{(p.trainable + p.frozen) / 1e6:.1f}M params" if not p.optimised else kind
        rows.append(f"  {p.name:<14} {params}: weights {p.weights / GIB:.2f} + gradients {p.gradients / GIB:.2f} + "
                    f"AdamW {p.optimizer_state / GIB:.2f} + EMA {p.ema_bytes / GIB:.2f} = {p.total / GIB:.2f} GiB")
    return "\n".join(rows)


def check(run: str, plan: Sequence[PartMemory], dev: torch.device, resident: int = 0) -> None:
    """Raise MemoryBudgetError when the plan's bytes not yet allocated (`total - resident`) exceed the budget."""
    free, source = budget(dev)
    total = sum(p.total for p in plan)
    resident += sum(p.weights for p in plan if p.allocated)
    if free is None or total - resident <= free:
        return
    raise MemoryBudgetError(
        f"{run}: not enough memory on {dev}, stopping before allocating it.\n{describe(plan)}\n"
        f"  needs {total / GIB:.2f} GiB for weights, gradients, AdamW state and EMA alone (activations come on "
        f"top), {resident / GIB:.2f} GiB of it already allocated; {source}: {free / GIB:.2f} GiB.\n"
        "  What to do: run it on a GPU with more memory (benchmarks/paper_plan.py prints each stage's need per "
        "GPU), use a smaller model (e.g. the model widths of params.yaml), or, on a machine you do not share, "
        f"raise or turn off the budget with {BUDGET_ENV}.")


@contextmanager
def borrowed_state(module: nn.Module, state: dict[str, torch.Tensor]) -> Iterator[nn.Module]:
    """`module` whose parameters and buffers point at `state`'s tensors within the block (no copy), and at
    their own tensors again after it. The EMA swap used to back up the live weights (a 500M DiT: +2 GB)."""
    held: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, value in state.items():
        try:
            tensor = module.get_parameter(key)
        except AttributeError:
            tensor = module.get_buffer(key)
        if id(tensor) not in held:     # a tied weight appears under several keys
            held[id(tensor)] = (tensor, tensor.data)
            tensor.data = value
    try:
        yield module
    finally:
        for tensor, data in held.values():
            tensor.data = data


def preflight(task, dev: torch.device, run: str, parts: Iterable | None = None) -> None:
    """The loop's check: before `parts()` with `task.memory_plan()` when the task has one, else (given the
    built `parts`) with their plan, counting their weights as already allocated."""
    own = getattr(task, "memory_plan", None)
    if parts is None:
        if own is not None:
            check(run, own(), dev)
        return
    if own is None:
        plan = [module_memory(p.name, p.module, p.ema) for p in parts]
        check(run, plan, dev, resident=sum(p.weights for p in plan))
