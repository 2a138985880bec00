"""Stage train_teacher: the DiT teacher (section 3.1, appendix C.2) on the cached latents."""
from dataclasses import asdict

from rich.console import Console

from dmospeech.config import load_params
from dmospeech.codec.latent_text import FRAME_RATE, LatentTextDataset, training_and_held_out
from dmospeech.codec.latents import LatentStats, LatentStore
from dmospeech.lineage.records import record_training_segments
from dmospeech.codec.model import Codec
from dmospeech.ops.training import latest_checkpoint, train
from dmospeech.teacher.trainer import TeacherTask


def main() -> None:
    params = load_params()
    cfg = params.train_teacher
    codec_checkpoint = latest_checkpoint(params.train_codec.loop.out_dir)
    if codec_checkpoint is None:
        raise SystemExit(f"train_teacher: no codec checkpoint in {params.train_codec.loop.out_dir}")
    train_items, held_out = training_and_held_out([*params.manifests(), params.encode_latents.manifest],
                                                  cfg.max_seconds, "train_teacher")
    valid_items = held_out[-cfg.valid_items:]  # the shortest held-out items
    store, stats = LatentStore(params.encode_latents.out_dir), LatentStats.load(params.encode_latents.stats_path)
    train_set = LatentTextDataset(train_items, store, stats, FRAME_RATE)
    valid_set = LatentTextDataset(valid_items, store, stats, FRAME_RATE)
    extra = {"codec_checkpoint": str(codec_checkpoint), "latent_stats": asdict(stats),
             "resample_audio": asdict(params.resample_audio), "phonemize_text": asdict(params.phonemize_text)}
    task = TeacherTask(cfg, train_set, valid_set, cfg.loop.report_dir, Codec.from_checkpoint(codec_checkpoint), extra)
    record_training_segments(cfg.loop.out_dir, [it.segment_id for it in train_items], params.manifests(),
                             "train_teacher", upstream=[codec_checkpoint])
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)  # the samples and spectrograms this stage declares
    Console().print(f"[bold]train_teacher[/]: {result}\nheld-out diffusion loss (EMA) "
                    f"{final['valid/diffusion_loss']:.4f}; samples in {cfg.loop.report_dir}/samples")


if __name__ == "__main__":
    main()
