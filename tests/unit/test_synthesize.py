"""Synthesis from the command line's library half: duration rule, checkpoint bundle, clear errors."""
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from dmospeech.ops.checkpoint import save_checkpoint
from dmospeech.cli import main as cli_main
from dmospeech.codec.latents import LatentStats
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.synthesis.synthesizer import SynthesisError, Synthesizer, target_frames
from tests.helpers import codec_model, params, voiced, write


def test_target_frames_follows_the_prompt_speaking_rate():
    assert target_frames(120, 40, 20) == 120 + 60          # 3 frames per phoneme
    assert target_frames(100, 30, 7) == 100 + round(7 * 100 / 30)
    with pytest.raises(SynthesisError):
        target_frames(100, 0, 7)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A randomly initialised tiny codec and teacher saved as training would save them."""
    root = tmp_path_factory.mktemp("models")
    p = params()
    torch.manual_seed(0)
    codec_cfg = codec_model(encoder_dim=4, decoder_dim=16)
    codec = Codec(codec_cfg)
    codec_dir = save_checkpoint(root / "codec", 1, {"codec.ema": codec.state_dict()}, {"step": 1},
                                {"task": "codec", "model": asdict(codec_cfg)}, 0)
    model = replace(p.train_teacher.model, dim=32, ff_dim=64, heads=2, encoder_layers=1, decoder_layers=1,
                    max_frames=200)
    stats = LatentStats((0.0,) * 64, (1.0,) * 64, 1, str(codec_dir))
    run = {"task": "teacher", "model": asdict(model), "diffusion": asdict(p.train_teacher.diffusion),
           "codec_checkpoint": str(codec_dir), "latent_stats": asdict(stats),
           "resample_audio": asdict(p.resample_audio), "phonemize_text": asdict(p.phonemize_text)}
    save_checkpoint(root / "teacher", 1, {"teacher.ema": DiT(model).state_dict()}, {"step": 1}, run, 0)
    return root / "teacher"


def test_synthesize_writes_the_requested_length(teacher_dir, tmp_path):
    prompt = write(tmp_path / "prompt.wav", voiced(1.0, 16000))
    synth = Synthesizer(teacher_dir)
    ref = synth.prompt(prompt, "a short prompt")
    assert ref.latents.shape == (40, 64)
    audio, rate = synth.synthesize("hello there", ref, steps=4, seconds=0.5, seed=0)
    assert rate == 48000 and len(audio) == 20 * 1200 and np.isfinite(audio).all()
    again, _ = synth.synthesize("hello there", ref, steps=4, seconds=0.5, seed=0)
    assert np.array_equal(audio, again)                          # seeded: reproducible
    default, _ = synth.synthesize("hello there", ref, steps=2, seed=1)
    n_text, n_prompt = len(synth.phoneme_ids("hello there", "t")), len(ref.phoneme_ids)
    assert len(default) == round(n_text * 40 / n_prompt) * 1200  # docs/equations.md C8


def test_clear_errors(teacher_dir, tmp_path):
    synth = Synthesizer(teacher_dir)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF1234WAVEnot really audio")
    with pytest.raises(SynthesisError, match="cannot use the prompt"):
        synth.prompt(garbage, "text")
    with pytest.raises(SynthesisError, match="cannot use the prompt"):
        synth.prompt(tmp_path / "missing.wav", "text")
    ref = synth.prompt(write(tmp_path / "p.wav", voiced(1.0, 16000)), "a short prompt")
    with pytest.raises(SynthesisError, match="text is empty"):
        synth.synthesize("   ", ref)
    with pytest.raises(SynthesisError, match="cannot be pronounced"):
        synth.synthesize("日本語", ref)
    long_prompt = synth.prompt(write(tmp_path / "long.wav", voiced(6.0, 16000)), "a much longer prompt")
    with pytest.raises(SynthesisError, match="too long"):
        synth.synthesize("and now some words", long_prompt)       # 240 prompt frames > max_frames 200


def test_cli_synthesize(teacher_dir, tmp_path, capsys):
    prompt = write(tmp_path / "prompt.wav", voiced(1.0, 16000))
    out = tmp_path / "out.wav"
    code = cli_main(["synthesize", "--text", "hello", "--prompt", str(prompt), "--prompt-text", "a prompt",
                     "--model", str(teacher_dir), "--steps", "2", "--seconds", "0.25", "--out", str(out)])
    assert code == 0 and out.exists()
    assert cli_main(["synthesize", "--text", "", "--prompt", str(prompt), "--prompt-text", "a prompt",
                     "--model", str(teacher_dir), "--out", str(tmp_path / "x.wav")]) == 2
    assert "text is empty" in capsys.readouterr().err


def test_python_api_and_batch_with_a_failing_item(teacher_dir, tmp_path):
    from dmospeech.synthesis import TTS
    from dmospeech.synthesis.tts import read_batch_file

    prompt = write(tmp_path / "voice.wav", voiced(1.0, 16000))
    tts = TTS.from_pretrained(teacher_dir)
    audio, rate = tts.synthesize("hello", prompt, prompt_text="a prompt", steps=2, seconds=0.25, seed=3)
    assert rate == tts.sample_rate == 48000 and len(audio) == 10 * 1200
    listing = tmp_path / "list.tsv"
    listing.write_text("text\tprompt\tprompt_text\tname\tseed\n"
                       "first one\tvoice.wav\ta prompt\tgood\t1\n"
                       "second\tmissing.wav\ta prompt\tbad\t\n"
                       "日本語\tvoice.wav\ta prompt\tunpronounceable\t\n"
                       "third one\tvoice.wav\ta prompt\tgood2\t2\n")
    results = tts.synthesize_batch(read_batch_file(listing), tmp_path / "out", steps=2, progress=False)
    assert [r.error is None for r in results] == [True, False, False, True]
    assert "cannot use the prompt" in results[1].error and "pronounced" in results[2].error
    assert (tmp_path / "out" / "good.wav").exists() and (tmp_path / "out" / "good2.wav").exists()
    code = cli_main(["synthesize", "--batch", str(listing), "--out-dir", str(tmp_path / "cli"), "--model",
                     str(teacher_dir), "--steps", "2"])
    report = (tmp_path / "cli" / "batch_report.tsv").read_text().splitlines()
    assert code == 1 and len(report) == 5 and report[2].split("\t")[:2] == ["bad", "failed"]


def test_batch_file_errors(tmp_path):
    from dmospeech.synthesis.tts import read_batch_file

    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tvoice\nhello\tx.wav\n")
    with pytest.raises(ValueError, match="header must name columns text, prompt"):
        read_batch_file(bad)
    bad.write_text("text\tprompt\tseed\nhello\tx.wav\tabc\n")
    with pytest.raises(ValueError, match="seed must be an integer"):
        read_batch_file(bad)


def test_a_fast_decoder_fitted_to_the_models_codec_decodes_it(teacher_dir, tmp_path):
    from dmospeech.ops.checkpoint import read_run_config
    from dmospeech.synthesis.synthesizer import resolve_checkpoint

    p = params()
    codec_dir = read_run_config(resolve_checkpoint(teacher_dir))["codec_checkpoint"]
    codec = Codec.from_checkpoint(codec_dir)
    small = replace(p.train_fast_decoder.decoder, dim=32, intermediate_dim=64, layers=2)
    torch.manual_seed(1)
    fast = Codec(replace(codec.cfg, fast_decoder=small))
    fast.encoder.load_state_dict(codec.encoder.state_dict())
    run = {"task": "codec", "model": asdict(fast.cfg), "encoder_from": codec_dir}
    fast_dir = save_checkpoint(tmp_path / "fast", 1, {"codec.ema": fast.state_dict()}, {"step": 1}, run, 0)
    synth = Synthesizer(teacher_dir, decoder=tmp_path / "fast")
    assert synth.codec.cfg.fast_decoder == small
    ref = synth.prompt(write(tmp_path / "prompt.wav", voiced(1.0, 16000)), "a short prompt")
    audio, rate = synth.synthesize("hello there", ref, steps=2, seconds=0.5, seed=0)
    assert rate == 48000 and len(audio) == 20 * 1200 and np.isfinite(audio).all()
    own, _ = Synthesizer(teacher_dir).synthesize("hello there", ref, steps=2, seconds=0.5, seed=0)
    assert not np.allclose(audio, own)  # decoded by the other decoder

    torch.manual_seed(2)
    stranger = Codec(replace(codec.cfg, fast_decoder=small))  # its own, untrained encoder
    other_dir = save_checkpoint(tmp_path / "other", 1, {"codec.ema": stranger.state_dict()}, {"step": 1},
                                {"task": "codec", "model": asdict(stranger.cfg)}, 0)
    with pytest.raises(SynthesisError, match="fitted to another codec's latents"):
        Synthesizer(teacher_dir, decoder=other_dir)
    with pytest.raises(SynthesisError, match="no decoder checkpoint"):
        Synthesizer(teacher_dir, decoder=tmp_path / "missing")
    assert fast_dir.exists()
