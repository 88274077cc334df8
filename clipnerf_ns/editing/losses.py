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

