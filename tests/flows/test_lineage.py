"""Lineage records and audits over fabricated manifests: the segments of a checkpoint are exactly the
ones recorded before its step (resumes add, checkpoint-less attempts are replaced), a source file is
followed to segments, latents, checkpoints and registered models, an upstream model carries its data
into the models built from it, and runs recorded only in part are reported as unknown."""
import shutil
import subprocess

import pytest

from dmospeech.config import load_params
from dmospeech.data.manifest import Lineage, frame, write_stage_db
from dmospeech.lineage.records import lineage_attachment, read_records, record_training_segments
from dmospeech.lineage.audit import LineageError, artifacts_using, model_lineage
from dmospeech.lineage.registry import GateResult, Registry
from tests.helpers import PROJECT_ROOT

LIN = Lineage.for_stage("test", {})
SPEAKERS = {"f1": "ann", "f2": "ann", "f3": "ben", "f4": "cid"}  # file id -> speaker


def source_row(file_id: str) -> dict:
    return {"file_id": file_id, "source_name": "s", "source_kind": "sidecar", "path": f"/corpus/{file_id}.wav",
            "rel_path": f"{file_id}.wav", "size_bytes": 10, "speaker": SPEAKERS[file_id], "text": "hi",
            "transcribed": True, "split": "train", "source_sha256": f"sha-{file_id}", "parent_id": None,
            **LIN.columns()}


def segment_row(file_id: str, i: int) -> dict:
    return {"segment_id": f"{file_id}_{i}", "file_id": file_id, "audio_path": "a.flac", "start_s": 0.0, "end_s": 1.0,
            "duration_s": 1.0, "sample_rate": 48000, "text": "hi", "text_source": "given", "speaker": SPEAKERS[file_id],
            "split": "train", "cutoff_start": False, "cutoff_end": False, "cutoff_reason": None,
            "use_for_training": True, "source_sha256": f"sha-{file_id}", "parent_id": file_id, **LIN.columns()}


def latent_row(segment_id: str) -> dict:
    return {"segment_id": segment_id, "shard": "shard_0.safetensors", "frame_offset": 0, "num_frames": 40,
            "num_samples": 48000, "mean": 0.0, "std": 1.0, "min": -1.0, "max": 1.0,
            "codec_checkpoint": "data/models/codec/step_4", "source_sha256": f"sha-{segment_id[:2]}",
            "parent_id": segment_id, **LIN.columns()}


@pytest.fixture()
def project(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    params = load_params(tmp_path / "params.yaml")
    segments = [segment_row(f, i) for f in SPEAKERS for i in range(2)]
    write_stage_db(tmp_path / params.prepare_corpus.manifest, {"source_files": frame("source_files",
                                                                                       map(source_row, SPEAKERS))})
    write_stage_db(tmp_path / params.segment_audio.manifest, {"segments": frame("segments", segments)})
    write_stage_db(tmp_path / params.encode_latents.manifest,
                   {"latents": frame("latents", [latent_row(s["segment_id"]) for s in segments])})
    files = "[{path: data/manifests/source_files.duckdb}]"
    (tmp_path / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  prepare_corpus: {{cmd: p, outs: {files}}}\n"
                                       f"  train_codec: {{cmd: t, deps: {files}, "
                                       "params: {params.yaml: {train_codec: {seed: 0}}}}\n")
    return tmp_path, params


def manifests(root, params):
    return [root / params.prepare_corpus.manifest, root / params.segment_audio.manifest]


def checkpoint(out_dir, step):
    path = out_dir / f"step_{step}"
    path.mkdir(parents=True)
    (path / "run_config.json").write_text('{"task": "toy"}')
    (path / "state.json").write_text("{}")
    return path


def test_checkpoint_segments_follow_resumes_and_replaced_attempts(project):
    root, params = project
    out = root / "data/models/codec"
    record_training_segments(out, ["f2_0"], manifests(root, params), "train_codec")  # crashed before a checkpoint
    record_training_segments(out, ["f1_0", "f1_1"], manifests(root, params), "train_codec")
    checkpoint(out, 10)
    record_training_segments(out, ["f1_0", "f3_0"], manifests(root, params), "train_codec")  # resumed, more data
    checkpoint(out, 20)
    assert [r["from_step"] for r in read_records(out)["records"]] == [0, 10]
    first = model_lineage(params, str(out / "step_10"), root)
    assert [s["segment_id"] for s in first["segments"]] == ["f1_0", "f1_1"]
    assert first["params"] == {"params.yaml": {"train_codec": {"seed": 0}}} and list(first["dvc_lock"]) == [
        "prepare_corpus", "train_codec"]
    latest = model_lineage(params, str(out), root)  # an out_dir means its newest checkpoint
    assert latest["checkpoint"] == "data/models/codec/step_20"
    assert [s["segment_id"] for s in latest["segments"]] == ["f1_0", "f1_1", "f3_0"]
    assert [(f["source_sha256"], f["segments"]) for f in latest["source_files"]] == [("sha-f1", 2), ("sha-f3", 1)]
    with pytest.raises(ValueError, match="1 segment id.*not in the segments manifest"):
        record_training_segments(out, ["f1_0", "nope_0"], manifests(root, params), "train_codec")


def test_source_file_audit_lists_every_derived_artifact(project):
    root, params = project
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=root, check=True)
    codec = root / "data/models/codec"
    record_training_segments(codec, ["f1_0", "f3_0"], manifests(root, params), "train_codec")
    codec_ckpt = checkpoint(codec, 4)
    (root / "metrics.json").write_text("{}")
    registry = Registry(root / params.retrain.registry_dir)
    row = registry.register(codec_ckpt, {"metrics.json": root / "metrics.json", **lineage_attachment(codec_ckpt)},
                            GateResult(True, "first", {}, None), root, {})
    # The teacher never saw ann's files but learns from the codec's latents: it is listed via the codec.
    teacher = root / "data/models/teacher"
    record_training_segments(teacher, ["f4_0"], manifests(root, params), "train_teacher", upstream=[codec_ckpt])
    checkpoint(teacher, 8)
    audit = artifacts_using(params, root, source="f1")  # a file id
    assert audit["query"]["source_sha256"] == ["sha-f1"]
    assert [s["segment_id"] for s in audit["segments"]] == ["f1_0", "f1_1"]
    assert [l["segment_id"] for l in audit["latents"]] == ["f1_0", "f1_1"]
    found = {(c["checkpoint"], c["kind"], c["via"], c["segments"]) for c in audit["checkpoints"]}
    assert found == {("data/models/codec/step_4", "workspace", "direct", 1),
                     (f"{row['model_dir']}/step_4", "registered", "direct", 1),
                     ("data/models/teacher/step_8", "workspace", "via train_codec " + str(codec_ckpt), 0)}
    assert [(m["model_id"], m["current"]) for m in audit["models"]] == [(row["model_id"], True)]
    assert artifacts_using(params, root, speaker="cid")["checkpoints"][0]["checkpoint"] == "data/models/teacher/step_8"
    with pytest.raises(LineageError, match="not a sha256, an existing file"):
        artifacts_using(params, root, source="no-such-file.wav")


def test_partly_recorded_run_is_unknown_not_clean(project):
    root, params = project
    out = root / "data/models/codec"
    checkpoint(out, 60)  # trained before the stage recorded its segments
    record_training_segments(out, ["f3_0"], manifests(root, params), "train_codec")
    checkpoint(out, 80)
    with pytest.raises(LineageError, match="steps before 60 were trained before its stage recorded lineage"):
        model_lineage(params, str(out), root)
    found = artifacts_using(params, root, speaker="ann")["checkpoints"]  # ann is in no record, yet not cleared
    assert [c["checkpoint"] for c in found] == ["data/models/codec/step_60", "data/models/codec/step_80"]
    assert all(c["via"].startswith("unknown: steps before 60") for c in found)
