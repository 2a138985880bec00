"""Teacher training task (section 3.1, eq. 1) for the shared loop: v-prediction on normalised
latents with a random prompt span kept clean, text dropped for classifier-free guidance; validation
by the held-out diffusion loss at fixed noise and by samples of held-out sentences (valid_sampler).

Shapes: b batch, n latent frames, c latent channels, nt phonemes.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dmospeech.ops.atomic import write_text_atomic
from dmospeech.ops.audio import write_audio_atomic
from dmospeech.config import DiffusionConfig, TrainTeacherConfig
from dmospeech.codec.latent_text import LatentTextDataset, collate_latent_text
from dmospeech.teacher.diffusion import diffusion_loss
from dmospeech.codec.model import Codec
from dmospeech.teacher.dit import DiT
from dmospeech.teacher.sampling import teacher_latents
from dmospeech.ops.training import Part
from dmospeech.codec.trainer import spectrogram_png

VALID_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)  # t of the validation loss, each item at each


class TeacherTask:
    """Task protocol of dmospeech.ops.training for the DiT teacher."""

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
        for key in ("valid_items", "valid_samples", "valid_sampler"):   # reports, not the teacher's identity
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
        from dmospeech.codec.latents import denormalize

        out, pairs = self.report_dir / "samples", []
        rate = self.codec.cfg.sample_rate
        for i in range(min(self.cfg.valid_samples, len(self.valid))):
            item = self.valid.items[i]
            truth = self.valid.latents(i)
            prompt_frames = max(1, int(prompt_fraction * len(truth)))
            generated = teacher_latents(net, torch.tensor(item.phoneme_ids), truth[:prompt_frames], len(truth),
                                        self.cfg.diffusion.shift, self.cfg.valid_sampler,
                                        generator=torch.Generator().manual_seed(i))
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
