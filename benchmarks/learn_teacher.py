"""Does the tiny teacher learn on real speech? Trains the DiT (train_teacher params) on CPU for a time
budget on the latents of `--train` folders (encoded by `--codec`) and prints
  - the held-out diffusion loss (fixed t, noise and prompt spans) at step 0 and at the end (EMA);
  - for training sentences regenerated from their own first 30 % as prompt (128 steps, CFG), the
    log-mel distance after DTW between the generated continuation and the real recording, for the
    untrained and the trained network (and, as a floor, for the codec's own reconstruction).

Usage: python benchmarks/learn_teacher.py --minutes 30 --train DIR [DIR ...] --valid DIR [DIR ...]
       --codec CODEC_CHECKPOINT [--sentences 6] [--threads 2] [--out runs/learn_teacher] [--params params.yaml]

Folder layouts are recognised as in `dmospeech.codec.folder_corpus`; the corpus cache, checkpoints,
curves (dvclive) and sample wavs/spectrograms go below OUT.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from dmospeech.ops.audio import write_audio_atomic
from dmospeech.config import TeacherSamplerConfig, load_params
from dmospeech.codec.folder_corpus import build_folder_corpus
from dmospeech.codec.latent_text import LatentTextDataset
from dmospeech.codec.latents import LatentStore, denormalize
from dmospeech.data.datasets import Clip, load_clip
from dmospeech.evaluation.distances import mel_dtw_distance
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.teacher.sampling import teacher_latents
from dmospeech.ops.training import seed_everything, train
from dmospeech.teacher.trainer import TeacherTask, validation_loss


def continuation_distances(net: DiT, data: LatentTextDataset, indices: list[int], codec: Codec, shift: float,
                           sampler: TeacherSamplerConfig, out: Path | None, prompt_fraction: float = 0.3) -> tuple[list[float], list[float]]:
    """Per sentence: (generated vs real, codec reconstruction vs real) mel-DTW distance of the part after the prompt."""
    generated_d, codec_d = [], []
    rate, hop = codec.cfg.sample_rate, codec.hop_length
    for i in indices:
        item, truth = data.items[i], data.latents(i)
        n_prompt = max(1, int(prompt_fraction * len(truth)))
        real = load_clip(Clip(item.segment_id, item.audio_path, item.start_s, item.end_s), rate)[n_prompt * hop:]
        latents = teacher_latents(net, torch.tensor(item.phoneme_ids), truth[:n_prompt], len(truth), shift, sampler,
                                  torch.Generator().manual_seed(int(i)))
        with torch.no_grad():
            fake = codec.decode(denormalize(latents, data.stats).T[None])[0, 0, n_prompt * hop:].numpy()
            recon = codec.decode(denormalize(truth, data.stats).T[None])[0, 0, n_prompt * hop:].numpy()
        generated_d.append(mel_dtw_distance(fake, real, rate))
        codec_d.append(mel_dtw_distance(recon, real, rate))
        if out is not None:
            write_audio_atomic(out / f"{item.segment_id}_generated.wav", fake, rate, subtype="PCM_16")
            write_audio_atomic(out / f"{item.segment_id}_real.wav", real, rate, subtype="PCM_16")
    return generated_d, codec_d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True)
    parser.add_argument("--codec", type=Path, required=True, help="codec checkpoint folder (step_<n>)")
    parser.add_argument("--sentences", type=int, default=6, help="training sentences regenerated for the distance")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/learn_teacher"))
    parser.add_argument("--corpus", type=Path, default=None,
                        help="latent cache of the folders (default OUT/corpus; shared with learn_asr.py/learn_sv.py)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    cfg = params.train_teacher
    corpus = args.corpus or args.out / "corpus"
    for sub in ("checkpoints", "report"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    train_items, valid_items, stats = build_folder_corpus(args.train, args.valid, corpus, args.codec, params)
    max_frames = int(cfg.max_seconds * FRAME_RATE)  # one cache for every benchmark; each keeps its own length limit
    train_items = [it for it in train_items if it.num_frames <= max_frames]
    valid_items = [it for it in valid_items if it.num_frames <= max_frames]
    store = LatentStore(corpus)
    train_set = LatentTextDataset(train_items, store, stats, FRAME_RATE)
    valid_set = LatentTextDataset(valid_items[:: max(1, len(valid_items) // cfg.valid_items)][: cfg.valid_items],
                                  store, stats, FRAME_RATE)
    codec = Codec.from_checkpoint(args.codec).eval()
    loop = replace(cfg.loop, max_minutes=args.minutes, max_steps=10**9, checkpoint_every=500, valid_every=100,
                   log_every=20, out_dir=str(args.out / "checkpoints"), report_dir=str(args.out / "report"))
    cfg = replace(cfg, loop=loop)
    extra = {"codec_checkpoint": str(args.codec), "latent_stats": asdict(stats),
             "resample_audio": asdict(params.resample_audio), "phonemize_text": asdict(params.phonemize_text)}
    task = TeacherTask(cfg, train_set, valid_set, loop.report_dir, codec, extra)
    print(f"train: {len(train_set)} segments, {sum(train_set.durations) / 60:.1f} min; valid: {len(valid_set)} "
          f"segments of {len(valid_items)} held out")
    sentences = [int(i) for i in np.linspace(0, len(train_set) - 1, args.sentences).round()]
    seed_everything(loop.seed)
    untrained = DiT(cfg.model).eval()
    loss_before = validation_loss(untrained, valid_set, cfg.diffusion)
    sampler = params.evaluate.teacher_sampler
    before, floor = continuation_distances(untrained, train_set, sentences, codec, cfg.diffusion.shift, sampler, None)
    start = time.perf_counter()
    result = train(task, loop, task.run_config())
    minutes = (time.perf_counter() - start) / 60
    trained = DiT.from_checkpoint(result.checkpoint, "teacher").eval()
    loss_after = validation_loss(trained, valid_set, cfg.diffusion)
    task.write_samples(trained, result.step)
    after, _ = continuation_distances(trained, train_set, sentences, codec, cfg.diffusion.shift, sampler,
                                      Path(loop.report_dir) / "continuations")
    print(f"steps: {result.step} in {minutes:.1f} min ({result.stop_reason}); "
          f"{sum(p.numel() for p in trained.parameters()) / 1e6:.2f}M parameters")
    print(f"held-out diffusion loss: step 0 {loss_before:.4f} -> step {result.step} {loss_after:.4f} "
          f"({100 * (loss_before - loss_after) / loss_before:.1f} % lower)")
    print(f"mel-DTW distance to the real continuation of {len(sentences)} training sentences (30 % prompt, "
          f"{sampler.steps} steps, CFG {sampler.cfg_scale:g}): untrained {np.mean(before):.3f}, "
          f"trained {np.mean(after):.3f}, codec reconstruction {np.mean(floor):.3f}")
    print(f"per sentence untrained/trained: " + ", ".join(f"{b:.2f}/{a:.2f}" for b, a in zip(before, after)))
    print(f"samples: {Path(loop.report_dir) / 'samples'} and {Path(loop.report_dir) / 'continuations'}")


if __name__ == "__main__":
    main()
