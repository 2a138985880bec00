"""benchmarks/gpu_check.py on the CPU at the tiny widths, so the GPU check cannot rot: every trainer's
step, the training loop under torchrun (gloo), segmentation when the dev corpus is there, synthesis."""
import json
import math
import os
import subprocess
import sys

from tests.helpers import PROJECT_ROOT

STAGES = {"train_codec", "train_fast_decoder", "train_teacher", "train_asr_critic", "train_sv_critic",
          "distill_student"}


def test_gpu_check_runs_on_cpu_tiny(tmp_path):
    out = tmp_path / "check.json"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny", "--out", str(out), "--steps", "1",
           "--items", "1", "--max-item-seconds", "0.3", "--synthesis-seconds", "0.5", "--teacher-steps", "2"]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["errors"] == [], {k: report.get(k) for k in report["errors"]}
    assert report["environment"]["device"] == "cpu" and set(report["trainers"]) == STAGES
    for stage, result in report["trainers"].items():
        assert result["losses_finite"] and result["last_losses"], stage
        assert len(result["step_seconds"]) == 1 and result["preflight"]["fits"], stage
        assert result["static_bytes"] > 0
    run = report["torchrun_codec"]
    assert run["returncode"] == 0 and run["backend"] == "gloo" and run["steps"] == 2 and run["losses_finite"]
    assert "NCCL" in report["skipped"]["nccl"]
    if os.environ.get("DMOSPEECH_DEV_CORPUS"):
        assert report["segmentation"]["pieces"] >= 1 and report["segmentation"]["seconds_per_audio_second"] > 0
    else:
        assert "segmentation" in report["skipped"]
    synthesis = report["synthesis"]
    for key in ("teacher_latents_rtf", "teacher_decoded_rtf", "student_latents_rtf", "student_decoded_rtf"):
        assert math.isfinite(synthesis[key]) and synthesis[key] > 0, key
    assert synthesis["paper_v100"] == {"teacher": 0.96, "student": 0.07, "ratio": 13.7}


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path / "x.json")],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr and not (tmp_path / "x.json").exists()
