"""Image helpers shared by the CLIP views of renders, exemplars and photos, and the one reader of
image files a user gives (exemplars, photos to invert, masks, collection views)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from clipnerf_ns.errors import UserError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads images before it needs torch
    from jaxtyping import Float
    from torch import Tensor

MAX_IMAGE_PIXELS = 4096 * 4096
"""Largest image (width x height) read: a 16 M pixel RGBA image is 64 MB decoded. The header is
checked before any pixel is decoded, so a decompression bomb (a tiny file that decodes to
gigabytes) costs nothing."""


@contextlib.contextmanager
def open_image(path: Path, what: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator:
    """A PIL image of a file, opened (header read, pixels not yet decoded) and size-checked; every
    failure, decoding inside the block included, is one UserError naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():  # also refuses folders, devices and pipes, which PIL would read forever
        raise UserError(f"{path}: no such {what} file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UserError(f"{path}: the {what} is {width} x {height} pixels; at most "
                                    f"{max_pixels / 1e6:.1f} million pixels are read")
                yield image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise UserError(f"{path}: not a readable {what} ({err.__class__.__name__})") from None


def read_rgba(path: Path, what: str = "image") -> np.ndarray:
    """(h, w, 4) uint8 of any image PIL reads (alpha 255 where the file has none)."""
    with open_image(path, what) as image:
        image.load()
        return np.asarray(image.convert("RGBA"))


def image_size(path: Path, what: str = "image") -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    with open_image(path, what) as image:
        return image.size


def verify_image(path: Path, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image whose data is complete: PIL's verify reads every chunk and its
    checksum without decoding, so a truncated file fails here rather than mid-training."""
    with open_image(path, what) as image:
        size = image.size
        image.verify()
        return size


def frame_on_object(
    rgb: Float[Tensor, "h w 3"], mask: Float[Tensor, "h w"], margin: float, background: Sequence[float] = (1.0, 1.0, 1.0)
) -> Float[Tensor, "s s 3"]:
    """The smallest square around the mask's foreground (> 0.5), widened by `margin` (a fraction
    of its side) on every side and padded with `background` where it leaves the image: an image
    framed as the compact CLIPs' views are (`render.framing_intrinsics`). No foreground: unchanged."""
    import torch

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


def pad_to_fill(
    rgb: Float[Tensor, "s s 3"], fill: float, background: Sequence[float] = (1.0, 1.0, 1.0)
) -> Float[Tensor, "t t 3"]:
    """A square image shrunk into the centre of a larger square of `background`, so that it spans
    `fill` (0, 1] of the new side: a photo framed on its object, reframed for a CLIP whose views
    keep sizes (its objects do not fill the frame)."""
    import torch

    side = rgb.shape[0]
    new_side = max(side, round(side / fill))
    out = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device).expand(new_side, new_side, 3).clone()
    top, left = (new_side - side) // 2, (new_side - rgb.shape[1]) // 2
    out[top : top + side, left : left + rgb.shape[1]] = rgb
    return out


def to_uint8(image: Tensor) -> np.ndarray:
    """An image in [0, 1] (torch, any device) as uint8 numpy, rounded."""
    return (image.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
