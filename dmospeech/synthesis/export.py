"""ONNX export of a distilled student for onnxruntime (`dmospeech export --format onnx OUT_DIR`).

OUT_DIR holds four graphs, exported with torch's TorchScript-based exporter (`dynamo=False`, opset 17),
and what synthesis needs besides (the checkpoint's run_config.json, export.json):

    text.onnx        phonemes (1, nt) int64 -> text_kv (l, 2, 1, h, nt, d/h): the text encoder and each
                     decoder layer's cross-attention keys and values, run once per sentence
    denoiser.onnx    one student step, f_phi: x_t (1, n, c), t (1,), prompt_mask (1, n) bool, text_kv
                     -> v (1, n, c); weights in denoiser.onnx.data (the paper's DiT is over protobuf's 2 GB)
    decoder.onnx     the fast decoder's learned part: latents (1, c, n) -> spectral frames (1, n, n_fft + 2);
                     the inverse STFT (no weights) runs in torch, `codec.model.frames_to_waveform`
    encoder.onnx     the codec encoder for prompts: audio (1, 1, t), t a multiple of the hop -> mean (1, c, n)
    denoiser.int8.onnx  (--int8 only) the denoiser with onnxruntime's dynamic int8 quantisation of its MatMuls

Frame (n, t) and phoneme (nt) axes are dynamic. The folder is written beside OUT_DIR and renamed into
place when complete.
"""
from __future__ import annotations

import gc
import json
import multiprocessing
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from dmospeech.codec.model import Codec, FastDecoder
from dmospeech.synthesis.onnx_runtime import EXPORT_FILE
from dmospeech.teacher.dit import DiT

OPSET = 17
GRAPHS = {"text": "text.onnx", "denoiser": "denoiser.onnx", "decoder": "decoder.onnx", "encoder": "encoder.onnx"}
INT8_DENOISER = "denoiser.int8.onnx"


class ExportError(ValueError):
    """A model that cannot be exported as asked (the message says why and what to do)."""


class TextGraph(nn.Module):
    """Phonemes (1, nt) -> text_kv (l, 2, 1, h, nt, d/h): the step-independent text condition."""

    def __init__(self, net: DiT):
        super().__init__()
        self.net = net

    def forward(self, phonemes: torch.Tensor) -> torch.Tensor:
        text, _ = self.net.encode_text(phonemes, torch.ones_like(phonemes, dtype=torch.bool))
        return torch.stack([torch.stack(kv) for kv in self.net.text_keys_values(text)])


class DenoiserGraph(nn.Module):
    """One network evaluation of algorithm 1: (x_t, t, prompt_mask, text_kv) -> v, every mask-free."""

    def __init__(self, net: DiT):
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, prompt_mask: torch.Tensor,
                text_kv: torch.Tensor) -> torch.Tensor:
        ctx = self.net.step_context([(kv[0], kv[1]) for kv in text_kv.unbind(0)], None, prompt_mask, None)
        return self.net.decode_step(x_t, t, ctx)


class DecoderGraph(nn.Module):
    def __init__(self, decoder: FastDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder.spectral_frames(latents)


class EncoderGraph(nn.Module):
    """audio [, raw Whisper states (1, n, d), standardised here with the codec's statistics] -> mean."""

    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, audio: torch.Tensor, whisper: torch.Tensor | None = None) -> torch.Tensor:
        encoder = self.codec.encoder
        features = encoder(audio) if whisper is None else encoder(audio, self.codec.standardised_whisper(whisper))
        return features.chunk(2, dim=1)[0]


def export_graph(module: nn.Module, args: tuple, path: Path, inputs: dict[str, dict[int, str]],
                 outputs: dict[str, dict[int, str]], external: bool = False) -> None:
    """torch.onnx.export (TorchScript exporter) of `module` on example `args`, dynamic axes as named;
    with `external`, the weights go to `<path>.data` beside it."""
    import onnx

    raw = path.parent / f"{path.stem}.raw"
    raw.mkdir()
    torch.onnx.export(module, args, str(raw / path.name), dynamo=False, opset_version=OPSET,
                      input_names=list(inputs), output_names=list(outputs), dynamic_axes={**inputs, **outputs})
    gc.collect()  # the exporter's copies of the weights, before onnx holds them once more
    model = onnx.load(str(raw / path.name))
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{path.name}.data", size_threshold=1024)
    del model
    shutil.rmtree(raw)


def export_onnx(checkpoint: str | Path, decoder: str | Path | None, out_dir: str | Path, int8: bool = False) -> Path:
    """A student checkpoint (step_<n> folder or out_dir) and a fast-decoder checkpoint fitted to its codec
    -> OUT_DIR as in the module docstring. Returns OUT_DIR."""
    from dmospeech.ops.checkpoint import read_run_config
    from dmospeech.synthesis.synthesizer import resolve_checkpoint, same_encoder_codec

    checkpoint = resolve_checkpoint(checkpoint)
    run = read_run_config(checkpoint)
    if run.get("task") != "student":
        raise ExportError(f"{checkpoint} is a {run.get('task')!r} checkpoint; the ONNX export is of the distilled "
                          "student (algorithm 1), e.g. data/models/student after `dvc repro distill_student`")
    if decoder is None:
        raise ExportError("the ONNX export decodes with the fast decoder: give its checkpoint "
                          "(train_fast_decoder's out_dir, e.g. data/models/fast_decoder)")
    if Path(out_dir).exists() and not (Path(out_dir) / EXPORT_FILE).exists():
        raise ExportError(f"{out_dir} exists and is not an ONNX export; give a new folder")
    net = DiT.from_checkpoint(checkpoint, "generator")
    codec = same_encoder_codec(Codec.from_checkpoint(run["codec_checkpoint"]).eval(), resolve_checkpoint(decoder))
    return export_models(net, codec, out_dir, int8, run, {"checkpoint": str(checkpoint),
                                                          "decoder_checkpoint": str(decoder)})


def export_models(net: DiT, codec: Codec, out_dir: str | Path, int8: bool = False, run: dict | None = None,
                  about: dict | None = None) -> Path:
    """`export_onnx` of models in memory (`run`: the run_config synthesis reads, `about`: noted in export.json)."""
    if not isinstance(codec.decoder, FastDecoder):
        raise ExportError("the codec has no fast decoder; give train_fast_decoder's checkpoint")
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / EXPORT_FILE).exists():
        raise ExportError(f"{out_dir} exists and is not an ONNX export; give a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_graphs(net, codec, tmp)
        if int8:  # in a child process: its ~2 GB come on top of the torch model's here
            child = multiprocessing.get_context("spawn").Process(target=quantize_denoiser, args=(tmp,))
            child.start()
            child.join()
            if child.exitcode:
                raise ExportError(f"the int8 quantisation of {tmp / GRAPHS['denoiser']} failed "
                                  f"(exit code {child.exitcode}); see its error above")
        if run is not None:
            (tmp / "run_config.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
        manifest = {"format": "onnx", "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)", **(about or {}),
                    "graphs": GRAPHS, "int8_denoiser": INT8_DENOISER if int8 else None, "model": asdict(net.cfg),
                    "codec": asdict(codec.cfg), "decode_context": codec.decode_context}
        (tmp / EXPORT_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


@torch.inference_mode()
def write_graphs(net: DiT, codec: Codec, folder: Path) -> None:
    cfg, n, nt = net.cfg, 48, 12
    phonemes = torch.randint(1, cfg.vocab_size, (1, nt))
    text_kv = TextGraph(net)(phonemes)
    export_graph(TextGraph(net), (phonemes,), folder / GRAPHS["text"], {"phonemes": {1: "nt"}},
                 {"text_kv": {4: "nt"}})
    prompt_mask = torch.arange(n)[None] < n // 3
    export_graph(DenoiserGraph(net), (torch.randn(1, n, cfg.latent_dim), torch.full((1,), 0.5), prompt_mask, text_kv),
                 folder / GRAPHS["denoiser"], {"x_t": {1: "n"}, "t": {}, "prompt_mask": {1: "n"},
                                               "text_kv": {4: "nt"}}, {"v": {1: "n"}}, external=True)
    export_graph(DecoderGraph(codec.decoder), (torch.randn(1, cfg.latent_dim, n),), folder / GRAPHS["decoder"],
                 {"latents": {2: "n"}}, {"frames": {1: "n"}})
    audio, inputs = (torch.randn(1, 1, n * codec.hop_length),), {"audio": {2: "t"}}
    if codec.cfg.semantic_input:   # the encoder's Whisper input, as raw states at 40 Hz
        audio, inputs = (*audio, torch.randn(1, n, codec.cfg.semantic_input_dim)), inputs | {"whisper": {1: "n"}}
    export_graph(EncoderGraph(codec), audio, folder / GRAPHS["encoder"], inputs, {"mean": {2: "n"}})


def quantize_denoiser(folder: Path) -> None:
    """onnxruntime's dynamic quantisation: int8 weights per output channel, activations quantised per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(folder / GRAPHS["denoiser"], folder / INT8_DENOISER, weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul"], use_external_data_format=True)


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished `tmp` to `out_dir`, replacing an earlier export there."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old)
