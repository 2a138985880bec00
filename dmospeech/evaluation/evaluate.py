"""Evaluation as the paper measures it (sections 4.2-4.4, appendices A-B) over a trials file:
each trial (prompt recording + its transcript, target text, reference recording of the target) is
synthesised by every model, then scored for WER, SIM (to the prompt and to the reference), RTF,
CV_f0 (K renditions of one trial), Wasserstein distances of F0 and log-energy to the ground truth,
and the correlation of prosody features with the prompt's.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dmospeech.evaluation import metrics as M
from dmospeech.evaluation.prosody import MIN_CORRELATION_PAIRS, PROSODY_KEYS
from dmospeech.ops.atomic import write_json_atomic
from dmospeech.ops.audio import read_region, write_audio_atomic
from dmospeech.synthesis.tts import TTS

TRIAL_COLUMNS = ("prompt_path", "prompt_text", "target_text", "reference_path")


@dataclass(frozen=True)
class Trial:
    trial_id: str
    prompt_path: str
    prompt_text: str
    target_text: str
    reference_path: str


def read_trials(path: str | Path) -> list[Trial]:
    """A CSV with columns prompt_path, prompt_text, target_text, reference_path (and optionally
    trial_id); paths relative to the CSV's folder."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(TRIAL_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; need {', '.join(TRIAL_COLUMNS)}")
        resolve = lambda p: str(Path(p) if Path(p).is_absolute() else path.parent / p)  # noqa: E731
        return [Trial(row.get("trial_id") or f"trial{i:04d}", resolve(row["prompt_path"]), row["prompt_text"],
                      row["target_text"], resolve(row["reference_path"])) for i, row in enumerate(reader)]


def write_trials(trials: Sequence[Trial], path: str | Path) -> Path:
    from dmospeech.ops.atomic import write_text_atomic
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial_id", *TRIAL_COLUMNS])
    for t in trials:
        writer.writerow([t.trial_id, Path(t.prompt_path).name, t.prompt_text, t.target_text, Path(t.reference_path).name])
    return write_text_atomic(path, buf.getvalue())


def trials_from_segments(segments, out_dir: str | Path, max_trials: int, prompt_seconds: float) -> list[Trial]:
    """Held-out trials from a segments table (segment_id, audio_path, start_s, end_s, text, speaker):
    per target segment, the prompt is the first `prompt_seconds` of another segment of the same
    speaker, whole with its transcript when it is at most `prompt_seconds` long, else cut to that
    length (the paper's 3 s prompts) and transcribed at synthesis. Clips are written to out_dir as wavs."""
    out_dir = Path(out_dir)
    rows = segments.sort_values(["speaker", "segment_id"]).to_dict("records")
    by_speaker: dict[str, list[dict]] = {}
    for row in rows:
        by_speaker.setdefault(row["speaker"], []).append(row)
    trials = []
    for round_ in range(max(len(v) for v in by_speaker.values()) if by_speaker else 0):
        for speaker, segs in sorted(by_speaker.items()):
            if len(segs) < 2 or round_ >= len(segs) or len(trials) >= max_trials:
                continue
            target, prompt = segs[round_], segs[(round_ + 1) % len(segs)]
            trial_id = f"{len(trials):04d}_{target['segment_id']}"
            whole = prompt["end_s"] - prompt["start_s"] <= prompt_seconds
            audio, sr = read_region(prompt["audio_path"], prompt["start_s"],
                                    min(prompt["end_s"], prompt["start_s"] + prompt_seconds))
            prompt_path = write_audio_atomic(out_dir / f"{trial_id}_prompt.wav", audio, sr, subtype="PCM_16")
            ref, ref_sr = read_region(target["audio_path"], target["start_s"], target["end_s"])
            ref_path = write_audio_atomic(out_dir / f"{trial_id}_reference.wav", ref, ref_sr, subtype="PCM_16")
            # a cut prompt's transcript is unknown: the synthesiser's recogniser transcribes it
            trials.append(Trial(trial_id, str(prompt_path), prompt["text"] if whole else "", target["text"],
                                str(ref_path)))
    return trials


@dataclass
class Rendition:
    audio: np.ndarray
    rate: int
    wall_seconds: float


def synthesize_all(models: Mapping[str, TTS], trials: Sequence[Trial], seed: int, out_dir: Path
                   ) -> dict[str, list[Rendition]]:
    """Every trial by every model (same seed), written to out_dir/<model>/<trial>.wav."""
    out: dict[str, list[Rendition]] = {}
    for name, tts in models.items():
        out[name] = []
        for trial in trials:
            start = time.perf_counter()
            audio, rate = tts.synthesize(trial.target_text, trial.prompt_path, trial.prompt_text or None, seed=seed)
            out[name].append(Rendition(audio, rate, time.perf_counter() - start))
            write_audio_atomic(out_dir / name / f"{trial.trial_id}.wav", audio, rate, subtype="PCM_16")
    return out


def load(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def score_model(renditions: Sequence[Rendition], trials: Sequence[Trial], recognizer, encoder) -> tuple[dict, list[dict]]:
    """WER, SIM to prompt and to reference, RTF of one model; per-trial rows."""
    rows, hyps = [], []
    for trial, r in zip(trials, renditions):
        prompt, prompt_sr = load(trial.prompt_path)
        reference, ref_sr = load(trial.reference_path)
        hyp = recognizer(r.audio, r.rate)
        hyps.append(hyp)
        rows.append({"trial_id": trial.trial_id, "hypothesis": hyp, "target_text": trial.target_text,
                     "wer": M.word_error_rate([hyp], [trial.target_text]),
                     "sim": M.speaker_similarity(encoder, r.audio, r.rate, prompt, prompt_sr),
                     "sim_reference": M.speaker_similarity(encoder, r.audio, r.rate, reference, ref_sr),
                     "seconds": len(r.audio) / r.rate, "wall_seconds": r.wall_seconds})
    seconds = sum(row["seconds"] for row in rows)
    return {"wer": M.word_error_rate(hyps, [t.target_text for t in trials]),
            "sim": float(np.mean([row["sim"] for row in rows])),
            "sim_reference": float(np.mean([row["sim_reference"] for row in rows])),
            "rtf": sum(r.wall_seconds for r in renditions) / max(seconds, 1e-9)}, rows


def score_ground_truth(trials: Sequence[Trial], recognizer, encoder) -> dict:
    """The same measures on the reference recordings: what the models are compared with."""
    refs = [load(t.reference_path) for t in trials]
    hyps = [recognizer(a, sr) for a, sr in refs]
    sims = [M.speaker_similarity(encoder, a, sr, *load(t.prompt_path)) for (a, sr), t in zip(refs, trials)]
    return {"wer": M.word_error_rate(hyps, [t.target_text for t in trials]), "sim": float(np.mean(sims))}


def cv_f0_of(tts: TTS, trials: Sequence[Trial], repeats: int, seed: int) -> float:
    """Section 4.4: each trial synthesised `repeats` times with different seeds; CV_f0 averaged over trials."""
    values = []
    for trial in trials:
        contours = []
        for k in range(repeats):
            audio, rate = tts.synthesize(trial.target_text, trial.prompt_path, trial.prompt_text or None,
                                         seed=seed + 1 + k)
            contours.append(M.f0_track(audio, rate))
        values.append(M.cv_f0(contours))
    return float(np.nanmean(values))


def undefined_reasons(cv_f0_trials: int, trials: int | None = None) -> dict[str, str]:
    """Why each metric of the evaluation can be undefined (NaN), keyed by metric name for `strict_json`
    (prosody.py's rules: no voiced frames, too few trials, a feature Praat cannot measure or a constant one)."""
    reasons = {"cv_f0": (f"no voiced frames in any rendition of the {cv_f0_trials} CV_f0 trial(s)" if cv_f0_trials
                         else "no CV_f0 trials (evaluate.cv_f0_trials is 0)"),
               "wasserstein_f0": "no trial where both the rendition and the reference have voiced frames",
               "wasserstein_f0_unconditional": "no voiced frames in the renditions or in the references"}
    needs = {"pitch_mean": "voiced frames", "pitch_std": "voiced frames", "hnr": "periodic frames",
             "jitter": "periodic pulses", "shimmer": "periodic pulses"}
    for key in PROSODY_KEYS:
        if trials is not None and trials < MIN_CORRELATION_PAIRS:
            reasons[key] = f"only {trials} trial(s): Pearson r needs {MIN_CORRELATION_PAIRS}"
        else:
            measured = f" with {needs[key]} in both prompt and rendition" if key in needs else ""
            reasons[key] = (f"fewer than {MIN_CORRELATION_PAIRS} trials{measured}, or {key} constant on one side "
                            "(Pearson r undefined)")
    return reasons


def write_metrics(metrics: dict, path: str | Path, cv_f0_trials: int) -> Path:
    """metrics.json as strict JSON: an undefined (NaN) metric K is written as `"K": null` with
    `"K_undefined": "<reason>"` next to it (reasons from `undefined_reasons`; cv_f0_trials is the
    number of trials CV_f0 was measured on, metrics["trials"] the number of trials), e.g.
    `"cv_f0": null, "cv_f0_undefined": "no voiced frames in any rendition of the 2 CV_f0 trial(s)"`.
    Readers (the retrain gate, dvc metrics) take null as undefined."""
    reasons = undefined_reasons(cv_f0_trials, metrics.get("trials"))
    return write_json_atomic(path, metrics, indent=2, reasons=reasons)


def acoustic_comparisons(renditions: Mapping[str, Sequence[Rendition]], trials: Sequence[Trial]) -> tuple[dict, dict]:
    """Appendix A (Wasserstein of F0 and log-energy to the ground truth, conditional and unconditional)
    and appendix B (Pearson r of prosody features with the prompt's). Returns (metrics, F0 values by model)."""
    truth = [load(t.reference_path) for t in trials]
    prompts = [load(t.prompt_path) for t in trials]
    f0 = {"ground_truth": [M.f0_contour(a, sr) for a, sr in truth]}
    energy = {"ground_truth": [M.log_energy(a, sr) for a, sr in truth]}
    prompt_features = [M.prosody_features(a, sr) for a, sr in prompts]
    metrics: dict = {}
    for name, rs in renditions.items():
        f0[name] = [M.f0_contour(r.audio, r.rate) for r in rs]
        energy[name] = [M.log_energy(r.audio, r.rate) for r in rs]
        metrics[name] = {
            "wasserstein_f0": M.conditional_wasserstein(f0[name], f0["ground_truth"]),
            "wasserstein_f0_unconditional": M.unconditional_wasserstein(f0[name], f0["ground_truth"]),
            "wasserstein_energy": M.conditional_wasserstein(energy[name], energy["ground_truth"]),
            "wasserstein_energy_unconditional": M.unconditional_wasserstein(energy[name], energy["ground_truth"]),
            "prompt_correlation": M.prompt_correlations(prompt_features,
                                                        [M.prosody_features(r.audio, r.rate) for r in rs])}
    return metrics, f0


def f0_histogram_rows(f0: Mapping[str, Sequence[np.ndarray]], bins: int = 40) -> list[dict]:
    """Figure 2: density of voiced-frame F0 per model over shared bins, as rows for `dvc plots`."""
    pooled = {k: np.concatenate([c for c in v if len(c)]) if any(len(c) for c in v) else np.zeros(0)
              for k, v in f0.items()}
    values = np.concatenate([v for v in pooled.values() if len(v)]) if any(len(v) for v in pooled.values()) else None
    if values is None:
        return []
    edges = np.linspace(np.percentile(values, 1), np.percentile(values, 99) + 1e-6, bins + 1)
    density = {k: np.histogram(v, bins=edges, density=True)[0] if len(v) else np.zeros(bins) for k, v in pooled.items()}
    return [{"f0_hz": round(float((edges[i] + edges[i + 1]) / 2), 2),
             **{k: round(float(d[i]), 6) for k, d in density.items()}} for i in range(bins)]
