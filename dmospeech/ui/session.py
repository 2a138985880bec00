"""What the web page does, without Gradio: pick a model, synthesise (watermarked), measure, plot.

A model is named as `dmospeech ui --model` takes it: "current" (the registry's promoted model), a
registered model id, "teacher" / "student" (their stages' out_dir in params) or a training folder.
Every input the page can be given wrong raises `UIError` with a message fit to show as it is.
"""
from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from dmospeech.config import Params
from dmospeech.lineage.registry import Registry, RegistryError
from dmospeech.ops.audio import AudioError, decode_audio, to_mono
from dmospeech.synthesis.tts import TTS, load_tts, read_batch_file, write_batch_report

DECODERS = ("default", "codec", "fast")   # default: params' evaluate.decoder when it fits the model


class UIError(ValueError):
    """An input the page cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class Spoken:
    audio_path: Path           # the written (watermarked) 48 kHz wav
    spectrogram_path: Path     # prompt and output spectrograms, one PNG
    seconds: float
    rtf: float                 # synthesis wall time (after the prompt's encoding) / seconds of speech
    sim: Optional[float]       # Resemblyzer SIM to the prompt (None: too little voiced audio to embed)
    prompt_text: str
    watermarked: bool
    note: str = ""


def model_choices(params: Params) -> list[str]:
    """What the model picker offers: current, the registered ids (newest first), teacher, student."""
    ids = [row["model_id"] for row in reversed(Registry(params.retrain.registry_dir).rows())]
    return ["current", *ids, "teacher", "student"]


def resolve_model(params: Params, name: str) -> Path:
    """A model name (see the module docstring) -> the folder TTS.from_pretrained loads."""
    name = (name or "").strip()
    registry = Registry(params.retrain.registry_dir)
    if name == "current":
        current = registry.current_id()
        if current is None:
            raise UIError(f"no current model: nothing has been promoted in {registry.root} yet; pick a registered "
                          "id or give a training folder (e.g. data/models/student)")
        return registry.model_checkpoint(current)
    if name in {row["model_id"] for row in registry.rows()}:
        return registry.model_checkpoint(name)
    if name in ("teacher", "student"):
        loop = params.train_teacher.loop if name == "teacher" else params.distill_student.loop
        return Path(loop.out_dir)
    if not name or not Path(name).exists():
        raise UIError(f"model {name!r} is neither 'current', a registered id, 'teacher', 'student' nor an existing "
                      "training folder or checkpoint")
    return Path(name)


def read_prompt(path: Optional[str]) -> tuple[np.ndarray, int]:
    """The prompt as mono float audio, or a UIError naming the file."""
    if not path:
        raise UIError("no prompt: upload or record a few seconds of the voice first")
    try:
        decoded = decode_audio(path)
    except AudioError as err:
        detail = err.detail.replace(str(path), Path(path).name)   # the upload's temporary path says nothing
        raise UIError(f"cannot read the prompt {Path(path).name}: {detail}; upload a WAV, FLAC or MP3 "
                      "recording") from None
    return to_mono(decoded.audio), decoded.sample_rate


def spectrogram_png(prompt: tuple[np.ndarray, int], output: tuple[np.ndarray, int], path: Path) -> Path:
    """Log-magnitude spectrograms of the prompt (top) and the output (bottom) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 5), constrained_layout=True)
    for ax, (audio, rate), title in zip(axes, (prompt, output), ("prompt", "output")):
        ax.specgram(audio + 1e-7, NFFT=1024, Fs=rate, noverlap=768, cmap="magma")
        ax.set(title=title, xlabel="s", ylabel="Hz")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


class Voices:
    """The page's state: the loaded model (one at a time), the SIM encoder, the output folder."""

    def __init__(self, params: Params, out_dir: Path, watermark: bool = True):
        self.params, self.out_dir, self.watermark = params, Path(out_dir), watermark
        self._loaded: tuple[tuple[str, str], TTS, str] | None = None
        self._encoder = None

    def tts(self, model: str, decoder: str) -> tuple[TTS, str]:
        """The model with the decoder asked for ("default": evaluate.decoder, else the codec's own, with a note)."""
        if decoder not in DECODERS:
            raise UIError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        try:
            key = (str(resolve_model(self.params, model)), decoder)
        except RegistryError as err:
            raise UIError(str(err)) from None
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None                      # free the previous model first
            try:
                tts, note = load_tts(key[0], self.params, None if decoder == "default" else decoder)
            except FileNotFoundError as err:
                raise UIError(str(err)) from None
            self._loaded = (key, tts, note)
        return self._loaded[1], self._loaded[2]

    def similarity(self, output: tuple[np.ndarray, int], prompt: tuple[np.ndarray, int]) -> Optional[float]:
        """SIM as `evaluate` has it (Resemblyzer cosine), None when either side is too short or silent."""
        from dmospeech.evaluation.metrics import ResemblyzerEncoder, speaker_similarity

        self._encoder = self._encoder or ResemblyzerEncoder()
        try:
            return speaker_similarity(self._encoder, *output, *prompt)
        except ValueError:
            return None

    def speak(self, model: str, decoder: str, prompt_path: Optional[str], prompt_text: str, text: str,
              steps: int = 0, seed: Optional[int] = None, seconds: float = 0.0) -> Spoken:
        """Synthesise `text` in the prompt's voice; steps 0 / seconds 0: the model's default."""
        prompt = read_prompt(prompt_path)
        if not (text or "").strip():
            raise UIError("the text to speak is empty: type a sentence")
        tts, note = self.tts(model, decoder)
        ref = tts.prompt(prompt_path, (prompt_text or "").strip() or None)
        start = time.perf_counter()
        audio, rate = tts.synthesize(text, ref, steps=steps or None, seed=seed, seconds=seconds or None)
        wall = time.perf_counter() - start
        stem = self.out_dir / uuid.uuid4().hex[:12]
        path = tts.save(stem.with_suffix(".wav"), audio, rate, watermark=self.watermark)
        return Spoken(path, spectrogram_png(prompt, (audio, rate), stem.with_suffix(".png")), len(audio) / rate,
                      wall / (len(audio) / rate), self.similarity((audio, rate), prompt), ref.text, self.watermark,
                      note)

    def batch(self, model: str, decoder: str, listing: Optional[str], prompts: list[str],
              steps: int = 0) -> tuple[Path, Path, list[list[str]]]:
        """A `synthesize --batch` list and the prompt files it names (by file name) -> (zip of the wavs and
        batch_report.tsv, the report, its rows). Failed items are rows of the report, as on the CLI."""
        if not listing:
            raise UIError("no list: upload a tab-separated file with columns text, prompt [, prompt_text, name, seed]")
        job = self.out_dir / f"batch-{uuid.uuid4().hex[:12]}"
        (job / "out").mkdir(parents=True)
        for prompt in prompts or []:
            shutil.copy(prompt, job / Path(prompt).name)   # the list names prompts relative to itself
        shutil.copy(listing, job / "list.tsv")
        items = read_batch_file(job / "list.tsv")
        tts, _ = self.tts(model, decoder)
        results = tts.synthesize_batch(items, job / "out", steps=steps or None, progress=False,
                                       watermark=self.watermark)
        report = write_batch_report(results, job / "out" / "batch_report.tsv")
        archive = Path(shutil.make_archive(str(job / "synthesized"), "zip", job / "out"))
        rows = [line.split("\t") for line in report.read_text(encoding="utf-8").splitlines()[1:]]
        return archive, report, rows
