"""The data of the compact CLIPs and the judge: procedural chairs and cars rendered from random
cameras, framed on the object or on its category's box (see `clip.domain`), cached on disk, and
augmented towards what NeRF renders look like (backgrounds, softness, shifts, brightness, noise)."""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from torch import Tensor

from clipnerf_ns.clip.domain_config import Augment, DomainTraining
from clipnerf_ns.codes import over_background
from clipnerf_ns.data.cameras import VIEW_DEG, band_elevations, orbit_pose
from clipnerf_ns.data.captions import make_captions
from clipnerf_ns.data.meshes import discover_meshes, load_object
from clipnerf_ns.data.partnet import LABELS_FILE
from clipnerf_ns.data.render import FRAMING_MARGIN, ColoredMesh, Intrinsics, framing_corners, framing_intrinsics, render
from clipnerf_ns.data.synth import FRAME_EXTENTS, sample_object
from clipnerf_ns.data.synth_parts import CATEGORIES
from clipnerf_ns.errors import UserError
from clipnerf_ns.progress import progress_bar

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
COLOR_NOUNS = {"chairs": "chair", "cars": "car"}
CAMERA_DISTANCE = (1.9, 2.6)
"""Range of camera distances (the collections use 2.2) for the training and evaluation renders."""
ELEVATION_DEG = (0.0, 75.0)
VIEW_BANDS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "all": ((0.0, 360.0), ELEVATION_DEG),
    "front": ((-70.0, 70.0), (10.0, 40.0)),
    "judged": ((VIEW_DEG[0], VIEW_DEG[0]), (VIEW_DEG[1], VIEW_DEG[1])),
}
"""(azimuth, elevation) ranges in degrees of the random cameras: "all" around the upper hemisphere
(training), "front" where a product photo is taken from (the objects face +x, azimuth 0): thin
parts that are edge-on from the side (slats) show there, though a back's tilt or a rear wing is
edge-on from straight ahead; "judged" the one direction `clipnerf eval` judges edits from
(`cameras.VIEW_DEG`; only the distance varies)."""
FOV_DEG = 40.0
FRAMING_MARGIN_RANGE = (0.03, 0.15)
"""Margins of the training views around the object (`render.framing_intrinsics`)."""
_CACHE_VERSION = 3


@dataclass
class DomainData:
    """Rendered objects: views, captions and what is needed to score colour words."""

    rgba: UInt8[np.ndarray, "objects views h w 4"]
    captions: list[list[str]]
    categories: list[str]
    colors: list[str]
    """The object's one dominant colour name (chairs: seat = back; cars: body), or "" when none."""
    heldout: np.ndarray
    """(objects,) bool: held out from training."""
    attributes: list[dict]
    """Each object's true attributes (`synth`), the ground truth of the attribute questions."""

    def subset(self, mask: np.ndarray) -> "DomainData":
        idx = np.flatnonzero(mask)
        return DomainData(
            self.rgba[idx], [self.captions[i] for i in idx], [self.categories[i] for i in idx],
            [self.colors[i] for i in idx], self.heldout[idx], [self.attributes[i] for i in idx],
        )


# ----------------------------------------------------------------------------- data


def object_seed(seed: int, category: str, index: int) -> int:
    """Independent seed of object `index` of a category: the same whatever the object count."""
    return int(np.random.SeedSequence([seed, CATEGORIES.index(category), index]).generate_state(1)[0])


def dominant_color(attributes: dict) -> str:
    """The colour name that describes the whole object, or "" (a chair whose back differs from its seat)."""
    if attributes["category"] == "cars":
        return attributes["body_color"]
    back = attributes["back_color"]
    return attributes["seat_color"] if back in (None, attributes["seat_color"]) else ""


def random_cameras(n: int, rng: np.random.Generator, band: str = "all") -> np.ndarray:
    """(n, 4, 4) cameras looking at the origin from a band of the upper hemisphere (`VIEW_BANDS`),
    uniform by area in elevation, at distances around the collections' 2.2."""
    azimuth_range, elevation_range = VIEW_BANDS[band]
    elevations = band_elevations(n, rng, elevation_range)
    azimuths = rng.uniform(*azimuth_range, n)
    radii = rng.uniform(*CAMERA_DISTANCE, n)
    return np.stack([orbit_pose(r, a, e) for r, a, e in zip(radii, azimuths, elevations)])


def render_object(category: str, seed: int, views: int, captions: int, templates: str, size: int, band: str = "all",
                  framing: str = "object"):
    """(rgba (views, size, size, 4) uint8, captions, attributes) of one procedural object, framed on
    the object (`framing` "object"), on its category's largest box centred on it ("category":
    sizes are kept) or with the collections' 40 degree field of view ("collection")."""
    rng = np.random.default_rng(seed)
    obj = sample_object(category, rng)
    texts = make_captions(category, obj.attributes, rng, captions, templates)
    return render_views(obj.mesh, category, rng, views, size, band, framing), texts, obj.attributes


def render_views(mesh: ColoredMesh, category: str, rng: np.random.Generator, views: int, size: int, band: str = "all",
                 framing: str = "object") -> np.ndarray:
    """(views, size, size, 4) uint8 renders of a mesh of `category` from random cameras of `band`,
    framed as `render_object` says."""
    cameras = random_cameras(views, rng, band)
    # random margins vary the zoom: fine when framed on the object, not when the frame keeps its size
    jitter = band == "all" and framing == "object"
    margins = rng.uniform(*FRAMING_MARGIN_RANGE, views) if jitter else np.full(views, FRAMING_MARGIN)
    return render_framed(mesh, category, cameras, size, framing, margins)


def render_framed(mesh: ColoredMesh, category: str, cameras: np.ndarray, size: int, framing: str,
                  margins: Optional[np.ndarray] = None) -> np.ndarray:
    """(views, size, size, 4) uint8 renders of a mesh of `category` from `cameras` (c2w), framed
    as `render_object` says, with `margins` around the object (default `FRAMING_MARGIN`)."""
    margins = np.full(len(cameras), FRAMING_MARGIN) if margins is None else margins
    # framed on the corners of the object's bounding box: what a NeRF's occupancy grid also gives
    corners = framing_corners(*mesh.mesh.bounds, (frame_extents(framing, [category]) or {}).get(category))
    intrinsics = [framing_intrinsics(corners, c2w, size, m) if framing != "collection" else Intrinsics.from_fov(size, size, FOV_DEG)
                  for c2w, m in zip(cameras, margins)]
    return render(mesh, cameras, intrinsics, supersample=2).rgba


def render_objects(
    seed: int, categories, per_category: int, views: int, captions: int, templates: str, size: int,
    heldout_per_category: int = 0, description: str = "rendering objects", band: str = "all", framing: str = "object",
) -> DomainData:
    """Render `per_category` objects of each category; the last `heldout_per_category` are held out."""
    rgba, texts, cats, attrs, held = [], [], [], [], []
    with progress_bar() as progress:
        bar = progress.add_task(description, total=per_category * len(categories), status="")
        for category in categories:
            for i in range(per_category):
                image, caps, attributes = render_object(
                    category, object_seed(seed, category, i), views, captions, templates, size, band, framing)
                rgba.append(image)
                texts.append(caps)
                cats.append(category)
                attrs.append(attributes)
                held.append(i >= per_category - heldout_per_category)
                progress.advance(bar)
    return DomainData(np.stack(rgba), texts, cats, [dominant_color(a) for a in attrs], np.array(held), attrs)


def render_labelled_chairs(root: Path, colorings: int, views: int, size: int, seed: int = 0, band: str = "all",
                           framing: str = "object", description: str = "rendering real chairs") -> DomainData:
    """Every PartNet chair under `root` (with its result.json: `data.partnet`), each coloured
    `colorings` times with named part colours, rendered and captioned as `render_objects` does
    procedural ones, with the attributes measured on its labelled parts as ground truth."""
    sources = [s for s in discover_meshes(root) if s.folder is not None and (s.folder / LABELS_FILE).is_file()]
    if not sources:
        raise UserError(f"{root}: no chair folders with PartNet's {LABELS_FILE}")
    rgba, texts, attrs = [], [], []
    with progress_bar() as progress:
        bar = progress.add_task(description, total=len(sources) * colorings, status="")
        for i, source in enumerate(sources):
            for k in range(colorings):
                rng = np.random.default_rng([seed, i, k])
                mesh, attributes, captions = load_object(source, rng)
                rgba.append(render_views(mesh, "chairs", rng, views, size, band, framing))
                texts.append(captions[:1])
                attrs.append(attributes)
                progress.advance(bar)
    n = len(attrs)
    return DomainData(np.stack(rgba), texts, ["chairs"] * n, [dominant_color(a) for a in attrs], np.ones(n, bool), attrs)


def frame_extents(framing: str, categories) -> Optional[dict[str, tuple[float, float, float]]]:
    """The boxes a model trained with `framing` frames each category's views on, or None (on the object)."""
    return {c: FRAME_EXTENTS[c] for c in categories} if framing == "category" else None


def framing_of(model, category: str) -> str:
    """The `framing` of `render_objects` that shows `category` as `model` (a `ClipEncoder` or a
    judge) was trained to see it."""
    return "object" if model.frame_extent(category) is None else "category"


def render_settings(config: DomainTraining) -> dict:
    """The keyword arguments of `render_objects` that make `config`'s training data."""
    return {
        "seed": config.seed, "categories": tuple(config.categories), "per_category": config.num_objects,
        "views": config.views, "captions": config.captions, "templates": config.templates,
        "size": config.arch.image_size, "heldout_per_category": config.heldout_objects, "framing": config.framing,
    }


def load_or_render(settings: dict, cache: Optional[Path]) -> DomainData:
    """`render_objects(**settings)`, from the `cache` file when it holds those settings, else
    rendered (and written to `cache` when given)."""
    key = json.dumps({"version": _CACHE_VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in settings.items()}}, sort_keys=True)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as f:
                if str(f["key"]) == key:
                    extra = json.loads(str(f["extra"]))
                    return DomainData(stored_array(cache, "rgba"), extra["captions"], extra["categories"], extra["colors"],
                                      f["heldout"], extra["attributes"])
        except (OSError, KeyError, ValueError) as err:
            raise UserError(f"cannot read the dataset cache {cache} ({err}); delete it to re-render") from None
    data = render_objects(**settings)
    if cache is not None:
        extra = json.dumps({"captions": data.captions, "categories": data.categories, "colors": data.colors,
                            "attributes": data.attributes})
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp.npz")
        np.savez(tmp, key=np.array(key), extra=np.array(extra), rgba=data.rgba, heldout=data.heldout)
        tmp.replace(cache)
    return data


def stored_array(npz: Path, name: str) -> np.ndarray:
    """Array `name` of an uncompressed .npz (`np.savez`), mapped read-only from the file instead of
    read into memory: two trainings on one 24 GB machine then hold the renders once, in the page
    cache, rather than each a copy (6.3 GB for the 4000-object cache and its front views)."""
    with zipfile.ZipFile(npz) as archive:
        member = archive.getinfo(f"{name}.npy")
    if member.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name} is compressed")
    with open(npz, "rb") as f:  # the member's bytes start after its local header (30 bytes, its name, extra field)
        f.seek(member.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        f.seek(member.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        offset = f.tell()
    return np.memmap(npz, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def load_or_render_with_front(settings: dict, front_views: int, cache: Optional[Path]) -> DomainData:
    """`load_or_render(settings, cache)`, then `front_views` more views of the same objects (same
    seeds, other cameras) from the "front" band appended to each object's views (cached beside
    `cache` as <stem>-front.npz): the views the benches and `clipnerf eval` look from get as many
    examples as those all around. 0: none."""
    data = load_or_render(settings, cache)
    if front_views:
        front_cache = cache.with_name(f"{cache.stem}-front.npz") if cache else None
        front = load_or_render({**settings, "views": front_views, "band": "front"}, front_cache)
        data.rgba = np.concatenate([data.rgba, front.rgba], axis=1)  # one array in memory, copied from the mapped files
    return data


# ----------------------------------------------------------------------------- augmentation


def over_white(rgba: np.ndarray) -> Float[Tensor, "n h w 3"]:
    """uint8 renders (..., h, w, 4), any leading dimensions, as one batch of RGB in [0, 1] over
    white: how every benchmark and evaluation shows renders to a CLIP or the judge."""
    flat = torch.from_numpy(rgba.reshape(-1, *rgba.shape[-3:]))
    return over_background(flat.float() / 255.0, torch.ones(1, 1, 1, 3))


def random_backgrounds(b: int, size: int, p_white: float, g: torch.Generator) -> Float[Tensor, "b h w 3"]:
    """White with probability p_white; else a flat random colour (half the rest) or a vertical gradient."""
    kind = torch.rand(b, generator=g)
    top, bottom = torch.rand(b, 3, generator=g), torch.rand(b, 3, generator=g)
    t = torch.linspace(0, 1, size).view(1, size, 1, 1)
    gradient = top.view(b, 1, 1, 3) * (1 - t) + bottom.view(b, 1, 1, 3) * t
    flat = top.view(b, 1, 1, 3).expand(b, size, size, 3)
    bg = torch.where((kind < p_white + (1 - p_white) / 2).view(b, 1, 1, 1), flat, gradient.expand(b, size, size, 3))
    return torch.where((kind < p_white).view(b, 1, 1, 1), torch.ones_like(bg), bg).contiguous()


def soften(images: Float[Tensor, "b h w 3"], p: float, g: torch.Generator) -> Float[Tensor, "b h w 3"]:
    """With probability p per image, resample down (factor 0.4 to 0.9) and back up: NeRF-like softness."""
    b, h, w, _ = images.shape
    out = images.clone()
    for i in torch.nonzero(torch.rand(b, generator=g) < p).flatten().tolist():
        factor = 0.4 + 0.5 * float(torch.rand(1, generator=g))
        x = images[i : i + 1].permute(0, 3, 1, 2)
        small = F.interpolate(x, size=(max(4, round(h * factor)), max(4, round(w * factor))), mode="bilinear", antialias=True)
        out[i] = F.interpolate(small, size=(h, w), mode="bilinear").permute(0, 2, 3, 1)[0]
    return out


def shift(images: Float[Tensor, "b h w 3"], max_shift: int, g: torch.Generator) -> Float[Tensor, "b h w 3"]:
    """Translate each image by up to max_shift pixels per axis, filling with the edge pixels."""
    if max_shift <= 0:
        return images
    b, h, w, _ = images.shape
    padded = F.pad(images.permute(0, 3, 1, 2), (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=g).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]).permute(0, 2, 3, 1)


def augment(rgba: UInt8[Tensor, "b h w 4"], aug: Augment, g: torch.Generator) -> Float[Tensor, "b h w 3"]:
    """Background, softness, shift, brightness and noise: a training batch of RGB images in [0, 1]."""
    b, h = rgba.shape[:2]
    x = over_background(rgba.float() / 255.0, random_backgrounds(b, h, aug.white_background, g))
    x = shift(soften(x, aug.blur, g), aug.max_shift, g)
    x = x * (1 + aug.brightness * (2 * torch.rand(b, 1, 1, 1, generator=g) - 1))
    x = x + aug.noise * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)
