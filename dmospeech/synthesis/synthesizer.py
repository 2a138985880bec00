"""Zero-shot synthesis: a prompt recording and a text -> 48 kHz speech in the prompt's voice.

prompt audio -> 48 kHz (resample_audio settings) -> codec latents (posterior mean) -> normalised;
prompt transcript + text -> IPA ids; target length by the prompt's speaking rate (docs/equations.md C8);
128-step DDPM with classifier-free guidance (eq. 27-28), prompt re-imposed at every step;
denormalise -> codec decoder -> the audio after the prompt.

Shapes: b batch, n latent frames, c latent channels, nt phonemes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from dmospeech.codec.latent_text import FRAME_RATE
from dmospeech.config import DiffusionConfig, PhonemizeTextConfig, ResampleAudioConfig, TeacherSamplerConfig, from_dict
from dmospeech.teacher.dit import DiT
from dmospeech.teacher.sampling import student_latents, teacher_latents



class SynthesisError(ValueError):
    """An input that cannot be synthesised (the message says which and why)."""


def target_frames(prompt_frames: int, prompt_phonemes: int, target_phonemes: int) -> int:
    """Total latent length, docs/equations.md C8: prompt frames + round(target phonemes x prompt frames per phoneme)."""
    if prompt_phonemes < 1 or target_phonemes < 1:
        raise SynthesisError(f"cannot estimate the duration from {prompt_phonemes} prompt and {target_phonemes} "
                             "target phonemes")
    return prompt_frames + max(1, round(target_phonemes * prompt_frames / prompt_phonemes))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (step_<n>) or a training out_dir (its newest checkpoint)."""
    from dmospeech.ops.checkpoint import latest_checkpoint

    path = Path(path)
    if (path / "run_config.json").exists():
        return path
    found = latest_checkpoint(path) if path.is_dir() else None
    if found is None:
        raise FileNotFoundError(f"no model checkpoint at {path}: give a step_<n> folder or a training out_dir "
                                "(e.g. data/models/teacher after `dvc repro train_teacher`)")
    return found


ENCODER_STATE = ("encoder", "whisper_mean", "whisper_std")   # what makes a codec's latents


def same_encoder_codec(codec: "Codec", checkpoint: Path) -> "Codec":
    """The codec at `checkpoint` (e.g. train_fast_decoder's), checked to have `codec`'s encoder
    weights (and the statistics of its Whisper input, if it has one): its decoder was fitted to the
    latents the model was trained on."""
    from dmospeech.codec.model import Codec

    other = Codec.from_checkpoint(checkpoint).eval()
    encoder = lambda c: {k: v for k, v in c.state_dict().items() if k.split(".")[0] in ENCODER_STATE}  # noqa: E731
    mine, theirs = encoder(codec), encoder(other)
    if mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine):
        raise SynthesisError(f"the decoder at {checkpoint} was fitted to another codec's latents than the model's "
                             f"(its encoder differs); retrain it on this codec (dvc repro train_fast_decoder) or "
                             f"decode with the model's own codec")
    return other


@dataclass
class Prompt:
    latents: torch.Tensor        # (np, c) normalised
    phoneme_ids: list[int]
    text: str


class Synthesizer:
    """A trained teacher or student with what it was trained with (codec, latent stats, audio and text
    settings), all read from its checkpoint's run_config. A teacher samples with `sampler` (default:
    the paper's 128 steps, w = 2); a student with its own distilled schedule. `runtime` "onnx" or
    "onnx-int8" runs a student exported by `dmospeech export --format onnx` (`checkpoint` is that
    folder) with onnxruntime, the int8 one with its quantised denoiser; `threads`: intra-op threads
    of either runtime (default: torch's, the physical cores)."""

    def __init__(self, checkpoint: str | Path, transcribe: Optional[Callable[[np.ndarray, int], str]] = None,
                 decoder: str | Path | None = None, sampler: TeacherSamplerConfig = TeacherSamplerConfig(),
                 runtime: str = "torch", threads: Optional[int] = None):
        from dmospeech.ops.checkpoint import read_run_config
        from dmospeech.codec.latents import LatentStats
        from dmospeech.data.text import Phonemizer, Vocabulary
        from dmospeech.synthesis.onnx_runtime import RUNTIMES, default_threads

        if runtime not in RUNTIMES:
            raise SynthesisError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.runtime, self.threads = runtime, threads or default_threads()
        self.checkpoint = resolve_checkpoint(checkpoint)
        run = read_run_config(self.checkpoint)
        self.kind = run.get("task")
        if self.kind not in ("teacher", "student"):
            raise SynthesisError(f"{self.checkpoint} is a {self.kind!r} checkpoint, not a teacher or student")
        self.times = tuple(run.get("student_times", ()))
        self.sampler = sampler
        self.diffusion = DiffusionConfig.from_run_config(run["diffusion"])
        self.audio_cfg = from_dict(ResampleAudioConfig, run["resample_audio"], "resample_audio")
        text_cfg = from_dict(PhonemizeTextConfig, run["phonemize_text"], "phonemize_text")
        if runtime == "torch":
            torch.set_num_threads(self.threads)  # process-wide, as torch has it
            self.net, self.codec = self.torch_models(run, decoder)
        else:
            self.net, self.codec = self.onnx_models(decoder, int8=runtime == "onnx-int8")
        self.stats = LatentStats(**run["latent_stats"])
        self.vocab, self.phonemizer = Vocabulary.load(text_cfg.vocab_path), Phonemizer(text_cfg)
        self.transcribe = transcribe

    def onnx_models(self, decoder: str | Path | None, int8: bool) -> tuple["OnnxStudent", "OnnxCodec"]:
        from dmospeech.synthesis.onnx_runtime import OnnxCodec, OnnxStudent

        if self.kind != "student":
            raise SynthesisError(f"runtime {self.runtime} runs a student exported with `dmospeech export --format "
                                 f"onnx`; {self.checkpoint} is a {self.kind} checkpoint")
        if decoder is not None:
            raise SynthesisError(f"runtime {self.runtime}: the export at {self.checkpoint} holds its fast decoder; "
                                 "give no other decoder")
        return (OnnxStudent(self.checkpoint, int8, self.threads), OnnxCodec(self.checkpoint, self.threads))

    def torch_models(self, run: dict, decoder: str | Path | None) -> tuple[DiT, "Codec"]:
        from dmospeech.codec.model import Codec

        net = DiT.from_checkpoint(self.checkpoint, "teacher" if self.kind == "teacher" else "generator")
        codec = Codec.from_checkpoint(run["codec_checkpoint"]).eval()
        if decoder is not None:
            try:
                decoder = resolve_checkpoint(decoder)
            except FileNotFoundError:
                raise SynthesisError(f"no decoder checkpoint at {decoder} (run `dvc repro train_fast_decoder`, or "
                                     f"decode with the codec's own decoder: --decoder codec)") from None
            codec = same_encoder_codec(codec, decoder)
        return net, codec

    def phoneme_ids(self, text: str, what: str) -> list[int]:
        from dmospeech.data.text import UnpronounceableText, normalize_text, unpronounceable_characters

        normalized = normalize_text(text or "")
        if not normalized:
            raise SynthesisError(f"the {what} is empty")
        bad = unpronounceable_characters(normalized)
        if bad:
            raise SynthesisError(f"the {what} has characters that cannot be pronounced: {bad}")
        try:
            ids = self.vocab.encode(self.phonemizer([normalized])[0])
        except UnpronounceableText as err:
            raise SynthesisError(f"the {what}: {err}") from None
        if not ids:
            raise SynthesisError(f"the {what} {text!r} gives no phonemes")
        return ids

    @torch.no_grad()
    def prompt(self, path: str | Path, prompt_text: Optional[str] = None) -> Prompt:
        from dmospeech.ops.audio import AudioError
        from dmospeech.codec.latents import encode_audio, normalize
        from dmospeech.data.resample import condition_file

        try:
            audio, _ = condition_file(str(path), self.audio_cfg)
        except (AudioError, FileNotFoundError, RuntimeError, OSError) as err:
            raise SynthesisError(f"cannot use the prompt {path}: {err}") from None
        if prompt_text is None:
            if self.transcribe is None:
                raise SynthesisError("no prompt transcript given and no transcriber configured (pass --prompt-text)")
            prompt_text = self.transcribe(audio, self.audio_cfg.sample_rate)
        audio = audio.astype(np.float32)
        latents = (encode_audio(self.codec, [audio], [str(path)], use_mean=True)[0] if self.runtime == "torch"
                   else self.codec.encode_mean(audio))
        return Prompt(normalize(latents, self.stats), self.phoneme_ids(prompt_text, "prompt transcript"), prompt_text)

    @torch.inference_mode()
    def synthesize(self, text: str, prompt: Prompt, steps: Optional[int] = None, seconds: Optional[float] = None,
                   seed: Optional[int] = None) -> tuple[np.ndarray, int]:
        """The speech after the prompt, (t,) float32 at the codec's rate. `seconds` overrides the
        length of the generated part (else docs/equations.md C8)."""
        from dmospeech.codec.latents import denormalize

        target = self.phoneme_ids(text, "text")
        n_prompt = len(prompt.latents)
        total = (n_prompt + max(1, round(seconds * FRAME_RATE)) if seconds is not None
                 else target_frames(n_prompt, len(prompt.phoneme_ids), len(target)))
        space = self.vocab.encode(" ")
        ids = torch.tensor(prompt.phoneme_ids + space + target)
        try:
            self.net.check_lengths(total, len(ids))
        except ValueError as err:
            raise SynthesisError(f"prompt ({n_prompt / FRAME_RATE:.1f} s) plus text is too long: {err}") from None
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        latents = self.latents(ids, prompt.latents, total, steps, generator)
        audio = self.codec.decode_after(denormalize(latents, self.stats).T[None], n_prompt)[0, 0]
        return audio.numpy().astype(np.float32), self.codec.cfg.sample_rate

    def latents(self, ids: torch.Tensor, prompt: torch.Tensor, total: int, steps: Optional[int],
                generator: Optional[torch.Generator]) -> torch.Tensor:
        """Teacher: `steps` DDPM steps (default: the sampler's) with CFG; student: the first `steps` times of its schedule."""
        if self.kind == "teacher":
            sampler = replace(self.sampler, steps=steps) if steps else self.sampler
            return teacher_latents(self.net, ids, prompt, total, self.diffusion.shift, sampler, generator)
        steps = steps or len(self.times)
        if not 1 <= steps <= len(self.times):
            raise SynthesisError(f"the student was distilled for the {len(self.times)}-step schedule {self.times}; "
                                 f"--steps must be 1-{len(self.times)}, got {steps}")
        if self.runtime != "torch":
            return self.net.latents(ids, prompt, total, self.times[:steps], self.diffusion.shift, generator)
        return student_latents(self.net, ids, prompt, total, self.times[:steps], self.diffusion.shift, generator)
