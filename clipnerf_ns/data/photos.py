"""A user's picture (a photo to invert, an exemplar): its pixels and where its object is, from the
alpha channel, a mask file, or the pixels that differ from the border colour; and the square
working image an inversion compares its renders with (`make_target`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.data.images import read_rgba
from clipnerf_ns.errors import UserError


@dataclass(frozen=True)
class Photo:
    """An image as read: straight-alpha RGB in [0, 1] and where the foreground mask came from."""

    rgb: Float[Tensor, "h w 3"]
    mask: Float[Tensor, "h w"]
    mask_source: Literal["alpha", "file", "threshold"]


def has_alpha(rgba: np.ndarray) -> bool:
    """Whether the alpha channel says anything (some pixel is not fully opaque)."""
    return bool(rgba[..., 3].min() < 255)


def border_ring(rgb: Float[Tensor, "h w 3"]) -> Float[Tensor, "n 3"]:
    """The outermost pixel ring of an image (corners twice)."""
    return torch.cat([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])


def border_colour(rgb: Float[Tensor, "h w 3"]) -> Float[Tensor, "3"]:
    """Median colour of the outermost pixel ring (the background of a product-style photo)."""
    return border_ring(rgb).median(dim=0).values


PLAIN_BORDER_SHARE = 0.8
"""A border is plain when at least this share of its pixels is within the threshold of its median."""


def plain_border(rgb: Float[Tensor, "h w 3"], threshold: float) -> bool:
    """Whether the outermost pixel ring is one colour (within `threshold`), so the object can be
    told from the background by colour."""
    near = (border_ring(rgb) - border_colour(rgb)).abs().amax(dim=-1) <= threshold
    return float(near.float().mean()) >= PLAIN_BORDER_SHARE


def threshold_mask(rgb: Float[Tensor, "h w 3"], threshold: float) -> Float[Tensor, "h w"]:
    """Foreground where a pixel differs from the border colour by more than `threshold` in some channel."""
    distance = (rgb - border_colour(rgb)).abs().amax(dim=-1)
    return (distance > threshold).float()


def mask_from_file(path: Path, size: tuple[int, int]) -> Float[Tensor, "h w"]:
    """A mask image (white = foreground; its alpha channel if it has one) of the image's size (w, h)."""
    rgba = read_rgba(path, "mask")
    if (rgba.shape[1], rgba.shape[0]) != size:
        raise UserError(f"{path}: the mask is {rgba.shape[1]}x{rgba.shape[0]} but the image is {size[0]}x{size[1]}")
    values = rgba[..., 3] if has_alpha(rgba) else rgba[..., :3].mean(axis=-1)
    return torch.from_numpy(values.astype(np.float32) / 255.0)


def read_photo(image: Path, mask: Optional[Path] = None, threshold: float = 0.1) -> Photo:
    """The image and its foreground mask: a mask file wins, then the alpha channel, then thresholding."""
    rgba = read_rgba(image)
    rgb = torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0)
    if mask is not None:
        found, source = mask_from_file(mask, (rgba.shape[1], rgba.shape[0])), "file"
    elif has_alpha(rgba):
        found, source = torch.from_numpy(rgba[..., 3].astype(np.float32) / 255.0), "alpha"
    else:
        if not plain_border(rgb, threshold):
            raise UserError(f"{image}: its background is not plain (the border varies), so the object cannot be cut out "
                            "by colour: give the image a transparent background or a mask (--mask)")
        found, source = threshold_mask(rgb, threshold), "threshold"
    if float((found > 0.5).float().sum()) < 4:
        where = {"file": f"the mask {mask}", "alpha": "its alpha channel", "threshold": "the background threshold"}[source]
        raise UserError(f"{image}: no foreground found (from {where})")
    return Photo(rgb, found, source)


def comparison_image(target: Float[Tensor, "h w 3"], render: Float[Tensor, "h w 3"]) -> np.ndarray:
    """input | render | error (largest channel difference times 4, black to red to yellow), one uint8 strip."""
    error = ((render - target).abs().amax(dim=-1, keepdim=True) * 4.0).clamp(0, 1)
    heat = torch.cat([(2.0 * error).clamp(max=1.0), (2.0 * error - 1.0).clamp(min=0.0), torch.zeros_like(error)], dim=-1)
    strip = torch.cat([target, render, heat], dim=1)
    return (strip.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Target:
    """The square working image the render is compared with, and its camera intrinsics."""

    rgb: Float[Tensor, "h w 3"]
    """The image over the model's render background (mask applied)."""
    mask: Float[Tensor, "h w"]
    """Foreground in [0, 1]."""
    focal: float
    """Focal length in pixels at the working resolution."""

    @property
    def resolution(self) -> int:
        return self.rgb.shape[0]

    def to(self, device) -> "Target":
        return Target(self.rgb.to(device), self.mask.to(device), self.focal)


def photo_window(mask: Float[Tensor, "h w"]) -> tuple[int, int, int]:
    """(top, left, side) of the square, in the photo's pixels, that pads the whole photo centred."""
    h, w = mask.shape
    side = max(h, w)
    return (h - side) // 2, (w - side) // 2, side


def object_window(mask: Float[Tensor, "h w"], fill: float) -> tuple[int, int, int]:
    """(top, left, side) of the square, in the photo's pixels (it may reach past the photo's edges),
    centred on the foreground's bounding box, whose longer side spans `fill` of the square's."""
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    if rows.numel() == 0:
        rows, cols = torch.nonzero(mask > 0, as_tuple=True)
    top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    side = max(1, round(max(bottom - top, right - left) / fill))
    return round((top + bottom - side) / 2), round((left + right - side) / 2), side


def make_target(photo: Photo, resolution: int, fov_deg: float, background: Float[Tensor, "3"],
                window: Optional[tuple[int, int, int]] = None, fov_of: str = "photo") -> Target:
    """Cut the square `window` (top, left, side: `photo_window` when None, the whole photo padded
    centred) out of the photo, padding with background where it reaches past the edges, resize it
    (antialiased) and composite it over `background`.

    `fov_deg` is the horizontal field of view of the photo as given (`fov_of` "photo": the focal
    length follows the cut and the resizing, so the camera model stays that of the photo), or of
    the square itself (`fov_of` "window": a photo of unknown camera, cut around its object)."""
    h, w = photo.mask.shape
    top, left, side = photo_window(photo.mask) if window is None else window
    premultiplied = torch.zeros(4, side, side)
    rows, cols = slice(max(top, 0), min(top + side, h)), slice(max(left, 0), min(left + side, w))
    inside = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    premultiplied[:3, inside[0], inside[1]] = (photo.rgb * photo.mask[..., None])[rows, cols].permute(2, 0, 1)
    premultiplied[3, inside[0], inside[1]] = photo.mask[rows, cols]
    small = F.interpolate(premultiplied[None], size=(resolution, resolution), mode="bilinear", antialias=side > resolution,
                          align_corners=False)[0].clamp(0, 1)
    mask = small[3]
    rgb = small[:3].permute(1, 2, 0) + (1.0 - mask[..., None]) * background
    width = w if fov_of == "photo" else side
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2) * resolution / side
    return Target(rgb.clamp(0, 1), mask, focal)
