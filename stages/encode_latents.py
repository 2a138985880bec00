"""encode_latents: cache the codec latents of every training segment, then gate them.

Writes latent shards into `encode_latents.out_dir`, the `latents` table (and an empty
`quarantine`) into `encode_latents.manifest`, the global stats into `encode_latents.stats_path`,
and the latents suite's report into `encode_latents.report_dir`; exits 1 naming every failed check.
"""
from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from dmospeech.config import load_params
from dmospeech.data.datasets import clips_from_segments
from dmospeech.codec.latents import TRAINING_SEGMENTS_SQL, encode_segments
from dmospeech.data.manifest import Lineage, frame, open_manifests, write_stage_db
from dmospeech.data.gate_report import finish_gate
from dmospeech.codec.validate_latents import validate_latents
from dmospeech.codec.model import Codec
from dmospeech.ops.executor import Executor
from dmospeech.ops.training import latest_checkpoint

def main(params_path: str | Path = "params.yaml") -> int:
    params = load_params(params_path)
    cfg = params.encode_latents
    checkpoint = latest_checkpoint(params.train_codec.loop.out_dir)
    if checkpoint is None:
        raise SystemExit(f"encode_latents: no codec checkpoint in {params.train_codec.loop.out_dir}: "
                         "run `dvc repro train_codec`")
    con = open_manifests(params.manifests())
    segments = con.execute(TRAINING_SEGMENTS_SQL).df()
    con.close()
    codec = Codec.from_checkpoint(checkpoint)
    with Progress(transient=True) as progress, Executor(params.compute) as executor:
        task = progress.add_task("encode_latents", total=len(segments))
        latents, stats = encode_segments(
            codec, clips_from_segments(segments), cfg, Lineage.for_stage("encode_latents", cfg), cfg.out_dir,
            params.resample_audio.sample_rate, codec_checkpoint=str(checkpoint),
            source_sha256=dict(zip(segments["segment_id"], segments["source_sha256"])),
            progress=lambda n: progress.advance(task, n), executor=executor)
    write_stage_db(cfg.manifest, {"latents": latents, "quarantine": frame("quarantine", [])})
    Console().print(f"[bold]encode_latents[/]: {len(latents)} segments, {stats.frames} frames in "
                    f"{latents['shard'].nunique()} shard(s) with codec {checkpoint}")
    report = validate_latents([*params.manifests(), cfg.manifest], codec.hop_length, str(checkpoint))
    return finish_gate(report, cfg.report_dir)


if __name__ == "__main__":
    sys.exit(main())
