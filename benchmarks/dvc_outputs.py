"""How fast DVC tracks a stage output of many small files, per layout (chooses resample_audio's layout).

Usage: python benchmarks/dvc_outputs.py [--files 100000] [--bytes 2000] [--shards 100]

Builds, in a temporary git + DVC repository, the same bytes in three layouts and times, for each,
`dvc commit` of a stage that declares it as its output (the cost after a stage ran), then
`dvc status` with DVC's hash state warm (the next `dvc repro` deciding nothing changed) and cold
(state removed: a fresh clone or another machine of the cluster):
  files   one folder of N files (today's data/audio48k)
  folders the N files in S sub-folders of one output (shard folders)
  tars    S uncompressed tar archives of N/S files (shard archives)
Prints seconds per layout; every figure is measured.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

LAYOUTS = ("files", "folders", "tars")


def dvc(repo: Path, *args: str) -> float:
    start = time.perf_counter()
    env = {**os.environ, "DVC_SITE_CACHE_DIR": str(repo.parent / f"{repo.name}-site"), "DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def build(out: Path, layout: str, files: int, size: int, shards: int) -> None:
    out.mkdir(parents=True)
    per_shard = -(-files // shards)
    payload = [os.urandom(size) for _ in range(min(files, 64))]
    for s in range(shards):
        names = [f"{i:07d}.flac" for i in range(s * per_shard, min(files, (s + 1) * per_shard))]
        if layout == "files":
            for i, name in enumerate(names):
                (out / name).write_bytes(payload[i % len(payload)] + name.encode())
        elif layout == "folders":
            (out / f"shard_{s:05d}").mkdir()
            for i, name in enumerate(names):
                (out / f"shard_{s:05d}" / name).write_bytes(payload[i % len(payload)] + name.encode())
        else:
            with tarfile.open(out / f"shard_{s:05d}.tar", "w") as tar:
                for i, name in enumerate(names):
                    data = payload[i % len(payload)] + name.encode()
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def measure(layout: str, files: int, size: int, shards: int, root: Path) -> dict[str, float]:
    repo = root / layout
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    (repo / "make.sh").write_text("true\n")
    build(repo / "out", layout, files, size, shards)
    (repo / "dvc.yaml").write_text("stages:\n  make:\n    cmd: sh make.sh\n    deps: [make.sh]\n    outs: [out]\n")
    figures = {"commit": dvc(repo, "commit", "-f", "-q")}
    figures["status warm"] = dvc(repo, "status", "-q")
    shutil.rmtree(repo.parent / f"{layout}-site", ignore_errors=True)  # DVC's hash state lives in its site cache
    figures["status cold"] = dvc(repo, "status", "-q")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=2_000)
    parser.add_argument("--shards", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dvc-outputs-") as tmp:
        print(f"{args.files:,} files of ~{args.bytes:,} bytes; {args.shards} shards   [measured, seconds]")
        print(f"  {'layout':8s} {'dvc commit':>11s} {'status warm':>12s} {'status cold':>12s}")
        for layout in LAYOUTS:
            f = measure(layout, args.files, args.bytes, args.shards, Path(tmp))
            print(f"  {layout:8s} {f['commit']:11.1f} {f['status warm']:12.1f} {f['status cold']:12.1f}", flush=True)


if __name__ == "__main__":
    main()
