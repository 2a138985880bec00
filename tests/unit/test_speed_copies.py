"""Speed-perturbed copies of the recogniser's training segments: the speed changes tempo and pitch
together, and the copies are latents of the changed audio that the corpus's own store reads."""
from dataclasses import asdict

import numpy as np
import pytest
import torch

from dmospeech.ops.checkpoint import save_checkpoint
from dmospeech.codec.folder_corpus import build_folder_corpus
from dmospeech.codec.latents import LatentStore
from dmospeech.critics.speed_copies import (build_speed_copies, copy_id, original_id, recogniser_speed_copies,
                                         speed_perturb, with_copies_states)
from dmospeech.codec.model import Codec
from tests.helpers import codec_model, params, voiced, write


def peak_hz(audio, sr):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / sr)[spectrum.argmax()]


def test_faster_is_shorter_and_higher():
    sr = 16000
    tone = np.sin(2 * np.pi * 200 * np.arange(sr) / sr).astype(np.float32)
    fast, slow = speed_perturb(tone, sr, 1.1), speed_perturb(tone, sr, 0.9)
    assert abs(len(fast) - sr / 1.1) <= 2 and abs(len(slow) - sr / 0.9) <= 2
    assert peak_hz(fast, sr) == pytest.approx(220, abs=2) and peak_hz(slow, sr) == pytest.approx(180, abs=2)
    with pytest.raises(ValueError):
        speed_perturb(tone, sr, 0.0)


def test_copy_ids_lead_back_to_their_segment():
    assert original_id(copy_id("abc_1272-128104-0000", 0.9)) == "abc_1272-128104-0000"
    assert original_id("plain@xenon") == "plain@xenon"   # not a copy's suffix


def test_copies_are_latents_of_the_changed_audio_read_by_the_corpus_store(tmp_path):
    p = params()
    torch.manual_seed(0)
    cfg = codec_model(encoder_dim=4, decoder_dim=16)
    codec_dir = save_checkpoint(tmp_path / "codec", 1, {"codec.ema": Codec(cfg).state_dict()}, {"step": 1},
                                {"task": "codec", "model": asdict(cfg)}, 0)
    for i, text in enumerate(["the cat sat on the mat", "a dog ran home"]):
        write(tmp_path / "alice" / f"a_{i}.wav", voiced(1.0 + 0.5 * i, seed=i))
        (tmp_path / "alice" / f"a_{i}.txt").write_text(text)
    work = tmp_path / "corpus"
    items, _, _ = build_folder_corpus([tmp_path / "alice"], [tmp_path / "alice"], work, codec_dir, p)
    codec = Codec.from_checkpoint(codec_dir)

    copies = build_speed_copies(items, codec, str(codec_dir), [0.9, 1.1], work / "speed", work, 10**6, True)
    assert [c.segment_id for c in copies] == [copy_id(it.segment_id, f) for it in items for f in (0.9, 1.1)]
    store = LatentStore(work)
    for item, slow, fast in zip(items, copies[::2], copies[1::2]):
        assert slow.phoneme_ids == fast.phoneme_ids == item.phoneme_ids and slow.speaker == item.speaker
        assert abs(slow.num_frames - item.num_frames / 0.9) <= 1 and abs(fast.num_frames - item.num_frames / 1.1) <= 1
        assert store.read(slow.shard, slow.frame_offset, slow.num_frames).shape == (slow.num_frames, cfg.latent_dim)
    fast_latents = [store.read(c.shard, c.frame_offset, c.num_frames).clone() for c in copies[1::2]]
    stamp = (work / "speed" / "index.json").stat().st_mtime_ns
    again = build_speed_copies(items, codec, str(codec_dir), [0.9, 1.1], work / "speed", work, 10**6, True)
    assert again == copies and (work / "speed" / "index.json").stat().st_mtime_ns == stamp   # reused
    only_fast = build_speed_copies(items, codec, str(codec_dir), [1.1], work / "speed", work, 10**6, True)
    assert [(c.segment_id, c.num_frames) for c in only_fast] == [(c.segment_id, c.num_frames) for c in copies[1::2]]
    fresh = LatentStore(work)   # the shard was rewritten: the new index reads back the same latents
    assert all(torch.equal(fresh.read(c.shard, c.frame_offset, c.num_frames), latents)
               for c, latents in zip(only_fast, fast_latents))
    short = recogniser_speed_copies(items, [0.9], work / "speed", str(codec_dir), work, 10**6, True,
                                    max_frames=items[0].num_frames + 5)
    assert [c.segment_id for c in short] == [copy_id(items[0].segment_id, 0.9)]              # long copies left out
    assert recogniser_speed_copies(items, [], work / "speed", str(codec_dir), work, 10**6, True, 10**6) == []
    with pytest.raises(ValueError, match="not 1"):
        build_speed_copies(items, codec, str(codec_dir), [1.0], work / "speed", work, 10**6, True)

    states = {it.segment_id: torch.randn(50, 8) for it in items}
    shared = with_copies_states(states, copies)
    assert all(shared[c.segment_id] is states[original_id(c.segment_id)] for c in copies)
