"""The latent cache with a seeded, randomly initialised tiny codec on fabricated 48 kHz FLAC segments:
frame counts, shard round trip against encoding each segment alone, stats, sharding, the GX gate
and the NaN guard."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from dmospeech.config import EncodeLatentsConfig
from dmospeech.data.datasets import Clip, load_clip
from dmospeech.codec.latents import (LatentStats, LatentStore, NonFiniteLatentsError, denormalize,
                                    encode_segments, equal_frame_batches, normalize)
from dmospeech.data.manifest import Lineage, frame, write_stage_db
from dmospeech.codec.model import Codec
from tests.data.test_validate import audio as audio_row, segment as segment_row
from tests.helpers import codec_model, voiced, write

SR = 48000
HOP = 1200
FILE_ID = "e" * 16
# samples per segment: exact hop multiples, one short of one, odd remainders, a single frame
LENGTHS = [4 * HOP, 4 * HOP - 1, 4 * HOP - 500, 10 * HOP + 1, 7 * HOP + 333, 599]
LINEAGE = Lineage.for_stage("encode_latents", {"test": True})
CHECKPOINT = "data/models/codec/step_60"


def segment_id(i: int) -> str:
    return f"{FILE_ID}_{i:04d}"


@pytest.fixture(scope="module")
def codec() -> Codec:
    torch.manual_seed(0)
    return Codec(codec_model()).eval()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    """One FLAC per segment, except the last two: regions of one longer file."""
    root = tmp_path_factory.mktemp("audio")
    clips = [Clip(segment_id(i), str(write(root / f"seg{i}.flac", voiced(n / SR, SR, seed=i), SR)), 0.0, n / SR)
             for i, n in enumerate(LENGTHS[:-2])]
    longer = write(root / "long.flac", voiced(1.0, SR, seed=9), SR)
    start = 0.25
    for i, n in enumerate(LENGTHS[-2:], start=len(LENGTHS) - 2):
        clips.append(Clip(segment_id(i), str(longer), start, start + n / SR))
        start += 0.3
    return clips


def make_cfg(root: Path, **overrides) -> EncodeLatentsConfig:
    base = EncodeLatentsConfig(use_mean=True, shard_frames=200_000, batch_seconds=60.0, device="cpu", out_dir=str(root),
                               manifest=str(root / "latents.duckdb"), stats_path=str(root / "stats.json"),
                               report_dir=str(root / "report"))
    return dataclasses.replace(base, **overrides)


def encode(codec, clips, cfg):
    return encode_segments(codec, clips, cfg, LINEAGE, cfg.out_dir, SR, codec_checkpoint=CHECKPOINT,
                           source_sha256={c.clip_id: "f" * 64 for c in clips})


@pytest.fixture(scope="module")
def encoded(codec, clips, tmp_path_factory):
    cfg = make_cfg(tmp_path_factory.mktemp("latents"))
    latents, stats = encode(codec, clips, cfg)
    return cfg, latents, stats


def alone(codec: Codec, clip: Clip) -> torch.Tensor:
    """Posterior mean of one segment encoded on its own, (n, c)."""
    with torch.no_grad():
        mean, _ = codec.encode(torch.from_numpy(load_clip(clip, SR))[None, None])
    return mean[0].T


def test_frame_counts_follow_the_hop_rule(encoded, clips):
    _, latents, _ = encoded
    rows = latents.set_index("segment_id")
    assert sorted(rows.index) == sorted(c.clip_id for c in clips)
    for i, n in enumerate(LENGTHS):
        assert rows.loc[segment_id(i), "num_samples"] == n
        assert rows.loc[segment_id(i), "num_frames"] == math.ceil(n / HOP)
    assert (rows["parent_id"] == rows.index).all() and (rows["stage"] == "encode_latents").all()


def test_batches_group_equal_frame_counts_only(clips):
    batches = [[clip.clip_id for clip, _ in batch] for batch in equal_frame_batches(clips, SR, HOP, 60.0)]
    assert sorted(batches[1]) == [segment_id(0), segment_id(1), segment_id(2)]  # all 4 frames
    assert sum(len(b) for b in batches) == len(LENGTHS)
    small = [len(b) for b in equal_frame_batches(clips, SR, HOP, 8 * HOP / SR)]  # 2 x 4 frames per batch
    assert max(small) == 2


def test_shards_round_trip_equals_encoding_alone(encoded, codec, clips):
    cfg, latents, _ = encoded
    store = LatentStore(cfg.out_dir)
    by_id = {clip.clip_id: clip for clip in clips}
    for row in latents.itertuples(index=False):
        stored = store.read_row(row)
        assert stored.dtype == torch.float32 and stored.shape == (row.num_frames, codec.cfg.latent_dim)
        torch.testing.assert_close(stored, alone(codec, by_id[row.segment_id]), atol=1e-4, rtol=0)
        assert row.mean == pytest.approx(float(stored.double().mean()))
        assert row.max == pytest.approx(float(stored.max()))


def test_stats_json_matches_numpy(encoded):
    cfg, latents, stats = encoded
    store = LatentStore(cfg.out_dir)
    everything = np.concatenate([store.read_row(r).numpy() for r in latents.itertuples(index=False)]).astype(np.float64)
    loaded = LatentStats.load(cfg.stats_path)
    assert loaded == stats and loaded.frames == len(everything) == latents["num_frames"].sum()
    assert loaded.codec_checkpoint == CHECKPOINT and len(loaded.mean) == 64
    np.testing.assert_allclose(loaded.mean, everything.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(loaded.std, everything.std(axis=0), rtol=1e-6, atol=1e-12)
    normalized = normalize(torch.from_numpy(everything), loaded)
    np.testing.assert_allclose(normalized.mean(0).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(normalized.std(0, correction=0).numpy(), 1, atol=1e-5)
    torch.testing.assert_close(denormalize(normalized, loaded), torch.from_numpy(everything))


def test_small_shard_frames_split_shards_and_replace_stale_ones(codec, clips, tmp_path):
    cfg = make_cfg(tmp_path, shard_frames=9)
    latents, _ = encode(codec, clips, cfg)
    sizes = latents.groupby("shard")["num_frames"].agg(["sum", "count"])
    assert len(sizes) > 3
    assert ((sizes["sum"] <= 9) | (sizes["count"] == 1)).all()  # the 11-frame segment gets its own shard
    store = LatentStore(tmp_path)
    for row in latents.itertuples(index=False):
        torch.testing.assert_close(store.read_row(row), alone(codec, next(c for c in clips if c.clip_id == row.segment_id)),
                                   atol=1e-4, rtol=0)
    latents, _ = encode(codec, clips, dataclasses.replace(cfg, shard_frames=1000))
    assert sorted(p.name for p in tmp_path.glob("shard_*")) == ["shard_00000.safetensors"]
    assert set(latents["shard"]) == {"shard_00000.safetensors"}


def test_sampled_latents_are_seeded_per_segment(codec, clips, tmp_path):
    cfg = make_cfg(tmp_path, use_mean=False)
    first, _ = encode(codec, clips, cfg)
    a = [LatentStore(tmp_path).read_row(r).clone() for r in first.itertuples(index=False)]
    second, _ = encode(codec, clips[::-1], dataclasses.replace(cfg, batch_seconds=0.01))  # other batching
    b = {r.segment_id: LatentStore(tmp_path).read_row(r) for r in second.itertuples(index=False)}
    for row, z in zip(first.itertuples(index=False), a):
        torch.testing.assert_close(z, b[row.segment_id], atol=1e-4, rtol=0)
    clip = next(c for c in clips if c.clip_id == first.iloc[0]["segment_id"])
    assert (a[0] - alone(codec, clip)).abs().max() > 1e-3  # a sample, not the mean


def test_nan_latents_name_the_segment(codec, clips, tmp_path, monkeypatch):
    encode_mean = codec.encode

    def nan_for_eleven_frames(audio, whisper=None):
        mean, logscale = encode_mean(audio, whisper)
        if mean.shape[-1] == 11:
            mean[0, 3, 5] = float("nan")
        return mean, logscale

    monkeypatch.setattr(codec, "encode", nan_for_eleven_frames)
    with pytest.raises(NonFiniteLatentsError, match=rf"segment {segment_id(3)} .*1 non-finite latent values"):
        encode(codec, clips, make_cfg(tmp_path))


# ----------------------------------------------------------------------------- the GX gate (imports GX, ~15 s)
def check(latents):
    from dmospeech.codec.validate_latents import check_latents

    con = duckdb.connect()
    con.register("latents", latents)
    return check_latents(con, HOP, CHECKPOINT)


def test_suite_passes_on_good_rows(encoded):
    checks = check(encoded[1])
    assert checks and all(c.success for c in checks), [c.message() for c in checks if not c.success]


@pytest.mark.parametrize("column, corrupt, expectation", [
    ("num_frames", lambda v: v - 1, "expect_column_pair_values_to_be_equal"),
    ("std", lambda v: float("nan"), "expect_column_values_to_not_be_null"),
    ("max", lambda v: float("inf"), "expect_column_values_to_be_between"),
    ("frame_offset", lambda v: v - 1, "expect_latent_ranges_to_not_overlap"),
])
def test_suite_fails_naming_the_segment(encoded, column, corrupt, expectation):
    latents = encoded[1].copy()
    bad = latents.index[latents["segment_id"] == segment_id(1)][0]
    latents.loc[bad, column] = corrupt(latents.loc[bad, column])
    failures = [c for c in check(latents) if not c.success]
    assert [c.expectation for c in failures] == [expectation]
    assert failures[0].failing_rows == (segment_id(1),) and segment_id(1) in failures[0].message()


def test_validate_latents_requires_every_training_segment(encoded, clips, tmp_path):
    from dmospeech.codec.validate_latents import validate_latents

    segments = [segment_row(FILE_ID, i, c.start_s, c.end_s, "spk", "train") for i, c in enumerate(clips)]
    audio = write_stage_db(tmp_path / "audio.duckdb", {"audio": frame("audio", [audio_row(FILE_ID, "spk", "train", 2.0)])})
    segs = write_stage_db(tmp_path / "segments.duckdb", {"segments": frame("segments", segments)})
    quarantine = frame("quarantine", [])
    complete = write_stage_db(tmp_path / "latents.duckdb", {"latents": encoded[1], "quarantine": quarantine})
    assert validate_latents([audio, segs, complete], HOP, CHECKPOINT).success
    partial = write_stage_db(tmp_path / "partial.duckdb", {"latents": encoded[1].iloc[1:], "quarantine": quarantine})
    report = validate_latents([audio, segs, partial], HOP, CHECKPOINT)
    missing = encoded[1].iloc[0]["segment_id"]
    assert [c.expectation for c in report.failures] == ["expect_training_segments_to_have_latents"]
    assert report.failures[0].failing_rows == (missing,)
