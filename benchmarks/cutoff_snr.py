"""How often the cut-off detector (paper sec 4.3, `dmospeech/data/cutoff.py`) flags given-text clips that are
clean, mixed with noise, or cut inside their last word (issue 25: on noisy read speech the detector
with thresholds relative to the loudest frame only flagged 26 % of utterances).

Usage: python benchmarks/cutoff_snr.py --clips N --dirs DIR [DIR ...] [--snr 20 15 10] [--offset 0.5]
       [--params params.yaml] [--details TSV]

The transcribed files of the folders (any layout `prepare_corpus` reads) are conditioned as
`resample_audio` does (48 kHz mono, peak-normalised); N of them are taken evenly over the sorted list.
Each clip is scored by `segment_utterance` (trim + cut-off check, segment_audio params) as:
- clean;
- mixed with noise at each SNR (white and pink noise on alternate clips; SNR against the mean power of
  the clip's frames within 40 dB of its loudest one, i.e. of its speech);
- cut mid-word, clean and at each SNR: the clip ends in the middle of its last word's audible part (the
  frames within 30 dB of the loudest of the span the packaged Whisper model times the word at);
- start cut mid-word, clean and at each SNR: the clip starts in the middle of its first word's audible part
  (a start inside a sound that a pause follows moves to the pause only if the text's first word is heard there).
Prints the share of clips flagged (start or end; for cut clips the cut edge) by `segment_utterance` with the
bundled VAD and Whisper (as segment_audio runs them: the speech check's no_speech_detected rejects are not counted), by
the energy tests alone (`cutoff.edge_vad_score` 0) and by the detector before issue 25 (the thresholds
relative to the loudest frame only), over all clips and over the clips whose recording ends in `--pause` s
of pause (`ends_in_pause`: the others may be cut already, so a flag on them is not known to be false).
Use clips other than those the thresholds were chosen on (`--offset`; they were chosen at offsets 0, per
folder, and 0.5).

The `flagged` column is segment_audio's check (energy tests, the VAD rule, Whisper's last word: every clip
is also transcribed); `no last word` is the same without Whisper (`cutoff.last_word_gap_s` 0: neither the
last-word rule nor the move past a leading fragment, the check before they were added).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import soxr

from dmospeech.codec.folder_corpus import scan_folders
from dmospeech.config import Params, SegmentAudioConfig, load_params
from dmospeech.data.cutoff import frame_db, frame_geometry
from dmospeech.data.resample import condition_file
from dmospeech.data.segment import MODEL_SR, Segmenter, segment_utterance
from dmospeech.ops.audio import AudioError

SR = 48_000
SPEECH_RANGE_DB = 40.0   # frames within this of the loudest count as speech for the SNR
AUDIBLE_DB = 30.0        # a word's frames within this of the clip's loudest are its audible part
PAUSE_DB = 35.0          # a recording's trailing frames this far below its loudest are a pause


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    audio: np.ndarray    # 48 kHz


def load_clips(folders: Sequence[Path], count: int, params: Params, offset: float = 0.0) -> list[Clip]:
    """`count` transcribed clips of `folders`, evenly over their sorted list (shifted by `offset` times the
    spacing, 0 <= offset < 1, to pick other clips), as resample_audio conditions them."""
    extensions, cfg = params.prepare_corpus.audio_extensions, params.resample_audio
    items = sorted((it for it in scan_folders(folders, extensions) if it.transcribed and not it.problem),
                   key=lambda it: str(it.path))
    count = min(count, len(items))
    positions = np.linspace(0, len(items) - 1, count) + offset * (len(items) - 1) / max(count - 1, 1)
    picked = [items[i] for i in np.unique(np.minimum(positions.round(), len(items) - 1).astype(int))]
    clips = []
    for it in picked:
        try:
            clips.append(Clip(it.path.name, it.text, condition_file(str(it.path), cfg)[0].astype(np.float32)))
        except AudioError as err:
            print(f"skipped {it.path}: {err.detail}")
    return clips


def noise(length: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise."""
    x = rng.standard_normal(length)
    if kind == "pink":
        spectrum = np.fft.rfft(x)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        spectrum[0] = 0.0
        x = np.fft.irfft(spectrum, length)
    return x / np.sqrt(np.mean(x * x))


def with_noise(audio: np.ndarray, snr_db: float, kind: str, seed: int) -> np.ndarray:
    """`audio` plus `kind` noise `snr_db` below the mean power of its speech frames."""
    levels = frame_db(audio, SR)
    speech_power = float(np.mean(10 ** (levels[levels > levels.max() - SPEECH_RANGE_DB] / 10)))
    scale = np.sqrt(speech_power / 10 ** (snr_db / 10))
    return (audio + scale * noise(len(audio), kind, np.random.default_rng(seed))).astype(np.float32)


def mid_word_cut(audio: np.ndarray, word_start: float, word_end: float) -> int | None:
    """The sample in the middle of the audible part of the word timed [word_start, word_end] s; None if silent."""
    levels = frame_db(audio, SR)
    length, hop = frame_geometry(SR)
    centres = (np.arange(len(levels)) * hop + length / 2) / SR
    audible = np.flatnonzero((centres >= word_start) & (centres <= word_end) & (levels > levels.max() - AUDIBLE_DB))
    return None if audible.size == 0 else int(round((centres[audible[0]] + centres[audible[-1]]) / 2 * SR))


def ends_in_pause(audio: np.ndarray, pause_s: float) -> bool:
    """Does the recording end in `pause_s` of frames PAUSE_DB below its loudest one? Many corpus files are
    trimmed to within tens of ms of their last sound (most CMU ARCTIC files end 40-60 ms after speech at
    -13 dB), so they may be cut already: only clips ending in a pause tell a false flag from a true one."""
    levels = frame_db(audio, SR)
    return bool((levels[-max(1, int(round(pause_s / 0.01))):] <= levels.max() - PAUSE_DB).all())


def flagged(audio: np.ndarray, text: str, cfg: SegmentAudioConfig, edge: str | None,
            segmenter: Segmenter | None) -> bool:
    return flag_reason(audio, text, cfg, edge, segmenter) is not None


def flag_reason(audio: np.ndarray, text: str, cfg: SegmentAudioConfig, edge: str | None,
                segmenter: Segmenter | None) -> str | None:
    """Why `segment_utterance` flags the clip at `edge` ("start", "end"; None: either), None if it does not."""
    piece = segment_utterance(audio, SR, text, cfg, None if segmenter is None else (lambda: segmenter))
    hit = {"start": piece.cutoff_start, "end": piece.cutoff_end}
    return piece.cutoff_reason if (hit[edge] if edge else any(hit.values())) else None


def without_last_word(cfg: SegmentAudioConfig) -> SegmentAudioConfig:
    """The detector without Whisper's last word."""
    return replace(cfg, cutoff=replace(cfg.cutoff, last_word_gap_s=0.0))


def energy_only(cfg: SegmentAudioConfig) -> SegmentAudioConfig:
    """The detector without the VAD's end score and Whisper's last word."""
    return replace(cfg, cutoff=replace(cfg.cutoff, edge_vad_score=0.0, last_word_gap_s=0.0))


def peak_only(cfg: SegmentAudioConfig) -> SegmentAudioConfig:
    """The detector before issue 25: thresholds relative to the loudest frame only, no tail test, no VAD."""
    return replace(cfg, cutoff=replace(cfg.cutoff, edge_floor_db=-1e9, tail_energy_db=1e9, edge_vad_score=0.0,
                                       last_word_gap_s=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirs", "--train", type=Path, nargs="+", required=True, help="corpus folders")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--snr", type=float, nargs="+", default=[20.0, 15.0, 10.0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pause", type=float, default=0.15, help="seconds of trailing pause that show a clip uncut")
    parser.add_argument("--offset", type=float, default=0.0, help="shift the picked clips by this share of their spacing")
    parser.add_argument("--details", type=Path, help="write each clip's version, flag and reason to this TSV")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.segment_audio
    start = time.perf_counter()
    clips = load_clips(args.dirs, args.clips, params, args.offset)
    segmenter = Segmenter(cfg)   # Whisper: word times of the last word, the last word heard; the VAD: the end score
    versions: dict[str, list[tuple[np.ndarray, str, str | None, bool, str]]] = {}
    skipped = 0
    for i, clip in enumerate(clips):
        words = segmenter.transcribe(soxr.resample(clip.audio, SR, MODEL_SR))
        cut = mid_word_cut(clip.audio, words[-1].start, words[-1].end) if words else None
        start_cut = mid_word_cut(clip.audio, words[0].start, words[0].end) if words else None
        if cut is None or start_cut is None:
            skipped += 1
            continue
        paused = ends_in_pause(clip.audio, args.pause)
        noisy = {snr: with_noise(clip.audio, snr, ("white", "pink")[i % 2], args.seed + i) for snr in args.snr}
        for name, audio in {"clean": clip.audio, **{f"{snr:g} dB SNR": a for snr, a in noisy.items()}}.items():
            versions.setdefault(name, []).append((audio, clip.text, None, paused, clip.name))
            versions.setdefault(f"{name}, cut mid-word", []).append((audio[:cut], clip.text, "end", paused, clip.name))
            versions.setdefault(f"{name}, start cut", []).append((audio[start_cut:], clip.text, "start", paused,
                                                                  clip.name))
    paused = sum(p for *_, p, _ in versions["clean"])
    print(f"{len(clips) - skipped} clips of {', '.join(map(str, args.dirs))} ({skipped} without an audible first or "
          f"last word skipped; {paused} whose recording ends in >= {args.pause:g} s of pause), Whisper {cfg.whisper_model}; "
          f"{time.perf_counter() - start:.0f} s")
    print(f"{'version':28s} {'flagged':>8s} {'ending in a pause':>18s} {'no last word':>13s} {'energy only':>12s} "
          f"{'peak-only (before)':>19s}")
    no_vad = replace(cfg, speech_check=replace(cfg.speech_check, min_speech_fraction=0.0))
    rows = ["clip\tversion\tends_in_pause\tflagged\treason"]
    for name, items in versions.items():
        reasons = [flag_reason(a, t, cfg, edge, segmenter) for a, t, edge, _, _ in items]
        now = np.array([r is not None for r in reasons])
        in_pause = now[[p for *_, p, _ in items]]
        no_word = np.mean([flagged(a, t, without_last_word(cfg), edge, segmenter) for a, t, edge, _, _ in items])
        energy = np.mean([flagged(a, t, energy_only(no_vad), edge, None) for a, t, edge, _, _ in items])
        before = np.mean([flagged(a, t, peak_only(no_vad), edge, None) for a, t, edge, _, _ in items])
        rows += [f"{clip}\t{name}\t{p}\t{r is not None}\t{r or ''}" for (*_, p, clip), r in zip(items, reasons)]
        print(f"{name:28s} {now.mean():8.1%} {in_pause.mean():11.1%} ({in_pause.sum():2d}/{len(in_pause):2d}) "
              f"{no_word:13.1%} {energy:12.1%} {before:19.1%}")
    if args.details:
        args.details.write_text("\n".join(rows) + "\n")
        print(f"per-clip flags and reasons: {args.details}")


if __name__ == "__main__":
    main()
