"""How well the synthesis watermark (dmospeech/synthesis/watermark.py, PerTh implicit) survives
common processing, how often it fires on real recordings, and what it costs in quality.

Usage: python benchmarks/watermark.py --real DIR... [--count 50] [--seconds 6] [--false-positives N]
       [--model CKPT] [--json OUT]

Three sets of 48 kHz audio, each checked marked and unmarked:
- "synthesised": --count outputs of the model at --model (a teacher or student checkpoint or out_dir);
  without --model, of a tiny randomly initialised teacher built in a temporary folder, whose output is
  noise-like (no trained model exists on a fresh machine), prompted with 2 s of the real recordings.
- "real speech, marked": --count held-out recordings from --real (first --seconds s of each), marked
  as synthesis would mark them: the detection figures on actual speech.
- "real recordings, unmarked": the same recordings as they are: the false-positive rate; with
  --false-positives N, also N recordings (the --count ones among them) scored clean, for a tighter bound.
Conditions: clean; MP3 at 128 kbit/s (ffmpeg, libmp3lame); resampled to 16 kHz and back (soxr HQ);
white noise mixed at 20 dB SNR; 10 % faster by resampling (tempo and pitch, as a sped-up tape); 10 %
faster tempo at the same pitch (ffmpeg atempo). A file counts as detected when its score is at least
watermark.THRESHOLD. Quality: log-mel L1 distance (evaluation.distances.log_mel, 80 bands) and
Resemblyzer SIM between each marked file and its unmarked original, and the mark's SNR; for scale, the
log-mel distance an MP3 128 kbit/s round trip makes (first 10 files).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from dmospeech.ops.audio import decode_audio, resample, to_mono
from dmospeech.ops.files import files_below
from dmospeech.synthesis.watermark import THRESHOLD, mark, score

RATE = 48000
SENTENCES = ("The juice of lemons makes fine punch.", "A large size in stockings is hard to sell.",
             "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
             "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
             "Rice is often served in round bowls.", "The box was thrown beside the parked truck.")


def ffmpeg(audio: np.ndarray, *args: str) -> np.ndarray:
    """Run audio (48 kHz mono) through ffmpeg with the given output arguments and decode the result."""
    with tempfile.TemporaryDirectory() as tmp:
        src, mid = Path(tmp) / "in.wav", Path(tmp) / f"out{args[-1]}"
        sf.write(src, audio, RATE, subtype="FLOAT")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args[:-1], str(mid)], check=True)
        back = Path(tmp) / "back.wav"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mid), "-ar", str(RATE), "-ac", "1", str(back)],
                       check=True)
        return sf.read(back, dtype="float32")[0]


def add_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    power = float(np.mean(audio ** 2)) or 1e-12
    return audio + noise * np.sqrt(power / 10 ** (snr_db / 10) / np.mean(noise ** 2))


CONDITIONS = {
    "clean": lambda x, i: x,
    "MP3 128 kbit/s": lambda x, i: ffmpeg(x, "-c:a", "libmp3lame", "-b:a", "128k", ".mp3"),
    "resampled 16 kHz and back": lambda x, i: resample(resample(x, RATE, 16000), 16000, RATE),
    "noise at 20 dB SNR": lambda x, i: add_noise(x, 20.0, i),
    "speed x1.1 (resampled: tempo and pitch)": lambda x, i: resample(x, round(RATE * 1.1), RATE),
    "tempo x1.1 (ffmpeg atempo, same pitch)": lambda x, i: ffmpeg(x, "-filter:a", "atempo=1.1", ".wav"),
}


def real_recordings(dirs: list[str], count: int, seconds: float) -> list[tuple[str, np.ndarray]]:
    """`count` recordings spread evenly over the sorted audio files of `dirs`, first `seconds` s, 48 kHz."""
    files = sorted(p for d in dirs for p in files_below(d, suffixes=(".wav", ".flac", ".mp3")))
    if len(files) < count:
        sys.exit(f"watermark.py: {len(files)} audio files under {dirs}, need --count {count}")
    picked = [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]
    out = []
    for path in picked:
        decoded = decode_audio(path)
        out.append((str(path), resample(to_mono(decoded.audio), decoded.sample_rate, RATE)[: int(seconds * RATE)]))
    return out


def tiny_teacher(root: Path) -> Path:
    """A randomly initialised tiny codec and teacher saved as training saves them (the test fixture's shapes)."""
    import torch

    from dmospeech.codec.latents import LatentStats
    from dmospeech.codec.model import Codec
    from dmospeech.config import load_params
    from dmospeech.ops.checkpoint import save_checkpoint
    from dmospeech.teacher.dit import DiT

    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    torch.manual_seed(0)
    codec_cfg = replace(p.train_codec.model, encoder_dim=4, decoder_dim=16)
    codec_dir = save_checkpoint(root / "codec", 1, {"codec.ema": Codec(codec_cfg).state_dict()}, {"step": 1},
                                {"task": "codec", "model": asdict(codec_cfg)}, 0)
    model = replace(p.train_teacher.model, dim=32, ff_dim=64, heads=2, encoder_layers=1, decoder_layers=1)
    run = {"task": "teacher", "model": asdict(model), "diffusion": asdict(p.train_teacher.diffusion),
           "codec_checkpoint": str(codec_dir), "resample_audio": asdict(p.resample_audio),
           "latent_stats": asdict(LatentStats((0.0,) * 64, (1.0,) * 64, 1, str(codec_dir))),
           "phonemize_text": asdict(p.phonemize_text)}
    save_checkpoint(root / "teacher", 1, {"teacher.ema": DiT(model).state_dict()}, {"step": 1}, run, 0)
    return root / "teacher"


def synthesised(model: Path, real: list[tuple[str, np.ndarray]], count: int) -> list[tuple[str, np.ndarray]]:
    """`count` outputs, each prompted with 2 s of one real recording, 2-4 s long, a teacher at 8 steps."""
    from dmospeech.synthesis import TTS

    tts = TTS.from_pretrained(model)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            prompt = Path(tmp) / f"prompt{i}.wav"
            sf.write(prompt, real[i % len(real)][1][: 2 * RATE], RATE)
            steps = 8 if tts.synthesizer.kind == "teacher" else None
            audio, rate = tts.synthesize(SENTENCES[i % len(SENTENCES)], prompt, prompt_text="a short prompt",
                                         steps=steps, seed=i, seconds=2.0 + (i % 3))
            out.append((f"synth{i:03d}", audio))
    return out


def detection(clips: list[np.ndarray]) -> dict[str, dict]:
    """Per condition: detected count and rate over `clips` (THRESHOLD on the score), mean score."""
    rows = {}
    for name, attack in CONDITIONS.items():
        scores = [score(attack(x, i).astype(np.float32), RATE) for i, x in enumerate(clips)]
        hits = sum(s >= THRESHOLD for s in scores)
        rows[name] = {"detected": hits, "of": len(scores), "rate": hits / len(scores), "mean_score": float(np.mean(scores))}
    return rows


def quality(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    from dmospeech.evaluation.distances import log_mel
    from dmospeech.evaluation.metrics import ResemblyzerEncoder, speaker_similarity

    encoder = ResemblyzerEncoder()
    distance = lambda a, b: float(np.mean(np.abs(log_mel(a, RATE) - log_mel(b, RATE))))  # noqa: E731
    mel = [distance(m, u) for m, u in pairs]
    mp3 = [distance(CONDITIONS["MP3 128 kbit/s"](u, 0)[: len(u)], u) for _, u in pairs[:10]]
    sim = [speaker_similarity(encoder, m, RATE, u, RATE) for m, u in pairs]
    snr = [10 * np.log10(np.sum(u ** 2) / max(np.sum((m - u) ** 2), 1e-20)) for m, u in pairs]
    return {"log_mel_l1": float(np.mean(mel)), "log_mel_l1_max": float(np.max(mel)),
            "log_mel_l1_mp3_reference": float(np.mean(mp3)), "sim_mean": float(np.mean(sim)),
            "sim_min": float(np.min(sim)), "mark_snr_db": float(np.mean(snr))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", nargs="+", required=True, help="folders of held-out real recordings")
    ap.add_argument("--count", type=int, default=50, help="files per set (default 50)")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each real recording used")
    ap.add_argument("--model", type=Path, help="teacher or student checkpoint (default: a tiny random teacher)")
    ap.add_argument("--false-positives", type=int, default=0, metavar="N",
                    help="also score N unmarked recordings, clean (0: none)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    real = real_recordings(args.real, args.count, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_teacher(Path(tmp))
        synth = synthesised(model, real, args.count)
    label = f"synthesised ({args.model})" if args.model else "synthesised (tiny random teacher: noise-like)"
    sets = {label: [x for _, x in synth], "real speech (held-out recordings)": [x for _, x in real]}
    result = {"threshold": THRESHOLD, "files": {"real": [p for p, _ in real]}, "detection": {}, "quality": {}}
    for name, clips in sets.items():
        marked = [mark(x, RATE) for x in clips]
        result["detection"][f"{name}, marked"] = detection(marked)
        result["detection"][f"{name}, unmarked"] = detection(clips)
        result["quality"][name] = quality(list(zip(marked, clips)))
    print(f"| set | {' | '.join(CONDITIONS)} |\n|---|{'---|' * len(CONDITIONS)}")
    for name, rows in result["detection"].items():
        cells = [f"{r['detected']}/{r['of']} ({100 * r['rate']:.0f} %)" for r in rows.values()]
        print(f"| {name} | {' | '.join(cells)} |")
    print("\n| set | log-mel L1, marked vs unmarked (mean / max) | same, MP3 128 kbit/s vs unmarked (10 files) "
          "| Resemblyzer SIM (mean / min) | mark SNR |\n|---|---|---|---|---|")
    for name, q in result["quality"].items():
        print(f"| {name} | {q['log_mel_l1']:.3f} / {q['log_mel_l1_max']:.3f} | {q['log_mel_l1_mp3_reference']:.3f} "
              f"| {q['sim_mean']:.3f} / {q['sim_min']:.3f} | {q['mark_snr_db']:.1f} dB |")
    if args.false_positives:
        scored = [(path, score(x, RATE)) for path, x in real_recordings(args.real, args.false_positives, args.seconds)]
        hits = [(path, s) for path, s in scored if s >= THRESHOLD]
        result["false_positives"] = {"detected": len(hits), "of": len(scored), "files": hits}
        print(f"\nunmarked recordings, clean: {len(hits)}/{len(scored)} detected: {hits}")
    if args.json:
        from dmospeech.ops.atomic import write_json_atomic

        write_json_atomic(args.json, result, indent=1)


if __name__ == "__main__":
    main()
