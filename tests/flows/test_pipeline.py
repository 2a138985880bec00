"""The pipeline flow on a small dvc.yaml of `python -c` stages in a temporary git + DVC repository:
stages run in the file's order with resource tags, a failing stage stops the flow with a failure
report, and a stage killed once is retried."""
import json
import subprocess
import sys

import pytest
import yaml

from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("prefect_api")

PREPARE = """
  prepare_text:
    cmd: python -c "open('text.txt', 'w').write('hello')"
    outs: [text.txt]
"""
ENCODE = """
  encode_parts:
    foreach: [a, b]
    do:
      cmd: python -c "open('part_${item}.txt', 'w').write(open('text.txt').read() + '${item}')"
      deps: [text.txt]
      outs: ["part_${item}.txt"]
"""
TRAIN = """
  train_model:
    cmd: python -c "open('model.txt', 'w').write(open('part_a.txt').read())"
    deps: [part_a.txt]
    outs: [model.txt]
"""
VALIDATE = """
  validate_text:
    cmd: python stages/validate_text.py
    deps: [text.txt, stages/validate_text.py]
    outs: [reports/validate_text]
"""
# A gate that fails the way validate_manifest does: report.json with a failed check, then exit 1.
VALIDATE_SCRIPT = """import json, os, sys
os.makedirs("reports/validate_text", exist_ok=True)
checks = [{"expectation": "expect_column_values_to_not_be_null", "table": "segments", "column": "text",
           "success": False, "unexpected_count": 2, "failing_rows": ["seg_1", "seg_2"], "error": None},
          {"expectation": "expect_column_values_to_be_unique", "table": "segments", "column": "segment_id",
           "success": True, "unexpected_count": 0, "failing_rows": [], "error": None}]
json.dump({"gate": "validate_text", "success": False, "checks": checks}, open("reports/validate_text/report.json", "w"))
print("validate_text failed: 1 of 2 checks", file=sys.stderr)
sys.exit(1)
"""
FLAKY = """
  train_flaky:
    cmd: python stages/train_flaky.py
    deps: [text.txt]
    outs: [flaky.txt]
"""
# Killed by SIGKILL on its first attempt (as by the OOM killer), fine on the second.
FLAKY_SCRIPT = """import os, pathlib
attempts = pathlib.Path("attempts")
attempts.write_text(attempts.read_text() + "x" if attempts.exists() else "x")
if attempts.read_text() == "x":
    os.kill(os.getpid(), 9)
pathlib.Path("flaky.txt").write_text("ok")
"""


def make_repo(tmp_path, stages: str):
    repo = tmp_path / "repo"
    (repo / "stages").mkdir(parents=True)
    (repo / "stages" / "validate_text.py").write_text(VALIDATE_SCRIPT)
    (repo / "stages" / "train_flaky.py").write_text(FLAKY_SCRIPT)
    (repo / "dvc.yaml").write_text("stages:" + stages)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["pipeline"].update(retries=2, retry_delay_s=0.2, log_tail_lines=10)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("attempts\n")
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


def task_runs(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in runs}


def test_stages_run_in_dvc_yaml_order_with_resource_tags(tmp_path):
    from flows.pipeline import pipeline_flow
    from prefect import get_client

    repo = make_repo(tmp_path, PREPARE + ENCODE + TRAIN)  # file order differs from alphabetical order
    state = pipeline_flow(root=str(repo), return_state=True)
    runs = state.result()
    assert [r["stage"] for r in runs] == ["prepare_text", "encode_parts", "train_model"]
    assert [r["ran"] for r in runs] == [["prepare_text"], ["encode_parts@a", "encode_parts@b"], ["train_model"]]
    assert (repo / "model.txt").read_text() == "helloa"
    tags = {name: set(run.tags) for name, run in task_runs(state.state_details.flow_run_id).items()}
    assert tags == {"repro-prepare_text": {"cpu", "stage:prepare_text"},
                    "repro-encode_parts": {"gpu", "stage:encode_parts"},
                    "repro-train_model": {"gpu", "stage:train_model"}}
    with get_client(sync_client=True) as client:
        assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1
    again = pipeline_flow(root=str(repo))
    assert [r["ran"] for r in again] == [[], [], []]


def test_failing_stage_reports_and_stops_later_stages(tmp_path):
    from flows.pipeline import PipelineFailed, pipeline_flow

    repo = make_repo(tmp_path, PREPARE + VALIDATE + TRAIN.replace("part_a.txt", "reports/validate_text"))
    state = pipeline_flow(root=str(repo), return_state=True)
    assert state.is_failed()
    with pytest.raises(PipelineFailed, match="stage validate_text failed"):
        state.result()
    report = json.loads((repo / "reports/pipeline/failure.json").read_text())
    assert report["stage"] == report["dvc_stage"] == "validate_text"
    assert report["attempts"] == 1 and not report["transient"]  # a failed gate is not retried
    assert report["not_run"] == ["train_model"] and not (repo / "model.txt").exists()
    assert "validate_text failed: 1 of 2 checks" in report["log_tail"]
    assert [(c["table"], c["column"], c["failing_rows"]) for c in report["failed_checks"]] == [
        ("segments", "text", ["seg_1", "seg_2"])]
    assert (repo / report["log"]).read_text().splitlines()[-len(report["log_tail"]):] == report["log_tail"]


def test_transient_failure_is_retried(tmp_path):
    from flows.pipeline import pipeline_flow

    repo = make_repo(tmp_path, PREPARE + FLAKY + TRAIN.replace("part_a.txt", "flaky.txt"))
    runs = pipeline_flow(root=str(repo))
    assert [(r["stage"], r["attempt"]) for r in runs] == [("prepare_text", 1), ("train_flaky", 2), ("train_model", 1)]
    assert (repo / "attempts").read_text() == "xx" and (repo / "model.txt").read_text() == "ok"
