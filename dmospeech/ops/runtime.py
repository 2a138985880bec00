"""Process-level helpers of the training loop: device choice, the torchrun process group, seeding
and RNG state capture, and SIGTERM/SIGINT turned into a "stop after this step" request."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import random
import signal
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist


T = TypeVar("T")
CACHE_WAIT_S = 6 * 3600  # how long ranks > 0 of a torchrun wait for rank 0 to write a shared cache


def cached_by_rank_zero(load: Callable[[], Optional[T]], what: str, timeout_s: float = CACHE_WAIT_S) -> Optional[T]:
    """A cache that rank 0 of a torchrun builds: on rank 0 (or without torchrun), `load()` as it is,
    None meaning "build it now"; on the other ranks, `load()` every 5 s until rank 0 has written it
    (TimeoutError naming `what` after `timeout_s`)."""
    import time

    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        return load()
    deadline = time.monotonic() + timeout_s
    while (found := load()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: rank 0 did not write {what} within {timeout_s:.0f} s")
        time.sleep(5)
    return found


def release_freed_memory() -> bool:
    """glibc only: give the free pages inside the heap back to the OS (malloc_trim(0)); True if any
    were. glibc keeps freed buffers below its mmap threshold (which it raises up to 32 MiB) in a heap
    that fragments when every batch has new tensor shapes (one per clip length when encoding a
    corpus): resident memory grew to 13 GB encoding one probe corpus. False on other C libraries."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def start_process_group() -> bool:
    """Under torchrun (WORLD_SIZE > 1) start the process group (nccl on GPU, gloo on CPU) unless the
    caller did; True when this call started it (and should destroy it)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device() -> torch.device:
    """cuda:<LOCAL_RANK> when a GPU is present, else cpu."""
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if torch.cuda.is_available() else torch.device("cpu")


def rng_state(cuda: bool = True) -> dict:
    """States of the torch (CPU and, with `cuda`, GPU), numpy and python RNGs."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if cuda and torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


@contextmanager
def seeded(*key: int, cuda: bool) -> Iterator[None]:
    """Run the block with the RNGs seeded from `key`, restoring the previous states after. Data loading
    passes `cuda=False`: it must not touch CUDA (forked workers cannot initialise it)."""
    saved = rng_state(cuda)
    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    if cuda and torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


class StopRequest:
    """SIGTERM/SIGINT set `signum`; the loop saves after the current step and returns. A second
    SIGINT raises KeyboardInterrupt (to abandon a hung run from the keyboard)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals stay with the caller
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
