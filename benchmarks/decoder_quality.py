"""How well do the codec's own (DAC) decoder and a fast decoder turn the same latents back into
speech? Encodes held-out recordings with the codec (posterior mean, as encode_latents does),
decodes them with each decoder, and prints per decoder: the multi-scale mel loss of train_codec,
Whisper's WER against its transcript of the original recording (corpus-level, then each recording's
and the worst transcript), Resemblyzer's cosine similarity to
the original, and the decoding time per second of audio on this machine. With --pocketsphinx, also the
WER by a recogniser that is not Whisper (PocketSphinx's packaged en-us HMM model, against its own
transcript of the original): a decoder trained with Whisper's features (train_fast_decoder.whisper_feature)
must be more readable to it too, not only to Whisper.

Usage: python benchmarks/decoder_quality.py --codec CODEC_CKPT [--fast FAST_CKPT] --valid DIR [DIR ...]
       [--clips 24] [--max-seconds 12] [--threads 2] [--params params.yaml] [--pocketsphinx]

CODEC_CKPT is a train_codec checkpoint; FAST_CKPT a train_fast_decoder (or learn_codec.py
--encoder-from) checkpoint fitted to it: the script checks that both have the same encoder.
Without --fast only the codec's own decoder is judged (say, a codec that has no fast decoder yet).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dmospeech.ops.audio import AudioError, resample
from dmospeech.ops.files import files_below
from dmospeech.config import load_params
from dmospeech.data.resample import condition_file
from dmospeech.data.transcribe import Transcriber
from dmospeech.evaluation.metrics import ResemblyzerEncoder, speaker_similarity, word_error_rate
from dmospeech.codec.latents import encode_audio
from dmospeech.codec.model import Codec
from dmospeech.codec.loss import CodecLoss, build_discriminator
from dmospeech.synthesis.synthesizer import same_encoder_codec

EXTS = {".wav", ".flac", ".mp3", ".ogg"}


def held_out_audio(folders: list[Path], cfg, clips: int, max_seconds: float) -> list[tuple[str, np.ndarray]]:
    """Up to `clips` recordings below `folders` (evenly over the sorted list), cut to `max_seconds`."""
    paths = sorted(p for folder in folders for p in files_below(folder, suffixes=EXTS))
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, min(clips, len(paths))).round().astype(int)]
    out = []
    for path in dict.fromkeys(picked):
        try:
            audio, _ = condition_file(str(path), cfg)
        except AudioError as err:
            print(f"skipped {path}: {err}")
            continue
        out.append((path.stem, audio[: int(max_seconds * cfg.sample_rate)].astype(np.float32)))
    return out


class PocketSphinx:
    """PocketSphinx (CMU's HMM recogniser) with the en-us model inside its pip package: audio -> words."""

    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, loglevel="FATAL")

    def __call__(self, audio: np.ndarray, rate: int) -> str:
        pcm = (np.clip(resample(audio, rate, 16000), -1.0, 1.0) * 32767).astype(np.int16)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


def corpus_and_median_wer(hypotheses: list[str], references: list[str]) -> tuple[float, float, list]:
    """Corpus WER, the median recording's and (WER, index, hypothesis) per recording sorted; empty references
    are left out."""
    keep = [i for i, r in enumerate(references) if r.strip()]
    each = sorted((word_error_rate([hypotheses[i]], [references[i]]), i, hypotheses[i]) for i in keep)
    return (word_error_rate([hypotheses[i] for i in keep], [references[i] for i in keep]),
            float(np.median([e[0] for e in each])), each)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", type=Path, required=True)
    parser.add_argument("--fast", type=Path, default=None, help="without it: the codec's own decoder alone")
    parser.add_argument("--valid", type=Path, nargs="+", required=True)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--max-seconds", type=float, default=12.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pocketsphinx", action="store_true", help="also the WER by PocketSphinx (not Whisper)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    codec = Codec.from_checkpoint(args.codec)
    decoders = {"codec decoder": codec}
    if args.fast is not None:
        decoders["fast decoder"] = same_encoder_codec(codec, args.fast)
    rate = codec.cfg.sample_rate
    mel = CodecLoss(params.train_codec.mel, {}, build_discriminator(params.train_codec.discriminator, rate), rate)
    clips = held_out_audio(args.valid, params.resample_audio, args.clips, args.max_seconds)
    seconds = sum(len(a) for _, a in clips) / rate
    print(f"{len(clips)} held-out recordings, {seconds:.1f} s")
    recognizer, encoder = Transcriber(params.segment_audio), ResemblyzerEncoder()
    references = [recognizer(audio, rate) for _, audio in clips]
    second = PocketSphinx() if args.pocketsphinx else None
    second_references = [second(audio, rate) for _, audio in clips] if second else []
    latents = [encode_audio(codec, [audio], [name], use_mean=True)[0].T[None] for name, audio in clips]   # (1, c, n)
    for name, model in decoders.items():
        decoded, spent = [], 0.0
        with torch.no_grad():
            for z, (_, audio) in zip(latents, clips):
                start = time.perf_counter()
                y = model.decode(z)[..., : len(audio)]
                spent += time.perf_counter() - start
                decoded.append(y)
            mel_loss = float(np.mean([float(mel.mel_loss(y, torch.from_numpy(a)[None, None]))
                                      for y, (_, a) in zip(decoded, clips)]))
        audio_out = [y[0, 0].numpy() for y in decoded]
        # per recording: a corpus WER over 100 % is inserted words, which one hallucinating clip can dominate
        wer, median, each = corpus_and_median_wer([recognizer(y, rate) for y in audio_out], references)
        sim = float(np.mean([speaker_similarity(encoder, y, rate, a, rate) for y, (_, a) in zip(audio_out, clips)]))
        print(f"{name:>14}: mel loss {mel_loss:.3f}, WER {100 * wer:.1f} % (vs Whisper on the originals), "
              f"SIM to the original {sim:.3f}, decoding {spent / seconds:.4f} s per second of audio")
        print(f"{'':>14}  WER per recording (median {100 * median:.1f} %): "
              + " ".join(f"{100 * e[0]:.0f}" for e in each) + f"; worst, {clips[each[-1][1]][0]}: {each[-1][2][:120]!r}")
        if second is not None:
            wer, median, each = corpus_and_median_wer([second(y, rate) for y in audio_out], second_references)
            print(f"{'':>14}  PocketSphinx WER {100 * wer:.1f} % (vs PocketSphinx on the originals), median recording "
                  f"{100 * median:.1f} %: " + " ".join(f"{100 * e[0]:.0f}" for e in each))


if __name__ == "__main__":
    main()
