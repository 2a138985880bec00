"""A Whisper feature-matching loss for the codec's decoders: the reconstruction and the original go
through a frozen, differentiable copy of an offline Whisper encoder, and the decoder learns to make
their states agree (DistilHuBERT's loss, as the semantic term's), so it keeps what a recogniser reads
from the sound, not only what the mel loss weighs. A perceptual loss with a recogniser's features, as
DMOSpeech's own student learns against a CTC recogniser (sec 3.3); here it trains a decoder.

The weights come from the packaged faster-whisper (CTranslate2) models, read straight from their
`model.bin`, so nothing is downloaded: `read_ctranslate2_encoder` parses the file's variables (binary
format version 6: a spec name, then each variable's name, shape, dtype and bytes), and
`TorchWhisperEncoder` runs Whisper's log-mel front end and pre-norm transformer encoder in torch. Its
states agree with CTranslate2's int8 encoder to a mean cosine of 0.998-0.999 (tests/unit/test_whisper_feature.py).

Shapes: b batch, t samples (codec rate), s samples (16 kHz), f mel frames (100 Hz), m states (50 Hz), d width.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from dmospeech.data.whisper_models import resolve_whisper_model
from dmospeech.data.whisper_states import WHISPER_RATE, distill_loss

N_FFT, HOP, N_MELS = 400, 160, 80          # Whisper's log-mel front end
CTRANSLATE2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2_encoder(model_bin: str | Path) -> dict[str, torch.Tensor]:
    """The encoder's variables ("encoder/...", float32 tensors; `num_heads` an int tensor) of a
    CTranslate2 Whisper model.bin. Refuses other binary versions and quantised (int8) weights."""
    data = Path(model_bin).read_bytes()
    at = 0

    def take(fmt: str):
        nonlocal at
        value = struct.unpack_from(fmt, data, at)[0]
        at += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal at
        size = take("<H")
        value = data[at: at + size].rstrip(b"\0").decode()
        at += size
        return value

    version = take("<I")
    if version != 6:
        raise ValueError(f"{model_bin}: CTranslate2 binary version {version}; this reader knows version 6")
    spec = text()
    if spec != "WhisperSpec":
        raise ValueError(f"{model_bin}: a {spec}, not a Whisper model")
    take("<I")                                   # spec revision
    variables = {}
    for _ in range(take("<I")):
        name = text()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype, size = take("<B"), take("<I")
        raw, at = data[at: at + size], at + size
        if not name.startswith("encoder/"):
            continue
        if dtype not in CTRANSLATE2_DTYPES or (dtype == 1 and name != "encoder/num_heads"):
            raise ValueError(f"{model_bin}: {name} has CTranslate2 dtype {dtype}; float16/float32 weights needed")
        array = np.frombuffer(raw, CTRANSLATE2_DTYPES[dtype]).reshape(shape)
        variables[name] = torch.from_numpy(array.astype(np.float32) if dtype in (0, 4) else array.astype(np.int64))
    return variables


def whisper_mel_filters() -> torch.Tensor:
    """Whisper's 80 Slaney mel filters over a 400-point FFT at 16 kHz, (80, 201), as faster-whisper builds them."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return torch.from_numpy(FeatureExtractor.get_mel_filters(WHISPER_RATE, N_FFT, n_mels=N_MELS).astype(np.float32))


class TorchWhisperEncoder(nn.Module):
    """Whisper's encoder in torch, frozen: 16 kHz audio (b, s) -> states (b, ceil(s / 320), d), each item
    encoded from the window's start without the padding to 30 s (as dmospeech.data.whisper_states)."""

    def __init__(self, model: str):
        super().__init__()
        weights = read_ctranslate2_encoder(resolve_whisper_model(model) / "model.bin")
        self.heads = int(weights.pop("encoder/num_heads"))
        self.layers = sum(1 for k in weights if k.endswith("/ffn/linear_0/weight"))
        for name, value in weights.items():   # buffers: frozen, moved with the module, not in its state_dict
            self.register_buffer(name.replace("/", "__"), value, persistent=False)
        self.register_buffer("mel_filters", whisper_mel_filters(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.dim = self.w("layer_norm/gamma").shape[0]

    def w(self, name: str) -> torch.Tensor:
        return getattr(self, f"encoder/{name}".replace("/", "__"))

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """faster-whisper's features: |STFT|^2 (Hann 400, hop 160, 160 samples of end padding, last frame
        dropped), mel, log10 floored at each item's max - 8, (x + 4) / 4; (b, s) -> (b, 80, f)."""
        spec = torch.stft(F.pad(audio, (0, HOP)), N_FFT, HOP, window=self.window, return_complex=True)
        power = spec[..., :-1].abs() ** 2
        log_spec = torch.log10((self.mel_filters @ power).clamp(min=1e-10))
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (log_spec + 4.0) / 4.0

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = -(-audio.shape[-1] // (2 * HOP))
        mel = self.log_mel(audio)[..., : 2 * frames]
        x = F.gelu(F.conv1d(mel, self.w("conv1/weight"), self.w("conv1/bias"), padding=1))
        x = F.gelu(F.conv1d(x, self.w("conv2/weight"), self.w("conv2/bias"), stride=2, padding=1)).transpose(1, 2)
        x = x + self.w("position_encodings/encodings")[: x.shape[1]]
        b, m, d = x.shape
        for i in range(self.layers):
            p = f"layer_{i}/"
            y = F.layer_norm(x, (d,), self.w(p + "self_attention/layer_norm/gamma"), self.w(p + "self_attention/layer_norm/beta"))
            qkv = F.linear(y, self.w(p + "self_attention/linear_0/weight"), self.w(p + "self_attention/linear_0/bias"))
            q, k, v = qkv.view(b, m, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, m, d)
            x = x + F.linear(attended, self.w(p + "self_attention/linear_1/weight"), self.w(p + "self_attention/linear_1/bias"))
            y = F.layer_norm(x, (d,), self.w(p + "ffn/layer_norm/gamma"), self.w(p + "ffn/layer_norm/beta"))
            hidden = F.gelu(F.linear(y, self.w(p + "ffn/linear_0/weight"), self.w(p + "ffn/linear_0/bias")))
            x = x + F.linear(hidden, self.w(p + "ffn/linear_1/weight"), self.w(p + "ffn/linear_1/bias"))
        return F.layer_norm(x, (d,), self.w("layer_norm/gamma"), self.w("layer_norm/beta"))


class WhisperFeatureLoss(nn.Module):
    """DistilHuBERT's loss between the Whisper states of the reconstruction and of the original
    (no gradient), both resampled from the codec's rate to 16 kHz."""

    def __init__(self, model: str, sample_rate: int):
        super().__init__()
        self.encoder = TorchWhisperEncoder(model)
        self.sample_rate = sample_rate

    def forward(self, audio_hat: torch.Tensor, audio: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(b, 1, t) each -> ({"whisper_feature/loss"}, {"whisper_feature/loss", "whisper_feature/cosine"})."""
        if self.encoder.window.device != audio.device:   # follows the codec onto its GPU on first use
            self.to(audio.device)

        def states(x: torch.Tensor) -> torch.Tensor:
            return self.encoder(torchaudio.functional.resample(x[:, 0], self.sample_rate, WHISPER_RATE))

        with torch.no_grad():
            target = states(audio)
        predicted = states(audio_hat)
        mask = torch.ones(target.shape[:2], dtype=torch.bool, device=target.device)
        return distill_loss(predicted, target, mask, family="whisper_feature")
