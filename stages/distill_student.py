"""Stage distill_student: DMD2 distillation of the teacher into the 4-step student with the
adversarial, CTC and speaker-verification losses (sections 3.2-3.4)."""
from rich.console import Console

from dmospeech.ops.checkpoint import read_run_config
from dmospeech.config import DiffusionConfig, load_params
from dmospeech.codec.latent_text import FRAME_RATE, LatentTextDataset, training_and_held_out
from dmospeech.codec.latents import LatentStats, LatentStore
from dmospeech.lineage.records import record_training_segments
from dmospeech.critics.asr import LatentASR
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.critics.speaker import LatentSpeakerVerifier
from dmospeech.ops.training import latest_checkpoint, train
from dmospeech.student.trainer import StudentTask

INHERITED = ("codec_checkpoint", "latent_stats", "resample_audio", "phonemize_text")  # what synthesis needs


def checkpoint_of(stage: str, out_dir: str):
    found = latest_checkpoint(out_dir)
    if found is None:
        raise SystemExit(f"distill_student: no {stage} checkpoint in {out_dir}: run `dvc repro {stage}`")
    return found


def main() -> None:
    params = load_params()
    cfg = params.distill_student
    teacher_ckpt = checkpoint_of("train_teacher", params.train_teacher.loop.out_dir)
    asr_ckpt = checkpoint_of("train_asr_critic", params.train_asr_critic.loop.out_dir)
    sv_ckpt = checkpoint_of("train_sv_critic", params.train_sv_critic.loop.out_dir)
    teacher_run = read_run_config(teacher_ckpt)
    train_items, held_out = training_and_held_out([*params.manifests(), params.encode_latents.manifest],
                                                  cfg.max_seconds, "distill_student")
    valid_items = held_out[-cfg.valid_items:]  # the shortest held-out items
    stats = LatentStats(**teacher_run["latent_stats"])
    store = LatentStore(params.encode_latents.out_dir)
    extra = {k: teacher_run[k] for k in INHERITED} | {
        "teacher_checkpoint": str(teacher_ckpt), "asr_checkpoint": str(asr_ckpt), "sv_checkpoint": str(sv_ckpt)}
    task = StudentTask(cfg, LatentTextDataset(train_items, store, stats, FRAME_RATE),
                       LatentTextDataset(valid_items, store, stats, FRAME_RATE),
                       DiT.from_checkpoint(teacher_ckpt, "teacher"),
                       DiffusionConfig.from_run_config(teacher_run["diffusion"]),
                       LatentASR.from_checkpoint(asr_ckpt), LatentSpeakerVerifier.from_checkpoint(sv_ckpt), extra,
                       Codec.from_checkpoint(teacher_run["codec_checkpoint"]), cfg.loop.report_dir)
    record_training_segments(cfg.loop.out_dir, [it.segment_id for it in train_items], params.manifests(),
                             "distill_student", upstream=[teacher_ckpt, asr_ckpt, sv_ckpt])
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)  # the samples this stage declares
    Console().print(f"[bold]distill_student[/]: {result}\nheld-out student samples: recogniser CTC loss "
                    f"{final['valid/ctc_loss']:.3f}, verifier cosine to the prompt {final['valid/sv_cosine']:.3f}")


if __name__ == "__main__":
    main()
