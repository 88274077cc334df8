"""Shape codes off the learnt ones, for the stage-1 in-between haze term: an auto-decoder is only
trained at its objects' codes, so without it the codes between them decode to fog (the edits of
the mappers land there). The codes are a pure function; `inbetween_opacity` renders them for the
model, which weighs the term."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.codes import Codes


def inbetween_shape_codes(
    learnt: Float[Tensor, "objects d"],
    prior_mean: Float[Tensor, " d"],
    prior_std: Float[Tensor, " d"],
    count: int,
    generator: Optional[torch.Generator] = None,
    reach: float = 1.0,
) -> Float[Tensor, "count d"]:
    """`count` shape codes: the first half on the line through two random learnt codes, at a uniform
    t in [(1 - reach) / 2, (1 + reach) / 2] (the segment between them for reach 1: where an edit
    passes from one object towards another; past both ends for more), the rest drawn from the code
    prior N(mean, std^2) with the deviation scaled by a uniform factor in [1, reach] (where prior
    samples and far edits land). Detached from `learnt`."""
    learnt = learnt.detach()
    between = count - count // 2
    pick = torch.randint(learnt.shape[0], (2, between), generator=generator).to(learnt.device)
    t = (1.0 - reach) / 2 + reach * torch.rand(between, 1, generator=generator).to(learnt.device)
    segments = torch.lerp(learnt[pick[0]], learnt[pick[1]], t)
    noise = torch.randn(count - between, learnt.shape[1], generator=generator)
    scale = 1.0 + (reach - 1.0) * torch.rand(count - between, 1, generator=generator)
    drawn = prior_mean.detach() + prior_std.detach() * (noise * scale).to(learnt.device)
    return torch.cat([segments, drawn])


def inbetween_opacity(model, origins: Tensor, directions: Tensor, background: Tensor) -> Tensor:
    """Opacity of the first `inbetween_rays` rays of a stage-1 model's batch under in-between shape
    codes (one per ray; coarse pass)."""
    rays = min(model.config.inbetween_rays, origins.shape[0])
    mean, std = model.code_prior()
    z_s = inbetween_shape_codes(model.shape_codes.weight, mean.z_s, std.z_s, rays, reach=model.config.inbetween_reach)
    codes = Codes(z_s, mean.z_a.expand(rays, -1))
    return model._render_new_codes(origins[:rays], directions[:rays], codes, background[:rays], fine=False)["accumulation"]
