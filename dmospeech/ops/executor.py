"""The executor seam of the data half: per-file work in shards, in this process or on Dask distributed.

`Executor.map(fn, items, *args)` splits `items` into shards of `compute.shard_files`, runs
`fn(shard, *args) -> one result per item` once per shard and returns the results in item order.
With `engine: local` the shards run here, one after another (the behaviour before the seam). With
`engine: dask` each shard is one task on a Dask distributed cluster: an existing scheduler
(`scheduler_address`) or a LocalCluster this executor starts and stops. The stage process stays
the only writer of its manifest; workers return rows and write their audio and latent files to the
shared filesystem themselves (content-addressed, atomically), so a shard that is rerun after its
worker died writes the same bytes again.

A shard that kills its worker (a segfault in a decoder, `os._exit`, the OOM killer) more than
`allowed_failures` times is retried one file per task; a file that still kills its worker comes
back as a `WorkerCrash` result, which the stage turns into a quarantine row (`worker_crash`).

Heavy models (VAD, Whisper, codec) load once per process through `worker_cached`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence

from dmospeech.config import ComputeConfig

_PROCESS_CACHE: dict[Hashable, Any] = {}
SCHEDULER_ENV = "DMOSPEECH_DASK_SCHEDULER"  # set by flows/pipeline.py: stages join the flow's cluster
LOCAL = ComputeConfig(engine="local", scheduler_address=None, workers=1, threads_per_worker=1, gpu_workers=0,
                      shard_files=1000, allowed_failures=0)  # in-process, for callers not given an executor


@dataclass(frozen=True)
class WorkerCrash:
    """The result of an item whose task killed its worker process every time it ran."""
    detail: str


def worker_cached(key: Hashable, factory: Callable[[], Any]) -> Any:
    """`factory()` once per process (a Dask worker or the stage process), then the same object."""
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE[key] = factory()
    return _PROCESS_CACHE[key]


def task_threads(default: int) -> int:
    """Threads a task may use: its Dask worker's thread count on a cluster, else `default`."""
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return default


def shards_of(items: Sequence[Any], size: int) -> list[list[Any]]:
    if size < 1:
        raise ValueError(f"compute.shard_files must be at least 1, got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def group_by_size(items: Sequence[Any], sizes: Sequence[float], limit: float) -> list[list[Any]]:
    """Consecutive items grouped so each group's sizes sum to at most `limit` (a larger item is a
    group of its own): output shards planned from the data alone, the same under every engine."""
    if limit <= 0:
        raise ValueError(f"shard size limit must be positive, got {limit}")
    groups: list[list[Any]] = []
    total = 0.0
    for item, size in zip(items, sizes):
        if not groups or total + size > limit:
            groups.append([])
            total = 0.0
        groups[-1].append(item)
        total += size
    return groups


def run_shard(fn: Callable[..., Sequence[Any]], shard: list[Any], *args: Any) -> tuple[list[Any], int]:
    """One task: `fn` over a shard, checked to give one result per item, with the worker's pid."""
    results = list(fn(shard, *args))
    if len(results) != len(shard):
        raise ValueError(f"{fn.__qualname__} returned {len(results)} results for a shard of {len(shard)} items")
    return results, os.getpid()


def local_cluster(cfg: ComputeConfig) -> Any:
    """A LocalCluster of `workers` processes with `threads_per_worker` threads; the last
    `gpu_workers` of them declare resources {GPU: 1} and see one CUDA device each."""
    import dask
    from distributed import Nanny, Scheduler, SpecCluster
    from distributed.system import MEMORY_LIMIT

    if not 0 <= cfg.gpu_workers <= cfg.workers or cfg.workers < 1:
        raise ValueError(f"compute: need 1 <= workers and 0 <= gpu_workers <= workers, got {cfg}")
    env = {"OMP_NUM_THREADS": str(cfg.threads_per_worker), "MKL_NUM_THREADS": str(cfg.threads_per_worker)}

    def worker(gpu: Optional[int]) -> dict:
        resources = {"GPU": 1} if gpu is not None else None
        cuda = {} if gpu is None else {"CUDA_VISIBLE_DEVICES": str(gpu)}
        return {"cls": Nanny, "options": {"nthreads": cfg.threads_per_worker, "resources": resources,
                                          "memory_limit": MEMORY_LIMIT // cfg.workers, "env": {**env, **cuda},
                                          "silence_logs": 40}}
    n_cpu = cfg.workers - cfg.gpu_workers
    workers = {f"cpu-{i}": worker(None) for i in range(n_cpu)}
    workers |= {f"gpu-{i}": worker(i) for i in range(cfg.gpu_workers)}
    with dask.config.set({"distributed.scheduler.allowed-failures": cfg.allowed_failures}):
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                           silence_logs=40, name="dmospeech")


class Executor:
    """Runs shards of per-file work (see the module docstring). Use as a context manager; entering
    it again (a stage function given the stage's executor) reuses the running cluster."""

    def __init__(self, cfg: ComputeConfig):
        if cfg.engine not in ("local", "dask"):
            raise ValueError(f"compute.engine must be local or dask, got {cfg.engine!r}")
        self.cfg = cfg
        self.client: Any = None
        self._cluster: Any = None
        self.worker_pids: set[int] = set()   # processes that ran at least one shard
        self._depth = 0

    def __enter__(self) -> "Executor":
        self._depth += 1
        if self.cfg.engine == "dask" and self._depth == 1:
            from distributed import Client

            address = os.environ.get(SCHEDULER_ENV) or self.cfg.scheduler_address
            if address is None:
                self._cluster = local_cluster(self.cfg)
                address = self._cluster
            self.client = Client(address, set_as_default=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth:
            return
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    def shared(self, obj: Any) -> Any:
        """`obj` for use as an argument of `map`: on a cluster it is sent to every worker once
        (a model's weights), not once per task."""
        return obj if self.client is None else self.client.scatter(obj, broadcast=True, hash=False)

    def map(self, fn: Callable[..., Sequence[Any]], items: Sequence[Any], *args: Any,
            resources: Optional[Mapping[str, float]] = None, shard_size: Optional[int] = None,
            progress: Optional[Callable[[int], None]] = None) -> list[Any]:
        """`fn(shard, *args)` over shards of `items`; one result per item, in item order.

        `fn` must be a module-level function (workers import it); `resources` (e.g. {"GPU": 1})
        restricts its tasks to workers that declare them; `progress(n)` is told each finished shard's size."""
        shards = shards_of(items, shard_size or self.cfg.shard_files)
        if self.cfg.engine == "dask" and self.client is None:
            raise RuntimeError("Executor.map with engine dask outside `with executor:`")
        if self.client is None:
            results = []
            for shard in shards:
                out, pid = run_shard(fn, shard, *args)
                self.worker_pids.add(pid)
                results += out
                if progress:
                    progress(len(shard))
            return results
        return self._map_dask(fn, shards, args, dict(resources) if resources else None, progress)

    def _map_dask(self, fn: Callable, shards: list[list[Any]], args: tuple, resources: Optional[dict],
                  progress: Optional[Callable[[int], None]]) -> list[Any]:
        from distributed import KilledWorker, as_completed

        per_shard: dict[int, list[Any]] = {}
        suspects: list[int] = []
        futures = {self.client.submit(run_shard, fn, shard, *args, resources=resources, pure=False): i
                   for i, shard in enumerate(shards)}
        for future in as_completed(futures, loop=self.client.loop):
            i = futures[future]
            try:
                per_shard[i], pid = future.result()
                self.worker_pids.add(pid)
            except KilledWorker:
                suspects.append(i)  # judged after the others finish: a crash also blames its neighbours
                continue
            if progress:
                progress(len(shards[i]))
        for i in suspects:
            per_shard[i] = self._items_alone(fn, shards[i], args, resources)
            if progress:
                progress(len(shards[i]))
        return [result for i in range(len(shards)) for result in per_shard[i]]

    def _items_alone(self, fn: Callable, shard: list[Any], args: tuple, resources: Optional[dict]) -> list[Any]:
        """A shard that killed its workers, one item per task; an item whose task dies is run again
        with nothing else in flight (a task queued on a worker that another item kills is blamed for
        its death too), and only an item that still kills its worker becomes a WorkerCrash."""
        from distributed import KilledWorker

        def run(items: list[Any]) -> list[Any]:
            futures = [self.client.submit(run_shard, fn, [item], *args, resources=resources, pure=False)
                       for item in items]
            results: list[Any] = []
            for future in futures:
                try:
                    out, pid = future.result()
                    self.worker_pids.add(pid)
                    results += out
                except KilledWorker as err:
                    results.append(err)
            return results

        results = run(shard)
        for k, item in enumerate(shard):
            if isinstance(results[k], KilledWorker):
                [alone] = run([item])
                results[k] = alone if not isinstance(alone, KilledWorker) else WorkerCrash(
                    f"the worker process died each time it ran this item "
                    f"({self.cfg.allowed_failures + 1} tries alone): {alone}")
        return results
