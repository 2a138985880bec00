"""Stage train_fast_decoder: a Vocos-style decoder fitted to the trained codec's latents (its
encoder loaded and frozen), on the same validated training segments as train_codec."""
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.datasets import audio_training_clips
from dmospeech.lineage.records import record_training_segments
from dmospeech.codec.model import Codec
from dmospeech.ops.training import latest_checkpoint, train
from dmospeech.codec.trainer import CodecTask


def main() -> None:
    params = load_params()
    cfg = params.train_fast_decoder
    codec_checkpoint = latest_checkpoint(params.train_codec.loop.out_dir)
    if codec_checkpoint is None:
        raise SystemExit(f"train_fast_decoder: no codec checkpoint in {params.train_codec.loop.out_dir}")
    try:
        train_clips, valid_clips = audio_training_clips(params.manifests(), cfg.valid_clips, "train_fast_decoder")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    codec = Codec.from_checkpoint(codec_checkpoint)
    record_training_segments(cfg.loop.out_dir, [c.clip_id for c in train_clips], params.manifests(),
                             "train_fast_decoder", upstream=[codec_checkpoint])
    task = CodecTask(cfg.codec_training(codec.cfg), train_clips, valid_clips, cfg.loop.report_dir,
                     encoder_from=codec_checkpoint)
    task.parts()
    own = task.validation_mel_loss(codec)  # the codec's own decoder on the same clips, for comparison
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)
    Console().print(f"[bold]train_fast_decoder[/]: {result}\nvalidation mel loss (EMA) {final['valid/mel_loss']:.3f} "
                    f"(the codec's own decoder: {own:.3f}); samples in {cfg.loop.report_dir}/samples")


if __name__ == "__main__":
    main()
