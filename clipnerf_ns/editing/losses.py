"""Losses of editing and inversion: CLIP distances and the size of a code change."""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.codes import Codes


def clip_distance(a: Float[Tensor, "*batch d_clip"], b: Float[Tensor, "*batch d_clip"]) -> Float[Tensor, "*batch"]:
    """1 - cosine similarity of two CLIP embeddings (0 when they point the same way, 2 when opposite)."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def directional_clip_distance(
    render: Float[Tensor, "*batch d_clip"],
    render_before: Float[Tensor, "*batch d_clip"],
    target: Float[Tensor, "*batch d_clip"],
    source: Float[Tensor, "*batch d_clip"],
) -> Float[Tensor, "*batch"]:
    """The directional variant (StyleGAN-NADA): the change of the render's embedding should point
    the way the target's embedding differs from the source's (e.g. "a red chair" - "a chair")."""
    return clip_distance(render - render_before, target - source)


def code_change_penalty(before: Codes, after: Codes) -> Float[Tensor, "*batch"]:
    """Mean squared size of the code change, over both codes (keeps edits close to the object)."""
    return ((after.z_s - before.z_s) ** 2).mean(-1) + ((after.z_a - before.z_a) ** 2).mean(-1)



def recoloured_share(before: Float[Tensor, "*batch h w 3"], after: Float[Tensor, "*batch h w 3"]) -> Float[Tensor, "*batch"]:
    """Mean over pixels of the length of each pixel's colour change (an L1 over pixels of an L2 over
    channels: for the same squared change, recolouring few pixels costs less than many, as a
    lasso prefers few coefficients)."""
    return ((after - before).pow(2).sum(-1) + 1e-8).sqrt().mean((-1, -2))
