"""DMD2 student task (sections 3.2-3.4, eq. 10) for the shared loop.

Parts: the generator G_theta and the student score g_psi (both start from the teacher's EMA
weights) and the discriminator D. Frozen: the teacher f_phi (real score, with CFG), the latent
recogniser (CTC loss, eq. 9) and the latent speaker verifier (SV loss, eq. 10).
Every loop step updates g_psi with the diffusion loss on G's outputs; every
`score_updates_per_generator`-th step also updates D (LSGAN, eq. 8) and G with
  lambda_dmd DMD (eq. 26) + lambda_adv adversarial (eq. 7) + lambda_ctc CTC + lambda_sv SV,
each lambda zero before its start step (counted in generator steps).

Shapes: b batch, n latent frames, c latent channels, nt phonemes.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dmospeech.codec.latent_text import LatentTextDataset, collate_latent_text
from dmospeech.config import DiffusionConfig, DistillStudentConfig
from dmospeech.critics.asr import LatentASR
from dmospeech.critics.speaker import LatentSpeakerVerifier
from dmospeech.ops.memory import PartMemory, module_memory, on_meta
from dmospeech.ops.runtime import device
from dmospeech.ops.training import Part
from dmospeech.student.discriminator import LatentDiscriminator
from dmospeech.student.dmd import (dmd_loss, is_generator_step, loss_weight, lsgan_discriminator_loss,
                                   lsgan_generator_loss, simulate_student_input)
from dmospeech.student.metric_losses import ctc_term, speaker_cosine, sv_loss
from dmospeech.teacher.diffusion import (diffuse, diffusion_loss, impose_prompt, random_prompt_mask, shifted_cosine,
                                         x0_from_v)
from dmospeech.teacher.dit import DiT
from dmospeech.teacher.sampling import guided_v_function, student_latents, x0_function

PROMPT_FRACTION = 0.3  # validation: each held-out sentence continues its own first 30 %
TERMS = ("dmd", "adv", "ctc", "sv")


class StudentTask:
    """Task protocol of dmospeech.ops.training for DMD2 distillation."""

    def __init__(self, cfg: DistillStudentConfig, train: LatentTextDataset, valid: LatentTextDataset,
                 teacher: DiT, diffusion: DiffusionConfig, asr: LatentASR, sv: LatentSpeakerVerifier,
                 extra_run_config: Optional[dict] = None, codec=None, report_dir: Optional[str] = None):
        if tuple(cfg.student_times)[0] != 1.0 or list(cfg.student_times) != sorted(cfg.student_times, reverse=True):
            raise ValueError(f"distill_student.student_times must start at 1.0 and decrease, got {cfg.student_times}")
        unknown = set(cfg.loss_weights) - set(TERMS)
        if unknown:
            raise ValueError(f"distill_student.loss_weights: unknown term(s) {sorted(unknown)}; known: {TERMS}")
        self.cfg, self.dataset, self.valid, self.diffusion = cfg, train, valid, diffusion
        self.durations = train.durations
        dev = device()
        self.teacher, self.asr, self.sv = (m.to(dev).eval().requires_grad_(False) for m in (teacher, asr, sv))
        self.extra_run_config = extra_run_config or {}
        self.codec, self.report_dir = codec, Path(report_dir) if report_dir else None
        self._parts: dict[str, Part] = {}

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        return collate_latent_text(items)

    def run_config(self) -> dict:
        cfg = asdict(self.cfg)
        cfg["loop"] = {k: cfg["loop"][k] for k in ("seed", "batch_seconds", "max_batch_items", "ema_decay", "ema_every")}
        for key in ("valid_items", "valid_samples"):
            cfg.pop(key)
        return {"task": "student", "model": asdict(self.teacher.cfg), "diffusion": asdict(self.diffusion), **cfg,
                **self.extra_run_config}

    def memory_plan(self) -> list[PartMemory]:
        """What the run holds (dmospeech/ops/memory.py), counted on the meta device before `parts` builds G and
        g_psi: the training loop stops the run before allocating them when they cannot fit."""
        dit = on_meta(lambda: DiT(self.teacher.cfg))
        disc = on_meta(lambda: LatentDiscriminator(self.cfg.discriminator, self.teacher.cfg.dim,
                                                   self.teacher.cfg.decoder_layers))
        return [module_memory("generator", dit, ema=True), module_memory("score", dit, ema=False),
                module_memory("discriminator", disc, ema=False),
                *(module_memory(name, net, ema=False, optimised=False)
                  for name, net in (("teacher", self.teacher), ("asr_critic", self.asr), ("sv_critic", self.sv)))]

    def parts(self) -> list[Part]:
        if not self._parts:
            start = self.teacher.state_dict()
            generator, score = DiT(self.teacher.cfg), DiT(self.teacher.cfg)
            generator.load_state_dict(start)
            score.load_state_dict(start)
            disc = LatentDiscriminator(self.cfg.discriminator, self.teacher.cfg.dim, self.teacher.cfg.decoder_layers)
            self._parts = {"generator": Part("generator", generator, self.cfg.optimizer, ema=True),
                           "score": Part("score", score, self.cfg.score_optimizer, ema=False),
                           "discriminator": Part("discriminator", disc, self.cfg.disc_optimizer, ema=False)}
        return list(self._parts.values())

    def weight(self, name: str, step: int) -> float:
        return loss_weight(name, step // self.cfg.score_updates_per_generator, self.cfg.loss_weights,
                           self.cfg.loss_start_steps)

    def train_step(self, batch: dict[str, torch.Tensor], step: int, update) -> dict[str, float]:
        latents, latent_mask = batch["latents"], batch["latent_mask"]
        phonemes, phoneme_mask = batch["phonemes"], batch["phoneme_mask"]
        prompt_mask = (random_prompt_mask(latent_mask.sum(1), self.diffusion.prompt_max_fraction)
                       .to(latents.device) & latent_mask)
        generated = latent_mask & ~prompt_mask
        gen_net = self._parts["generator"].model
        g_fn = x0_function(lambda x, t: gen_net(x, t, phonemes, phoneme_mask, prompt_mask, latent_mask),
                           self.diffusion.shift)
        x_t, t = simulate_student_input(g_fn, latents, prompt_mask, self.cfg.student_times, self.diffusion.shift)
        generator_turn = is_generator_step(step, self.cfg.score_updates_per_generator)
        with torch.set_grad_enabled(generator_turn):
            x0 = impose_prompt(g_fn(x_t, t), latents, prompt_mask)
        fake_batch = dict(batch, latents=x0.detach())
        s_losses, logs = diffusion_loss(self._parts["score"].model, fake_batch, self.diffusion,
                                        self.teacher.cfg.text_dropout, prompt_mask=prompt_mask)
        logs = {f"score/{k}": v for k, v in logs.items()} | update("score", s_losses["diffusion/loss"])
        if generator_turn:
            logs |= self.generator_and_discriminator(batch, x0, prompt_mask, generated, step, update)
        return logs

    def critic_inputs(self, latents: torch.Tensor, x0: torch.Tensor, prompt_mask: torch.Tensor):
        """A common noise level for the DMD and adversarial terms: t ~ U(0.02, 0.98), fresh noise."""
        t = 0.02 + 0.96 * torch.rand(len(x0), device=x0.device)
        alpha, sigma = shifted_cosine(t, self.diffusion.shift)
        noise = torch.randn_like(x0)
        noisy_fake = impose_prompt(diffuse(x0, noise, alpha, sigma), latents, prompt_mask)
        noisy_real = impose_prompt(diffuse(latents, torch.randn_like(x0), alpha, sigma), latents, prompt_mask)
        return t, alpha, sigma, noisy_fake, noisy_real

    def generator_and_discriminator(self, batch, x0, prompt_mask, generated, step, update) -> dict[str, float]:
        latents, latent_mask = batch["latents"], batch["latent_mask"]
        phonemes, phoneme_mask = batch["phonemes"], batch["phoneme_mask"]
        score, disc = self._parts["score"].module, self._parts["discriminator"]
        t, alpha, sigma, noisy_fake, noisy_real = self.critic_inputs(latents, x0, prompt_mask)
        with torch.no_grad():
            text, text_mask = score.encode_text(phonemes, phoneme_mask)

        def d_logits(noisy: torch.Tensor, model, features_grad: bool) -> torch.Tensor:
            """D's logits on the generated frames of `noisy`, from g_psi's hidden states (section 3.2)."""
            with torch.set_grad_enabled(features_grad):
                _, hidden = score.decode(noisy, t, text, text_mask, prompt_mask, latent_mask, return_hidden=True)
            return model(hidden, text, text_mask, prompt_mask, latent_mask, t)[generated]

        d_losses, logs = lsgan_discriminator_loss(d_logits(noisy_real, disc.model, False),    # eq. 8
                                                  d_logits(noisy_fake.detach(), disc.model, False))
        logs |= update("discriminator", d_losses["adv/disc_loss"])
        x0_real, x0_fake = self.real_and_fake_x0(noisy_fake.detach(), t, alpha, sigma, batch, text, text_mask,
                                                 prompt_mask)
        terms, term_logs = self.generator_terms(batch, x0, x0_real, x0_fake, noisy_fake, d_logits, prompt_mask,
                                                generated)  # noisy_fake carries the gradient to x0 (eq. 7)
        logs |= term_logs
        weights = {name: self.weight(name, step) for name in terms}
        total = sum(weights[name] * loss for name, loss in terms.items())
        for name, loss in terms.items():   # how hard each weighted term pushes G's output (section 3.4)
            if weights[name] > 0:
                grad, = torch.autograd.grad(weights[name] * loss, x0, retain_graph=True)
                logs[f"grad_norm_x0/{name}"] = float(grad.norm())
            logs[f"weight/{name}"] = weights[name]
        return logs | {"loss/total": float(total.detach())} | update("generator", total)

    @torch.no_grad()
    def real_and_fake_x0(self, x_t, t, alpha, sigma, batch, text, text_mask, prompt_mask):
        """x0_real of the teacher f_phi with guidance (eq. 27) and x0_fake of the student score g_psi, both
        at the same x_t, by eq. 5 in its v form (docs/equations.md C2, C4, C5); `text`, `text_mask` are
        g_psi's encoding of the phonemes. No gradient."""
        latent_mask = batch["latent_mask"]
        t_text, t_mask = self.teacher.encode_text(batch["phonemes"], batch["phoneme_mask"])
        v_real = guided_v_function(self.teacher, t_text, t_mask, prompt_mask, latent_mask, self.cfg.cfg_scale)(x_t, t)
        x0_real = x0_from_v(x_t, v_real, alpha, sigma)
        v_fake = self._parts["score"].module.decode(x_t, t, text, text_mask, prompt_mask, latent_mask)
        return x0_real, x0_from_v(x_t, v_fake, alpha, sigma)

    def generator_terms(self, batch, x0, x0_real, x0_fake, noisy_fake, d_logits, prompt_mask, generated):
        """The unweighted generator losses (weights of zero still log their value)."""
        latent_mask = batch["latent_mask"]
        losses, logs = dmd_loss(x0, x0_real, x0_fake, generated)
        terms = {"dmd": losses["dmd/loss"]}
        adv, adv_logs = lsgan_generator_loss(d_logits(noisy_fake, self._parts["discriminator"].module, True))
        terms["adv"], logs = adv["adv/gen_loss"], logs | adv_logs
        ctc, ctc_logs = ctc_term(self.asr, x0, latent_mask, batch["phonemes"], batch["phoneme_mask"])   # eq. 9
        sv, sv_logs = sv_loss(self.sv, x0, generated, prompt_mask)                                   # eq. 10
        terms["ctc"], terms["sv"] = ctc["ctc/loss"], sv["sv/loss"]
        return terms, logs | ctc_logs | sv_logs

    def validate(self, step: int) -> dict[str, float]:
        """Held-out sentences regenerated by the student (EMA, its 4-step schedule) from their own first
        30 %: the recogniser's CTC loss on them and the verifier's cosine to their prompt."""
        with self._parts["generator"].ema_weights() as net:
            ctc, cosines = [], []
            for i in range(len(self.valid)):
                item, truth = self.valid.items[i], self.valid.latents(i)
                generated = self.sample(net, i)
                n_prompt = max(1, int(PROMPT_FRACTION * len(truth)))
                mask = torch.ones(1, len(truth), dtype=torch.bool)
                phonemes = torch.tensor(item.phoneme_ids)[None]
                ctc.append(float(ctc_term(self.asr, generated[None], mask, phonemes,
                                          torch.ones_like(phonemes, dtype=torch.bool))[0]["ctc/loss"]))
                prompt_mask = torch.arange(len(truth))[None] < n_prompt
                cos, _ = speaker_cosine(self.sv, generated[None], ~prompt_mask, prompt_mask)
                cosines += cos.tolist()
                if self.codec is not None and self.report_dir is not None and i < self.cfg.valid_samples:
                    self.write_sample(item.segment_id, generated, truth)
        return {"valid/ctc_loss": float(np.mean(ctc)), "valid/sv_cosine": float(np.mean(cosines)) if cosines else 0.0}

    def sample(self, net: DiT, i: int) -> torch.Tensor:
        item, truth = self.valid.items[i], self.valid.latents(i)
        n_prompt = max(1, int(PROMPT_FRACTION * len(truth)))
        return student_latents(net, torch.tensor(item.phoneme_ids), truth[:n_prompt], len(truth),
                               self.cfg.student_times, self.diffusion.shift, torch.Generator().manual_seed(i))

    @torch.no_grad()
    def write_sample(self, segment_id: str, generated: torch.Tensor, truth: torch.Tensor) -> None:
        from dmospeech.codec.latents import denormalize
        from dmospeech.ops.audio import write_audio_atomic

        out = self.report_dir / "samples"
        for name, z in (("student", generated), ("codec", truth)):
            audio = self.codec.decode(denormalize(z, self.valid.stats).T[None])[0, 0].numpy()
            write_audio_atomic(out / f"{segment_id}_{name}.wav", audio, self.codec.cfg.sample_rate, subtype="PCM_16")
