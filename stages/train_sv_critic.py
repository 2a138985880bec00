"""Stage train_sv_critic: the latent speaker verifier (appendix C.4), fine-tuned from the newest
train_asr_critic checkpoint and distilled from an offline speaker encoder (eq. 31)."""
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from dmospeech.config import load_params
from dmospeech.codec.latent_text import FRAME_RATE, training_and_held_out
from dmospeech.codec.latents import LatentStats, LatentStore
from dmospeech.critics.speaker_copies import build_speaker_copies, speaker_trials
from dmospeech.lineage.records import record_training_segments
from dmospeech.critics.asr import LatentASR
from dmospeech.codec.model import Codec
from dmospeech.critics.speaker_teachers import build_teacher
from dmospeech.ops.executor import Executor
from dmospeech.ops.training import latest_checkpoint, train
from dmospeech.critics.sv_trainer import SpeakerCopyDataset, SVCriticTask



def main() -> None:
    params = load_params()
    cfg = params.train_sv_critic
    asr_checkpoint = latest_checkpoint(params.train_asr_critic.loop.out_dir)
    if asr_checkpoint is None:
        raise SystemExit(f"train_sv_critic: no recogniser checkpoint in {params.train_asr_critic.loop.out_dir}: "
                         "run `dvc repro train_asr_critic`")
    stats = LatentStats.load(params.encode_latents.stats_path)
    if not Path(stats.codec_checkpoint).is_dir():
        raise SystemExit(f"train_sv_critic: the codec that encoded the latents ({stats.codec_checkpoint}) is gone; "
                         "rerun encode_latents")
    train_items, held_out = training_and_held_out([*params.manifests(), params.encode_latents.manifest],
                                                  cfg.max_seconds, "train_sv_critic")
    valid_items = held_out[: cfg.valid_items]
    store, teacher = LatentStore(params.encode_latents.out_dir), build_teacher(cfg.teachers)
    codec = Codec.from_checkpoint(stats.codec_checkpoint)
    with Progress(transient=True) as progress, Executor(params.compute) as executor:
        bar = progress.add_task("speaker copies", total=len(train_items))
        copies, embeddings = build_speaker_copies(
            train_items, store, codec, stats.codec_checkpoint, teacher, cfg.pitch_shifts, cfg.cache_dir,
            params.encode_latents.shard_frames, params.encode_latents.use_mean, lambda n: progress.advance(bar, n),
            executor=executor)
    trials = speaker_trials(valid_items, store, stats, teacher, cfg.trial_seconds, codec.cfg.sample_rate, FRAME_RATE)
    dataset = SpeakerCopyDataset(copies, embeddings, LatentStore(cfg.cache_dir), stats,
                                 int(cfg.crop_seconds * FRAME_RATE), FRAME_RATE)
    asr = LatentASR.from_checkpoint(asr_checkpoint)
    task = SVCriticTask(cfg, dataset, trials, asr.cfg, str(asr_checkpoint), teacher.identity)
    # The copies are pitch-shifted versions of these segments: the verifier learned from their speakers.
    record_training_segments(cfg.loop.out_dir, [it.segment_id for it in train_items], params.manifests(),
                             "train_sv_critic", upstream=[asr_checkpoint, stats.codec_checkpoint])
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)
    shown = ", ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in final.items())
    Console().print(f"[bold]train_sv_critic[/]: {result}\n{len(copies)} training copies ({len(train_items)} segments "
                    f"x {1 + len(cfg.pitch_shifts)} pitches), teacher {teacher.identity}; held-out windows "
                    f"({len(trials.speakers)} of {len(set(trials.speakers))} speakers): {shown}")


if __name__ == "__main__":
    main()
