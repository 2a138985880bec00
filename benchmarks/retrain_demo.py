"""The retrain flow and the lineage audits on the demo corpus, in a fresh copy of the project.

The copy gets one more source, `incoming` (sidecar layout, data/incoming/<speaker>/), seeded with real
speech of two speakers from ../shared/corpora/dev (kathleen: CC0, ljspeech: public domain); training
is shortened to a few steps. Then, printing what each step measured:

  1. retrain run on the demo + incoming files (first model, promoted)
  2. new files added to incoming -> retrain run: added / processed / reused counts, gate decision
  3. retrain run with nothing new -> up to date, nothing runs
  4. audits: the run-2 candidate's segments vs the manifest's training segments; one new source file
     -> every derived artifact
  5. an incoming speaker who is in the train split is removed -> retrain run -> speaker audit: which
     old checkpoints still contain them

    .venv/bin/python benchmarks/retrain_demo.py --work /tmp/retrain-demo [--until encode_latents]

`--until` keeps the dvc.yaml stages up to that one in the copy (the flow runs whatever dvc.yaml
holds); the candidate is then that stage's model with the metric `--metric` from its dvclive
metrics. With the full pipeline (`--until ''`) the params' candidate and gate (student) apply.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
for key, value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                   "DVC_NO_ANALYTICS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYANNOTE_METRICS_ENABLED": "0",
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}.items():
    os.environ.setdefault(key, value)
sys.path.insert(0, str(ROOT))


def copy_project(work: Path, corpus: Path, until: str, metric: str, steps: int) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and name != "dvc.lock":
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["prepare_corpus"]["sources"].append({"name": "incoming", "kind": "sidecar", "path": "data/incoming"})
    for group in params.values():
        if isinstance(group, dict) and "loop" in group:
            group["loop"].update(max_steps=steps, checkpoint_every=steps // 2, valid_every=steps, log_every=steps // 2)
    params["train_codec"].update(crop_seconds=0.2, valid_clips=2)
    params["train_codec"]["loop"].update(batch_seconds=0.8, max_batch_items=4)
    if until:
        stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
        kept = list(stages)[:list(stages).index(until) + 1]
        (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: stages[k] for k in kept}}, sort_keys=False))
        train = [s for s in kept if s.startswith("train_")][-1]
        params["retrain"].update(models={train: "retrain"}, candidate_dir=params[train]["loop"]["out_dir"],
                                 metrics_path=f"{params[train]['loop']['report_dir']}/dvclive/metrics.json",
                                 gate=[{"metric": metric, "better": "lower", "tolerance": 0.5}])
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    add_speech(work, corpus, "kathleen", range(0, 6))
    add_speech(work, corpus, "ljspeech", range(0, 6))
    git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]
    for cmd in (git + ["init", "-q"], git + ["add", "-A"], git + ["commit", "-qm", "retrain demo copy"]):
        subprocess.run(cmd, cwd=work, check=True)


def add_speech(work: Path, corpus: Path, speaker: str, indices) -> list[Path]:
    """Real utterances of `speaker` copied into data/incoming/<speaker>/ with .txt transcripts."""
    out = work / "data" / "incoming" / speaker
    out.mkdir(parents=True, exist_ok=True)
    if speaker == "kathleen":
        clips = sorted((corpus / "kathleen" / "wavs").glob("*.flac"))
        items = [(c, c.with_suffix(".txt").read_text()) for c in clips]
    else:
        rows = [line.split("|") for line in (corpus / "ljspeech" / "metadata.csv").read_text().splitlines()]
        items = [(corpus / "ljspeech" / "wavs" / f"{r[0]}.wav", r[2]) for r in rows]
    added = []
    for i in indices:
        audio, text = items[i]
        shutil.copy2(audio, out / audio.name)
        (out / audio.name).with_suffix(".txt").write_text(text)
        added.append(out / audio.name)
    return added


def timed_retrain(work: Path, label: str) -> dict:
    from flows.retrain import retrain_flow

    started = time.monotonic()
    result = retrain_flow(root=str(work))
    keys = ("status", "added", "removed", "processed", "reused", "trained", "model_id", "reason")
    print(f"\n[{label}] {time.monotonic() - started:.0f} s: " + ", ".join(f"{k}={result[k]}" for k in keys), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the project copy (emptied first)")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "dev")
    parser.add_argument("--until", default="encode_latents", help="last dvc.yaml stage kept in the copy ('' = all)")
    parser.add_argument("--metric", default="valid.mel_loss", help="gate metric of the --until model (lower is better)")
    parser.add_argument("--steps", type=int, default=8, help="training steps of every model")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    work = args.work.resolve()
    copy_project(work, args.corpus, args.until, args.metric, args.steps)
    os.chdir(work)
    # The copy's own code runs (flows, stages and the audits below), not the checkout's that the
    # editable install points to: editing the checkout during a run cannot change it.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(work), *filter(None, [os.environ.get("PYTHONPATH")])])
    sys.path.insert(0, str(work))

    from dmospeech.config import load_params
    from dmospeech.data.datasets import validated_segments
    from dmospeech.codec.latent_text import training_and_held_out
    from dmospeech.data.manifest import open_manifests
    from dmospeech.lineage.audit import artifacts_using, model_lineage

    timed_retrain(work, "1 first run")
    new = add_speech(work, args.corpus, "kathleen", range(6, 9)) + add_speech(work, args.corpus, "ljspeech", range(6, 8))
    print(f"\nadded {len(new)} files to data/incoming")
    candidate = timed_retrain(work, "2 new audio")["model_id"]
    timed_retrain(work, "3 nothing new")

    params = load_params(work / "params.yaml")
    audit = model_lineage(params, candidate, work)
    # The stage's own selection from the manifests: every validated train segment for the codec; for the
    # latent models, those with latents of at most <stage>.max_seconds (the longer ones are counted apart).
    with open_manifests([work / m for m in params.manifests()]) as con:
        validated = sorted(validated_segments(con, ["train"]).segment_id)
        splits = dict(con.execute("SELECT speaker, any_value(split) FROM source_files GROUP BY 1").fetchall())
    limit = getattr(getattr(params, audit["stage"]), "max_seconds", None)   # the codec has none
    if limit is None:
        manifest_ids, selection = validated, "validated train segments"
    else:
        used, _ = training_and_held_out([work / m for m in [*params.manifests(), params.encode_latents.manifest]],
                                        limit, audit["stage"])
        manifest_ids = sorted(it.segment_id for it in used)
        selection = (f"validated train segments with latents of at most {limit} s ({len(validated) - len(manifest_ids)}"
                     " longer)")
    lineage_ids = [s["segment_id"] for s in audit["segments"]]
    print(f"\n[4] candidate of run 2 {audit['checkpoint']}: {len(lineage_ids)} training segments from lineage, "
          f"{len(manifest_ids)} {selection} in the manifests, identical: {lineage_ids == manifest_ids}; "
          f"{len(audit['source_files'])} source files, dvc.lock stages {list(audit['dvc_lock'])}")
    one = artifacts_using(params, work, source=str(new[0]))
    print(f"[4] {new[0].name} (split {splits.get(new[0].parent.name)}): "
          + ", ".join(f"{k} {len(one[k])}" for k in ("segments", "latents", "checkpoints", "models")))
    for c in one["checkpoints"]:
        print(f"    {c['kind']:10} {c['checkpoint']} ({c['via']}, {c['segments']} segments)")

    gone = next((s for s in ("kathleen", "ljspeech") if splits.get(s) == "train"), None)
    if gone is None:
        print(f"\n[5] neither incoming speaker is in the train split ({splits}); no removal to audit")
        return
    shutil.rmtree(work / "data" / "incoming" / gone)
    print(f"\n[5] removed speaker {gone}'s files")
    timed_retrain(work, "5 after removal")
    speaker = artifacts_using(load_params(work / "params.yaml"), work, speaker=gone)
    print(f"[5] {gone}: {len(speaker['segments'])} segments in the manifests now, "
          f"{len(speaker['source_files'])} source files on record; checkpoints that still contain the speaker:")
    for c in speaker["checkpoints"]:
        print(f"    {c['kind']:10} {c['checkpoint']} ({c['via']}, {c['segments']} segments)")
    for m in speaker["models"]:
        print(f"    model {m['model_id']} {m['status']}{' (current)' if m['current'] else ''}")


if __name__ == "__main__":
    main()
