"""Image helpers shared by the CLIP views of renders, exemplars and photos."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor


def frame_on_object(
    rgb: Float[Tensor, "h w 3"], mask: Float[Tensor, "h w"], margin: float, background: Sequence[float] = (1.0, 1.0, 1.0)
) -> Float[Tensor, "s s 3"]:
    """The smallest square around the mask's foreground (> 0.5), widened by `margin` (a fraction
    of its side) on every side and padded with `background` where it leaves the image: an image
    framed as the compact CLIPs' views are (`render.framing_intrinsics`). No foreground: unchanged."""
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(rows) == 0:
        return rgb
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    side = max(bottom - top, right - left)
    side = max(1, round(side * (1.0 + 2.0 * margin)))
    y0, x0 = (top + bottom - side) // 2, (left + right - side) // 2
    h, w = rgb.shape[:2]
    out = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device).expand(side, side, 3).clone()
    ys, xs = slice(max(y0, 0), min(y0 + side, h)), slice(max(x0, 0), min(x0 + side, w))
    out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = rgb[ys, xs]
    return out
