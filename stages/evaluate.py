"""Stage evaluate: teacher (evaluate.teacher_sampler, paper 128 steps) and student (its 4 steps) on the trials, scored as the paper does
(WER, SIM, RTF, CV_f0, F0/energy Wasserstein distances, prosody correlations with the prompt)."""
from dataclasses import replace
from pathlib import Path

import pandas as pd
from rich.console import Console

from dmospeech.evaluation import metrics as M
from dmospeech.ops.atomic import write_text_atomic
from dmospeech.config import load_params
from dmospeech.data.datasets import validated_segments
from dmospeech.data.manifest import open_manifests
from dmospeech.evaluation.evaluate import (acoustic_comparisons, cv_f0_of, f0_histogram_rows, read_trials, score_ground_truth,
                                score_model, synthesize_all, trials_from_segments, write_metrics,
                                write_trials)
from dmospeech.evaluation.plots import f0_histogram_png
from dmospeech.synthesis.tts import TTS


def main() -> None:
    params = load_params()
    cfg = params.evaluate
    out = Path(cfg.out_dir)
    if cfg.trials:
        trials = read_trials(cfg.trials)[: cfg.max_trials]
    else:
        segments = validated_segments(open_manifests(params.manifests()), ["valid", "test"])
        trials = trials_from_segments(segments, out / "trials", cfg.max_trials, cfg.prompt_seconds)
        write_trials(trials, out / "trials" / "trials.csv")
    if not trials:
        raise SystemExit("evaluate: no trials (the held-out split needs a speaker with two segments, or set "
                         "evaluate.trials to a trials CSV)")
    if cfg.hubert_path:
        recognizer, asr_name = M.HubertRecognizer(cfg.hubert_path), f"HuBERT-CTC {cfg.hubert_path}"
    else:
        from dmospeech.data.transcribe import Transcriber

        recognizer = Transcriber(replace(params.segment_audio, whisper_model=cfg.whisper_model))
        asr_name = f"faster-whisper {cfg.whisper_model}"
    encoder = M.WavLMEncoder(cfg.wavlm_path) if cfg.wavlm_path else M.ResemblyzerEncoder()
    decoder = params.decoder_checkpoint_dir()
    models = {"teacher": TTS.from_pretrained(params.train_teacher.loop.out_dir, recognizer, decoder,
                                             params.evaluate.teacher_sampler),
              "student": TTS.from_pretrained(params.distill_student.loop.out_dir, recognizer, decoder)}
    renditions = synthesize_all(models, trials, cfg.seed, out / "audio")
    metrics: dict = {"trials": len(trials), "decoder": cfg.decoder,
                     "evaluators": {"wer": asr_name, "sim": encoder.name,
                                    "wer_normalisation": M.normalize_for_wer.__doc__.split(".")[0]}}
    rows = []
    for name, tts in models.items():
        scores, model_rows = score_model(renditions[name], trials, recognizer, encoder)
        scores["cv_f0"] = cv_f0_of(tts, trials[: cfg.cv_f0_trials], cfg.cv_f0_repeats, cfg.seed)
        metrics[name] = scores
        rows += [{"model": name, **row} for row in model_rows]
    metrics["ground_truth"] = score_ground_truth(trials, recognizer, encoder)
    metrics["speedup_teacher_over_student"] = metrics["teacher"]["rtf"] / metrics["student"]["rtf"]
    acoustic, f0 = acoustic_comparisons(renditions, trials)
    for name, values in acoustic.items():
        metrics[name] |= values
    write_metrics(metrics, out / "metrics.json", len(trials[: cfg.cv_f0_trials]))  # strict JSON: NaN -> null + reason
    table = pd.DataFrame(rows)
    write_text_atomic(out / "trials_scored.csv", table.to_csv(index=False))
    sims = table.pivot(index="trial_id", columns="model", values="sim").reset_index()
    write_text_atomic(out / "sim_scatter.csv", sims.to_csv(index=False))
    write_text_atomic(out / "f0_histogram.csv", pd.DataFrame(f0_histogram_rows(f0)).to_csv(index=False))
    f0_histogram_png(f0, out / "f0_histogram.png")
    Console().print(f"[bold]evaluate[/]: {len(trials)} trials; " + "; ".join(
        f"{m} WER {metrics[m]['wer']:.3f} SIM {metrics[m]['sim']:.3f} RTF {metrics[m]['rtf']:.3f} "
        f"CV_f0 {metrics[m]['cv_f0']:.3f}" for m in models) + f"; ground truth WER {metrics['ground_truth']['wer']:.3f}")


if __name__ == "__main__":
    main()
