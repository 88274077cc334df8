"""Edit metrics as pure functions of images and embeddings (no model inside)."""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

# CIE D65 white and the sRGB -> XYZ matrix (IEC 61966-2-1).
_SRGB_TO_XYZ = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """CIE L*a*b* (D65) of sRGB colours in [0, 1]."""
    rgb = rgb.clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.to(rgb).T / _WHITE.to(rgb)
    delta = 6.0 / 29.0
    f = torch.where(xyz > delta**3, xyz.clamp(min=1e-12) ** (1.0 / 3.0), xyz / (3 * delta**2) + 4.0 / 29.0)
    return torch.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def delta_e(a: Float[Tensor, "*batch 3"], b: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch"]:
    """CIE76 colour difference of two sRGB colours (Euclidean distance in Lab; ~2.3 is just noticeable)."""
    return torch.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), dim=-1)


def silhouette(accumulation: Float[Tensor, "h w 1"], threshold: float = 0.5) -> Tensor:
    return accumulation[..., 0] > threshold


def object_mean_color(rgb: Float[Tensor, "h w 3"], accumulation: Float[Tensor, "h w 1"], threshold: float = 0.5) -> Tensor:
    """Mean colour of the object's pixels (opacity above `threshold`)."""
    mask = silhouette(accumulation, threshold)
    if not bool(mask.any()):
        return rgb.new_full((3,), float("nan"))
    return rgb[mask].mean(0)


def silhouette_iou(a: Float[Tensor, "h w 1"], b: Float[Tensor, "h w 1"], threshold: float = 0.5) -> float:
    """Intersection over union of two renders' silhouettes (1.0 when neither has any)."""
    sa, sb = silhouette(a, threshold), silhouette(b, threshold)
    union = (sa | sb).sum()
    return 1.0 if int(union) == 0 else float((sa & sb).sum() / union)


def haze(accumulation: Float[Tensor, "h w 1"], low: float = 0.1, high: float = 0.9) -> float:
    """Share of the object's pixels (opacity above `low`) that are semi-transparent (below `high`):
    fog and floaters raise it; a clean render has only its anti-aliased edges there. NaN when the
    render shows no object."""
    opacity = accumulation[..., 0]
    seen = opacity > low
    if not bool(seen.any()):
        return float("nan")
    return float((opacity[seen] < high).float().mean())


def n_way_accuracy(
    image: Float[Tensor, "n d_clip"], candidates: Float[Tensor, "n k d_clip"], correct: Int[Tensor, " n"]
) -> float:
    """Share of images whose most similar candidate (cosine) is the correct one."""
    image = torch.nn.functional.normalize(image, dim=-1)
    candidates = torch.nn.functional.normalize(candidates, dim=-1)
    scores = torch.einsum("nd,nkd->nk", image, candidates)
    return float((scores.argmax(-1) == correct).float().mean())


def expected_n_way_accuracy(image: Float[Tensor, " d_clip"], texts: Float[Tensor, "m d_clip"], n: int) -> float:
    """Chance that `texts[0]` is the most similar (cosine) to `image` among itself and `n - 1` of
    the other texts drawn at random without replacement (all of them when fewer): an n-way choice
    averaged over every draw of its distractors, exactly, so that the figure does not move with
    which ones one draw offers. comb(b, k) / comb(m - 1, k), b the distractors scoring below."""
    scores = torch.nn.functional.normalize(texts, dim=-1) @ torch.nn.functional.normalize(image, dim=-1)
    others, drawn = len(texts) - 1, min(n - 1, len(texts) - 1)
    below = int((scores[1:] < scores[0]).sum())
    return math.comb(below, drawn) / math.comb(others, drawn)
