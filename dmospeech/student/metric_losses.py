"""The metric losses of direct metric optimisation (section 3.3): the frozen latent recogniser's CTC
loss (eq. 9) and the frozen latent speaker verifier's cosine loss (eq. 10) on the student's output.
Both return `(losses, logs)` like every loss of the project.

Shapes: b batch, n latent frames, c latent channels, nt phonemes. Masks are bool (b, n).
"""
from __future__ import annotations

import torch

from dmospeech.codec.latent_text import pad_stack
from dmospeech.critics.asr import LatentASR, ctc_loss
from dmospeech.critics.speaker import LatentSpeakerVerifier

MIN_SV_FRAMES = 20  # 0.5 s: shorter prompts or generated spans give no speaker-verification term


def ctc_term(asr: LatentASR, latents: torch.Tensor, latent_mask: torch.Tensor, phonemes: torch.Tensor,
             phoneme_mask: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """CTC loss of the generated latents, eq. 9: -log p(c | C(x_fake)) under the frozen recogniser C,
    c the phoneme transcript. latents (b, n, c) normalised, the prompt frames included."""
    return ctc_loss(asr(latents, latent_mask)["logits"], latent_mask, phonemes, phoneme_mask)


def spans(latents: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames of each item where `mask` (b, n) is True, packed to the front: ((b, m, c), (b, m))."""
    return pad_stack([x[m] for x, m in zip(latents, mask)])


def speaker_cosine(sv: LatentSpeakerVerifier, latents: torch.Tensor, generated: torch.Tensor,
                   prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine between the verifier's embeddings of the generated frames and of the prompt frames,
    for items where both have at least MIN_SV_FRAMES; returns (cosines (k,), which items (b,))."""
    usable = (generated.sum(1) >= MIN_SV_FRAMES) & (prompt_mask.sum(1) >= MIN_SV_FRAMES)
    if not bool(usable.any()):
        return latents.new_zeros(0), usable
    gen, gen_mask = spans(latents[usable], generated[usable])
    ref, ref_mask = spans(latents[usable], prompt_mask[usable])
    return (sv(gen, gen_mask.to(latents.device)) * sv(ref, ref_mask.to(latents.device))).sum(-1), usable


def sv_loss(sv: LatentSpeakerVerifier, latents: torch.Tensor, generated: torch.Tensor, prompt_mask: torch.Tensor
            ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Speaker-verification loss, eq. 10: 1 - cos(e_real, e_fake), e_real the verifier's embedding of
    the prompt frames (the real speech of the speaker) and e_fake that of the generated frames, averaged
    over the items where both spans are long enough; 0 (with a gradient path) when none is. The log has
    no cosine then (rather than a NaN that would spoil the logged mean)."""
    cosines, _ = speaker_cosine(sv, latents, generated, prompt_mask)
    if not len(cosines):
        return {"sv/loss": latents.sum() * 0.0}, {}
    loss = (1 - cosines).mean()
    return {"sv/loss": loss}, {"sv/loss": float(loss.detach()), "sv/cosine": float(cosines.detach().mean())}
