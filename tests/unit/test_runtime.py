"""cached_by_rank_zero: rank 0 loads (or learns it must build), the other ranks wait for its cache."""
from __future__ import annotations

import pytest

from dmospeech.ops.runtime import cached_by_rank_zero


def test_rank_zero_loads_once_and_may_find_nothing(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    calls = []
    assert cached_by_rank_zero(lambda: calls.append(1), "the cache") is None and calls == [1]


def test_other_ranks_wait_until_rank_zero_wrote_it(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr("time.sleep", lambda s: None)
    written = iter([None, None, {"ok": 1}])
    assert cached_by_rank_zero(lambda: next(written), "the cache") == {"ok": 1}
    with pytest.raises(TimeoutError, match="rank 1: rank 0 did not write the cache"):
        cached_by_rank_zero(lambda: None, "the cache", timeout_s=0.0)
