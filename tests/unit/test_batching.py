"""LengthBucketSampler: batches by total audio length, every item once per epoch, deterministic,
disjoint equal rank shards, resumable at (epoch, batch index)."""
import numpy as np
import pytest

from dmospeech.ops.batching import LengthBucketSampler


def durations(n=200, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 6.0, n).tolist()


def test_batches_respect_seconds_and_items_and_cover_every_item_once():
    d = durations()
    sampler = LengthBucketSampler(d, batch_seconds=12.0, max_items=4, seed=1)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(d)))
        for b in batches:
            assert 1 <= len(b) <= 4
            assert sampler.seconds(b) <= 12.0 + 1e-9


def test_long_item_is_its_own_batch():
    d = [1.0] * 10 + [30.0, 25.0]
    batches = LengthBucketSampler(d, batch_seconds=5.0, max_items=8, seed=0).batches(0)
    assert sorted(b for b in batches if len(b) == 1 and d[b[0]] > 5.0) == [[10], [11]]
    assert all(len(b) == 5 for b in batches if d[b[0]] == 1.0)  # 5 x 1 s fill a 5 s batch exactly


def test_batches_hold_similar_lengths():
    d = durations(400)
    batches = LengthBucketSampler(d, batch_seconds=20.0, max_items=8, seed=0).batches(0)
    spread = np.mean([np.ptp([d[i] for i in b]) for b in batches if len(b) > 1])
    assert spread < 0.5  # sorted within buckets: far below the 5.5 s range of the data


def test_deterministic_per_epoch_and_different_across_epochs():
    d = durations()
    a = LengthBucketSampler(d, 12.0, 4, seed=7)
    b = LengthBucketSampler(d, 12.0, 4, seed=7)
    assert a.batches(0) == b.batches(0) and a.batches(3) == b.batches(3)
    assert a.batches(0) != a.batches(1)
    assert a.batches(0) != LengthBucketSampler(d, 12.0, 4, seed=8).batches(0)


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_are_disjoint_equal_and_nearly_complete(world):
    d = durations(203)
    shards = [LengthBucketSampler(d, 12.0, 4, seed=3, rank=r, world_size=world) for r in range(world)]
    for epoch in range(3):
        per_rank = [s.batches(epoch) for s in shards]
        assert len({len(p) for p in per_rank}) == 1
        items = [i for p in per_rank for b in p for i in b]
        assert len(items) == len(set(items))
        total = len(shards[0].global_batches(epoch))
        assert len(per_rank[0]) == total // world
        global_items = sorted(i for b in shards[0].global_batches(epoch) for i in b)
        assert global_items == list(range(len(d)))


def test_start_position_resumes_inside_an_epoch():
    sampler = LengthBucketSampler(durations(), 12.0, 4, seed=0)
    full = sampler.batches(2)
    sampler.set_epoch(2, start=5)
    assert list(sampler) == full[5:] and len(sampler) == len(full) - 5
    sampler.set_epoch(2, start=len(full))
    assert list(sampler) == []
    with pytest.raises(ValueError, match="batch index"):
        sampler.set_epoch(2, start=len(full) + 1)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="item 1 has duration"):
        LengthBucketSampler([1.0, -2.0], 5.0, 2, seed=0)
    with pytest.raises(ValueError, match="cannot feed 4 ranks"):
        LengthBucketSampler([1.0, 1.0], 5.0, 2, seed=0, rank=0, world_size=4).batches(0)
    with pytest.raises(ValueError, match="non-empty"):
        LengthBucketSampler([], 5.0, 2, seed=0)
