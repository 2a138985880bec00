"""The DiT teacher network (appendix C.2.3) and its training loss."""
from dataclasses import replace

import torch

from dmospeech.config import load_params
from dmospeech.teacher.dit import DiT
from dmospeech.teacher.diffusion import diffusion_loss
from tests.helpers import PROJECT_ROOT, params

TINY = replace(params().train_teacher.model, dim=32, ff_dim=64, heads=2, encoder_layers=1, decoder_layers=2)


def batch(b=2, n=24, nt=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([n, n - 7])[:b]
    mask = torch.arange(n)[None] < lengths[:, None]
    t = torch.linspace(0, 1, n)
    latents = 2 ** 0.5 * torch.stack([torch.sin(2 * torch.pi * (k + 1) * t) for k in range(64)], -1)[None].repeat(b, 1, 1)
    return {"latents": latents * mask[..., None], "latent_mask": mask,
            "phonemes": torch.randint(1, 180, (b, nt), generator=g), "phoneme_mask": torch.ones(b, nt, dtype=torch.bool)}


def test_paper_profile_parameter_count():
    cfg = load_params(PROJECT_ROOT / "params.yaml", PROJECT_ROOT / "profiles" / "paper.yaml").train_teacher.model
    with torch.device("meta"):
        net = DiT(cfg)
    count = sum(p.numel() for p in net.parameters())
    assert (cfg.dim, cfg.ff_dim, cfg.heads, cfg.encoder_layers, cfg.decoder_layers) == (1024, 3072, 8, 8, 16)
    assert 440e6 < count < 510e6, count   # Table 9: 450M; per-layer adaLN-Zero adds 101M (see README)


def test_shapes_hidden_states_and_padding_invariance():
    torch.manual_seed(0)
    net = DiT(TINY).eval()
    for p in net.parameters():   # the zero-initialised output layers would hide everything
        torch.nn.init.normal_(p, std=0.05)
    b = batch()
    t, prompt = torch.tensor([0.3, 0.6]), torch.zeros(2, 24, dtype=torch.bool)
    v, hidden = net(torch.randn(2, 24, 64), t, b["phonemes"], b["phoneme_mask"], prompt, b["latent_mask"],
                    return_hidden=True)
    assert v.shape == (2, 24, 64) and len(hidden) == TINY.decoder_layers and hidden[0].shape == (2, 24, 32)
    x = torch.randn(1, 17, 64)
    short = net(x, t[:1], b["phonemes"][:1], b["phoneme_mask"][:1], prompt[:1, :17], torch.ones(1, 17, dtype=torch.bool))
    padded = net(torch.cat([x, torch.randn(1, 5, 64)], 1), t[:1], b["phonemes"][:1], b["phoneme_mask"][:1],
                 prompt[:1, :22], torch.arange(22)[None] < 17)
    assert torch.allclose(short, padded[:, :17], atol=1e-5)


def test_dropped_text_is_the_null_condition():
    torch.manual_seed(0)
    net = DiT(TINY).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    b = batch()
    x, t, prompt = torch.randn(2, 24, 64), torch.tensor([0.5, 0.5]), torch.zeros(2, 24, dtype=torch.bool)
    drop = torch.tensor([True, True])
    v1 = net(x, t, b["phonemes"], b["phoneme_mask"], prompt, b["latent_mask"], drop_text=drop)
    v2 = net(x, t, torch.randint(1, 180, (2, 10)), b["phoneme_mask"], prompt, b["latent_mask"], drop_text=drop)
    kept = net(x, t, b["phonemes"], b["phoneme_mask"], prompt, b["latent_mask"])
    assert torch.allclose(v1, v2, atol=1e-6) and not torch.allclose(v1, kept, atol=1e-4)
    null, mask = net.null_condition(2, x.device)
    direct = net.decode(x, t, null, mask, prompt, b["latent_mask"])
    assert torch.allclose(direct, v1, atol=1e-5)


def test_loss_ignores_prompt_and_padding_and_decreases():
    cfg = params().train_teacher.diffusion
    torch.manual_seed(0)
    net = DiT(TINY)
    b = batch()
    losses, logs = diffusion_loss(net, b, cfg, generator=torch.Generator().manual_seed(0))
    assert 0.7 < losses["diffusion/loss"].item() < 1.3    # zero-initialised output: E[v^2] = 1 for unit-variance x0
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    first = None
    for step in range(80):
        loss = diffusion_loss(net, b, cfg, generator=torch.Generator().manual_seed(step))[0]["diffusion/loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = diffusion_loss(net, b, cfg, generator=torch.Generator().manual_seed(0))[0]["diffusion/loss"].item()
    assert final < 0.6 * losses["diffusion/loss"].item()
    # The loss only sees generated frames: garbage on padding does not change it.
    garbage = dict(b, latents=torch.where(b["latent_mask"][..., None], b["latents"], torch.full_like(b["latents"], 9.)))
    same = diffusion_loss(net, garbage, cfg, generator=torch.Generator().manual_seed(5))[0]["diffusion/loss"]
    assert torch.allclose(same, diffusion_loss(net, b, cfg, generator=torch.Generator().manual_seed(5))[0]["diffusion/loss"])
