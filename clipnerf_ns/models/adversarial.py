"""GRAF-style patch adversarial loss (optional in stage 1): a small convolutional discriminator on
K x K image patches, the non-saturating GAN loss, and an R1 penalty on real patches.

Both players' losses are returned as one sum that a single backward pass can take: the
discriminator's loss sees the fake patches detached, and the generator's loss runs the
discriminator with detached parameters, so each loss only moves its own player.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.func import functional_call


class PatchDiscriminator(nn.Module):
    """Strided convolutions down to one logit per patch."""

    def __init__(self, patch_size: int, width: int = 64):
        super().__init__()
        if patch_size < 4 or patch_size & (patch_size - 1):
            raise ValueError(f"patch size must be a power of two of at least 4, got {patch_size}")
        layers: list[nn.Module] = []
        channels, size = 3, patch_size
        while size > 2:
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels, size = width, size // 2
        layers += [nn.Flatten(), nn.Linear(channels * size * size, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, patches: Float[Tensor, "patches h w 3"]) -> Float[Tensor, " patches"]:
        return self.net(patches.permute(0, 3, 1, 2) * 2.0 - 1.0).squeeze(-1)


def adversarial_losses(
    discriminator: PatchDiscriminator,
    real: Float[Tensor, "patches h w 3"],
    fake: Float[Tensor, "patches h w 3"],
    r1_weight: float,
) -> dict[str, Tensor]:
    """Non-saturating GAN losses with R1; `generator` only reaches the renderer, `discriminator` and
    `r1` only reach the discriminator."""
    real = real.detach().requires_grad_(True)
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    (grad_real,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    r1 = 0.5 * r1_weight * grad_real.pow(2).flatten(1).sum(dim=1).mean()
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    g_loss = F.softplus(-functional_call(discriminator, frozen, (fake,))).mean()
    return {"discriminator": d_loss, "r1": r1, "generator": g_loss}
