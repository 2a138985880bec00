"""cached_by_rank_zero: rank 0 loads (or learns it must build), the other ranks wait for its cache; the
OpenMP wait policy the synthesis commands leave to libgomp; the glibc mmap threshold that keeps a
corpus encoding's heap from growing."""
from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

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


FREED_HEAP_RESIDENT_MB = textwrap.dedent("""
    import ctypes, sys
    from dmospeech.ops.runtime import release_freed_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    def resident_mb():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
    chunks = [libc.malloc(64 << 10) for _ in range(1024)]   # 64 MiB of heap chunks (below the mmap threshold)
    for c in chunks:
        ctypes.memset(c, 1, 64 << 10)                       # made resident
    before = resident_mb()
    for c in chunks[:-1]:
        libc.free(c)                                        # the last one pins the heap's top: no automatic trim
    if sys.argv[1] == "release":
        assert release_freed_memory()
    print(round(before - resident_mb()))
""")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_pages_go_back_to_the_os():
    """Freed chunks inside glibc's heap stay resident (about 64 MB here) until release_freed_memory."""
    def resident_mb_returned(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", FREED_HEAP_RESIDENT_MB, mode], capture_output=True, text=True,
                                  check=True).stdout.strip())
    kept, released = resident_mb_returned("keep"), resident_mb_returned("release")
    assert kept < 8 and released > 48, (kept, released)
