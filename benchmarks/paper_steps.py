"""Each training stage's loop step at the widths of a params file, on fabricated inputs: what
benchmarks/paper_plan.py measures (FLOPs, activation memory) and benchmarks/gpu_check.py runs on a GPU.

A `StageStep` holds the stage's own Task (dmospeech's trainers, built with stand-in datasets, since
only `train_step` runs), its trained parts and frozen networks, and makes batches of fabricated audio
or latents and phonemes. `run_step` calls `task.train_step` with an `update` that does what the
loop's does (backward outside autocast, AdamW step), so the measured step is the trained one.
`depth=k` rebuilds the DiT with k encoder and 2k decoder layers (Table 9 has 8 and 16), all widths kept:
the plan measures k = 1 and 2 and extrapolates linearly in k to 8 (its layers are identical).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Callable

import torch
from torch import nn

from dmospeech.codec.trainer import CodecTask
from dmospeech.config import Params
from dmospeech.critics.asr import LatentASR
from dmospeech.critics.asr_trainer import ASRCriticTask
from dmospeech.critics.speaker import LatentSpeakerVerifier
from dmospeech.critics.sv_trainer import SVCriticTask
from dmospeech.ops.training import Part
from dmospeech.student.trainer import StudentTask
from dmospeech.teacher.dit import DiT
from dmospeech.teacher.trainer import TeacherTask

FRAME_RATE = 40.0            # latent frames per second (hop 1200 at 48 kHz)
PHONEMES_PER_SECOND = 14.0   # IPA symbols per second of read English (assumed; validate_manifest allows 2-30)
STAGES = ("train_codec", "train_fast_decoder", "train_teacher", "train_asr_critic", "train_sv_critic",
          "distill_student")


@dataclass
class StageStep:
    stage: str
    task: Any                               # the stage's Task; its train_step is what runs
    parts: list[Part]
    frozen: dict[str, nn.Module]            # networks held without training (student: teacher, critics)
    batch: Callable[[int, float, torch.Generator], Any]   # (items, seconds per item, generator) -> batch
    item_seconds: float                     # the stage's training item: a crop or a whole (max_seconds) segment
    items_per_gpu: int                      # the profile's batch per GPU (loop.max_batch_items)
    max_steps: int                          # the profile's optimiser steps (loop.max_steps)
    steps: tuple[int, ...] = (0,)           # loop steps that differ (student: score-only, generator turn)
    step_weights: tuple[float, ...] = (1.0,)   # how many of each per loop step (student: 4/5 and 1/5)
    notes: list[str] = field(default_factory=list)


def _audio_batch(sample_rate: int) -> Callable:
    def batch(items: int, seconds: float, g: torch.Generator) -> dict[str, torch.Tensor]:
        return {"audio": 0.1 * torch.randn(items, 1, int(round(seconds * sample_rate)), generator=g)}   # (b, 1, t)
    return batch


def _latent_text_batch(vocab: int, latent_dim: int) -> Callable:
    def batch(items: int, seconds: float, g: torch.Generator) -> dict[str, torch.Tensor]:
        n, nt = int(round(seconds * FRAME_RATE)), max(1, int(round(seconds * PHONEMES_PER_SECOND)))
        return {"latents": torch.randn(items, n, latent_dim, generator=g),
                "latent_mask": torch.ones(items, n, dtype=torch.bool),
                "phonemes": torch.randint(1, vocab, (items, nt), generator=g),
                "phoneme_mask": torch.ones(items, nt, dtype=torch.bool),
                "index": torch.arange(items), "speakers": torch.zeros(items, dtype=torch.long)}
    return batch


def _stand_in(vocab: int, seconds: float) -> SimpleNamespace:
    """A dataset stand-in with one item (the tasks' constructors check vocabularies and CTC lengths)."""
    n = int(round(seconds * FRAME_RATE))
    item = SimpleNamespace(segment_id="fabricated", phoneme_ids=list(range(1, min(vocab, 20))), num_frames=n)
    return SimpleNamespace(items=[item], durations=[seconds])


def dit_config(params: Params, depth: int | None):
    model = params.train_teacher.model
    return model if depth is None else replace(model, encoder_layers=depth, decoder_layers=2 * depth)


def codec_step(params: Params, report_dir: str, fast_decoder: bool = False) -> StageStep:
    paper_codec = codec_config(params)
    if fast_decoder:
        cfg = params.train_fast_decoder
        task = CodecTask(cfg.codec_training(paper_codec.model), [], [], report_dir)
        parts = task.parts()
        parts[0].module.encoder.requires_grad_(False)   # as load_frozen_encoder: only the decoder trains
    else:
        cfg = paper_codec
        task = CodecTask(cfg, [], [], report_dir)
        parts = task.parts()
    sample_rate = params.train_codec.model.sample_rate
    notes = [] if paper_codec == params.train_codec else ["semantic term and Whisper input off (the paper's codec)"]
    return StageStep("train_fast_decoder" if fast_decoder else "train_codec", task, parts, {},
                     _audio_batch(sample_rate), cfg.crop_seconds, cfg.loop.max_batch_items, cfg.loop.max_steps,
                     steps=(cfg.adversarial_start_step,), notes=notes)


def codec_config(params: Params):
    """The codec as the paper trains it: without the semantic head and term and without the Whisper input
    (the tiny profile's are Whisper-taught additions; the input's states come from a per-clip cache, which
    a step without clips cannot fill; with the term it cost ~0.2 % of a tiny CPU step: README, issue 22)."""
    cfg = params.train_codec
    return replace(cfg, model=replace(cfg.model, semantic_dim=0, semantic_input="", semantic_input_dim=0),
                   semantic=replace(cfg.semantic, weight=0.0), whisper_input_dropout=0.0)


def teacher_step(params: Params, report_dir: str, depth: int | None = None) -> StageStep:
    cfg = replace(params.train_teacher, model=dit_config(params, depth))
    vocab = cfg.model.vocab_size
    task = TeacherTask(cfg, _stand_in(vocab, cfg.max_seconds), _stand_in(vocab, cfg.max_seconds), report_dir)
    return StageStep("train_teacher", task, task.parts(), {}, _latent_text_batch(vocab, cfg.model.latent_dim),
                     cfg.max_seconds, cfg.loop.max_batch_items, cfg.loop.max_steps)


def asr_config(params: Params):
    """The recogniser as the paper trains it: CTC alone (the Whisper-distillation heads off)."""
    cfg = params.train_asr_critic
    return replace(cfg, model=replace(cfg.model, distill_dim=0, distill_block=0),
                   distill=replace(cfg.distill, weight=0.0, posterior_weight=0.0))


def asr_step(params: Params, report_dir: str) -> StageStep:
    cfg = asr_config(params)
    vocab = cfg.model.vocab_size
    task = ASRCriticTask(cfg, _stand_in(vocab, cfg.max_seconds), _stand_in(vocab, cfg.max_seconds), ["x"] * vocab,
                         report_dir)
    notes = [] if cfg == params.train_asr_critic else ["Whisper distillation heads off (the paper's recogniser)"]
    return StageStep("train_asr_critic", task, task.parts(), {}, _latent_text_batch(vocab, cfg.model.latent_dim),
                     cfg.max_seconds, cfg.loop.max_batch_items, cfg.loop.max_steps, notes=notes)


def sv_step(params: Params) -> StageStep:
    cfg = params.train_sv_critic
    embedding = cfg.model.embedding_dim
    train = SimpleNamespace(teacher=torch.zeros(1, embedding), durations=[cfg.crop_seconds])
    task = SVCriticTask(cfg, train, None, asr_config(params).model, None, "fabricated")
    parts = task.parts()
    parts[0].module.features.requires_grad_(cfg.fine_tune_recogniser)
    latent_text = _latent_text_batch(2, asr_config(params).model.latent_dim)

    def batch(items: int, seconds: float, g: torch.Generator) -> dict[str, torch.Tensor]:
        b = latent_text(items, seconds, g)
        return {"latents": b["latents"], "latent_mask": b["latent_mask"],
                "teacher": torch.randn(items, embedding, generator=g)}
    return StageStep("train_sv_critic", task, parts, {}, batch, cfg.crop_seconds, cfg.loop.max_batch_items,
                     cfg.loop.max_steps)


def student_step(params: Params, depth: int | None = None) -> StageStep:
    cfg = params.distill_student
    model = dit_config(params, depth)
    teacher = DiT(model)
    asr = LatentASR(asr_config(params).model)
    sv = LatentSpeakerVerifier(params.train_sv_critic.model, LatentASR(asr_config(params).model))
    stand_in = _stand_in(model.vocab_size, cfg.max_seconds)
    task = StudentTask(cfg, stand_in, stand_in, teacher, params.train_teacher.diffusion, asr.eval(), sv.eval())
    ratio = cfg.score_updates_per_generator
    return StageStep("distill_student", task, task.parts(), {"teacher": task.teacher, "asr_critic": task.asr,
                                                              "sv_critic": task.sv},
                     _latent_text_batch(model.vocab_size, model.latent_dim), cfg.max_seconds,
                     cfg.loop.max_batch_items, cfg.loop.max_steps, steps=(0, ratio - 1),
                     step_weights=((ratio - 1) / ratio, 1 / ratio),
                     notes=[f"a loop step updates g_psi; every {ratio}th also D and G (costs weighted 4:1)"])


def build(stage: str, params: Params, depth: int | None = None) -> StageStep:
    report_dir = tempfile.mkdtemp(prefix=f"{stage}_")
    return {"train_codec": lambda: codec_step(params, report_dir),
            "train_fast_decoder": lambda: codec_step(params, report_dir, fast_decoder=True),
            "train_teacher": lambda: teacher_step(params, report_dir, depth),
            "train_asr_critic": lambda: asr_step(params, report_dir),
            "train_sv_critic": lambda: sv_step(params),
            "distill_student": lambda: student_step(params, depth)}[stage]()


def to_device(x: Any, dev: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(dev)
    if isinstance(x, dict):
        return {k: to_device(v, dev) for k, v in x.items()}
    return x


def optimizers(stage: StageStep) -> dict[str, torch.optim.AdamW]:
    return {p.name: torch.optim.AdamW([q for q in p.module.parameters() if q.requires_grad], lr=p.optimizer.lr,
                                      betas=tuple(p.optimizer.betas), weight_decay=p.optimizer.weight_decay)
            for p in stage.parts}


def run_step(stage: StageStep, batch: Any, step: int, opts: dict[str, torch.optim.AdamW] | None,
             on_update: Callable[[str], None] | None = None) -> dict[str, float]:
    """One loop step of `stage.task` as dmospeech.ops.training runs it (bf16 autocast on CUDA); `opts` None
    skips the AdamW step (FLOP counting), `on_update(name)` runs after each backward."""
    dev = stage.parts[0].device
    by_name = {p.name: p for p in stage.parts}

    def update(name: str, loss: torch.Tensor) -> dict[str, float]:
        part = by_name[name]
        part.module.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, enabled=False):
            loss.backward()
        if on_update is not None:
            on_update(name)
        if opts is not None:
            opts[name].step()
        return {f"loss/{name}": float(loss.detach())}

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu",
                                                                                                       enabled=False)
    with autocast:
        return stage.task.train_step(to_device(batch, dev), step, update)
