"""The retrain flow in a temporary project whose dvc.yaml runs seconds-long stand-ins for the stages
(tests/flows/toy_stages.py) on fabricated audio in one sidecar source: new files are detected by
content hash and only they are processed, the gate promotes or rejects with the reason, a run with
nothing new retrains nothing, and the lineage audits follow a speaker through archived and
registered runs after the speaker's files are removed."""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dmospeech.config import load_params
from dmospeech.data.manifest import open_manifests
from dmospeech.lineage.audit import artifacts_using, model_lineage
from dmospeech.lineage.registry import Registry
from tests.helpers import PROJECT_ROOT, voiced, write

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]  # ~10 DVC runs: 40-90 s

DVC_YAML = """stages:
  prepare_corpus:
    cmd: python toy_stages.py prepare
    deps: [toy_stages.py, incoming]
    outs: [data/manifests, {data/audio48k: {persist: true}}]
  train_codec:
    cmd: python toy_stages.py train
    deps: [toy_stages.py, data/manifests]
    outs: [{data/models/codec: {persist: true}}]
  evaluate:
    cmd: python toy_stages.py evaluate
    deps: [toy_stages.py, data/models/codec, toy_metrics.json]
    outs: [reports/evaluate]
"""


def add_speaker(repo: Path, speaker: str, n: int, seed: int) -> None:
    for i in range(n):
        write(repo / "incoming" / speaker / f"{i}.wav", voiced(0.5, seed=seed + i))
        (repo / "incoming" / speaker / f"{i}.txt").write_text(f"utterance {i} of {speaker}")


def set_params(repo: Path, **retrain) -> None:
    data = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    data["prepare_corpus"].update(sources=[{"name": "incoming", "kind": "sidecar", "path": "incoming"}],
                                  split={"valid_fraction": 0.0, "test_fraction": 0.0, "seed": 0})
    data["pipeline"].update(retries=0)
    data["retrain"].update(data_until="prepare_corpus", candidate_dir="data/models/codec", **retrain)
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def set_metrics(repo: Path, wer: float, sim: float) -> None:
    (repo / "toy_metrics.json").write_text(json.dumps({"wer": wer, "sim": sim}))


@pytest.fixture()
def project(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    shutil.copy(Path(__file__).with_name("toy_stages.py"), repo / "toy_stages.py")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    set_params(repo, models={"train_codec": "resume"})
    set_metrics(repo, wer=0.10, sim=0.80)
    add_speaker(repo, "alice", 2, seed=0)
    add_speaker(repo, "bob", 2, seed=10)
    (repo / ".gitignore").write_text("/data/\n/reports/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (git + ["init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"], git + ["add", "-A"],
                git + ["commit", "-qm", "toy project"]):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


def train_segments(repo: Path) -> list[str]:
    params = load_params(repo / "params.yaml")
    with open_manifests([repo / params.segment_audio.manifest]) as con:
        rows = con.execute("SELECT segment_id FROM segments WHERE split = 'train' ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_retrain_detects_new_audio_gates_and_audits(project):
    from flows.retrain import retrain_flow

    first = retrain_flow(root=str(project))
    assert (first["status"], first["added"], first["processed"], first["reused"]) == ("promoted", 4, 4, 0)
    assert first["trained"] == ["train_codec", "evaluate"]
    registry = Registry(project / "data/registry")
    assert registry.current_id() == first["model_id"]
    row, head = registry.row(first["model_id"]), subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=project)
    assert row["metrics"] == {"student.wer": 0.10, "student.sim": 0.80} and row["git_revision"] == head.decode().strip()
    lock = (project / row["model_dir"] / "dvc.lock").read_bytes()
    assert row["dvc_lock_sha256"] == hashlib.sha256(lock).hexdigest() and len(row["params_hash"]) == 12
    params = load_params(project / "params.yaml")
    audit = model_lineage(params, "current", project)
    assert [s["segment_id"] for s in audit["segments"]] == train_segments(project)
    assert audit["registry"]["status"] == "promoted" and list(audit["dvc_lock"]) == ["prepare_corpus", "train_codec"]

    assert retrain_flow(root=str(project))["status"] == "up_to_date"

    add_speaker(project, "carol", 2, seed=20)
    set_metrics(project, wer=0.15, sim=0.80)  # WER worse than the current 0.10 by more than 0.01
    second = retrain_flow(root=str(project))
    assert (second["status"], second["added"], second["processed"], second["reused"]) == ("rejected", 2, 2, 4)
    assert second["reason"] == "student.wer 0.15 > current 0.1 + tolerance 0.01"
    assert registry.current_id() == first["model_id"]
    assert (project / "data/registry/models" / second["model_id"]).is_dir()  # a rejected candidate is kept
    resumed = model_lineage(load_params(project / "params.yaml"), second["model_id"], project)
    assert len(resumed["segments"]) == 6 and [r["from_step"] for r in resumed["records"]] == [0, 10]

    shutil.rmtree(project / "incoming" / "alice")
    set_params(project, models={"train_codec": "retrain"})
    set_metrics(project, wer=0.09, sim=0.80)
    third = retrain_flow(root=str(project))
    assert (third["status"], third["removed"], third["processed"], len(third["archived"])) == ("promoted", 2, 0, 1)
    params = load_params(project / "params.yaml")
    assert {s["speaker"] for s in model_lineage(params, "current", project)["segments"]} == {"bob", "carol"}
    alice = artifacts_using(params, project, speaker="alice")
    assert alice["segments"] == [] and {f["in_manifest"] for f in alice["source_files"]} == {False}
    assert {m["model_id"] for m in alice["models"]} == {first["model_id"], second["model_id"]}
    assert {c["kind"] for c in alice["checkpoints"]} == {"registered", "archived"}
    assert all(c["via"] == "direct" and c["segments"] == 2 for c in alice["checkpoints"])
