"""The Python API of synthesis:

    from dmospeech.synthesis import TTS
    tts = TTS.from_pretrained("data/models/student")        # a training out_dir or a step_<n> folder
    waveform, sample_rate = tts.synthesize("Hello there.", "prompt.wav", prompt_text="What the prompt says.")
    tts.save("out.wav", waveform, sample_rate)              # watermarked (watermark=False: unmarked)
    results = tts.synthesize_batch(read_batch_file("list.tsv"), "out/")

Every file written (`save`, `synthesize_batch`) carries a watermark (meant to be inaudible) unless
`watermark=False` (dmospeech.synthesis.watermark; `dmospeech watermark detect` finds it).
A batch item that fails (unreadable prompt, unpronounceable text, too long...) is reported in its
`BatchResult` and the batch goes on.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from dmospeech.config import Params, TeacherSamplerConfig
from dmospeech.synthesis.synthesizer import Prompt, SynthesisError, Synthesizer

BATCH_COLUMNS = ("text", "prompt", "prompt_text", "name", "seed")  # text and prompt are required


@dataclass(frozen=True)
class BatchItem:
    text: str
    prompt: str                      # path of the prompt recording
    prompt_text: Optional[str] = None
    name: Optional[str] = None       # output file stem (default: the item's line number)
    seed: Optional[int] = None


@dataclass(frozen=True)
class BatchResult:
    item: BatchItem
    path: Optional[Path]             # the written wav, None when the item failed
    seconds: float                   # length of the generated speech
    wall_seconds: float
    error: Optional[str] = None
    watermarked: bool = False        # the written file carries the watermark


def read_batch_file(path: str | Path) -> list[BatchItem]:
    """A tab-separated list with a header naming its columns: text, prompt (required), prompt_text,
    name, seed (optional). Prompt paths are relative to the list's folder."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        columns = set(reader.fieldnames or [])
        if not {"text", "prompt"} <= columns or not columns <= set(BATCH_COLUMNS):
            raise ValueError(f"{path}: the header must name columns text, prompt and optionally prompt_text, name, "
                             f"seed (tab-separated); got {reader.fieldnames}")
        items = []
        for line, row in enumerate(reader, start=2):
            seed = (row.get("seed") or "").strip()
            if seed and not seed.lstrip("-").isdigit():
                raise ValueError(f"{path}:{line}: seed must be an integer, got {seed!r}")
            prompt = Path(row["prompt"] or "")
            items.append(BatchItem(row["text"] or "", str(prompt if prompt.is_absolute() else path.parent / prompt),
                                   (row.get("prompt_text") or "").strip() or None,
                                   (row.get("name") or "").strip() or f"line{line:05d}", int(seed) if seed else None))
    return items


class TTS:
    """A trained teacher or student with everything it needs to speak (see the module docstring)."""

    def __init__(self, synthesizer: Synthesizer):
        self.synthesizer = synthesizer
        self._prompts: dict[tuple[str, Optional[str]], Prompt] = {}

    @classmethod
    def from_pretrained(cls, path_or_dir: str | Path, transcriber=None, decoder: str | Path | None = None,
                        sampler: TeacherSamplerConfig = TeacherSamplerConfig(), runtime: str = "torch",
                        threads: Optional[int] = None) -> "TTS":
        """Load a checkpoint (step_<n> folder) or the newest one of a training out_dir. Prompts given
        without a transcript are transcribed by `transcriber` (audio, sample_rate) -> text, by
        default the packaged faster-whisper base model (loaded on first use). `decoder`: a
        train_fast_decoder checkpoint or out_dir that decodes the latents instead of the codec's
        own decoder (it must have been fitted to the model's codec). `sampler`: a teacher's steps and
        guidance scale (a student samples its distilled schedule). `runtime="onnx"` (or "onnx-int8"):
        `path_or_dir` is a `dmospeech export --format onnx` folder, run with onnxruntime."""
        return cls(Synthesizer(path_or_dir, transcriber or _LazyTranscriber(), decoder, sampler, runtime, threads))

    @property
    def sample_rate(self) -> int:
        return self.synthesizer.codec.cfg.sample_rate

    def prompt(self, prompt: str | Path, prompt_text: Optional[str] = None) -> Prompt:
        """The prompt's latents and phonemes (cached per path and transcript)."""
        key = (str(prompt), prompt_text)
        if key not in self._prompts:
            self._prompts[key] = self.synthesizer.prompt(prompt, prompt_text)
        return self._prompts[key]

    def synthesize(self, text: str, prompt: str | Path | Prompt, prompt_text: Optional[str] = None,
                   steps: Optional[int] = None, seed: Optional[int] = None,
                   seconds: Optional[float] = None) -> tuple[np.ndarray, int]:
        """Speech of `text` in the voice of `prompt` -> (waveform (t,) float32, sample rate). `steps`
        defaults to the model's (4 for the student, 128 for the teacher); `seconds` overrides the
        length estimated from the prompt's speaking rate. Raises SynthesisError for unusable input."""
        ref = prompt if isinstance(prompt, Prompt) else self.prompt(prompt, prompt_text)
        return self.synthesizer.synthesize(text, ref, steps=steps, seconds=seconds, seed=seed)

    def save(self, path: str | Path, audio: np.ndarray, sample_rate: int, watermark: bool = True) -> Path:
        """Write synthesised audio (16-bit, atomically), watermarked unless `watermark` is False."""
        from dmospeech.synthesis.watermark import write_speech

        return write_speech(path, audio, sample_rate, watermark)

    def synthesize_batch(self, items: Sequence[BatchItem], out_dir: str | Path, steps: Optional[int] = None,
                         progress: bool = True, watermark: bool = True) -> list[BatchResult]:
        """Synthesise every item into `out_dir/<name>.wav` (watermarked unless `watermark` is False);
        failures are kept as results with an error."""
        from rich.progress import Progress

        out_dir = Path(out_dir)
        results = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("synthesize", total=len(items))
            for item in items:
                start = time.perf_counter()
                try:
                    audio, rate = self.synthesize(item.text, item.prompt, item.prompt_text, steps, item.seed)
                    path = self.save(out_dir / f"{item.name}.wav", audio, rate, watermark)
                    results.append(BatchResult(item, path, len(audio) / rate, time.perf_counter() - start,
                                               watermarked=watermark))
                except ValueError as err:  # SynthesisError, or audio too short to watermark
                    results.append(BatchResult(item, None, 0.0, time.perf_counter() - start, str(err)))
                bar.advance(task)
        return results


def load_tts(model: str | Path, params: Params, decoder: str | None = None, transcriber=None,
             sampler: TeacherSamplerConfig = TeacherSamplerConfig(), runtime: str = "torch") -> tuple[TTS, str]:
    """The model with the decoder asked for, and a note (empty when nothing needs saying). Without
    `decoder`, params' evaluate.decoder is used when it can decode this model (the fast decoder exists
    and was fitted to its codec), else the codec's own decoder, which the note says. An ONNX export
    (runtime onnx, onnx-int8) holds its decoder."""
    if runtime != "torch":
        if decoder is not None:
            raise SynthesisError(f"--decoder does not apply to --runtime {runtime}: the export holds its fast decoder")
        return TTS.from_pretrained(model, transcriber, sampler=sampler, runtime=runtime), ""
    fast_dir = params.decoder_checkpoint_dir(decoder)
    try:
        return TTS.from_pretrained(model, transcriber, fast_dir, sampler), ""
    except SynthesisError as err:
        if decoder is not None or fast_dir is None:
            raise
        return TTS.from_pretrained(model, transcriber, sampler=sampler), f"note: {err}; decoding with the model's own codec decoder"


class _LazyTranscriber:
    """The packaged faster-whisper transcriber, loaded the first time a prompt lacks its transcript."""

    def __init__(self):
        self._transcriber = None

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        if self._transcriber is None:
            from dmospeech.data.transcribe import Transcriber

            self._transcriber = Transcriber()
        return self._transcriber(audio, sample_rate)


def write_batch_report(results: Iterable[BatchResult], path: str | Path) -> Path:
    """One row per item: name, status, output, watermarked, seconds, wall seconds, error (tab-separated,
    atomically)."""
    from dmospeech.ops.atomic import write_text_atomic

    lines = ["name\tstatus\toutput\twatermarked\tseconds\twall_seconds\terror"]
    for r in results:
        lines.append("\t".join([r.item.name or "", "ok" if r.error is None else "failed", str(r.path or ""),
                                "yes" if r.watermarked else "no", f"{r.seconds:.3f}", f"{r.wall_seconds:.3f}",
                                (r.error or "").replace("\t", " ")]))
    return write_text_atomic(path, "\n".join(lines) + "\n")
