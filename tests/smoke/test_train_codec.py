"""train_codec as a process: SIGKILL and rerun resumes from the last checkpoint with a continuous
loss curve; torchrun with 2 CPU ranks ends with identical weights on both."""
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import yaml

from dmospeech.config import SourceConfig, SplitConfig
from dmospeech.data.ingest import merge_sources, scan_rows
from dmospeech.data.manifest import frame, Lineage, write_stage_db
from dmospeech.data.phonemize import phonemize_segments
from dmospeech.data.resample import resample_corpus
from dmospeech.data.segment import segment_corpus
from dmospeech.codec.model import Codec
from dmospeech.data.text import Vocabulary
from dmospeech.ops.training import latest_checkpoint
from tests.codec_run import tiny_codec_config
from tests.helpers import PROJECT_ROOT, child_env, params, voiced, write

pytestmark = pytest.mark.slow


def build_manifests(root) -> None:
    """The data half's manifests for 3 fabricated speakers x 2 clips, written where params.yaml says."""
    p = params()
    for s in range(3):
        for i in range(2):
            speech = voiced(1.5, f0=100 + 40 * s, seed=10 * s + i)
            silence = np.zeros(4800, np.float32)  # 0.3 s each side, so no edge is flagged as cut off
            write(root / "corpus" / f"spk{s}" / f"{i}.wav", np.concatenate([silence, speech, silence]))
            (root / "corpus" / f"spk{s}" / f"{i}.txt").write_text("A sentence of fabricated speech.")
    lin = Lineage.for_stage("test", {})
    files, _ = merge_sources(scan_rows(SourceConfig("fab", "sidecar", str(root / "corpus")), (".wav",), lin),
                             SplitConfig(0.34, 0.0, 0), lin)
    audio, _ = resample_corpus(files, p.resample_audio, lin, project_root=root)
    rows = audio.merge(files[["file_id", "source_name", "text", "transcribed"]], on="file_id")
    segments, _ = segment_corpus(rows, p.segment_audio, lin, root)
    phonemes, _ = phonemize_segments(segments, p.phonemize_text, Vocabulary.load(PROJECT_ROOT / p.phonemize_text.vocab_path), lin)
    for path, table, df in ((p.prepare_corpus.manifest, "source_files", files), (p.resample_audio.manifest, "audio", audio),
                            (p.segment_audio.manifest, "segments", segments), (p.phonemize_text.manifest, "phonemes", phonemes),
                            (p.check_transcripts.manifest, "transcript_checks", frame("transcript_checks", []))):
        write_stage_db(root / path, {table: df})


@pytest.fixture()
def codec_project(tmp_path):
    build_manifests(tmp_path)
    data = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    cfg = tiny_codec_config(tmp_path, max_steps=8, checkpoint_every=2, out_dir="data/models/codec",
                            report_dir="reports/train_codec")
    data["train_codec"] = json.loads(json.dumps(asdict(cfg)))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def stage(cwd) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "stages" / "train_codec.py")]


def checkpoint_step(ckpt) -> int:
    latest = latest_checkpoint(ckpt)
    return -1 if latest is None else int(latest.name.split("_")[1])


def test_sigkill_then_rerun_resumes(codec_project):
    ckpt = codec_project / "data/models/codec"
    proc = subprocess.Popen(stage(codec_project), cwd=codec_project, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and checkpoint_step(ckpt) < 4:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_step(ckpt)
    assert 4 <= killed_at < 8
    rerun = subprocess.run(stage(codec_project), cwd=codec_project, env=child_env(), capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resumed_from={killed_at}" in rerun.stdout.replace("\n", "")
    assert latest_checkpoint(ckpt).name == "step_8" and not list(ckpt.glob("*.tmp"))
    curve = pd.read_csv(codec_project / "reports/train_codec/dvclive/plots/metrics/loss/generator.tsv", sep="\t")
    assert list(curve["step"]) == list(range(1, 9)) or list(curve["step"]) == list(range(8))
    assert Codec.from_checkpoint(latest_checkpoint(ckpt)).hop_length == 1200


def test_torchrun_two_ranks_identical_codec_weights(tmp_path):
    spec = {"work": str(tmp_path), "hash_file": str(tmp_path / "hash_{rank}.txt")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tests.codec_run", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hashes = [(tmp_path / f"hash_{r}.txt").read_text() for r in range(2)]
    assert hashes[0] == hashes[1]
    assert latest_checkpoint(tmp_path / "ckpt").name == "step_4"
