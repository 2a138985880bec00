"""Training task of the latent CTC recogniser (appendix C.3) for the shared loop: CTC (eq. 29) on
SpecAugment-masked normalised latents, plus (tiny CPU profile) two auxiliary losses from Whisper encoder
states (dmospeech.critics.whisper_states): one block's prediction of the states (`distill.weight`) and the
KL of every frame's phone distribution to that of a CTC head fitted on the states
(`distill.posterior_weight`, dmospeech.critics.whisper_phones); validation
by the phone error rate of greedy decoding with the EMA weights on held-out segments, plus
reference/hypothesis examples in the report folder.

Shapes: b batch, n latent frames (40 Hz), c latent channels, nt phonemes.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import torch

from dmospeech.ops.atomic import write_text_atomic
from dmospeech.config import LatentMaskingConfig, TrainASRCriticConfig
from dmospeech.codec.latent_text import LatentTextDataset, collate_latent_text, pad_stack
from dmospeech.data.whisper_states import channel_stats, distill_loss, states_at_latent_rate
from dmospeech.critics.asr import (TASK, LatentASR, ctc_loss, ctc_min_frames, greedy_decode, phone_error_rate,
                                  posterior_distill_loss)
from dmospeech.critics.whisper_phones import fit_phone_head, phone_log_posteriors
from dmospeech.ops.training import Part

VALID_BATCH = 8
EXAMPLES = 4


def mask_latents(latents: torch.Tensor, cfg: LatentMaskingConfig) -> torch.Tensor:
    """SpecAugment (Park et al., 2019) on (n, c) normalised latents: spans of frames and bands of
    channels set to 0, the channel mean. A time mask covers at most a tenth of the item. Uses torch's
    RNG, which the loop seeds per batch."""
    z = latents.clone()
    n, c = z.shape
    longest = min(cfg.time_mask_frames, n // 10)
    for _ in range(cfg.time_masks if longest > 0 else 0):
        width = int(torch.randint(0, longest + 1, ()))
        start = int(torch.randint(0, n - width + 1, ()))
        z[start: start + width] = 0.0
    for _ in range(cfg.channel_masks):
        width = int(torch.randint(0, min(cfg.channel_mask_width, c) + 1, ()))
        start = int(torch.randint(0, c - width + 1, ()))
        z[:, start: start + width] = 0.0
    return z


def impossible_items(dataset: LatentTextDataset) -> list[str]:
    """Segment ids whose phonemes need more CTC frames than the segment has latent frames."""
    out = []
    for item in dataset.items:
        ids = torch.tensor([item.phoneme_ids])
        if int(ctc_min_frames(ids, torch.ones_like(ids, dtype=torch.bool))[0]) > item.num_frames:
            out.append(item.segment_id)
    return out


class ASRCriticTask:
    """Task protocol of dmospeech.ops.training for `LatentASR`."""

    def __init__(self, cfg: TrainASRCriticConfig, train: LatentTextDataset, valid: LatentTextDataset,
                 symbols: Sequence[str], report_dir: str | Path,
                 encoder_states: Mapping[str, torch.Tensor] | None = None):
        """`encoder_states`: segment_id -> (m, d) Whisper states of every training segment
        (`whisper_encoder_states`), required when cfg.distill.weight or posterior_weight > 0."""
        if len(symbols) != cfg.model.vocab_size:
            raise ValueError(f"train_asr_critic.model.vocab_size is {cfg.model.vocab_size} but the IPA vocabulary "
                             f"has {len(symbols)} symbols: set it to {len(symbols)}")
        for name, data in (("training", train), ("validation", valid)):
            too_big = [it.segment_id for it in data.items if max(it.phoneme_ids) >= cfg.model.vocab_size]
            if too_big:
                raise ValueError(f"{name} segments {too_big[:5]} hold phoneme ids >= vocab_size "
                                 f"{cfg.model.vocab_size}: rerun phonemize_text with this vocabulary")
            impossible = impossible_items(data)
            if impossible:
                print(f"train_asr_critic: {len(impossible)} {name} segment(s) have more phonemes than CTC can align "
                      f"to their frames; they count in ctc/impossible and add no loss: {impossible[:5]}")
        if cfg.distill.weight > 0 and not cfg.model.distill_dim:
            raise ValueError("train_asr_critic.distill.weight > 0 needs model.distill_dim (the Whisper width) and "
                             "model.distill_block")
        if cfg.distill.uses_whisper:
            if encoder_states is None:
                raise ValueError("ASRCriticTask: distill.weight or distill.posterior_weight > 0 but no Whisper "
                                 "encoder states were given")
            missing = [it.segment_id for it in train.items if it.segment_id not in encoder_states]
            if missing:
                raise ValueError(f"ASRCriticTask: no Whisper encoder states for {len(missing)} training segments "
                                 f"(e.g. {missing[:3]})")
            width = int(next(iter(encoder_states.values())).shape[-1])
            if cfg.distill.weight > 0 and width != cfg.model.distill_dim:
                raise ValueError(f"train_asr_critic.model.distill_dim is {cfg.model.distill_dim} but Whisper "
                                 f"{cfg.distill.whisper_model!r} states are {width} wide: set it to {width}")
        self.encoder_states = encoder_states if cfg.distill.uses_whisper else None
        if self.encoder_states is not None:
            self.state_mean, self.state_std = channel_stats([encoder_states[it.segment_id] for it in train.items])
        self.cfg, self.dataset = cfg, train
        self.phone_head, self.phone_posteriors = None, None
        if cfg.distill.posterior_weight > 0:  # the head's posteriors on the frames the recogniser reads
            states = [self.standardised_states(it.segment_id, it.num_frames) for it in train.items]
            self.phone_head = fit_phone_head(states, [it.phoneme_ids for it in train.items], cfg.model.vocab_size,
                                             cfg.distill.phone_head, seed=cfg.loop.seed)
            self.phone_posteriors = dict(zip((it.segment_id for it in train.items),
                                             phone_log_posteriors(self.phone_head, states)))
        self.valid, self.symbols = valid, list(symbols)
        self.durations = train.durations
        self.report_dir = Path(report_dir)
        self._part: Part | None = None

    def standardised_states(self, segment_id: str, num_frames: int,
                            encoder_states: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(num_frames, d) Whisper states of a segment at the latents' 40 Hz, standardised per channel
        with the training segments' statistics; from `encoder_states` when given (held-out segments)."""
        table = self.encoder_states if encoder_states is None else encoder_states
        return (states_at_latent_rate(table[segment_id], num_frames) - self.state_mean) / self.state_std

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = collate_latent_text([{**it, "latents": mask_latents(it["latents"], self.cfg.masking)} for it in items])
        segments = [(self.dataset.items[int(it["index"])].segment_id, len(it["latents"])) for it in items]
        if self.cfg.distill.weight > 0:  # targets of the unmasked frames too (masked prediction)
            batch["encoder_states"] = pad_stack([self.standardised_states(s, n) for s, n in segments])[0]
        if self.phone_posteriors is not None:
            batch["phone_log_posteriors"] = pad_stack([self.phone_posteriors[s].float() for s, _ in segments])[0]
        return batch

    def run_config(self) -> dict:
        """Saved with every checkpoint: `model` rebuilds the recogniser (`LatentASR.from_checkpoint`);
        the rest is what changes the training maths, so a resume with other values is refused."""
        loop = asdict(self.cfg.loop)
        return {"task": TASK, "model": asdict(self.cfg.model), "masking": asdict(self.cfg.masking),
                "distill": {"weight": self.cfg.distill.weight, "posterior_weight": self.cfg.distill.posterior_weight,
                            "phone_head": asdict(self.cfg.distill.phone_head),
                            "whisper_model": self.cfg.distill.whisper_model},
                "speed_perturb": list(self.cfg.speed_perturb.factors),
                "max_seconds": self.cfg.max_seconds, "optimizer": asdict(self.cfg.optimizer),
                "loop": {k: loop[k] for k in ("seed", "batch_seconds", "max_batch_items", "ema_decay", "ema_every")}}

    def parts(self) -> list[Part]:
        if self._part is None:
            self._part = Part("asr", LatentASR(self.cfg.model), self.cfg.optimizer, ema=True)
        return [self._part]

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update) -> dict[str, float]:
        """CTC loss of eq. 29 on one batch, plus distill.weight x the Whisper-state loss and
        distill.posterior_weight x the KL to the Whisper phone head's posteriors."""
        out = self._part.model(batch["latents"], batch["latent_mask"])
        losses, logs = ctc_loss(out["logits"], batch["latent_mask"], batch["phonemes"], batch["phoneme_mask"])
        total = losses["ctc/loss"]
        if "encoder_states" in batch:
            distill, distill_logs = distill_loss(out["distill"], batch["encoder_states"], batch["latent_mask"])
            total = total + self.cfg.distill.weight * distill["distill/loss"]
            logs |= distill_logs
        if "phone_log_posteriors" in batch:
            posterior, posterior_logs = posterior_distill_loss(out["logits"], batch["phone_log_posteriors"],
                                                               batch["latent_mask"])
            total = total + self.cfg.distill.posterior_weight * posterior["posterior/loss"]
            logs |= posterior_logs
        return logs | {"loss/total": float(total.detach())} | update("asr", total)

    def validate(self, step: int) -> dict[str, float]:
        """Phone error rate and CTC loss of the EMA weights on the held-out segments."""
        with self._part.ema_weights() as asr:
            return self.evaluate(asr, write_examples=True)

    @torch.no_grad()
    def evaluate(self, asr: LatentASR, write_examples: bool = False,
                 valid: LatentTextDataset | None = None) -> dict[str, float]:
        """{"valid/per", "valid/ctc_loss", "valid/impossible"} of `asr` (put in eval mode meanwhile) on
        `valid`, by default the task's validation segments."""
        valid = self.valid if valid is None else valid
        training = asr.training
        asr.eval()
        hyps, refs, losses, impossible = [], [], [], 0.0
        device = next(asr.parameters()).device
        try:
            for start in range(0, len(valid), VALID_BATCH):
                batch = collate_latent_text([valid[i] for i in range(start, min(start + VALID_BATCH, len(valid)))])
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = asr(batch["latents"], batch["latent_mask"])["logits"]
                _, logs = ctc_loss(logits, batch["latent_mask"], batch["phonemes"], batch["phoneme_mask"])
                losses.append(logs["ctc/loss"] * (len(batch["index"]) - logs["ctc/impossible"]))
                impossible += logs["ctc/impossible"]
                hyps += greedy_decode(logits, batch["latent_mask"])
                refs += [p[m].tolist() for p, m in zip(batch["phonemes"].cpu(), batch["phoneme_mask"].cpu())]
        finally:
            asr.train(training)
        if write_examples:
            self.write_examples(valid, hyps, refs)
        return {"valid/per": phone_error_rate(hyps, refs), "valid/impossible": impossible,
                "valid/ctc_loss": sum(losses) / max(len(valid) - impossible, 1)}

    def write_examples(self, valid: LatentTextDataset, hyps: list[list[int]], refs: list[list[int]]) -> None:
        """The first validation items' reference and greedy hypothesis in IPA (report_dir/examples.txt)."""
        lines = []
        for i, (hyp, ref) in enumerate(zip(hyps[:EXAMPLES], refs[:EXAMPLES])):
            lines += [f"{valid.items[i].segment_id}", f"  REF {''.join(self.symbols[t] for t in ref)}",
                      f"  HYP {''.join(self.symbols[t] for t in hyp)}"]
        write_text_atomic(self.report_dir / "examples.txt", "\n".join(lines) + "\n")
