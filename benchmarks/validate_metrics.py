"""The evaluation metrics (`dmospeech.evaluation.metrics`) measured on real recordings.

Usage: OMP_NUM_THREADS=1 python benchmarks/validate_metrics.py --corpus ../shared/corpora/dev
           [--max-files N] [--whisper-model base] [--threads 1] [--wer-corpora arctic,kathleen,ljspeech]

Each sub-folder of --corpus is read with `detect_source` + `scan_source` (untranscribed long-form
folders are skipped); --max-files keeps a seeded random N files per folder. Prints:
1. WER of the packaged faster-whisper model on the folders named by --wer-corpora (those whose
   transcripts are exact; LibriSpeech's in the dev corpus are Whisper output), with the worst
   utterances so one can judge whether a transcript or the recogniser is wrong;
2. SIM (Resemblyzer): same-speaker vs different-speaker cosine, mean +- sd, and the fraction of
   speakers whose mean same-speaker SIM exceeds their mean different-speaker SIM. A speaker with
   one recording is represented by its two halves (same-session pairs: an easier case);
3. CV_f0 with recordings as "renditions" (K copies of one recording; K recordings of one speaker;
   one sentence read by different speakers), Wasserstein distances of F0 (Hz) and log energy (dB)
   between same-speaker and different-speaker sets, and Table 7's Pearson r of prosody features
   between the two halves of each speaker's recording.
"""
from __future__ import annotations

import argparse
import itertools
import math
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dmospeech.evaluation import metrics as M
from dmospeech.ops.audio import decode_audio, to_mono
from dmospeech.config import load_params
from dmospeech.codec.folder_corpus import detect_source
from dmospeech.data.sources import scan_source
from dmospeech.data.transcribe import Transcriber

EXTENSIONS = (".wav", ".flac")
MIN_HALF_S = 1.0  # a one-recording speaker needs two halves at least this long for SIM


@dataclass(frozen=True, eq=False)  # hashed by identity: dict keys below
class Clip:
    corpus: str
    speaker: str
    name: str
    text: str
    audio: np.ndarray  # (t,) float32
    rate: int

    def halves(self) -> tuple[Clip, Clip]:
        mid = len(self.audio) // 2
        return (replace(self, name=f"{self.name}[:half]", audio=self.audio[:mid]),
                replace(self, name=f"{self.name}[half:]", audio=self.audio[mid:]))


def read_corpus(root: Path, max_files: int | None, seed: int) -> dict[str, list[Clip]]:
    """Transcribed, usable recordings of every sub-folder of `root`, by folder name."""
    rng = np.random.default_rng(seed)
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        source = detect_source(folder)
        items = [it for it in scan_source(source, EXTENSIONS, Path("/")) if it.transcribed and not it.problem]
        if not items:
            print(f"  {folder.name}: no transcribed recordings ({source.kind} layout), skipped")
            continue
        if max_files and len(items) > max_files:
            items = [items[i] for i in sorted(rng.choice(len(items), max_files, replace=False))]
        clips = []
        for it in items:
            decoded = decode_audio(it.path)
            clips.append(Clip(folder.name, it.speaker, it.path.stem, it.text, to_mono(decoded.audio),
                              decoded.sample_rate))
        out[folder.name] = clips
        print(f"  {folder.name}: {len(clips)} recordings, {len({c.speaker for c in clips})} speakers, "
              f"{sum(len(c.audio) / c.rate for c in clips) / 60:.1f} min ({source.kind} layout)")
    return out


def report_wer(corpora: dict[str, list[Clip]], wer_corpora: Sequence[str], recognizer: M.Recognizer) -> None:
    print(f"\n== WER, packaged faster-whisper '{recognizer.model_name}', Whisper English normaliser ==")
    all_hyps, all_refs = [], []
    for name in wer_corpora:
        clips = corpora.get(name)
        if not clips:
            print(f"{name}: not in the corpus, skipped")
            continue
        start = time.perf_counter()
        hyps = [recognizer(c.audio, c.rate) for c in clips]
        refs = [c.text for c in clips]
        seconds = sum(len(c.audio) / c.rate for c in clips)
        words = sum(len(M.normalize_for_wer(r).split()) for r in refs)
        print(f"{name}: WER {100 * M.word_error_rate(hyps, refs):.2f} % over {len(clips)} utterances, {words} words "
              f"({seconds / (time.perf_counter() - start):.1f}x real time)")
        errors = sorted(((M.word_error_rate([h], [r]) * len(M.normalize_for_wer(r).split()), c.name, h, r)
                         for h, r, c in zip(hyps, refs, clips)), reverse=True)
        for n, clip, h, r in [e for e in errors if e[0] > 0][:5]:
            print(f"    {n:.0f} err {clip}: ref {M.normalize_for_wer(r)!r}\n{'':18}hyp {M.normalize_for_wer(h)!r}")
        all_hyps += hyps
        all_refs += refs
    if all_refs:
        print(f"all exact-transcript corpora: WER {100 * M.word_error_rate(all_hyps, all_refs):.2f} % "
              f"over {len(all_refs)} utterances")


def speaker_units(corpora: dict[str, list[Clip]]) -> dict[tuple[str, str], list[Clip]]:
    """Per (corpus, speaker): its recordings, or the two halves of its only recording."""
    by_speaker: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for clips in corpora.values():
        for c in clips:
            by_speaker[(c.corpus, c.speaker)].append(c)
    units = {}
    for key, clips in by_speaker.items():
        if len(clips) >= 2:
            units[key] = clips
        elif len(clips[0].audio) / clips[0].rate >= 2 * MIN_HALF_S:
            units[key] = list(clips[0].halves())
    return units


def mean_sd(values: Sequence[float]) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values):.3f} (n={len(values)})" if len(values) else "n/a"


def report_sim(corpora: dict[str, list[Clip]], encoder: M.SpeakerEncoder) -> None:
    print(f"\n== SIM, speaker encoder '{encoder.name}' (cosine) ==")
    units = speaker_units(corpora)
    start = time.perf_counter()
    emb = {key: np.stack([encoder.embed(u.audio, u.rate) for u in us]) for key, us in units.items()}  # (u, e)
    speakers = {(c.corpus, c.speaker) for cs in corpora.values() for c in cs}
    print(f"{sum(len(u) for u in units.values())} embeddings in {time.perf_counter() - start:.0f} s; "
          f"{len(speakers) - len(units)} speakers with one recording under {2 * MIN_HALF_S:.0f} s left out")
    same, diff = {}, {}
    for key, e in emb.items():
        s = e @ e.T
        same[key] = s[np.triu_indices(len(e), 1)]
        diff[key] = np.concatenate([(e @ other.T).ravel() for k, other in emb.items() if k != key])
    for corpus in corpora:
        keys = [k for k in emb if k[0] == corpus]
        if not keys:
            continue
        halves = sum(units[k][0].name.endswith("[:half]") for k in keys)
        s = np.concatenate([same[k] for k in keys])
        d = np.concatenate([diff[k] for k in keys])
        wins = sum(same[k].mean() > diff[k].mean() for k in keys)
        print(f"{corpus}: {len(keys)} speakers ({halves} as halves of one recording) | same {mean_sd(s)} | "
              f"different {mean_sd(d)} | same > different for {wins}/{len(keys)} speakers")
    s_all = np.concatenate(list(same.values()))
    d_all = np.concatenate([(emb[a] @ emb[b].T).ravel() for a, b in itertools.combinations(emb, 2)])
    wins = sum(same[k].mean() > diff[k].mean() for k in emb)
    print(f"all: {len(emb)} speakers | same {mean_sd(s_all)} | different {mean_sd(d_all)} | "
          f"same > different for {wins}/{len(emb)} speakers ({100 * wins / len(emb):.0f} %)")


def by_sentence(clips: Sequence[Clip]) -> dict[str, list[Clip]]:
    """ARCTIC-style clips by sentence id (the `a0001` of `arctic_aew_a0001` and `arctic_a0001`)."""
    out: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        out[c.name.rsplit("_", 1)[-1]].append(c)
    return out


def report_acoustics(corpora: dict[str, list[Clip]], k: int, seed: int) -> None:
    print("\n== CV_f0 (sec 4.4) with real recordings as renditions: default / voiced_only ==")
    rng = np.random.default_rng(seed)
    clips = [c for cs in corpora.values() for c in cs]
    track = {c: M.f0_track(c.audio, c.rate) for c in clips}

    def cv_line(label: str, groups: Sequence[Sequence[Clip]]) -> None:
        groups = [g for g in groups if len(g) >= 2]
        if not groups:
            print(f"{label}: no group with 2 renditions")
            return
        values = [(M.cv_f0([track[c] for c in g]), M.cv_f0([track[c] for c in g], voiced_only=True))
                  for g in groups]
        finite = all(math.isfinite(v) for pair in values for v in pair)
        print(f"{label}: {np.nanmean([v[0] for v in values]):.3f} / {np.nanmean([v[1] for v in values]):.3f} "
              f"over {len(groups)} groups, all finite: {finite}")

    one = clips[int(rng.integers(len(clips)))]
    cv_line(f"{k} copies of one recording ({one.corpus}/{one.name})", [[one] * k])
    by_speaker: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for c in clips:
        by_speaker[(c.corpus, c.speaker)].append(c)
    groups = [[g[i] for i in rng.choice(len(g), min(k, len(g)), replace=False)] for g in by_speaker.values()]
    cv_line(f"up to {k} recordings of one speaker (different sentences)", groups)
    arctic_like = [c for name in ("arctic", "kathleen") for c in corpora.get(name, [])]
    sentences = by_sentence(arctic_like)
    cv_line("one ARCTIC sentence read by different speakers (not time-aligned)",
            [g for g in sentences.values() if len(g) >= 2])

    print("\n== Wasserstein distances (appendix A): F0 of voiced frames in Hz, log energy in dB ==")
    f0 = {c: t[t > 0] for c, t in track.items()}
    energy = {c: M.log_energy(c.audio, c.rate) for c in clips}

    def w_line(label: str, a: Sequence[Clip], b: Sequence[Clip], conditional: bool) -> None:
        fn = M.conditional_wasserstein if conditional else M.unconditional_wasserstein
        wf = fn([f0[c] for c in a], [f0[c] for c in b])
        we = fn([energy[c] for c in a], [energy[c] for c in b])
        print(f"{'conditional  ' if conditional else 'unconditional'} {label}: W_f0 {wf:.2f} Hz, W_N {we:.2f} dB "
              f"({len(a)} vs {len(b)} recordings)")

    speakers = sorted(by_speaker.items(), key=lambda kv: -len(kv[1]))
    (name_a, big), others = speakers[0], [kv for kv in speakers[1:] if kv[0][0] != speakers[0][0][0]]
    half = len(big) // 2
    w_line(f"{name_a[1]} (first half of its recordings vs second half)", big[:half], big[half:], False)
    for (corpus, speaker), cs in others[:3]:
        w_line(f"{name_a[1]} vs {speaker}", big, cs, False)
    pairs = [(g[0], g[1]) for g in sentences.values() if len(g) >= 2 and g[0].speaker != g[1].speaker]
    if pairs:
        w_line("same ARCTIC sentence, two speakers (pairs)", [p[0] for p in pairs], [p[1] for p in pairs], True)
        same_speaker = big[: 2 * len(pairs)]
        if len(same_speaker) == 2 * len(pairs):
            w_line(f"{name_a[1]}, two different sentences (pairs)", same_speaker[::2], same_speaker[1::2], True)

    print("\n== Prosody features (appendix B): Pearson r between the two halves of each recording ==")
    halves = [c.halves() for c in clips if len(c.audio) / c.rate >= 2 * MIN_HALF_S]
    first = [M.prosody_features(a.audio, a.rate) for a, _ in halves]
    second = [M.prosody_features(b.audio, b.rate) for _, b in halves]
    finite = np.mean([math.isfinite(v) for f in first + second for v in f.values()])
    r = M.prompt_correlations(first, second)
    print(f"{len(halves)} recordings, {100 * finite:.1f} % of feature values finite")
    print("  ".join(f"{key} {value:.2f}" for key, value in r.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder of corpus folders (e.g. ../shared/corpora/dev)")
    ap.add_argument("--max-files", type=int, default=None, help="at most N random files per corpus folder")
    ap.add_argument("--whisper-model", default="base", help="base | tiny.en (packaged) or a CTranslate2 folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wer-corpora", default="arctic,kathleen,ljspeech",
                    help="comma-separated folders whose transcripts are exact ('' skips WER)")
    ap.add_argument("--renditions", type=int, default=10, help="K for the CV_f0 groups")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"--corpus {args.corpus} is not a folder")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"corpus {args.corpus.resolve()}")
    corpora = read_corpus(args.corpus, args.max_files, args.seed)
    wer_corpora = [c for c in args.wer_corpora.split(",") if c]
    if wer_corpora:
        cfg = replace(load_params(Path(__file__).resolve().parents[1] / "params.yaml").segment_audio,
                      whisper_model=args.whisper_model, cpu_threads=args.threads, language="en")
        report_wer(corpora, wer_corpora, Transcriber(cfg))
    report_sim(corpora, M.ResemblyzerEncoder())
    report_acoustics(corpora, args.renditions, args.seed)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
