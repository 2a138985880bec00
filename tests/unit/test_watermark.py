"""The synthesis watermark: every synthesis path writes marked 48 kHz files by default (CLI, API,
batch, web page), --no-watermark / watermark=False opts out, and the detectors tell them apart."""
import numpy as np
import pytest
import soundfile as sf

from dmospeech.cli import main as cli_main
from dmospeech.synthesis.watermark import THRESHOLD, detect_file, mark, score, synthesis_record
from tests.helpers import params, voiced, write
from tests.unit.test_synthesize import teacher_dir  # noqa: F401  (the tiny random teacher fixture)


def marked(path) -> bool:
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == 48000
    return score(audio, rate) >= THRESHOLD


def test_mark_keeps_rate_length_and_the_band_above_16khz():
    speech = voiced(2.0, 48000, seed=1)
    rng = np.random.default_rng(0)
    air = (0.01 * np.sin(2 * np.pi * 19000 * np.arange(len(speech)) / 48000)).astype(np.float32)
    audio = speech + air + 0.001 * rng.standard_normal(len(speech)).astype(np.float32)
    out = mark(audio, 48000)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert score(out, 48000) >= THRESHOLD > score(audio, 48000)
    spectrum = lambda x: np.abs(np.fft.rfft(x))[round(19000 * len(x) / 48000)]  # noqa: E731
    assert spectrum(out) == pytest.approx(spectrum(audio), rel=0.02)   # PerTh runs at 32 kHz; 19 kHz survives
    with pytest.raises(ValueError, match="too short"):
        mark(audio[:1000], 48000)


def test_cli_synthesize_marks_by_default_and_opts_out(teacher_dir, tmp_path, capsys):  # noqa: F811
    prompt = write(tmp_path / "prompt.wav", voiced(1.0, 16000))
    base = ["synthesize", "--text", "hello", "--prompt", str(prompt), "--prompt-text", "a prompt",
            "--model", str(teacher_dir), "--steps", "2", "--seconds", "0.5", "--seed", "0"]
    assert cli_main([*base, "--out", str(tmp_path / "a.wav")]) == 0
    assert "watermarked" in capsys.readouterr().out and marked(tmp_path / "a.wav")
    assert sf.info(str(tmp_path / "a.wav")).frames == 24000
    assert cli_main([*base, "--out", str(tmp_path / "b.wav"), "--no-watermark"]) == 0
    assert "not watermarked" in capsys.readouterr().out and not marked(tmp_path / "b.wav")


def test_api_save_and_batch_mark_by_default_and_report_it(teacher_dir, tmp_path):  # noqa: F811
    from dmospeech.synthesis import TTS
    from dmospeech.synthesis.tts import read_batch_file, write_batch_report

    tts = TTS.from_pretrained(teacher_dir)
    prompt = write(tmp_path / "voice.wav", voiced(1.0, 16000))
    audio, rate = tts.synthesize("hello", prompt, prompt_text="a prompt", steps=2, seconds=0.5, seed=1)
    assert marked(tts.save(tmp_path / "api.wav", audio, rate))
    assert not marked(tts.save(tmp_path / "plain.wav", audio, rate, watermark=False))
    listing = tmp_path / "list.tsv"
    listing.write_text("text\tprompt\tprompt_text\tname\tseed\nfirst one\tvoice.wav\ta prompt\tgood\t1\n"
                       "second\tmissing.wav\ta prompt\tbad\t\n")
    for watermark, flag in ((True, "yes"), (False, "no")):
        out = tmp_path / f"out-{flag}"
        results = tts.synthesize_batch(read_batch_file(listing), out, steps=2, progress=False, watermark=watermark)
        assert marked(out / "good.wav") is watermark
        rows = [line.split("\t") for line in write_batch_report(results, out / "report.tsv").read_text().splitlines()]
        assert rows[0][3] == "watermarked" and rows[1][3] == flag and rows[2][1:4] == ["failed", "", "no"]
    code = cli_main(["synthesize", "--batch", str(listing), "--out-dir", str(tmp_path / "cli"), "--model",
                     str(teacher_dir), "--steps", "2"])
    assert code == 1 and marked(tmp_path / "cli" / "good.wav")
    assert (tmp_path / "cli" / "batch_report.tsv").read_text().splitlines()[1].split("\t")[3] == "yes"


def test_web_page_session_marks_by_default(teacher_dir, tmp_path, monkeypatch):  # noqa: F811
    from dmospeech.ui.session import UIError, Voices

    prompt = str(write(tmp_path / "voice.wav", voiced(1.0, 16000)))
    page = Voices(params(), tmp_path / "ui")
    done = page.speak(str(teacher_dir), "codec", prompt, "a prompt", "hello there", steps=2, seed=0, seconds=0.5)
    assert done.watermarked and marked(done.audio_path) and done.spectrogram_path.stat().st_size > 0
    assert done.seconds == 0.5 and done.rtf > 0 and (done.sim is None or -1 <= done.sim <= 1)
    plain = Voices(params(), tmp_path / "ui2", watermark=False)
    assert not marked(plain.speak(str(teacher_dir), "codec", prompt, "a prompt", "hello", 2, 0, 0.5).audio_path)
    listing = tmp_path / "list.tsv"
    listing.write_text("text\tprompt\tprompt_text\tname\nfirst one\tvoice.wav\ta prompt\tgood\n")
    archive, report, rows = page.batch(str(teacher_dir), "codec", str(listing), [prompt], steps=2)
    assert archive.suffix == ".zip" and rows[0][:2] == ["good", "ok"] and rows[0][3] == "yes"
    assert marked(report.parent / "good.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF1234WAVEnot really audio")
    long_prompt = str(write(tmp_path / "long.wav", voiced(6.0, 16000)))
    cases = [(dict(prompt_path=str(broken), text="hi"), "cannot read the prompt broken.wav"),
             (dict(prompt_path=None, text="hi"), "no prompt"),
             (dict(prompt_path=prompt, text="  "), "text to speak is empty"),
             (dict(prompt_path=prompt, text="日本語"), "cannot be pronounced"),
             (dict(prompt_path=long_prompt, text="and now some words"), "too long")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            page.speak(str(teacher_dir), "codec", prompt_text="a prompt", **kwargs)
    with pytest.raises(UIError, match="neither 'current'"):
        page.speak(str(tmp_path / "nowhere"), "codec", prompt, "a prompt", "hi")
    monkeypatch.chdir(tmp_path)                     # no registry here
    with pytest.raises(UIError, match="no current model"):
        page.speak("current", "codec", prompt, "a prompt", "hi")


def test_watermark_detect_and_lineage_source_tell_output_from_recordings(tmp_path, capsys, monkeypatch):
    import json

    from tests.helpers import PROJECT_ROOT

    recording = write(tmp_path / "recording.wav", voiced(2.0, 48000), 48000)
    output = tmp_path / "output.wav"
    sf.write(str(output), mark(voiced(2.0, 48000), 48000), 48000, subtype="PCM_16")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF1234WAVEnot really audio")
    assert cli_main(["watermark", "detect", str(output), str(recording)]) == 0
    lines = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert "\twatermarked: synthesised" in lines[str(output)] and "no watermark" in lines[str(recording)]
    assert cli_main(["watermark", "detect", str(broken)]) == 2 and "cannot read" in capsys.readouterr().err
    assert detect_file(output).watermarked and not detect_file(recording).watermarked
    monkeypatch.chdir(tmp_path)                     # an empty project: no manifests, no models
    lineage = ["--params", str(PROJECT_ROOT / "params.yaml"), "lineage", "source"]
    assert cli_main([*lineage, str(output), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["watermark"]
    assert found["watermarked"] is True and "not a recording" in found["verdict"]
    assert cli_main([*lineage, str(recording)]) == 0
    assert '"watermarked": false' in capsys.readouterr().out.replace("\n", "")
    assert synthesis_record()["outputs_watermarked_by_default"] is True
