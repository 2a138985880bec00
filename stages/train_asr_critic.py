"""Stage train_asr_critic: the latent CTC phoneme recogniser (appendix C.3) on the cached latents."""
import time
from pathlib import Path

from rich.console import Console

from dmospeech.config import load_params
from dmospeech.codec.latent_text import FRAME_RATE, LatentTextDataset, training_and_held_out
from dmospeech.codec.latents import LatentStats, LatentStore
from dmospeech.critics.speed_copies import recogniser_speed_copies, with_copies_states
from dmospeech.critics.whisper_states import whisper_encoder_states
from dmospeech.lineage.records import record_training_segments
from dmospeech.data.text import Vocabulary
from dmospeech.ops.executor import Executor
from dmospeech.ops.training import train
from dmospeech.critics.asr_trainer import ASRCriticTask



def main() -> None:
    params = load_params()
    cfg = params.train_asr_critic
    train_items, held_out = training_and_held_out([*params.manifests(), params.encode_latents.manifest],
                                                  cfg.max_seconds, "train_asr_critic")
    valid_items = held_out[: cfg.valid_items]
    store, stats = LatentStore(params.encode_latents.out_dir), LatentStats.load(params.encode_latents.stats_path)
    if not Path(stats.codec_checkpoint).is_dir():
        raise SystemExit(f"train_asr_critic: the codec that encoded the latents ({stats.codec_checkpoint}) is gone; "
                         "rerun encode_latents (the lineage record names it)")
    Path(cfg.distill.cache_dir).mkdir(parents=True, exist_ok=True)  # a DVC output, empty when distillation is off
    Path(cfg.speed_perturb.cache_dir).mkdir(parents=True, exist_ok=True)  # a DVC output, empty without factors
    started = time.perf_counter()
    with Executor(params.compute) as executor:
        copies = recogniser_speed_copies(train_items, cfg.speed_perturb.factors, cfg.speed_perturb.cache_dir,
                                         stats.codec_checkpoint, params.encode_latents.out_dir,
                                         params.encode_latents.shard_frames, params.encode_latents.use_mean,
                                         int(cfg.max_seconds * FRAME_RATE), executor=executor)
        copies_s = time.perf_counter() - started
        encoder_states = None
        if cfg.distill.uses_whisper:
            started_states = time.perf_counter()
            encoder_states = whisper_encoder_states(train_items, cfg.distill.whisper_model, cfg.distill.cache_dir,
                                                    threads=cfg.distill.threads, executor=executor)
    if copies:
        Console().print(f"train_asr_critic: {len(copies)} speed-perturbed copies (x{cfg.speed_perturb.factors}) of "
                        f"{len(train_items)} segments in {copies_s:.1f} s "
                        f"({cfg.speed_perturb.cache_dir})")
    if encoder_states is not None:
        Console().print(f"train_asr_critic: Whisper {cfg.distill.whisper_model} encoder states of {len(train_items)} "
                        f"segments in {time.perf_counter() - started_states:.1f} s ({cfg.distill.cache_dir})")
        encoder_states = with_copies_states(encoder_states, copies)
    task = ASRCriticTask(cfg, LatentTextDataset(train_items + copies, store, stats, FRAME_RATE),
                         LatentTextDataset(valid_items, store, stats, FRAME_RATE),
                         Vocabulary.load(params.phonemize_text.vocab_path).symbols, cfg.loop.report_dir,
                         encoder_states)
    record_training_segments(cfg.loop.out_dir, [it.segment_id for it in train_items], params.manifests(),
                             "train_asr_critic", upstream=[stats.codec_checkpoint])
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)  # the examples this stage declares, whatever valid_every is
    Console().print(f"[bold]train_asr_critic[/]: {result}\nphone error rate (EMA, {len(valid_items)} held-out "
                    f"segments) {100 * final['valid/per']:.1f} %; examples in {cfg.loop.report_dir}/examples.txt")


if __name__ == "__main__":
    main()
