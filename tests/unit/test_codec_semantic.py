"""The codec's semantic term (train_codec.semantic): Whisper states of whole clips cached per clip and
reused, training crops on the latent grid with the states of their frames, the head on the posterior
mean, the weighted term in the generator loss, the run config, and nothing Whisper-related when off."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from dmospeech.codec.model import Codec
from dmospeech.codec.semantic import SemanticCrops, SemanticTargets, semantic_loss
from dmospeech.codec.trainer import CodecTask, check_semantic_settings
from dmospeech.config import load_params
from dmospeech.data.datasets import Clip, CropDataset
from dmospeech.ops.audio import resample
from dmospeech.ops.training import latest_checkpoint, train
from tests.codec_run import fabricated_clips, tiny_codec_config
from tests.helpers import PROJECT_ROOT, child_env, codec_model

HOP = 1200


def semantic_config(work, weight: float = 10.0, dim: int = 2, **loop):
    """tests.codec_run's tiny codec with the semantic term on (a fake Whisper of width 2)."""
    cfg = tiny_codec_config(work, **loop)
    return replace(cfg, model=replace(cfg.model, semantic_dim=dim),
                   semantic=replace(cfg.semantic, weight=weight, whisper_model="fake", cache_dir=str(work / "states")))


def ramp_clip(work, name: str, seconds: float) -> Clip:
    """A float WAV whose sample k is k / 480000 (its time in s / 10): positions can be read off the audio."""
    path = work / f"{name}.wav"
    sf.write(path, (np.arange(int(seconds * 48000)) / 480000).astype(np.float32), 48000, subtype="FLOAT")
    return Clip(name, str(path), 0.0, seconds)


def test_states_are_computed_once_per_clip_and_reused(tmp_path, fake_whisper):
    cfg = semantic_config(tmp_path).semantic
    clips = fabricated_clips(tmp_path, n=3)
    first = SemanticTargets(clips[:2], clips[2:], cfg, 48000, HOP)
    assert fake_whisper.built == ["fake"] and fake_whisper.encoded == 3
    assert first.dim == 2 and first.frames[clips[0]].shape == (40, 2)          # 1 s = 40 latent frames
    again = SemanticTargets(clips[:2], clips[2:], cfg, 48000, HOP)
    assert fake_whisper.built == ["fake"] and fake_whisper.encoded == 3          # the rerun read the cache
    assert all(torch.equal(first.frames[c], again.frames[c]) for c in clips)
    files = sorted((tmp_path / "states").rglob("*.safetensors"))
    assert len(files) == 3 and not list((tmp_path / "states").rglob(".*tmp*"))
    sf.write(clips[1].path, np.zeros(48000, np.float32), 48000)                  # new audio in one file:
    SemanticTargets(clips, [], cfg, 48000, HOP)                                  # that clip alone is encoded again
    assert fake_whisper.built == ["fake", "fake"] and fake_whisper.encoded == 4
    SemanticTargets(clips, [], replace(cfg, whisper_model="other"), 48000, HOP)  # another encoder: all of them
    assert fake_whisper.encoded == 7


def test_crops_start_on_the_latent_grid_and_carry_the_states_of_their_frames(tmp_path, fake_whisper):
    cfg = semantic_config(tmp_path)
    long, short = ramp_clip(tmp_path, "long", 2.0), ramp_clip(tmp_path, "short", 0.05)
    targets = SemanticTargets([long, short], [], cfg.semantic, 48000, HOP)
    crops = SemanticCrops(CropDataset([long, short], 0.4, 48000, align=HOP), targets, HOP)
    torch.manual_seed(0)
    offsets = set()
    for _ in range(12):
        item = crops[0]
        audio, states = item["audio"].numpy(), item["states"] * targets.std + targets.mean   # (16, 2) un-standardised
        offset = audio[0] * 480000
        assert abs(offset - round(offset / HOP) * HOP) < 0.5                  # a whole number of latent frames
        offsets.add(round(offset / HOP))
        assert states.shape == (16, 2) and bool(item["state_mask"].all())
        centres = audio[np.arange(16) * HOP + HOP // 2]                       # each frame's centre time / 10
        np.testing.assert_allclose(states[:, 0].numpy(), centres, atol=5e-4)  # 5 ms
    assert len(offsets) > 4
    item = crops[1]                                                           # 0.05 s: 2 of the crop's 16 frames
    assert item["state_mask"].tolist() == [True] * 2 + [False] * 14 and not item["states"][2:].any()
    with pytest.raises(ValueError, match="not of the hop"):
        SemanticCrops(CropDataset([long], 0.4, 48000), targets, HOP)


def test_the_head_reads_the_posterior_mean_and_leaves_encode_alone():
    cfg = codec_model(encoder_dim=4, decoder_dim=16)
    torch.manual_seed(0)
    with_head, without = Codec(replace(cfg, semantic_dim=8)), Codec(replace(cfg, semantic_dim=0))
    without.load_state_dict({k: v for k, v in with_head.state_dict().items() if not k.startswith("semantic.")})
    audio = 0.1 * torch.randn(2, 1, 4800)
    out = with_head(audio)                                                    # sampled z
    assert out["semantic"].shape == (2, 4, 8) and "semantic" not in without(audio)
    torch.testing.assert_close(out["semantic"], with_head.predict_semantic(out["mean"]))
    torch.testing.assert_close(with_head.encode(audio)[0], without.encode(audio)[0])


def test_the_weighted_term_joins_the_generator_loss_from_its_start_step(tmp_path, fake_whisper):
    cfg = semantic_config(tmp_path)
    cfg = replace(cfg, semantic=replace(cfg.semantic, start_step=3))
    clips = fabricated_clips(tmp_path, n=3)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    batch = task.collate([task.dataset[0], task.dataset[1]])
    assert batch["audio"].shape == (2, 1, 4800) and batch["states"].shape == (2, 4, 2)
    assert batch["state_mask"].shape == (2, 4)
    task.parts()
    before, after = (task.train_step(batch, step, lambda name, loss: {}) for step in (2, 3))
    assert before["loss/total"] == pytest.approx(before["loss/generator"])
    assert after["loss/total"] == pytest.approx(after["loss/generator"] + 10.0 * after["semantic/loss"], rel=1e-5)
    assert "valid/semantic_loss" in task.validate(0)


def test_semantic_loss_is_the_recognisers_distillation_loss():
    target = torch.randn(1, 5, 3)
    mask = torch.tensor([[True] * 4 + [False]])
    losses, logs = semantic_loss(target.clone(), target, mask)
    assert logs["semantic/cosine"] == pytest.approx(1.0)
    assert float(losses["semantic/loss"]) == pytest.approx(-float(torch.nn.functional.logsigmoid(torch.tensor(1.0))))


def test_resume_with_another_semantic_weight_is_refused(tmp_path, fake_whisper):
    cfg = semantic_config(tmp_path, max_steps=2, checkpoint_every=2)
    clips = fabricated_clips(tmp_path, n=3)
    task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
    run = task.run_config()
    assert run["semantic"] == {"weight": 10.0, "start_step": 0, "whisper_model": "fake"}
    assert run["model"]["semantic_dim"] == 2
    result = train(task, cfg.loop, run)
    assert result.step == 2 and np.isfinite(result.metrics["semantic/loss"])
    assert Codec.from_checkpoint(latest_checkpoint(cfg.loop.out_dir)).semantic.out_channels == 2
    other = replace(cfg, semantic=replace(cfg.semantic, weight=5.0), loop=replace(cfg.loop, max_steps=4))
    task = CodecTask(other, clips, clips[:1], other.loop.report_dir)
    with pytest.raises(RuntimeError, match=r"semantic.weight: 10.0 -> 5.0"):
        train(task, other.loop, task.run_config())


def test_settings_that_cannot_train_are_refused():
    cfg = load_params(PROJECT_ROOT / "params.yaml").train_codec
    with pytest.raises(ValueError, match="needs train_codec.model.semantic_dim"):
        check_semantic_settings(replace(cfg, model=replace(cfg.model, semantic_dim=0)), None)
    with pytest.raises(ValueError, match="the head would never learn"):
        check_semantic_settings(replace(cfg, semantic=replace(cfg.semantic, weight=0.0)), None)
    with pytest.raises(ValueError, match="encoder_from freezes"):
        check_semantic_settings(cfg, PROJECT_ROOT)


def test_paper_profile_and_fast_decoder_have_no_semantic_term():
    params = load_params(PROJECT_ROOT / "params.yaml", PROJECT_ROOT / "profiles" / "paper.yaml")
    assert params.train_codec.semantic.weight == 0 and params.train_codec.model.semantic_dim == 0
    tiny = load_params(PROJECT_ROOT / "params.yaml")
    assert tiny.train_codec.semantic.weight == 10.0 and tiny.train_codec.model.semantic_dim == 512
    assert tiny.train_codec.semantic.whisper_model == tiny.train_asr_critic.distill.whisper_model
    fast = tiny.train_fast_decoder.codec_training(tiny.train_codec.model)
    assert fast.semantic.weight == 0 and fast.model.semantic_dim == 0


def test_weight_zero_loads_no_whisper(tmp_path):
    """A codec run without the term (as the paper profile's) in a fresh interpreter: faster-whisper and
    CTranslate2 are never imported, no cache folder appears, and the run config is the one from
    before the term existed."""
    script = f"""
import json, sys
from dataclasses import replace
from pathlib import Path
from dmospeech.codec.trainer import CodecTask
from tests.codec_run import fabricated_clips, tiny_codec_config
work = Path({str(tmp_path)!r})
cfg = tiny_codec_config(work)
cfg = replace(cfg, semantic=replace(cfg.semantic, cache_dir=str(work / "states")))
clips = fabricated_clips(work, n=2)
task = CodecTask(cfg, clips, clips[:1], cfg.loop.report_dir)
task.parts()
batch = task.collate([task.dataset[0], task.dataset[1]])
logs = task.train_step(batch, 0, lambda name, loss: {{}})
run = task.run_config()
print(json.dumps({{"whisper": sorted(m for m in sys.modules if m.split(".")[0] in ("faster_whisper", "ctranslate2")),
                  "batch": sorted(batch), "semantic_logs": [k for k in logs if k.startswith("semantic")],
                  "run": ["semantic" in run, "semantic_dim" in run["model"]],
                  "states": (work / "states").exists(), "head": task.parts()[0].module.semantic is not None}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=child_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"whisper": [], "batch": ["audio"], "semantic_logs": [], "run": [False, False], "states": False,
                   "head": False}


def test_the_term_learns_real_whisper_states(tmp_path, dev_corpus):
    """The packaged Whisper base's states of real speech (LJSpeech) through the task's crops: a few Adam
    steps of the tiny codec's encoder and head on the semantic loss lower it and raise the cosine."""
    torch.set_num_threads(2)
    clips = []
    for i in (1, 2, 3):
        audio, sr = sf.read(dev_corpus / "ljspeech" / "wavs" / f"LJ001-000{i}.wav", dtype="float32")
        path = tmp_path / f"lj{i}.wav"
        sf.write(path, resample(audio, sr, 48000), 48000, subtype="FLOAT")
        clips.append(Clip(f"lj{i}", str(path), 0.0, len(audio) / sr))
    cfg = semantic_config(tmp_path, dim=512)
    cfg = replace(cfg, crop_seconds=0.4, semantic=replace(cfg.semantic, whisper_model="base", threads=2))
    task = CodecTask(cfg, [clips[0], clips[2]], clips[1:2], cfg.loop.report_dir)
    assert task.targets.dim == 512
    torch.manual_seed(0)
    codec = task.parts()[0].module
    batch = task.collate([task.dataset[i % 2] for i in range(4)])                 # 4 crops of 16 frames
    assert batch["states"].shape == (4, 16, 512) and bool(batch["state_mask"].all())
    optimizer = torch.optim.Adam([p for name, p in codec.named_parameters() if not name.startswith("decoder.")],
                                 lr=1e-3)
    logs = []
    for _ in range(20):
        losses, step_logs = semantic_loss(codec.predict_semantic(codec.encode(batch["audio"])[0]), batch["states"],
                                          batch["state_mask"])
        optimizer.zero_grad()
        losses["semantic/loss"].backward()
        optimizer.step()
        logs.append(step_logs)
    assert logs[-1]["semantic/loss"] < logs[0]["semantic/loss"] - 0.1, logs
    assert logs[-1]["semantic/cosine"] > logs[0]["semantic/cosine"] + 0.2, logs
