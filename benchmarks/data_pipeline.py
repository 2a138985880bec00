"""Throughput and scale-out of the data half (scan, resample, segment, phonemize, check transcripts,
encode latents).

Usage:
  python benchmarks/data_pipeline.py --corpus ../shared/corpora/dev --engine dask --workers 2
  python benchmarks/data_pipeline.py --corpus DIR --compare          # local vs dask: identical outputs?
  python benchmarks/data_pipeline.py --corpus DIR --scaling          # 1 -> 2 Dask workers, efficiency

Runs the same functions as the DVC stages, in a fresh work folder per run (no caches carried
over), with `compute` from params.yaml overridden by the flags. Prints, per stage, files, audio
minutes, wall seconds and the multiple of real time; `--scaling` also prints the efficiency
T(1 worker) / (2 x T(2 workers)); and a LibriLight projection labelled "projected", derived from
the measured per-core rates. Latents come from a codec initialised with seed 0 (the benchmark
measures encoding speed and determinism, not codec quality); pass --codec CKPT for a trained one.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from dmospeech.codec.latents import TRAINING_SEGMENTS_SQL, encode_segments  # noqa: E402
from dmospeech.codec.model import Codec  # noqa: E402
from dmospeech.config import ComputeConfig, Params, SourceConfig, load_params  # noqa: E402
from dmospeech.data.agreement import check_transcripts  # noqa: E402
from dmospeech.data.datasets import clips_from_segments  # noqa: E402
from dmospeech.data.ingest import merge_sources, scan_rows  # noqa: E402
from dmospeech.data.manifest import Lineage, open_manifests, write_stage_db  # noqa: E402
from dmospeech.data.phonemize import phonemize_segments  # noqa: E402
from dmospeech.data.resample import resample_corpus  # noqa: E402
from dmospeech.data.segment import segment_corpus  # noqa: E402
from dmospeech.data.text import Vocabulary  # noqa: E402
from dmospeech.ops.executor import Executor  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Folder of the dev corpus -> source kind (the layouts ../shared/corpora/dev holds).
DEV_KINDS = {"librispeech": "librispeech", "ljspeech": "ljspeech", "kathleen": "sidecar",
             "arctic/manifest.csv": "csv", "longform": "longform"}
LIBRILIGHT_HOURS = 57_706
STAGES = ("scan_source", "resample_audio", "segment_audio", "phonemize_text", "check_transcripts", "encode_latents")


def dev_sources(corpus: Path, only: tuple[str, ...] = ()) -> tuple[SourceConfig, ...]:
    return tuple(SourceConfig(sub.replace("/", "_"), kind, str(corpus / sub)) for sub, kind in DEV_KINDS.items()
                 if (corpus / sub).exists() and (not only or sub.split("/")[0] in only))


def run_data_half(sources: tuple[SourceConfig, ...], work: Path, params: Params, executor: Executor,
                  codec: Codec, max_files: int = 0, transcribe_all: bool = False,
                  until: str = STAGES[-1]) -> dict[str, dict]:
    """Every data stage's function on `sources`, outputs under `work`; per stage: files, wall seconds.
    `max_files` keeps the first files of source_files; `transcribe_all` drops the given transcripts,
    so every file is cut and transcribed by Whisper (segmentation's worst case); `until` is the last
    stage run (the others are left out of the timing)."""
    work.mkdir(parents=True, exist_ok=True)
    p = params
    resample_cfg = dataclasses.replace(p.resample_audio, out_dir=str(work / "audio48k"))
    segment_cfg = dataclasses.replace(p.segment_audio, cache_dir=str(work / "segment_cache"))
    latents_cfg = dataclasses.replace(p.encode_latents, out_dir=str(work / "latents"),
                                      stats_path=str(work / "latents" / "stats.json"))
    check_cfg = dataclasses.replace(p.check_transcripts, cache_dir=str(work / "check_cache"))
    dbs = {name: work / f"{name}.duckdb"
           for name in ("source_files", "audio", "segments", "phonemes", "transcript_checks", "latents")}
    timing: dict[str, dict] = {}

    def timed(stage: str, files: int, fn):
        start = time.perf_counter()
        out = fn()
        timing[stage] = {"files": files, "seconds": time.perf_counter() - start}
        return out

    exts = p.prepare_corpus.audio_extensions
    scanned = timed("scan_source", 0, lambda: pd.concat(
        [scan_rows(s, exts, Lineage.for_stage("scan_source", s), executor=executor) for s in sources],
        ignore_index=True))
    timing["scan_source"]["files"] = len(scanned)
    files, quarantine = merge_sources(scanned, p.prepare_corpus.split, Lineage.for_stage("prepare_corpus", sources))
    if max_files:
        files = files.sort_values("file_id").head(max_files).reset_index(drop=True)
    if transcribe_all:
        files = files.assign(transcribed=False, text=None)
    write_stage_db(dbs["source_files"], {"source_files": files, "quarantine": quarantine})
    audio, quarantine = timed("resample_audio", len(files), lambda: resample_corpus(
        files, resample_cfg, Lineage.for_stage("resample_audio", p.resample_audio), executor=executor))
    write_stage_db(dbs["audio"], {"audio": audio, "quarantine": quarantine})
    for stage in ("scan_source", "resample_audio"):
        timing[stage]["audio_s"] = float(audio["orig_duration_s"].sum())
    if until == "resample_audio":
        return timing
    with open_manifests([dbs["source_files"], dbs["audio"]]) as con:
        rows = con.execute("SELECT a.*, s.source_name, s.text, s.transcribed FROM audio a JOIN source_files s USING (file_id) "
                           "ORDER BY a.file_id").df()
    segments, quarantine = timed("segment_audio", len(rows), lambda: segment_corpus(
        rows, segment_cfg, Lineage.for_stage("segment_audio", p.segment_audio), Path("."), executor=executor))
    write_stage_db(dbs["segments"], {"segments": segments, "quarantine": quarantine})
    vocab = Vocabulary.load(PROJECT_ROOT / p.phonemize_text.vocab_path)
    phonemes, quarantine = timed("phonemize_text", len(segments), lambda: phonemize_segments(
        segments, p.phonemize_text, vocab, Lineage.for_stage("phonemize_text", p.phonemize_text), executor=executor))
    write_stage_db(dbs["phonemes"], {"phonemes": phonemes, "quarantine": quarantine})
    named = segments.merge(files[["file_id", "source_name"]], on="file_id")
    given = named[(named.text_source == "given") & ~named.source_name.isin(check_cfg.skip_sources)]
    checks, quarantine = timed("check_transcripts", len(given), lambda: check_transcripts(
        named, check_cfg, p.segment_audio, Lineage.for_stage("check_transcripts", p.check_transcripts),
        executor=executor))
    write_stage_db(dbs["transcript_checks"], {"transcript_checks": checks, "quarantine": quarantine})
    with open_manifests([dbs[n] for n in ("source_files", "audio", "segments", "phonemes",
                                          "transcript_checks")]) as con:
        training = con.execute(TRAINING_SEGMENTS_SQL).df()
    latents, _ = timed("encode_latents", len(training), lambda: encode_segments(
        codec, clips_from_segments(training), latents_cfg, Lineage.for_stage("encode_latents", p.encode_latents),
        latents_cfg.out_dir, p.resample_audio.sample_rate, codec_checkpoint="seed-0",
        source_sha256=dict(zip(training["segment_id"], training["source_sha256"])), executor=executor))
    write_stage_db(dbs["latents"], {"latents": latents})
    audio_s = {"scan_source": audio["orig_duration_s"].sum(), "resample_audio": audio["orig_duration_s"].sum(),
               "segment_audio": audio["duration_s"].sum(), "phonemize_text": segments["duration_s"].sum(),
               "check_transcripts": given["duration_s"].sum(),
               "encode_latents": (training["end_s"] - training["start_s"]).sum()}
    for stage, seconds in audio_s.items():
        timing[stage]["audio_s"] = float(seconds)
    return timing


def warm_up() -> None:
    """Import on a worker what its first task would (timed runs then measure work, not imports)."""
    import dmospeech.codec.latents  # noqa: F401
    import dmospeech.data.agreement  # noqa: F401
    import dmospeech.data.segment  # noqa: F401


def seeded_codec(params: Params, checkpoint: Path | None) -> Codec:
    if checkpoint is not None:
        return Codec.from_checkpoint(checkpoint)
    torch.manual_seed(0)
    return Codec(params.train_codec.model).eval()


def print_timing(label: str, timing: dict[str, dict], cores: int) -> None:
    print(f"\n{label}")
    for stage in [s for s in STAGES if s in timing]:
        t = timing[stage]
        rate = t["audio_s"] / t["seconds"]
        print(f"  {stage:15s} {t['files']:5d} items {t['audio_s'] / 60:7.1f} min audio {t['seconds']:8.1f} s "
              f"-> {rate:8.1f}x real time ({rate / cores:.1f}x per core)   [measured]")


def projection(timing: dict[str, dict], cores: int, cpu_workers: int = 64, gpus: int = 8) -> None:
    """LibriLight core-hours per stage from the measured per-core rates (projected)."""
    print(f"\nLibriLight projection ({LIBRILIGHT_HOURS:,} h), from the per-core rates above  [projected]")
    print(f"  {'stage':15s} {'core-hours':>12s} {'wall h on ' + str(cpu_workers) + ' CPU workers':>26s}")
    total = 0.0
    for stage in [s for s in STAGES if s in timing]:
        t = timing[stage]
        per_core = t["audio_s"] / t["seconds"] / cores
        if per_core <= 0:
            continue
        core_hours = LIBRILIGHT_HOURS / per_core
        total += core_hours
        print(f"  {stage:15s} {core_hours:12,.0f} {core_hours / cpu_workers:26,.1f}")
    print(f"  {'all':15s} {total:12,.0f} {total / cpu_workers:26,.1f}")
    print(f"  GPU stages (segment_audio, encode_latents with device: cuda) on {gpus} GPUs: not measurable on "
          "this CPU-only machine; run this script there with --engine dask and a GPU worker per device.")


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Differences between two runs' manifests (ignoring lineage timestamps) and output bytes."""
    problems = []
    for db in sorted(a.glob("*.duckdb")):
        with open_manifests([db]) as ca, open_manifests([b / db.name]) as cb:
            for (table,) in ca.execute("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_schema = 'main' AND table_type = 'VIEW'").fetchall():
                x, y = (c.execute(f"SELECT * FROM {table}").df().drop(columns=["created_at", "updated_at"],
                                                                      errors="ignore").replace(f"{root}/", "", regex=True)
                        for c, root in ((ca, a), (cb, b)))
                if not x.equals(y):
                    problems.append(f"{db.name}:{table} differs ({len(x)} vs {len(y)} rows)")
    for sub in ("audio48k", "latents"):
        fa = {f.relative_to(a): f.read_bytes() for f in sorted((a / sub).rglob("*")) if f.is_file()}
        fb = {f.relative_to(b): f.read_bytes() for f in sorted((b / sub).rglob("*")) if f.is_file()}
        if fa.keys() != fb.keys():
            problems.append(f"{sub}: different file names")
        problems += [f"{name}: bytes differ" for name in fa if name in fb and fa[name] != fb[name]]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=os.environ.get("DMOSPEECH_DEV_CORPUS", "../shared/corpora/dev"))
    parser.add_argument("--only", nargs="*", default=(), help="dev corpus folders to use (default: all five)")
    parser.add_argument("--engine", choices=("local", "dask"), default="dask")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-files", type=int, default=8)
    parser.add_argument("--compare", action="store_true", help="run local and dask; report any difference")
    parser.add_argument("--scaling", action="store_true", help="run dask with 1 and 2 workers; print efficiency")
    parser.add_argument("--max-files", type=int, default=0, help="first N files by id (0 = all)")
    parser.add_argument("--transcribe-all", action="store_true", help="ignore given transcripts: Whisper for all")
    parser.add_argument("--shard-frames", type=int, default=0, help="latent frames per shard (0 = params.yaml)")
    parser.add_argument("--until", choices=STAGES[1:], default=STAGES[-1], help="last stage to run")
    parser.add_argument("--codec", type=Path, default=None)
    parser.add_argument("--params", default=str(PROJECT_ROOT / "params.yaml"))
    parser.add_argument("--work", type=Path, default=None, help="keep outputs here (default: a temp folder)")
    args = parser.parse_args()
    params = load_params(args.params)
    if args.shard_frames:
        params = dataclasses.replace(params, encode_latents=dataclasses.replace(params.encode_latents,
                                                                                shard_frames=args.shard_frames))
    sources = dev_sources(args.corpus, tuple(args.only))
    codec = seeded_codec(params, args.codec)
    work = args.work or Path(tempfile.mkdtemp(prefix="dmospeech-bench-"))

    def run(engine: str, workers: int, name: str) -> dict:
        compute = dataclasses.replace(params.compute, engine=engine, workers=workers, threads_per_worker=1,
                                      shard_files=args.shard_files, scheduler_address=None)
        if engine == "local":
            torch.set_num_threads(1)
        with Executor(compute) as executor:
            if executor.client is not None:   # module imports are start-up, not throughput
                executor.client.run(warm_up)
            timing = run_data_half(sources, work / name, dataclasses.replace(params, compute=compute), executor, codec,
                                   args.max_files, args.transcribe_all, args.until)
        print_timing(f"{name}: engine {engine}, {workers if engine == 'dask' else 1} worker(s), "
                     f"worker processes used {len(executor.worker_pids)}", timing, workers if engine == "dask" else 1)
        return timing

    if args.compare:
        run("local", 1, "local")
        run("dask", args.workers, "dask")
        problems = compare_outputs(work / "local", work / "dask")
        print("\nlocal vs dask:", "identical manifests, audio and latents" if not problems else "")
        for problem in problems:
            print("  ", problem)
        return 1 if problems else 0
    if args.scaling:
        one, two = run("dask", 1, "dask1"), run("dask", 2, "dask2")
        print("\nscaling efficiency 1 -> 2 workers = T1 / (2 T2)   [measured]")
        for stage in [s for s in STAGES if s in one]:
            print(f"  {stage:15s} {one[stage]['seconds'] / (2 * two[stage]['seconds']):6.0%}")
        projection(one, 1)
        return 0
    timing = run(args.engine, args.workers, args.engine)
    projection(timing, args.workers if args.engine == "dask" else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
