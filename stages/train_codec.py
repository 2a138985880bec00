"""Stage train_codec: the DAC-VAE codec (appendix C.1) on the validated training segments, with the
semantic term when train_codec.semantic.weight > 0 (Whisper states cached in semantic.cache_dir)."""
import time
from pathlib import Path

from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.datasets import audio_training_clips
from dmospeech.lineage.records import record_training_segments
from dmospeech.ops.training import train
from dmospeech.codec.trainer import CodecTask


def main() -> None:
    params = load_params()
    cfg = params.train_codec
    try:
        train_clips, valid_clips = audio_training_clips(params.manifests(), cfg.valid_clips, "train_codec")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    record_training_segments(cfg.loop.out_dir, [c.clip_id for c in train_clips], params.manifests(), "train_codec")
    Path(cfg.semantic.cache_dir).mkdir(parents=True, exist_ok=True)  # a DVC output, empty when the term is off
    started = time.perf_counter()
    task = CodecTask(cfg, train_clips, valid_clips, cfg.loop.report_dir)
    if task.targets is not None:
        Console().print(f"train_codec: Whisper {cfg.semantic.whisper_model} encoder states of "
                        f"{len(train_clips) + len(valid_clips)} clips in {time.perf_counter() - started:.1f} s "
                        f"({cfg.semantic.cache_dir})")
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)  # the decoded samples and spectrograms this stage declares
    semantic = f", semantic loss {final['valid/semantic_loss']:.3f}" if task.targets is not None else ""
    Console().print(f"[bold]train_codec[/]: {result}\nvalidation mel loss (EMA) {final['valid/mel_loss']:.3f}"
                    f"{semantic}; samples in {cfg.loop.report_dir}/samples")


if __name__ == "__main__":
    main()
