"""Transcript <-> audio agreement on real speech: CER distribution of given transcripts, and what a
threshold catches.

Usage:
  python benchmarks/transcript_agreement.py --corpus ../shared/corpora/dev [--only librispeech ...]
  python benchmarks/transcript_agreement.py --corpus DIR --damage kathleen --swap 10 --truncate 5

Runs scan -> resample -> segment -> check_transcripts (the stages' functions, `compute` from
params.yaml) on the given folders in a temp work folder and prints, per source, the 50/95/99th CER
percentiles [measured] and, for several thresholds, how many correct transcripts each would
quarantine. With --damage FOLDER (a sidecar folder: audio + .txt), a copy of it gets `--swap`
transcripts exchanged between files and `--truncate` cut to half their words, and the script prints
how each damaged file was judged.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402

from dmospeech.config import SourceConfig, load_params  # noqa: E402
from dmospeech.data.agreement import check_transcripts  # noqa: E402
from dmospeech.data.ingest import merge_sources, scan_rows  # noqa: E402
from dmospeech.data.manifest import Lineage  # noqa: E402
from dmospeech.data.resample import resample_corpus  # noqa: E402
from dmospeech.data.segment import segment_corpus  # noqa: E402
from dmospeech.ops.executor import Executor  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
from data_pipeline import dev_sources  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def damaged_copy(folder: Path, out: Path, swap: int, truncate: int, seed: int = 0) -> dict[str, str]:
    """A copy of a sidecar folder with `swap` transcripts exchanged in pairs and `truncate` cut to
    half their words; returns file stem -> what was done."""
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("LICENSE*"))
    texts = sorted(p for p in out.rglob("*.txt") if any(p.with_suffix(e).exists() for e in (".wav", ".flac")))
    rng = random.Random(seed)
    picked = rng.sample(texts, swap + truncate)
    done = {}
    for a, b in zip(picked[:swap:2], picked[1:swap:2]):
        ta, tb = a.read_text(), b.read_text()
        a.write_text(tb)
        b.write_text(ta)
        done[a.stem], done[b.stem] = "swapped", "swapped"
    for p in picked[swap:]:
        words = p.read_text().split()
        p.write_text(" ".join(words[: max(1, len(words) // 2)]))
        done[p.stem] = "truncated"
    return done


def run_checks(sources: tuple[SourceConfig, ...], work: Path, executor: Executor, params) -> pd.DataFrame:
    exts = params.prepare_corpus.audio_extensions
    scanned = pd.concat([scan_rows(s, exts, Lineage.for_stage("scan_source", s), executor=executor)
                         for s in sources], ignore_index=True)
    files, _ = merge_sources(scanned, params.prepare_corpus.split, Lineage.for_stage("prepare_corpus", sources))
    audio, _ = resample_corpus(files, dataclasses.replace(params.resample_audio, out_dir=str(work / "audio48k")),
                               Lineage.for_stage("resample_audio", params.resample_audio), executor=executor)
    rows = audio.merge(files[["file_id", "text", "transcribed", "source_name", "path"]], on="file_id")
    seg_cfg = dataclasses.replace(params.segment_audio, cache_dir=str(work / "segment_cache"))
    segments, _ = segment_corpus(rows, seg_cfg, Lineage.for_stage("segment_audio", seg_cfg), Path("."),
                                 executor=executor)
    segments = segments.merge(files[["file_id", "source_name", "path"]], on="file_id")
    cfg = dataclasses.replace(params.check_transcripts, cache_dir=str(work / "check_cache"))
    checks, _ = check_transcripts(segments, cfg, params.segment_audio, Lineage.for_stage("check_transcripts", cfg),
                                  executor=executor)
    return checks.merge(segments[["segment_id", "path"]], on="segment_id")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=os.environ.get("DMOSPEECH_DEV_CORPUS", "../shared/corpora/dev"))
    parser.add_argument("--only", nargs="*", default=())
    parser.add_argument("--damage", default=None, help="sidecar folder of the corpus to copy and damage")
    parser.add_argument("--swap", type=int, default=10)
    parser.add_argument("--truncate", type=int, default=5)
    parser.add_argument("--params", default=str(PROJECT_ROOT / "params.yaml"))
    parser.add_argument("--work", type=Path, default=None, help="work folder (reuses its caches; default: temp)")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.check_transcripts
    work = args.work or Path(tempfile.mkdtemp(prefix="dmospeech-agreement-"))
    sources, damage = dev_sources(args.corpus, tuple(args.only)), {}
    if args.damage:
        damage = damaged_copy(args.corpus / args.damage, work / "damaged", args.swap, args.truncate)
        sources = (SourceConfig("damaged", "sidecar", str(work / "damaged")),)
    started = time.perf_counter()
    with Executor(params.compute) as executor:
        checks = run_checks(sources, work, executor, params)
    seconds = time.perf_counter() - started
    print(f"{len(checks)} given transcripts checked in {seconds:.0f} s (scan+resample+segment+check, "
          f"engine {params.compute.engine})   [measured]")
    print(f"\nCER of given transcripts per source   [measured]\n  {'source':22s} {'n':>5s} {'p50':>6s} "
          f"{'p95':>6s} {'p99':>6s} " + " ".join(f"{'>' + str(t):>6s}" for t in THRESHOLDS))
    truth = checks.path.map(lambda p: damage.get(Path(p).stem, "correct"))
    for name, group in checks.assign(truth=truth).groupby("source_name"):
        correct = group[group.truth == "correct"]
        q = correct.cer.quantile([0.5, 0.95, 0.99])
        print(f"  {name:22s} {len(correct):5d} {q[0.5]:6.3f} {q[0.95]:6.3f} {q[0.99]:6.3f} "
              + " ".join(f"{(correct.cer > t).mean():6.1%}" for t in THRESHOLDS))
    print(f"  (columns >t: share of correct transcripts a threshold t would quarantine; chosen mismatch_cer "
          f"{cfg.mismatch_cer}, doubtful_cer {cfg.doubtful_cer})")
    print("\nworst correct transcripts   [measured]")
    for row in checks.assign(truth=truth)[truth == "correct"].nlargest(5, "cer").itertuples(index=False):
        print(f"  CER {row.cer:5.2f} {Path(row.path).name}: given {row.text!r}\n{'':13}heard {row.asr_text!r}")
    if damage:
        print("\ndamaged files   [measured]")
        for row in checks.assign(truth=truth)[truth != "correct"].sort_values("truth").itertuples(index=False):
            print(f"  {row.truth:9s} {Path(row.path).name:28s} CER {row.cer:5.2f} -> {row.verdict}")
        judged = checks.assign(truth=truth)
        swaps = judged[judged.truth == "swapped"]
        cuts = judged[judged.truth == "truncated"]
        print(f"  swapped quarantined {int((swaps.verdict == 'mismatch').sum())}/{len(swaps)}; truncated flagged "
              f"{int(cuts.verdict.isin(['mismatch', 'doubtful']).sum())}/{len(cuts)}; correct flagged "
              f"{int(judged[judged.truth == 'correct'].verdict.isin(['mismatch', 'doubtful']).sum())}/"
              f"{int((judged.truth == 'correct').sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
