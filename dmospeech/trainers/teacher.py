"""Teacher training task (section 3.1, eq. 1) for the shared loop: v-prediction on normalised
latents with a random prompt span kept clean, text dropped for classifier-free guidance; validation
by the held-out diffusion loss at fixed noise and by 128-step samples of held-out sentences.

Shapes: b batch, n latent frames, c latent channels, nt phonemes.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dmospeech.atomic import write_text_atomic
from dmospeech.audio import write_audio_atomic
from dmospeech.config import DiffusionConfig, TrainTeacherConfig
from dmospeech.data.latent_text import LatentTextDataset, collate_latent_text
from dmospeech.diffusion import diffuse, impose_prompt, random_prompt_mask, shifted_cosine, v_target
from dmospeech.models.codec import Codec
from dmospeech.models.dit import DiT
from dmospeech.synthesize import teacher_latents
from dmospeech.train import Part
from dmospeech.trainers.codec import spectrogram_png

VALID_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)  # t of the validation loss, each item at each


def diffusion_loss(net: DiT, batch: dict[str, torch.Tensor], cfg: DiffusionConfig, text_dropout: float = 0.0,
                   t: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                   prompt_mask: Optional[torch.Tensor] = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Diffusion loss, eq. 1 (NOTES §2): mean squared error between v = alpha eps - sigma x0 and
    f(x_t; c, m, t) over the generated frames (outside the prompt span, inside each item). x_t keeps
    the clean latents on the prompt span (section 3.1), a random span unless `prompt_mask` (b, n) is
    given. `batch` is a `collate_latent_text` batch."""
    x0, latent_mask = batch["latents"], batch["latent_mask"]
    b, device = len(x0), x0.device
    draw = lambda *shape: torch.rand(*shape, generator=generator).to(device)  # noqa: E731
    if prompt_mask is None:
        prompt_mask = random_prompt_mask(latent_mask.sum(1), cfg.prompt_max_fraction, generator).to(device)
    prompt_mask = prompt_mask & latent_mask
    t = draw(b) if t is None else t
    eps = torch.randn(x0.shape, generator=generator).to(device)
    alpha, sigma = shifted_cosine(t, cfg.shift)
    x_t = impose_prompt(diffuse(x0, eps, alpha, sigma), x0, prompt_mask)
    drop = draw(b) < text_dropout
    v_hat = net(x_t, t, batch["phonemes"], batch["phoneme_mask"], prompt_mask, latent_mask, drop_text=drop)
    generated = (latent_mask & ~prompt_mask).unsqueeze(-1).to(x0.dtype)                     # (b, n, 1)
    error = (v_hat.float() - v_target(x0, eps, alpha, sigma).float()) ** 2 * generated
    loss = error.sum() / (generated.sum() * x0.shape[-1]).clamp_min(1.0)
    return {"diffusion/loss": loss}, {"diffusion/loss": float(loss.detach()), "diffusion/prompt_fraction":
                                      float(prompt_mask.sum() / latent_mask.sum())}


class TeacherTask:
    """Task protocol of dmospeech.train for the DiT teacher."""

    def __init__(self, cfg: TrainTeacherConfig, train: LatentTextDataset, valid: LatentTextDataset,
                 report_dir: str | Path, codec: Optional[Codec] = None, extra_run_config: Optional[dict] = None):
        if cfg.model.vocab_size < max(max(it.phoneme_ids) for it in train.items) + 1:
            raise ValueError(f"train_teacher.model.vocab_size {cfg.model.vocab_size} is smaller than the phoneme "
                             "ids in the data; set it to the vocabulary size")
        self.cfg, self.dataset, self.valid = cfg, train, valid
        self.durations = train.durations
        self.report_dir = Path(report_dir)
        self.codec = codec
        self.extra_run_config = extra_run_config or {}
        self._parts: dict[str, Part] = {}

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        return collate_latent_text(items)

    def run_config(self) -> dict:
        """Saved with every checkpoint: the model (DiT.from_checkpoint rebuilds from it), the maths of
        training, and what synthesis needs (codec checkpoint, latent stats, audio and text settings)."""
        cfg = asdict(self.cfg)
        cfg["loop"] = {k: cfg["loop"][k] for k in ("seed", "batch_seconds", "max_batch_items", "ema_decay", "ema_every")}
        for key in ("valid_items", "valid_samples"):
            cfg.pop(key)
        return {"task": "teacher", **cfg, **self.extra_run_config}

    def parts(self) -> list[Part]:
        if not self._parts:
            self._parts = {"teacher": Part("teacher", DiT(self.cfg.model), self.cfg.optimizer, ema=True)}
        return list(self._parts.values())

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update) -> dict[str, float]:
        losses, logs = diffusion_loss(self._parts["teacher"].model, batch, self.cfg.diffusion, self.cfg.model.text_dropout)
        return logs | {"loss/total": logs["diffusion/loss"]} | update("teacher", losses["diffusion/loss"])

    def validate(self, step: int) -> dict[str, float]:
        with self._parts["teacher"].ema_weights() as net:
            metrics = {"valid/diffusion_loss": validation_loss(net, self.valid, self.cfg.diffusion)}
            if self.codec is not None and self.cfg.valid_samples > 0:
                self.write_samples(net, step)
        return metrics

    @torch.no_grad()
    def write_samples(self, net: DiT, step: int, prompt_fraction: float = 0.3) -> None:
        """Held-out sentences regenerated from their own first 30 % as prompt: wavs and spectrograms."""
        from dmospeech.data.latents import denormalize

        out, pairs = self.report_dir / "samples", []
        rate = self.codec.cfg.sample_rate
        for i in range(min(self.cfg.valid_samples, len(self.valid))):
            item = self.valid.items[i]
            truth = self.valid.latents(i)
            prompt_frames = max(1, int(prompt_fraction * len(truth)))
            generated = teacher_latents(net, torch.tensor(item.phoneme_ids), truth[:prompt_frames], len(truth),
                                        self.cfg.diffusion, generator=torch.Generator().manual_seed(i))
            audio = [self.codec.decode(denormalize(z, self.valid.stats).T[None])[0, 0].numpy()
                     for z in (truth, generated)]
            for name, wav in zip(("codec", "teacher"), audio):
                write_audio_atomic(out / f"{item.segment_id}_{name}.wav", wav, rate, subtype="PCM_16")
            pairs.append((item.segment_id, *audio))
        if pairs:
            spectrogram_png(pairs, rate, out / "spectrograms.png", title=f"step {step}: codec-decoded truth vs teacher",
                            names=("truth", "teacher"))
            write_text_atomic(out / "step.txt", f"{step}\n")


@torch.no_grad()
def validation_loss(net: DiT, valid: LatentTextDataset, cfg: DiffusionConfig, items: Optional[Sequence[int]] = None,
                    seed: int = 1234) -> float:
    """Held-out diffusion loss (eq. 1) at fixed t in VALID_TIMES, fixed noise and prompt spans, no text
    dropout: comparable across steps and runs."""
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    losses = []
    for i in items if items is not None else range(len(valid)):
        batch = {k: v.to(device) for k, v in collate_latent_text([valid[i]] * len(VALID_TIMES)).items()}
        t = torch.tensor(VALID_TIMES, device=device)
        losses.append(float(diffusion_loss(net, batch, cfg, 0.0, t=t, generator=generator)[0]["diffusion/loss"]))
    return float(np.mean(losses))
