"""The executor seam: the data half on a 2-worker Dask LocalCluster gives the manifests, audio and
latents of one process; a killed worker's shard is rerun; a file that kills its worker every time
is quarantined `worker_crash` and the stage completes; GPU tasks run only on GPU workers."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from benchmarks.data_pipeline import compare_outputs, dev_sources, run_data_half, seeded_codec
from dmospeech.config import load_params
from dmospeech.data.manifest import Lineage
from dmospeech.data.resample import resample_corpus
from dmospeech.ops.executor import Executor, WorkerCrash
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.timeout(600)


def params():
    return load_params(PROJECT_ROOT / "params.yaml")


def compute(**overrides):
    return dataclasses.replace(params().compute, **{"engine": "dask", "workers": 2, "threads_per_worker": 1,
                                                    "shard_files": 2, "allowed_failures": 1, **overrides})


def test_dask_gives_the_manifests_audio_and_latents_of_one_process(dev_corpus, tmp_path):
    p = params()
    sources = dev_sources(dev_corpus, ("arctic",))
    codec = seeded_codec(p, None)
    with Executor(dataclasses.replace(p.compute, engine="local")) as local:
        run_data_half(sources, tmp_path / "local", p, local, codec)
    with Executor(compute()) as dask:
        timing = run_data_half(sources, tmp_path / "dask", p, dask, codec)
    assert timing["segment_audio"]["files"] >= 4
    assert compare_outputs(tmp_path / "local", tmp_path / "dask") == []
    assert len(dask.worker_pids) >= 2 and os.getpid() not in dask.worker_pids


def where_and_what(items: list[int]) -> list[tuple[int, dict]]:
    from distributed import get_worker

    return [(os.getpid(), dict(get_worker().state.total_resources)) for _ in items]


def test_gpu_tasks_run_only_on_workers_that_declare_a_gpu():
    with Executor(compute(gpu_workers=1)) as ex:
        gpu = ex.map(where_and_what, list(range(8)), resources={"GPU": 1}, shard_size=1)
        anywhere = ex.map(where_and_what, list(range(8)), shard_size=1)
    assert {res.get("GPU") for _, res in gpu} == {1} and len({pid for pid, _ in gpu}) == 1
    assert len({pid for pid, _ in anywhere}) == 2  # the CPU worker took some of the unrestricted ones


class PatchDecoder(WorkerPlugin):
    """On every (re)started worker: decoding a file whose name holds "crash" ends the process, and
    every decode of another file takes `delay_s` (time to kill a worker mid-shard)."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    def setup(self, worker):
        from dmospeech.ops import audio

        original, delay_s = audio.decode_audio, self.delay_s

        def decode(path, *args, **kwargs):
            if "crash" in Path(path).name:
                os._exit(3)
            time.sleep(delay_s)
            return original(path, *args, **kwargs)
        audio.decode_audio = decode


def source_rows(dev_corpus: Path, root: Path, n: int) -> pd.DataFrame:
    files = sorted((dev_corpus / "arctic" / "audio").glob("*.wav"))[:n]
    rows = [{"file_id": f"{i:016x}", "path": str(shutil.copy(f, root / f.name)), "speaker": "s", "split": "train",
             "source_sha256": f"{i:064x}"} for i, f in enumerate(files)]
    return pd.DataFrame(rows)


def resampled(files: pd.DataFrame, root: Path, executor: Executor) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    cfg = dataclasses.replace(params().resample_audio, out_dir=str(root))
    audio, quarantine = resample_corpus(files, cfg, Lineage.for_stage("resample_audio", params().resample_audio),
                                        executor=executor)
    audio["audio_path"] = audio["audio_path"].map(lambda p: Path(p).name)
    stamps = ["created_at", "updated_at"]
    return (audio.drop(columns=stamps, errors="ignore"), quarantine.drop(columns=stamps, errors="ignore"),
            {f.name: f.read_bytes() for f in sorted(root.rglob("*.flac"))})


def test_a_worker_killed_mid_stage_has_its_shard_rerun(dev_corpus, tmp_path):
    files = source_rows(dev_corpus, tmp_path, 6)
    expected = resampled(files, tmp_path / "local", Executor(dataclasses.replace(params().compute, engine="local")))
    killed = []
    with Executor(compute(allowed_failures=2)) as ex:
        ex.client.register_plugin(PatchDecoder(delay_s=1.0))

        def kill_one_busy_worker():
            while not killed:
                busy = [w for w, tasks in ex.client.processing().items() if tasks]
                if busy:
                    pid = ex.client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                time.sleep(0.2)
        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        got = resampled(files, tmp_path / "dask", ex)
        killer.join(timeout=5)
    assert killed and killed[0] not in ex.worker_pids  # the killed process finished no shard
    for want, have in zip(expected, got):
        assert want.equals(have) if isinstance(want, pd.DataFrame) else want == have


def test_a_file_that_kills_its_worker_is_quarantined_and_the_stage_completes(dev_corpus, tmp_path):
    files = source_rows(dev_corpus, tmp_path, 5)
    crash = tmp_path / "crash.wav"
    shutil.copy(files.path[0], crash)
    files = pd.concat([files, pd.DataFrame([{**files.iloc[0].to_dict(), "file_id": "c" * 16, "path": str(crash),
                                             "source_sha256": "c" * 64}])], ignore_index=True)
    with Executor(compute(allowed_failures=1)) as ex:
        ex.client.register_plugin(PatchDecoder(delay_s=0.0))
        audio, quarantine, flacs = resampled(files, tmp_path / "dask", ex)
    assert sorted(audio.file_id) == sorted(files.file_id[:-1])                      # nothing lost
    assert quarantine[["item_id", "reason"]].values.tolist() == [["c" * 16, "worker_crash"]]  # or duplicated
    assert "died" in quarantine.detail[0] and len(flacs) == 5





class BlamingClient:
    """A stand-in Dask client: a task holding a "crash" item dies with KilledWorker, and so does every
    task in flight beside it (Dask blames the tasks queued on a worker that dies); a task alone runs.
    Tasks submitted before any result is asked for are in flight together."""

    def __init__(self):
        self.asked = True

    def submit(self, fn, function, shard, *args, **kwargs):
        from types import SimpleNamespace

        from distributed import KilledWorker

        if self.asked:
            self.in_flight, self.asked = [], False
        batch = self.in_flight
        batch.append(shard)
        client = self

        class Future:
            def result(self):
                client.asked = True
                if any("crash" in str(item) for queued in batch for item in queued):
                    raise KilledWorker(f"run_shard {shard}", SimpleNamespace(address="tcp://worker-0"), 1)
                return fn(function, shard, *args)
        return Future()


def shout(shard):
    return [str(item).upper() for item in shard]


def test_an_item_blamed_for_a_crash_beside_it_is_rerun_alone_not_quarantined():
    ex = Executor(compute())
    ex.client = BlamingClient()
    results = ex._items_alone(shout, ["a", "crash", "b"], (), None)
    assert results[0] == "A" and results[2] == "B"
    assert isinstance(results[1], WorkerCrash) and "tries alone" in results[1].detail
