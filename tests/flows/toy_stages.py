"""Seconds-long stand-ins for the pipeline's stages, run by DVC in the retrain flow test's project.

    python toy_stages.py prepare    scan + merge the sources with the library, one segment per file,
                                    and one content-addressed output per file (like resample_audio)
    python toy_stages.py train      train_codec's lineage call, then a checkpoint 10 steps further
    python toy_stages.py evaluate   metrics.json with the values in toy_metrics.json
"""
import json
import sys
from pathlib import Path

import pandas as pd

from dmospeech.ops.atomic import write_text_atomic
from dmospeech.config import load_params
from dmospeech.data.ingest import merge_sources, scan_db_path, scan_rows
from dmospeech.data.manifest import Lineage, frame, open_manifests, write_stage_db
from dmospeech.lineage.records import checkpoint_dirs, checkpoint_step, record_training_segments


def prepare() -> None:
    params = load_params()
    cfg, lineage = params.prepare_corpus, Lineage.for_stage("toy", {})
    scanned = []
    for source in cfg.sources:
        scanned.append(scan_rows(source, cfg.audio_extensions, lineage))
        write_stage_db(scan_db_path(cfg.manifest, source.name), {"scanned_files": scanned[-1]})
    files, quarantine = merge_sources(pd.concat(scanned, ignore_index=True), cfg.split, lineage)
    write_stage_db(cfg.manifest, {"source_files": files, "quarantine": quarantine})
    out = Path(params.resample_audio.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep = {f"{file_id}.json" for file_id in files.file_id}
    for name in keep - {p.name for p in out.iterdir()}:
        (out / name).write_text("{}")
    for stale in {p.name for p in out.iterdir()} - keep:
        (out / stale).unlink()
    segments = [{"segment_id": f"{f.file_id}_0", "file_id": f.file_id, "audio_path": f.path, "start_s": 0.0,
                 "end_s": 1.0, "duration_s": 1.0, "sample_rate": 16000, "text": f.text, "text_source": "given",
                 "speaker": f.speaker, "split": f.split, "cutoff_start": False, "cutoff_end": False,
                 "cutoff_reason": None, "use_for_training": True, "source_sha256": f.source_sha256,
                 "parent_id": f.file_id, **lineage.columns()} for f in files.itertuples(index=False)]
    write_stage_db(params.segment_audio.manifest, {"segments": frame("segments", segments)})


def train() -> None:
    params = load_params()
    out = Path(params.train_codec.loop.out_dir)
    manifests = [params.prepare_corpus.manifest, params.segment_audio.manifest]
    with open_manifests(manifests) as con:
        ids = [r[0] for r in con.execute("SELECT segment_id FROM segments WHERE split = 'train' ORDER BY 1").fetchall()]
    record_training_segments(out, ids, manifests, "train_codec")
    done = checkpoint_dirs(out)
    checkpoint = out / f"step_{(checkpoint_step(done[-1]) if done else 0) + 10}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "run_config.json").write_text(json.dumps({"task": "toy"}))
    (checkpoint / "state.json").write_text(json.dumps({"segments": ids}))
    write_text_atomic(out / "latest", checkpoint.name + "\n")


def evaluate() -> None:
    path = Path(load_params().retrain.metrics_path)
    write_text_atomic(path, json.dumps({"student": json.loads(Path("toy_metrics.json").read_text())}))


if __name__ == "__main__":
    {"prepare": prepare, "train": train, "evaluate": evaluate}[sys.argv[1]]()
