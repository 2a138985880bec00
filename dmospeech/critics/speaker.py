"""The latent speaker verifier of appendix C.4: the CTC recogniser (fine-tuned) as feature extractor,
its conformer block outputs concatenated (Cai & Li, 2024) and read by an ECAPA-TDNN (Desplanques et
al., 2020) into an L2-normalised speaker embedding. With `with_latents` the input latents join the
stack as its layer 0, as a self-supervised model's input embedding joins its hidden states in
WavLM-ECAPA: a phone recogniser's blocks learn to ignore who speaks, its input does not. Trained by distillation toward a pretrained
speaker encoder's embeddings (eq. 31); frozen, it is the S of the student's SV loss (eq. 10).

Shapes: b batch, n latent frames (40 Hz), c latent channels, f features (layers x recogniser width, + c),
C ECAPA channels, e embedding size.

Padded frames are zeroed before every convolution and left out of every time statistic (SE means,
attentive pooling), so in eval mode an item's embedding does not depend on its batch.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dmospeech.config import LatentASRConfig, SpeakerVerifierConfig, from_dict
from dmospeech.critics.asr import LatentASR

TASK = "sv_critic"


def masked_mean_std(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and std over time of (b, C, n) with (b, 1 or C, n) weights summing to 1 per row."""
    mean = (x * weights).sum(-1)
    var = (x.square() * weights).sum(-1) - mean.square()
    return mean, var.clamp(min=1e-6).sqrt()


def frame_weights(mask: torch.Tensor) -> torch.Tensor:
    """(b, n) mask -> (b, 1, n) uniform weights over each item's real frames."""
    m = mask.float()[:, None, :]
    return m / m.sum(-1, keepdim=True)


class TDNNBlock(nn.Module):
    """Conv1d over real frames -> ReLU -> BatchNorm (ECAPA-TDNN's basic unit)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x * mask[:, None, :])))


class Res2Conv(nn.Module):
    """Res2Net dilated convolution: channel groups processed in a cascade, each adding the previous."""

    def __init__(self, channels: int, scale: int, kernel: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"SpeakerVerifierConfig: channels {channels} must divide by res2_scale {scale}")
        width = channels // scale
        self.convs = nn.ModuleList(TDNNBlock(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(len(self.convs) + 1, dim=1)
        out, y = [chunks[0]], None
        for conv, chunk in zip(self.convs, chunks[1:]):
            y = conv(chunk if y is None else chunk + y, mask)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the mean over real frames."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.down, self.up = nn.Linear(channels, bottleneck), nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = (x * frame_weights(mask)).sum(-1)                                  # (b, C)
        return x * torch.sigmoid(self.up(F.relu(self.down(s))))[..., None]


class SERes2Block(nn.Module):
    """1x1 TDNN -> Res2 dilated TDNN -> 1x1 TDNN -> SE, plus the residual."""

    def __init__(self, channels: int, scale: int, se_dim: int, dilation: int):
        super().__init__()
        self.inp = TDNNBlock(channels, channels, 1)
        self.res2 = Res2Conv(channels, scale, 3, dilation)
        self.out = TDNNBlock(channels, channels, 1)
        self.se = SqueezeExcitation(channels, se_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.out(self.res2(self.inp(x, mask), mask), mask), mask)


class AttentiveStatsPool(nn.Module):
    """Channel-dependent attentive statistics pooling with global context (ECAPA-TDNN, sec. 3.2)."""

    def __init__(self, channels: int, attention_dim: int):
        super().__init__()
        self.attention = TDNNBlock(3 * channels, attention_dim, 1)
        self.score = nn.Conv1d(attention_dim, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean, std = masked_mean_std(x, frame_weights(mask))
        n = x.shape[-1]
        context = torch.cat([x, mean[..., None].expand(-1, -1, n), std[..., None].expand(-1, -1, n)], dim=1)
        scores = self.score(torch.tanh(self.attention(context, mask)))        # (b, C, n)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        return torch.cat(masked_mean_std(x, weights), dim=1)                   # (b, 2C)


class ECAPATDNN(nn.Module):
    """Features (b, f, n) + mask (b, n) -> speaker embedding (b, e), not normalised."""

    def __init__(self, in_channels: int, cfg: SpeakerVerifierConfig):
        super().__init__()
        c = cfg.channels
        self.stem = TDNNBlock(in_channels, c, 5)
        self.blocks = nn.ModuleList(SERes2Block(c, cfg.res2_scale, cfg.se_dim, d) for d in (2, 3, 4))
        self.aggregate = TDNNBlock(3 * c, 3 * c, 1)                             # multi-layer feature aggregation
        self.pool = AttentiveStatsPool(3 * c, cfg.attention_dim)
        self.pool_norm = nn.LayerNorm(6 * c)  # ECAPA's BatchNorm here fails on a batch of one item
        self.embed = nn.Linear(6 * c, cfg.embedding_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.stem(x, mask)
        outputs = []
        for block in self.blocks:
            x = block(x, mask)
            outputs.append(x)
        x = self.aggregate(torch.cat(outputs, dim=1), mask)
        return self.embed(self.pool_norm(self.pool(x, mask)))


class LatentSpeakerVerifier(nn.Module):
    """Latents (b, n, c) normalised + latent_mask (b, n) -> L2-normalised speaker embedding (b, e)."""

    def __init__(self, cfg: SpeakerVerifierConfig, features: LatentASR):
        super().__init__()
        self.cfg = cfg
        self.features = features
        width = features.cfg.layers * features.cfg.dim + (features.cfg.latent_dim if cfg.with_latents else 0)
        self.ecapa = ECAPATDNN(width, cfg)

    def forward(self, latents: torch.Tensor, latent_mask: torch.Tensor) -> torch.Tensor:
        mask = latent_mask.bool()
        layers = self.features.block_outputs(latents, mask)
        if self.cfg.with_latents:
            layers = [latents * mask[..., None].to(latents.dtype), *layers]
        feats = torch.cat(layers, dim=-1).transpose(1, 2)                               # (b, f, n)
        return F.normalize(self.ecapa(feats, mask), dim=-1)

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path) -> "LatentSpeakerVerifier":
        """The verifier of a `train_sv_critic` checkpoint with its EMA weights, in eval mode and frozen
        (requires_grad False): gradients still flow through it to the input latents."""
        from dmospeech.ops.checkpoint import load_part_weights, read_run_config

        run_config = read_run_config(checkpoint_dir)
        if run_config.get("task") != TASK:
            raise ValueError(f"{checkpoint_dir} is a {run_config.get('task')!r} checkpoint, not {TASK!r}: pass a "
                             "checkpoint folder of train_sv_critic (e.g. data/models/sv_critic/step_<n>)")
        features = LatentASR(from_dict(LatentASRConfig, run_config["asr_model"], "asr_model"))
        sv = cls(from_dict(SpeakerVerifierConfig, run_config["model"], "model"), features)
        sv.load_state_dict(load_part_weights(checkpoint_dir, "sv", ema=True))
        return sv.eval().requires_grad_(False)


def distillation_loss(embeddings: torch.Tensor,
                      teacher: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Cosine distillation loss of eq. 31: mean over items of 1 - cos(e_teacher, e_latent)."""
    if embeddings.shape != teacher.shape:
        raise ValueError(f"speaker embeddings {tuple(embeddings.shape)} and teacher embeddings "
                         f"{tuple(teacher.shape)} differ: set train_sv_critic.model.embedding_dim to "
                         f"{teacher.shape[-1]}, the teacher's size")
    cosine = F.cosine_similarity(embeddings, teacher.to(embeddings.dtype), dim=-1)
    loss = (1.0 - cosine).mean()
    return {"sv/loss": loss}, {"sv/loss": float(loss.detach()), "sv/teacher_cosine": float(cosine.detach().mean())}
