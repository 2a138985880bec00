"""The exported student (synthesis/export.py) run by onnxruntime: the same algorithm 1
(`teacher.sampling.sample_student`, same noise draws) with each network evaluation an
onnxruntime session; the prompt's codec encoding and the fast decoder likewise.

Shapes: n latent frames, c latent channels, nt phonemes, t samples.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dmospeech.codec.model import decode_after, frames_to_waveform
from dmospeech.codec.semantic import raw_whisper_input
from dmospeech.config import CodecConfig, DiTConfig, from_dict
from dmospeech.teacher.dit import check_lengths
from dmospeech.teacher.sampling import prompt_layout, sample_student, x0_function

RUNTIMES = ("torch", "onnx", "onnx-int8")
EXPORT_FILE = "export.json"  # what synthesis/export.py wrote: graph files, model and codec configs


def default_threads() -> int:
    """torch's intra-op thread count (the physical cores, or OMP_NUM_THREADS): both runtimes use the same."""
    return torch.get_num_threads()


def session(path: Path, threads: int):
    """An onnxruntime CPU session with every graph optimisation, `threads` intra-op threads, no inter-op pool."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch shares the cores between runs
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_export(folder: str | Path) -> dict:
    path = Path(folder) / EXPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an ONNX export (no {EXPORT_FILE}); write one with "
                                f"`dmospeech export --format onnx {folder}`")
    return json.loads(path.read_text(encoding="utf-8"))


class OnnxStudent:
    """The student's text encoder and denoiser as onnxruntime sessions; `int8` takes the dynamically
    quantised denoiser (written by `export --int8`); `text`: another OnnxStudent's text session to share."""

    def __init__(self, folder: str | Path, int8: bool = False, threads: Optional[int] = None, text=None):
        folder = Path(folder)
        manifest = read_export(folder)
        self.cfg = from_dict(DiTConfig, manifest["model"], "model")
        denoiser = manifest["graphs"]["denoiser"]
        if int8:
            denoiser = manifest.get("int8_denoiser")
            if denoiser is None:
                raise FileNotFoundError(f"{folder} has no int8 denoiser; export again with --int8")
        threads = threads or default_threads()
        self.text = text or session(folder / manifest["graphs"]["text"], threads)
        self.denoiser = session(folder / denoiser, threads)

    def check_lengths(self, frames: int, phonemes: int) -> None:
        check_lengths(self.cfg, frames, phonemes)

    def text_kv(self, phonemes: torch.Tensor) -> np.ndarray:
        """Phonemes (nt,) -> the denoiser's text input (l, 2, 1, h, nt, d/h), once per sentence."""
        return self.text.run(None, {"phonemes": phonemes.long().numpy()[None]})[0]

    def v(self, x_t: torch.Tensor, t: torch.Tensor, prompt_mask: np.ndarray, text_kv: np.ndarray) -> torch.Tensor:
        """One denoiser evaluation: x_t (1, n, c), t (1,) -> v (1, n, c)."""
        feeds = {"x_t": x_t.float().numpy(), "t": t.float().numpy(), "prompt_mask": prompt_mask, "text_kv": text_kv}
        return torch.from_numpy(self.denoiser.run(None, feeds)[0])

    def latents(self, phonemes: torch.Tensor, prompt: torch.Tensor, total_frames: int, times: Sequence[float],
                shift: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """`teacher.sampling.student_latents` with onnxruntime: (np, c) prompt -> (total_frames, c)."""
        prompt_full, prompt_mask = prompt_layout(prompt.float(), total_frames)
        self.check_lengths(total_frames, len(phonemes))
        text_kv, mask = self.text_kv(phonemes), prompt_mask.numpy()
        noise = torch.randn(prompt_full.shape, generator=generator)
        x0_fn = x0_function(lambda x, t: self.v(x, t, mask, text_kv), shift)
        return sample_student(x0_fn, noise, prompt_full, prompt_mask, times, shift, generator)[0]


class OnnxCodec:
    """The codec encoder (prompts) and the fast decoder as onnxruntime sessions, with Codec's
    `cfg`, `hop_length` and `decode_after`."""

    def __init__(self, folder: str | Path, threads: Optional[int] = None):
        folder = Path(folder)
        manifest = read_export(folder)
        self.cfg = from_dict(CodecConfig, manifest["codec"], "codec")
        self.decode_context = int(manifest["decode_context"])
        threads = threads or default_threads()
        self.encoder = session(folder / manifest["graphs"]["encoder"], threads)
        self.decoder = session(folder / manifest["graphs"]["decoder"], threads)
        self.window = torch.hann_window(self.cfg.fast_decoder.n_fft_hops * self.hop_length)  # vocos' ISTFT window

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def encode_mean(self, audio: np.ndarray) -> torch.Tensor:
        """Audio (t,) -> posterior mean latents (ceil(t / hop), c), zero-padded to whole hops as Codec.pad."""
        padded = np.zeros((1, 1, -(-len(audio) // self.hop_length) * self.hop_length), dtype=np.float32)
        padded[0, 0, :len(audio)] = audio
        feeds = {"audio": padded}
        if self.cfg.semantic_input:   # the encoder's Whisper input (raw; the graph standardises it)
            feeds["whisper"] = raw_whisper_input(self.cfg, [audio], padded.shape[-1] // self.hop_length).numpy()
        return torch.from_numpy(self.encoder.run(None, feeds)[0][0].T.copy())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, c, n) -> (1, 1, n * hop)."""
        frames = self.decoder.run(None, {"latents": latents.float().contiguous().numpy()})[0]
        return frames_to_waveform(torch.from_numpy(frames), self.window, self.hop_length)

    def decode_after(self, latents: torch.Tensor, start: int) -> torch.Tensor:
        """`Codec.decode_after`: the samples after frame `start`, decoding from `decode_context` frames before it."""
        return decode_after(self.decode, latents, start, self.decode_context, self.hop_length)
