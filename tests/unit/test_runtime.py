"""cached_by_rank_zero: rank 0 loads (or learns it must build), the other ranks wait for its cache; the
OpenMP wait policy the synthesis commands leave to libgomp."""
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


POLICY_AT_TORCH_LOAD = """
import os, sys
from dmospeech.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
import torch
print("policy", os.environ.get("OMP_WAIT_POLICY", "default"))
"""


@pytest.mark.parametrize("argv, given, expected", [
    (["synthesize"], None, "default"),             # synthesis: libgomp's spin-then-sleep
    (["synthesize"], "PASSIVE", "PASSIVE"),        # what the user sets wins
    (["quarantine", "--help"], None, "PASSIVE"),   # everything else waits passively
])
def test_synthesis_commands_leave_openmp_its_default_wait_policy(argv, given, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    out = subprocess.run([sys.executable, "-c", POLICY_AT_TORCH_LOAD, *argv], capture_output=True, text=True, env=env)
    assert f"policy {expected}" in out.stdout, out.stderr[-2000:]
