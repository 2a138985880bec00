"""`dvc repro` of the whole pipeline on the embedded demo corpus, in a fresh copy of the repository
(every training stage shortened to a few steps): every stage runs, both gates pass, every training segment
has latents whose frame count follows the hop, and a second `dvc repro` reruns nothing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dmospeech.config import load_params
from dmospeech.data.manifest import open_manifests
from tests.helpers import PROJECT_ROOT
from tests.import_graph import COMPONENTS

pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (PROJECT_ROOT / name).is_file() and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, repo / name)
    data = yaml.safe_load((repo / "params.yaml").read_text())
    data["train_codec"]["loop"].update(max_steps=4, checkpoint_every=2, valid_every=1000, log_every=2, batch_seconds=0.8,
                                       max_batch_items=4)
    data["train_codec"].update(crop_seconds=0.2, valid_clips=1)
    data["train_fast_decoder"]["loop"].update(max_steps=4, checkpoint_every=2, valid_every=1000, log_every=2,
                                              batch_seconds=0.8, max_batch_items=4)
    data["train_fast_decoder"].update(crop_seconds=0.2, valid_clips=1)
    short = dict(max_steps=4, checkpoint_every=2, valid_every=1000, log_every=2)
    for stage in ("train_teacher", "train_asr_critic", "train_sv_critic"):
        data[stage]["loop"].update(short)
    data["train_teacher"].update(valid_items=2, valid_samples=1)
    data["train_teacher"]["valid_sampler"]["steps"] = 16   # the teacher's samples in validation
    data["evaluate"]["teacher_sampler"]["steps"] = 16    # and in evaluate
    data["train_asr_critic"]["distill"]["phone_head"]["steps"] = 4
    data["distill_student"]["loop"].update(max_steps=5, checkpoint_every=5, valid_every=1000, log_every=1)
    data["distill_student"].update(valid_items=2, valid_samples=1)
    data["evaluate"].update(max_trials=2, cv_f0_repeats=2, cv_f0_trials=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run(["git", "init", "-q"], repo, env)  # a clone has commits; dvclive needs one to name its baseline
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], repo, env)
    return repo, env


def test_demo_pipeline_runs_validates_and_is_idempotent(demo_repo):
    repo, env = demo_repo
    dvc = [sys.executable, "-m", "dvc"]
    first = run(dvc + ["repro"], repo, env)
    for stage in ("prepare_demo_corpus", "scan_source@0", "prepare_corpus", "resample_audio", "segment_audio",
                  "phonemize_text", "check_transcripts", "validate_manifest", "train_codec", "train_fast_decoder", "encode_latents",
                  "train_teacher", "train_asr_critic", "train_sv_critic", "distill_student", "evaluate"):
        assert f"Running stage '{stage}'" in first
    second = run(dvc + ["repro"], repo, env)
    assert "Running stage" not in second and "Data and pipelines are up to date" in second

    params = load_params(repo / "params.yaml")
    con = open_manifests([repo / m for m in params.manifests()] + [repo / params.encode_latents.manifest])
    n_files, = con.execute("SELECT count(*) FROM source_files").fetchall()[0]
    rates = con.execute("SELECT DISTINCT sample_rate FROM segments").fetchall()
    unphonemized = con.execute("SELECT count(*) FROM segments WHERE segment_id NOT IN "
                               "(SELECT segment_id FROM phonemes)").fetchall()[0][0]
    whisper = con.execute("SELECT count(*), max(duration_s) FROM segments WHERE text_source = 'whisper'").fetchall()[0]
    assert n_files == 71 and rates == [(48000,)] and unphonemized == 0
    assert whisper[0] >= 2 and whisper[1] <= 30.0  # the 33 s long-form reading was cut
    bad_frames = con.execute("SELECT count(*) FROM latents WHERE num_frames != (num_samples + 1199) // 1200").fetchall()
    missing = con.execute("SELECT count(*) FROM segments WHERE use_for_training AND segment_id NOT IN "
                          "(SELECT segment_id FROM latents)").fetchall()
    assert bad_frames == [(0,)] and missing == [(0,)]
    metrics = json.loads((repo / params.evaluate.out_dir / "metrics.json").read_text())
    json.loads((repo / params.evaluate.out_dir / "metrics.json").read_text(),  # strict: no NaN/Infinity
               parse_constant=lambda name: pytest.fail(f"metrics.json holds {name}: not strict JSON"))
    for model in ("teacher", "student"):
        assert {"wer", "sim", "rtf", "cv_f0"} <= set(metrics[model])
        assert 0 <= metrics[model]["wer"] and metrics[model]["rtf"] > 0
    assert metrics["trials"] == 2 and metrics["decoder"] == "fast"  # the tiny profile decodes with the fast decoder


def changed_stages(repo, env) -> set[str]:
    out = run([sys.executable, "-m", "dvc", "status", "--json"], repo, env)
    return set(json.loads(out or "{}"))


def test_an_edit_reruns_exactly_the_stages_that_load_it(demo_repo):
    """After a full run, a comment added to one file of a component makes `dvc status` list exactly
    the stages whose deps name that component; a new evaluate sampler setting only evaluate."""
    repo, env = demo_repo
    run([sys.executable, "-m", "dvc", "repro"], repo, env)   # up to date (a no-op after the test above)
    assert changed_stages(repo, env) == set()
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    n_sources = len(load_params(repo / "params.yaml").prepare_corpus.sources)
    names = {name: [f"{name}@{i}" for i in range(n_sources)] if "foreach" in stage else [name]
             for name, stage in stages.items()}
    for comp in COMPONENTS:
        users = {n for name, stage in stages.items() if f"dmospeech/{comp}" in stage.get("do", stage)["deps"]
                 for n in names[name]}
        edited = sorted((repo / "dmospeech" / comp).glob("*.py"))[-1]
        original = edited.read_bytes()
        edited.write_bytes(original + b"# an edit\n")
        try:
            assert changed_stages(repo, env) == users, f"after editing {edited.relative_to(repo)}"
        finally:
            edited.write_bytes(original)
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    data = yaml.safe_load(original)
    data["evaluate"]["teacher_sampler"]["steps"] = 8
    params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        assert changed_stages(repo, env) == {"evaluate"}
    finally:
        params_file.write_text(original)
    assert changed_stages(repo, env) == set()
