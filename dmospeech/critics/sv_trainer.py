"""Training task of the latent speaker verifier (appendix C.4) for the shared loop: random latent crops
of the training copies (originals and pitch-shifted identities) distilled toward the teacher's
embedding of the copy's audio with the cosine loss of eq. 31; the recogniser inside is fine-tuned.

The targets are the teacher's embeddings centred on their mean over the training copies (then
unit length). Resemblyzer's embeddings are non-negative and share one direction (the mean has
norm ~0.78 on LibriSpeech), so raw cosines reward predicting that direction more than telling
speakers apart; centring keeps only what differs between speakers, and the verifier's cosine
scores (eq. 10) live in that centred space.
Validation on held-out windows: the loss, the equal error rate of same/different-speaker window
pairs, the teacher's own EER on the same pairs, and how the two models' pair scores correlate.

Shapes: b batch, n latent frames (40 Hz), c latent channels, e embedding size.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils.data import Dataset

from dmospeech.config import LatentASRConfig, TrainSVCriticConfig
from dmospeech.codec.latent_text import pad_stack
from dmospeech.codec.latents import LatentStats, LatentStore, normalize
from dmospeech.critics.speaker_copies import SpeakerCopy, TrialSet
from dmospeech.critics.asr import LatentASR
from dmospeech.critics.speaker import TASK, LatentSpeakerVerifier, distillation_loss
from dmospeech.ops.training import Part

VALID_BATCH = 16


def centred(teacher: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Teacher embeddings (..., e) minus the training mean (e,), at unit length: the targets of eq. 31."""
    return torch.nn.functional.normalize(teacher.float() - mean, dim=-1)


class SpeakerCopyDataset(Dataset):
    """dataset[i] -> {"latents" (n, c) normalised, a random crop of at most `crop_frames`, "teacher" (e,)
    the copy's centred teacher embedding}."""

    def __init__(self, copies: Sequence[SpeakerCopy], teacher: torch.Tensor, store: LatentStore, stats: LatentStats,
                 crop_frames: int, frame_rate: float):
        if not copies or len(copies) != len(teacher):
            raise ValueError(f"SpeakerCopyDataset: {len(copies)} copies but {len(teacher)} teacher embeddings")
        self.copies, self.teacher, self.store, self.stats = list(copies), teacher.float(), store, stats
        self.teacher_mean = self.teacher.mean(0)
        self.targets = centred(self.teacher, self.teacher_mean)
        self.crop_frames, self.frame_rate = crop_frames, frame_rate

    def __len__(self) -> int:
        return len(self.copies)

    @property
    def durations(self) -> list[float]:
        return [min(c.num_frames, self.crop_frames) / self.frame_rate for c in self.copies]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        copy = self.copies[i]
        length = min(copy.num_frames, self.crop_frames)
        start = int(torch.randint(0, copy.num_frames - length + 1, ()))
        z = self.store.read(copy.shard, copy.frame_offset + start, length).float()
        return {"latents": normalize(z, self.stats), "teacher": self.targets[i]}


def collate_copies(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    latents, latent_mask = pad_stack([it["latents"] for it in items])
    return {"latents": latents, "latent_mask": latent_mask, "teacher": torch.stack([it["teacher"] for it in items])}


# ----------------------------------------------------------------------------- verification metrics
def pair_scores(embeddings: torch.Tensor, speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every pair i < j of unit (k, e) embeddings and whether the pair shares a speaker."""
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    i, j = torch.triu_indices(len(e), len(e), offset=1)
    same = np.array([speakers[a] == speakers[b] for a, b in zip(i.tolist(), j.tolist())])
    return (e[i] * e[j]).sum(-1).numpy(), same


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """The error rate at the threshold where false acceptances (different-speaker pairs scored at or
    above it) and false rejections (same-speaker pairs below it) are closest: their mean there."""
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError(f"equal_error_rate needs same- and different-speaker pairs, got {int(same.sum())} and "
                         f"{int((~same).sum())}")
    order = np.argsort(-np.asarray(scores), kind="stable")
    accepted_same = np.concatenate([[0], np.cumsum(same[order])])
    accepted_other = np.concatenate([[0], np.cumsum(~same[order])])
    false_accept = accepted_other / (~same).sum()
    false_reject = 1.0 - accepted_same / same.sum()
    k = int(np.argmin(np.abs(false_accept - false_reject)))
    return float((false_accept[k] + false_reject[k]) / 2)


def verification_metrics(embeddings: torch.Tensor, trials: TrialSet, teacher_mean: torch.Tensor) -> dict[str, float]:
    """Loss of eq. 31 toward the centred teacher embeddings, EERs of both models on all window pairs, and
    the Pearson and Spearman correlations of the verifier's pair scores with the teacher's own (raw) ones."""
    _, logs = distillation_loss(embeddings, centred(trials.teacher, teacher_mean))
    ours, same = pair_scores(embeddings, trials.speakers)
    theirs, _ = pair_scores(trials.teacher, trials.speakers)
    metrics = {"valid/sv_loss": logs["sv/loss"], "valid/teacher_cosine": logs["sv/teacher_cosine"]}
    if len(ours) >= 2:
        metrics |= {"valid/pearson": float(np.corrcoef(ours, theirs)[0, 1]),
                    "valid/spearman": float(spearmanr(ours, theirs).statistic)}
    if same.any() and not same.all():
        metrics |= {"valid/eer": equal_error_rate(ours, same), "valid/teacher_eer": equal_error_rate(theirs, same)}
    return metrics


# ----------------------------------------------------------------------------- the task
class SVCriticTask:
    """Task protocol of dmospeech.ops.training for `LatentSpeakerVerifier`. The recogniser inside starts from
    `asr_checkpoint` (appendix C.4: the CTC model fine-tuned as feature extractor; with
    `fine_tune_recogniser` False its weights stay as trained and only the ECAPA learns) or, without
    one, from scratch with `asr_model` (always trained)."""

    def __init__(self, cfg: TrainSVCriticConfig, train: SpeakerCopyDataset, trials: TrialSet,
                 asr_model: LatentASRConfig, asr_checkpoint: Optional[str], teacher_identity: str):
        if train.teacher.shape[-1] != cfg.model.embedding_dim:
            raise ValueError(f"train_sv_critic.model.embedding_dim is {cfg.model.embedding_dim} but the teacher "
                             f"({teacher_identity}) gives {train.teacher.shape[-1]}-d embeddings: set it to "
                             f"{train.teacher.shape[-1]}")
        asr_model = replace(asr_model, distill_dim=0, distill_block=0)   # the feature extractor drops that head
        self.cfg, self.trials, self.asr_model, self.asr_checkpoint = cfg, trials, asr_model, asr_checkpoint
        self.teacher_identity = teacher_identity
        self.dataset, self.durations = train, train.durations
        self._part: Part | None = None

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return collate_copies(items)

    def run_config(self) -> dict:
        """Saved with every checkpoint: `model` and `asr_model` rebuild the verifier
        (`LatentSpeakerVerifier.from_checkpoint`); the rest changes the training maths."""
        loop = asdict(self.cfg.loop)
        return {"task": TASK, "model": asdict(self.cfg.model), "asr_model": asdict(self.asr_model),
                "asr_checkpoint": self.asr_checkpoint, "teacher": self.teacher_identity,
                "pitch_shifts": list(self.cfg.pitch_shifts), "crop_seconds": self.cfg.crop_seconds,
                "fine_tune_recogniser": self.cfg.fine_tune_recogniser,
                "max_seconds": self.cfg.max_seconds, "optimizer": asdict(self.cfg.optimizer),
                "loop": {k: loop[k] for k in ("seed", "batch_seconds", "max_batch_items", "ema_decay", "ema_every")}}

    def parts(self) -> list[Part]:
        if self._part is None:
            if self.asr_checkpoint is not None:
                features = LatentASR.from_checkpoint(self.asr_checkpoint).without_distill_head().requires_grad_(
                    self.cfg.fine_tune_recogniser)
            else:
                features = LatentASR(self.asr_model)
            self._part = Part("sv", LatentSpeakerVerifier(self.cfg.model, features), self.cfg.optimizer, ema=True)
        return [self._part]

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update) -> dict[str, float]:
        """Cosine distillation loss of eq. 31 on one batch of crops."""
        embeddings = self._part.model(batch["latents"], batch["latent_mask"])
        losses, logs = distillation_loss(embeddings, batch["teacher"])
        return logs | {"loss/total": logs["sv/loss"]} | update("sv", losses["sv/loss"])

    def validate(self, step: int) -> dict[str, float]:
        with self._part.ema_weights() as sv:
            return self.evaluate(sv)

    @torch.no_grad()
    def evaluate(self, sv: LatentSpeakerVerifier) -> dict[str, float]:
        """`verification_metrics` of `sv` (put in eval mode meanwhile) on the held-out windows."""
        training = sv.training
        sv.eval()
        device = next(sv.parameters()).device
        try:
            embeddings = []
            for start in range(0, len(self.trials.latents), VALID_BATCH):
                latents, mask = pad_stack(self.trials.latents[start: start + VALID_BATCH])
                embeddings.append(sv(latents.to(device), mask.to(device)).cpu())
        finally:
            sv.train(training)
        return verification_metrics(torch.cat(embeddings), self.trials, self.dataset.teacher_mean)
