"""Shared fixtures of the recogniser tests: a tiny config, a saved checkpoint, latents that spell their phonemes."""
from __future__ import annotations

import torch

from dmospeech.ops.checkpoint import save_checkpoint
from dmospeech.config import LatentASRConfig
from dmospeech.codec.latent_text import LatentTextDataset, LatentTextItem
from dmospeech.codec.latents import LatentStats, LatentStore, ShardWriter
from dmospeech.critics.asr import LatentASR

TINY = LatentASRConfig(latent_dim=8, dim=16, ff_dim=32, heads=2, layers=2, conv_kernel=5, dropout=0.0, vocab_size=12)


def saved_asr(tmp_path, cfg: LatentASRConfig = TINY) -> tuple[LatentASR, str]:
    torch.manual_seed(0)
    asr = LatentASR(cfg)
    weights = {"asr": asr.state_dict(), "asr.ema": asr.state_dict()}
    path = save_checkpoint(tmp_path / "ckpt", 1, weights, {"step": 1}, {"task": "asr_critic", "model": cfg.__dict__}, 0)
    return asr.eval(), str(path)


def fabricated_dataset(root, count: int, seed: int) -> LatentTextDataset:
    """Latents whose frames spell their phonemes: symbol k is the one-hot channel k, 3 frames each."""
    gen = torch.Generator().manual_seed(seed)
    root.mkdir()
    writer, items = ShardWriter(root, 10_000), []
    for i in range(count):
        ids = torch.randint(1, 8, (6,), generator=gen)
        z = torch.nn.functional.one_hot(ids.repeat_interleave(3), 8).float() + 0.1 * torch.randn(18, 8, generator=gen)
        shard, offset = writer.add(z)
        items.append(LatentTextItem(f"s{seed}_{i}", "spk", "train", tuple(ids.tolist()), shard, offset, 18, "", 0, 0,
                                    ""))
    writer.flush()
    stats = LatentStats((0.0,) * 8, (1.0,) * 8, 1, "none")
    return LatentTextDataset(items, LatentStore(root), stats, frame_rate=40)
