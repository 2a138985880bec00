"""benchmarks/judge_codec.py: stages run in order through the benchmark scripts, a finished stage is skipped
on a rerun, training continues from its checkpoint, and a stage that needs the codec refuses to run without it."""
import sys

import pytest

from tests.helpers import load_benchmark


def complete_checkpoint(folder):
    """What makes a step_<n> folder a complete checkpoint to dmospeech.ops.checkpoint.latest_checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("state.json", "run_config.json"):
        (folder / name).write_text("{}")


def test_stages_run_once_resume_from_checkpoints_and_pass_the_codec_on(tmp_path, monkeypatch):
    judge = load_benchmark("judge_codec")
    run, calls = tmp_path / "run", []

    def fake_call(cmd, **kwargs):
        calls.append(cmd)
        script = cmd[1].rsplit("/", 1)[-1]
        if script == "learn_codec.py":   # training leaves its final checkpoint
            out = cmd[cmd.index("--out") + 1]
            complete_checkpoint(tmp_path / out / "checkpoints" / "step_9")
        return 0

    monkeypatch.setattr(judge.subprocess, "call", fake_call)
    base = ["judge_codec.py", "--run", str(run), "--train", "T1", "T2", "--valid", "V", "--quality-valid", "Q"]
    complete_checkpoint(run / "codec" / "checkpoints" / "step_3")   # an interrupted codec run
    monkeypatch.setattr(sys, "argv", base + ["--", "--semantic-weight", "0"])
    judge.main()
    scripts = [c[1].rsplit("/", 1)[-1] for c in calls]
    assert scripts == ["learn_codec.py", "learn_codec.py", "decoder_quality.py", "probe_phones.py", "learn_asr.py"]
    codec_cmd, fast_cmd, quality_cmd = calls[0], calls[1], calls[2]
    assert codec_cmd[-1] == "--resume"
    assert codec_cmd[codec_cmd.index("--semantic-weight") + 1] == "0" and "--semantic-weight" not in fast_cmd
    assert "--resume" not in fast_cmd
    codec_ckpt = str(run / "codec" / "checkpoints" / "step_9")
    assert fast_cmd[fast_cmd.index("--encoder-from") + 1] == codec_ckpt
    assert quality_cmd[quality_cmd.index("--codec") + 1] == codec_ckpt
    assert quality_cmd[quality_cmd.index("--fast") + 1] == str(run / "fast" / "checkpoints" / "step_9")
    calls.clear()
    judge.main()
    assert calls == []                                             # every stage is done


def test_a_stage_after_the_codec_refuses_to_run_without_it(tmp_path, monkeypatch):
    judge = load_benchmark("judge_codec")
    monkeypatch.setattr(judge.subprocess, "call", lambda cmd, **kw: pytest.fail("nothing may run"))
    monkeypatch.setattr(sys, "argv", ["judge_codec.py", "--run", str(tmp_path), "--train", "T", "--valid", "V",
                                      "--quality-valid", "Q", "--only", "probe"])
    with pytest.raises(SystemExit, match="needs the trained codec"):
        judge.main()


def test_a_failed_stage_stops_the_run_and_is_not_marked_done(tmp_path, monkeypatch):
    judge = load_benchmark("judge_codec")
    monkeypatch.setattr(judge.subprocess, "call", lambda cmd, **kw: 3)
    monkeypatch.setattr(sys, "argv", ["judge_codec.py", "--run", str(tmp_path), "--train", "T", "--valid", "V",
                                      "--quality-valid", "Q"])
    with pytest.raises(SystemExit, match="codec.*exit code 3"):
        judge.main()
    assert not (tmp_path / "codec.done").exists()


def test_the_summary_takes_each_scripts_figures_and_not_its_step_lines(tmp_path):
    judge = load_benchmark("judge_codec")
    (tmp_path / "quality.log").write_text(
        "10 held-out recordings, 102.9 s\n"
        "  fast decoder: mel loss 1.245, WER 133.3 % (vs Whisper on the originals), SIM to the original 0.558\n"
        "                WER per recording (median 72.1 %): 0 45 420; worst, 5192-19396-0000: 'the summer is'\n")
    (tmp_path / "codec.log").write_text(
        "step 5/837 mel/loss=4.69 kl/loss=3.454\n"
        "validation mel loss: step 0 5.771 -> step 837 1.221 (78.8 % lower)\n")
    assert [line.split(":")[0].strip() for line in judge.figures(tmp_path, "quality")] == [
        "fast decoder", "WER per recording (median 72.1 %)"]
    assert judge.figures(tmp_path, "codec") == ["validation mel loss: step 0 5.771 -> step 837 1.221 (78.8 % lower)"]
    assert judge.figures(tmp_path, "asr") == []                            # no log yet
