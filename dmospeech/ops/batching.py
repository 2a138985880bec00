"""Length-bucketed batches: each batch holds about `batch_seconds` of audio.

Per epoch (seeded with `seed + epoch`, identical on every rank): shuffle the items, cut the order
into buckets of `bucket_batches * max_items` items, sort each bucket by duration and pack it
greedily into batches (a batch closes before the item that would push it past `batch_seconds` or
`max_items`; an item longer than `batch_seconds` is a batch of its own), then shuffle the batch
order. Rank `r` of `w` takes batches `r, r + w, ...` of the first `w * (n_batches // w)`, so ranks
are disjoint and equal in count (the at most `w - 1` left-over batches differ from epoch to epoch).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


class LengthBucketSampler:
    """Batch sampler over item indices; iterate one epoch with `set_epoch(epoch, start)` then `iter()`.

    Usable as a DataLoader `batch_sampler`. `start` skips the first `start` batches of this rank's
    epoch, so a resumed run continues with exactly the batches it had not yet seen.
    """

    def __init__(self, durations: Sequence[float], batch_seconds: float, max_items: int, seed: int,
                 rank: int = 0, world_size: int = 1, bucket_batches: int = 32):
        self.durations = np.asarray(durations, dtype=np.float64)  # (items,) seconds
        if self.durations.ndim != 1 or len(self.durations) == 0:
            raise ValueError("LengthBucketSampler: durations must be a non-empty list of seconds per item")
        if not np.all(np.isfinite(self.durations)) or np.any(self.durations < 0):
            bad = int(np.flatnonzero(~np.isfinite(self.durations) | (self.durations < 0))[0])
            raise ValueError(f"LengthBucketSampler: item {bad} has duration {self.durations[bad]!r} s")
        if batch_seconds <= 0 or max_items < 1:
            raise ValueError(f"LengthBucketSampler: batch_seconds ({batch_seconds}) must be > 0 "
                             f"and max_items ({max_items}) >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"LengthBucketSampler: rank {rank} is not in [0, world_size={world_size})")
        self.batch_seconds, self.max_items, self.seed = float(batch_seconds), int(max_items), int(seed)
        self.rank, self.world_size, self.bucket_batches = rank, world_size, bucket_batches
        self.epoch, self.start = 0, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch` in training order, before sharding across ranks."""
        rng = np.random.default_rng(self.seed + epoch)
        order = rng.permutation(len(self.durations))
        bucket = self.bucket_batches * self.max_items
        batches: list[list[int]] = []
        for lo in range(0, len(order), bucket):
            chunk = order[lo:lo + bucket]
            chunk = chunk[np.argsort(self.durations[chunk], kind="stable")]
            batch: list[int] = []
            total = 0.0
            for i in chunk.tolist():
                d = float(self.durations[i])
                if batch and (total + d > self.batch_seconds or len(batch) == self.max_items):
                    batches.append(batch)
                    batch, total = [], 0.0
                batch.append(i)
                total += d
            if batch:
                batches.append(batch)
        return [batches[j] for j in rng.permutation(len(batches))]

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch` (cached for the current epoch)."""
        if self._cache is None or self._cache[0] != epoch:
            batches = self.global_batches(epoch)
            per_rank = len(batches) // self.world_size
            if per_rank == 0:
                raise ValueError(f"LengthBucketSampler: {len(batches)} batch(es) per epoch cannot feed "
                                 f"{self.world_size} ranks; add data or lower the world size")
            self._cache = (epoch, batches[self.rank:per_rank * self.world_size:self.world_size])
        return self._cache[1]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next `iter()` yield batches `start`, `start + 1`, ... of `epoch`."""
        if not 0 <= start <= len(self.batches(epoch)):
            raise ValueError(f"LengthBucketSampler: batch index {start} is outside epoch {epoch} "
                             f"({len(self.batches(epoch))} batches on this rank)")
        self.epoch, self.start = epoch, start

    def seconds(self, batch: Sequence[int]) -> float:
        """Total audio seconds of a batch of item indices."""
        return float(self.durations[list(batch)].sum())

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch)[self.start:])

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start
