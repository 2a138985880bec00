"""Stage train_asr_critic: the latent CTC phoneme recogniser (appendix C.3) on the cached latents."""
from rich.console import Console

from dmospeech.config import load_params
from dmospeech.data.latent_text import LatentTextDataset, latent_text_items
from dmospeech.data.latents import LatentStats, LatentStore
from dmospeech.data.manifest import open_manifests
from dmospeech.text import Vocabulary
from dmospeech.train import train
from dmospeech.trainers.asr import ASRCriticTask

FRAME_RATE = 40


def main() -> None:
    params = load_params()
    cfg = params.train_asr_critic
    con = open_manifests([*params.manifests(), params.encode_latents.manifest])
    max_frames = int(cfg.max_seconds * FRAME_RATE)
    train_items = latent_text_items(con, ["train"], max_frames)
    valid_items = latent_text_items(con, ["valid", "test"], max_frames)[: cfg.valid_items]
    con.close()
    if not train_items or not valid_items:
        raise SystemExit(f"train_asr_critic: {len(train_items)} training and {len(valid_items)} validation segments "
                         f"with latents of at most {cfg.max_seconds} s; need at least one of each "
                         "(check prepare_corpus.split, encode_latents and train_asr_critic.max_seconds)")
    store, stats = LatentStore(params.encode_latents.out_dir), LatentStats.load(params.encode_latents.stats_path)
    task = ASRCriticTask(cfg, LatentTextDataset(train_items, store, stats, FRAME_RATE),
                         LatentTextDataset(valid_items, store, stats, FRAME_RATE),
                         Vocabulary.load(params.phonemize_text.vocab_path).symbols, cfg.loop.report_dir)
    result = train(task, cfg.loop, task.run_config())
    final = task.validate(result.step)  # the examples this stage declares, whatever valid_every is
    Console().print(f"[bold]train_asr_critic[/]: {result}\nphone error rate (EMA, {len(valid_items)} held-out "
                    f"segments) {100 * final['valid/per']:.1f} %; examples in {cfg.loop.report_dir}/examples.txt")


if __name__ == "__main__":
    main()
