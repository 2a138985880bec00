"""Stage train_codec: the DAC-VAE codec (appendix C.1) on the validated training segments."""
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.datasets import clips_from_segments, validated_segments
from dmospeech.data.manifest import open_manifests
from dmospeech.lineage import record_training_segments
from dmospeech.train import train
from dmospeech.trainers.codec import CodecTask


def main() -> None:
    params = load_params()
    cfg = params.train_codec
    con = open_manifests(params.manifests())
    train_clips = clips_from_segments(validated_segments(con, ["train"]))
    valid_clips = clips_from_segments(validated_segments(con, ["valid", "test"]).head(cfg.valid_clips))
    if not train_clips or not valid_clips:
        raise SystemExit(f"train_codec: {len(train_clips)} training and {len(valid_clips)} validation segments; "
                         "need at least one of each (check prepare_corpus.split and the manifests)")
    record_training_segments(cfg.loop.out_dir, [c.clip_id for c in train_clips], params.manifests(), "train_codec")
    task = CodecTask(cfg, train_clips, valid_clips, cfg.loop.report_dir)
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)  # the decoded samples and spectrograms this stage declares
    Console().print(f"[bold]train_codec[/]: {result}\nvalidation mel loss (EMA) {final['valid/mel_loss']:.3f}; "
                    f"samples in {cfg.loop.report_dir}/samples")


if __name__ == "__main__":
    main()
