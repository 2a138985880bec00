"""How much phone information do the codec latents keep? Fits the same small CTC phone head
(dmospeech.critics.whisper_phones.ConvPhoneHead, `train_asr_critic.distill.phone_head` settings but
`--steps`) on three 40-Hz representations of the same training segments and prints each one's phone
error rate on the held-out segments:

  whisper  encoder states of the packaged Whisper base (CTC only): the ceiling, and the teacher;
  mel      an 80-band log-mel of the audio (16 kHz, hop 400 = 40 Hz), CTC + KL to the teacher's posteriors;
  latents  the codec's normalised latents (what the critics read), CTC + KL to the teacher's posteriors.

The mel and the latents get the recipe of the latent recogniser (CTC + frame-level posterior
distillation), so the gap between them is what the codec loses: if a head on the latents stays far
behind the same head on a mel, no recogniser trained on those latents will read speech as well.

Usage: python benchmarks/probe_phones.py --train DIR [DIR ...] --valid DIR [DIR ...] --codec CKPT
       [--steps 600] [--minutes 10] [--threads 1] [--corpus DIR] [--params params.yaml] [--skip-mel]

`--minutes` caps each representation's fitting; `--skip-mel` leaves the log-mel out when comparing
codecs on the same segments (its figure does not change; the Whisper head is always fitted, as the
others are distilled from its posteriors); folders and corpus cache as in learn_asr.py (the
Whisper states are cached in CORPUS/whisper_states and CORPUS/whisper_states_valid).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
import torchaudio

from dmospeech.config import load_params
from dmospeech.codec.folder_corpus import build_folder_corpus
from dmospeech.codec.latent_text import FRAME_RATE, LatentTextDataset, LatentTextItem
from dmospeech.codec.latents import LatentStore
from dmospeech.critics.whisper_states import segment_audio_16k, whisper_encoder_states
from dmospeech.critics.whisper_phones import fit_phone_head, head_phone_error_rate, phone_log_posteriors
from dmospeech.data.whisper_states import channel_stats, states_at_latent_rate

MEL_RATE, MEL_HOP = 16000, 400  # 40 frames per second, the latents' rate
LABELS = {"whisper": "Whisper states", "mel": "log-mel", "latents": "codec latents"}


def log_mels(items: list[LatentTextItem]) -> list[torch.Tensor]:
    """(num_frames, 80) log-mel per segment, frame i centred at the start of latent frame i."""
    mel = torchaudio.transforms.MelSpectrogram(MEL_RATE, n_fft=1024, hop_length=MEL_HOP, n_mels=80)
    out = []
    for it in items:
        frames = (mel(torch.from_numpy(segment_audio_16k(it))) + 1e-5).log().T       # (m, 80)
        if len(frames) < it.num_frames:
            frames = torch.cat([frames, frames[-1:].expand(it.num_frames - len(frames), -1)])
        out.append(frames[: it.num_frames])
    return out


def standardise(train: list[torch.Tensor], valid: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    mean, std = channel_stats(train)
    return [(x - mean) / std for x in train], [(x - mean) / std for x in valid]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--valid", type=Path, nargs="+", required=True)
    parser.add_argument("--codec", type=Path, required=True, help="codec checkpoint folder (train_codec step_<n>)")
    parser.add_argument("--steps", type=int, default=600, help="head steps per representation")
    parser.add_argument("--minutes", type=float, default=10.0, help="cap per representation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=Path("runs/probe_phones/corpus"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--skip-mel", action="store_true",
                        help="fit no head on the log-mel (its figure does not depend on the codec)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    cfg = params.train_asr_critic
    train_items, valid_items, stats = build_folder_corpus(args.train, args.valid, args.corpus, args.codec, params)
    train_items = [it for it in train_items if it.num_frames <= int(cfg.max_seconds * FRAME_RATE)]
    model = cfg.distill.whisper_model
    states = whisper_encoder_states(train_items, model, args.corpus / "whisper_states", threads=args.threads)
    valid_states = whisper_encoder_states(valid_items, model, args.corpus / "whisper_states_valid", threads=args.threads)
    print(f"train: {len(train_items)} segments, {sum(it.num_frames for it in train_items) / FRAME_RATE / 60:.1f} min; "
          f"valid: {len(valid_items)} segments; codec {args.codec}; head {args.steps} steps (at most "
          f"{args.minutes:g} min) per representation")
    store = LatentStore(args.corpus)

    def latents(items):
        data = LatentTextDataset(items, store, stats, FRAME_RATE)
        return [data[i]["latents"] for i in range(len(items))]

    features = {
        "whisper": standardise([states_at_latent_rate(states[it.segment_id], it.num_frames) for it in train_items],
                               [states_at_latent_rate(valid_states[it.segment_id], it.num_frames) for it in valid_items]),
    }
    if not args.skip_mel:
        features["mel"] = standardise(log_mels(train_items), log_mels(valid_items))
    features["latents"] = standardise(latents(train_items), latents(valid_items))
    phonemes = [it.phoneme_ids for it in train_items]
    valid_phonemes = [it.phoneme_ids for it in valid_items]
    head_cfg = replace(cfg.distill.phone_head, steps=args.steps)
    teacher_posteriors, results = None, {}
    for name, (train_x, valid_x) in features.items():
        started = time.perf_counter()
        head, done = fit_steps_within(args.minutes, lambda steps: fit_phone_head(
            train_x, phonemes, cfg.model.vocab_size, replace(head_cfg, steps=steps), seed=cfg.loop.seed,
            teacher_log_probs=teacher_posteriors), head_cfg.steps)
        results[name] = head_phone_error_rate(head, valid_x, valid_phonemes)
        print(f"{name:8s} {train_x[0].shape[-1]:4d} channels: {done} steps in {(time.perf_counter() - started) / 60:.1f} "
              f"min, held-out phone error rate {100 * results[name]:.1f} %", flush=True)
        if name == "whisper":
            teacher_posteriors = phone_log_posteriors(head, train_x)
    print("phone error rate of the same head: " + ", ".join(
        f"{LABELS[name]} {100 * rate:.1f} %" for name, rate in results.items()))


def fit_steps_within(minutes: float, fit, steps: int):
    """(head, steps) of `fit(steps)`, with steps cut so that the fit ends within `minutes`: a 20-step
    trial measures the pace first."""
    started = time.perf_counter()
    fit(20)
    per_step = (time.perf_counter() - started) / 20
    steps = max(20, min(steps, int((60 * minutes - (time.perf_counter() - started)) / per_step)))
    return fit(steps), steps


if __name__ == "__main__":
    main()
