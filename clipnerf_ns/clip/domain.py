"""The compact offline CLIP: contrastive training on renders and captions of procedural objects.

Data: procedural chairs and cars (`synth.sample_object`), each rendered from several random
cameras on the upper hemisphere (RGBA at the model's input size) and described by several
captions (`synth.make_captions`, "default" or "alt" templates). The last objects of each
category are held out. Training composites the renders over mostly white backgrounds and
softens, shifts and perturbs them towards what NeRF renders look like; the loss is open_clip's
symmetric InfoNCE. The result is a self-describing .safetensors file that `ClipEncoder` loads.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from clipnerf_ns.clip.domain_config import Augment, ClipArchitecture, DomainTraining
from clipnerf_ns.data.render import Intrinsics, orbit_pose, render
from clipnerf_ns.data.synth import CATEGORIES, NAMED_COLORS, make_captions, sample_object
from clipnerf_ns.errors import UserError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
COLOR_NOUNS = {"chairs": "chair", "cars": "car"}
CAMERA_DISTANCE = (1.9, 2.6)
"""Range of camera distances (the collections use 2.2) for the training and evaluation renders."""
ELEVATION_DEG = (0.0, 75.0)
FOV_DEG = 40.0
_CACHE_VERSION = 1


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

    def subset(self, mask: np.ndarray) -> "DomainData":
        idx = np.flatnonzero(mask)
        return DomainData(
            self.rgba[idx], [self.captions[i] for i in idx], [self.categories[i] for i in idx],
            [self.colors[i] for i in idx], self.heldout[idx],
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


def random_cameras(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4, 4) cameras looking at the origin from the upper hemisphere, uniform by area in
    elevation, at distances around the collections' 2.2."""
    lo, hi = np.sin(np.radians(ELEVATION_DEG))
    elevations = np.degrees(np.arcsin(rng.uniform(lo, hi, n)))
    azimuths = rng.uniform(0.0, 360.0, n)
    radii = rng.uniform(*CAMERA_DISTANCE, n)
    return np.stack([orbit_pose(r, a, e) for r, a, e in zip(radii, azimuths, elevations)])


def render_object(category: str, seed: int, views: int, captions: int, templates: str, size: int):
    """(rgba (views, size, size, 4) uint8, captions, dominant colour) of one procedural object."""
    rng = np.random.default_rng(seed)
    obj = sample_object(category, rng)
    texts = make_captions(category, obj.attributes, rng, captions, templates)
    rgba = render(obj.mesh, random_cameras(views, rng), Intrinsics.from_fov(size, size, FOV_DEG), supersample=2).rgba
    return rgba, texts, dominant_color(obj.attributes)


def render_objects(
    seed: int, categories, per_category: int, views: int, captions: int, templates: str, size: int,
    heldout_per_category: int = 0, description: str = "rendering objects",
) -> DomainData:
    """Render `per_category` objects of each category; the last `heldout_per_category` are held out."""
    rgba, texts, cats, colors, held = [], [], [], [], []
    with _progress() as progress:
        bar = progress.add_task(description, total=per_category * len(categories), info="")
        for category in categories:
            for i in range(per_category):
                image, caps, color = render_object(category, object_seed(seed, category, i), views, captions, templates, size)
                rgba.append(image)
                texts.append(caps)
                cats.append(category)
                colors.append(color)
                held.append(i >= per_category - heldout_per_category)
                progress.advance(bar)
    return DomainData(np.stack(rgba), texts, cats, colors, np.array(held))


def _cache_key(config: DomainTraining) -> str:
    return json.dumps({
        "version": _CACHE_VERSION, "seed": config.seed, "templates": config.templates,
        "categories": list(config.categories), "num_objects": config.num_objects, "heldout": config.heldout_objects,
        "views": config.views, "captions": config.captions, "size": config.arch.image_size,
    }, sort_keys=True)


def load_or_render(config: DomainTraining) -> DomainData:
    """The training data of `config`, from its cache file when that matches, else rendered (and cached)."""
    key = _cache_key(config)
    if config.cache is not None and config.cache.is_file():
        try:
            with np.load(config.cache) as f:
                if str(f["key"]) == key:
                    extra = json.loads(str(f["extra"]))
                    return DomainData(f["rgba"], extra["captions"], extra["categories"], extra["colors"], f["heldout"])
        except (OSError, KeyError, ValueError) as err:
            raise UserError(f"cannot read the dataset cache {config.cache} ({err}); delete it to re-render") from None
    data = render_objects(
        config.seed, config.categories, config.num_objects, config.views, config.captions, config.templates,
        config.arch.image_size, config.heldout_objects,
    )
    if config.cache is not None:
        extra = json.dumps({"captions": data.captions, "categories": data.categories, "colors": data.colors})
        config.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = config.cache.with_name(f".{config.cache.name}.tmp.npz")
        np.savez(tmp, key=np.array(key), extra=np.array(extra), rgba=data.rgba, heldout=data.heldout)
        tmp.replace(config.cache)
    return data


# ----------------------------------------------------------------------------- augmentation


def composite(rgba: UInt8[Tensor, "b h w 4"], background: Float[Tensor, "b h w 3"]) -> Float[Tensor, "b h w 3"]:
    """Straight-alpha RGBA over a background, as floats in [0, 1]."""
    x = rgba.float() / 255.0
    alpha = x[..., 3:]
    return x[..., :3] * alpha + background * (1.0 - alpha)


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
    x = composite(rgba, random_backgrounds(b, h, aug.white_background, g))
    x = shift(soften(x, aug.blur, g), aug.max_shift, g)
    x = x * (1 + aug.brightness * (2 * torch.rand(b, 1, 1, 1, generator=g) - 1))
    x = x + aug.noise * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- model and training


def new_model(arch: ClipArchitecture, seed: int) -> torch.nn.Module:
    """A freshly initialised compact CLIP (open_clip architecture)."""
    from clipnerf_ns.clip.encoder import build_clip

    torch.manual_seed(seed)
    return build_clip(arch.open_clip_config())


def tokenize_captions(captions: list[list[str]], context_length: int) -> Tensor:
    """(objects, captions, context) token ids."""
    from clipnerf_ns.clip.encoder import new_tokenizer

    tokenizer = new_tokenizer(context_length)
    n = len(captions[0])
    flat = tokenizer([c for caps in captions for c in caps])
    return flat.view(len(captions), n, context_length)


def features(model, images: Float[Tensor, "b h w 3"], tokens: Tensor, image_size: int):
    """Unit-norm (image, text) features of a batch, as the loss and `ClipEncoder` see them."""
    from clipnerf_ns.clip.encoder import preprocess_images

    x = preprocess_images(images, image_size, CLIP_MEAN, CLIP_STD)
    return F.normalize(model.encode_image(x), dim=-1), F.normalize(model.encode_text(tokens), dim=-1)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on gains, biases, embeddings or the logit scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_step(model, optimizer, loss_fn, images, tokens, image_size: int) -> float:
    """One contrastive step; returns the loss. The logit scale is clamped at 100, as open_clip does."""
    image_f, text_f = features(model, images, tokens, image_size)
    loss = loss_fn(image_f, text_f, model.logit_scale.exp())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def sample_batch(data: DomainData, train_idx: np.ndarray, tokens: Tensor, batch: int, aug: Augment, g: torch.Generator):
    """Distinct training objects, one random view and one random caption each."""
    pick = train_idx[torch.randperm(len(train_idx), generator=g)[:batch].numpy()]
    views = torch.randint(0, data.rgba.shape[1], (len(pick),), generator=g).numpy()
    caps = torch.randint(0, tokens.shape[1], (len(pick),), generator=g)
    rgba = torch.from_numpy(data.rgba[pick, views])
    return augment(rgba, aug, g), tokens[torch.from_numpy(pick), caps]


def train_clip(config: DomainTraining) -> tuple[Path, dict]:
    """Render (or load) the data, train, save atomically, evaluate on held-out objects.
    Returns (the weights file, the figures)."""
    from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder, Preprocess, contrastive_loss, save_compact

    _validate(config)
    start = time.perf_counter()
    data = load_or_render(config)
    render_s = time.perf_counter() - start
    train_idx = np.flatnonzero(~data.heldout)
    tokens = tokenize_captions(data.captions, config.arch.context_length)
    model = new_model(config.arch, config.seed)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = contrastive_loss()
    g = torch.Generator().manual_seed(config.seed)
    losses = []
    model.train()
    t0 = time.perf_counter()
    with _progress() as progress:
        bar = progress.add_task("training compact CLIP", total=config.steps, info="")
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config.steps, config.lr, config.warmup_steps)
            images, toks = sample_batch(data, train_idx, tokens, config.batch_size, config.augment, g)
            losses.append(train_step(model, optimizer, loss_fn, images, toks, config.arch.image_size))
            if step % 10 == 0 or step == config.steps - 1:
                progress.update(bar, info=f"loss {np.mean(losses[-50:]):.3f}")
            progress.advance(bar)
    train_s = time.perf_counter() - t0
    model.eval()
    arch = config.arch
    preprocess = Preprocess(arch.image_size, CLIP_MEAN, CLIP_STD, arch.context_length)
    training = {
        **_jsonable(asdict(config)), "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "render_seconds": round(render_s, 1), "train_seconds": round(train_s, 1),
        "command": "clipnerf train-clip " + " ".join(_cli_args(config)),
    }
    heldout = data.subset(data.heldout)
    if len(heldout.captions):
        # figures need the final weights as ClipEncoder loads them (fp16 on disk): save, load, score, save again
        save_compact(model, arch.open_clip_config(), preprocess, training, _check_out(config))
        encoder = ClipEncoder.load(ClipConfig(model="compact", checkpoint=config.out))
        training["heldout_figures"] = evaluate(encoder, heldout)
    save_compact(model, arch.open_clip_config(), preprocess, training, _check_out(config, again=True))
    return config.out, training


def _validate(config: DomainTraining) -> None:
    checks = [
        (config.num_objects >= 2, f"--num-objects must be at least 2, got {config.num_objects}"),
        (0 <= config.heldout_objects < config.num_objects,
         f"--heldout-objects must be in [0, --num-objects), got {config.heldout_objects}"),
        (config.views >= 1 and config.captions >= 1, "--views and --captions must be at least 1"),
        (config.steps >= 0 and config.batch_size >= 2, "--steps must be >= 0 and --batch-size >= 2"),
        (len(config.categories) >= 1, "--categories needs at least one category"),
        (config.out.suffix == ".safetensors", f"--out must end in .safetensors, got {config.out}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    _check_out(config)


def _check_out(config: DomainTraining, again: bool = False) -> Path:
    if config.out.exists() and not (config.overwrite or again):
        raise UserError(f"{config.out} exists; pass --overwrite to replace it")
    return config.out


# ----------------------------------------------------------------------------- evaluation


def retrieval_accuracy(
    image_f: Float[Tensor, "n d"], text_f: Float[Tensor, "m d"], image_to_text: Tensor, k: int = 1
) -> tuple[float, float]:
    """Top-k retrieval with unit-norm features. image_to_text[i] is the index of image i's own
    text. Returns (image->text: is its own text among the k most similar texts;
    text->image: is one of its images among the k most similar images), as fractions."""
    sim = image_f @ text_f.T
    k_t, k_i = min(k, sim.shape[1]), min(k, sim.shape[0])
    i2t = (sim.topk(k_t, dim=1).indices == image_to_text[:, None]).any(1).float().mean()
    top_images = sim.T.topk(k_i, dim=1).indices  # (m, k)
    t2i = (image_to_text[top_images] == torch.arange(sim.shape[1])[:, None]).any(1).float().mean()
    return float(i2t), float(t2i)


def color_accuracy(encoder, image_f: Float[Tensor, "n d"], categories: list[str], colors: list[str]) -> float:
    """Share of images whose true colour name wins among "a <colour> <noun>" for the 12 names."""
    names = list(NAMED_COLORS)
    correct, total = 0, 0
    for category in sorted(set(categories)):
        rows = [i for i, (c, col) in enumerate(zip(categories, colors)) if c == category and col]
        if not rows:
            continue
        text = encoder.encode_text([f"a {name} {COLOR_NOUNS[category]}" for name in names])
        pred = (image_f[rows] @ text.T).argmax(1)
        truth = torch.tensor([names.index(colors[i]) for i in rows])
        correct += int((pred == truth).sum())
        total += len(rows)
    return correct / max(total, 1)


def evaluate(encoder, data: DomainData, caption_index: int = 0, batch: int = 256) -> dict:
    """Zero-shot figures of `encoder` on every view of `data`'s objects, over white: retrieval
    among all objects' captions (each object's caption number `caption_index`) and colour words."""
    n_obj, n_views = data.rgba.shape[:2]
    images = composite(torch.from_numpy(data.rgba.reshape(-1, *data.rgba.shape[2:])), torch.ones(1, 1, 1, 3))
    with torch.no_grad():
        image_f = torch.cat([encoder.encode_image(images[i : i + batch]) for i in range(0, len(images), batch)])
        text_f = encoder.encode_text([caps[caption_index] for caps in data.captions])
    owner = torch.arange(n_obj).repeat_interleave(n_views)
    figures = {"objects": n_obj, "renders": len(images)}
    figures["i2t_top1"], figures["t2i_top1"] = retrieval_accuracy(image_f, text_f, owner, 1)
    figures["i2t_top5"], figures["t2i_top5"] = retrieval_accuracy(image_f, text_f, owner, 5)
    render_categories = [c for c in data.categories for _ in range(n_views)]
    render_colors = [c for c in data.colors for _ in range(n_views)]
    figures["color_accuracy"] = color_accuracy(encoder, image_f, render_categories, render_colors)
    figures["color_renders"] = sum(1 for c in render_colors if c)
    same = torch.tensor([c == o for c in render_categories for o in data.categories]).view(len(images), n_obj)
    # category from retrieval: is the best caption one of the same category?
    figures["category_accuracy"] = float(same[torch.arange(len(images)), (image_f @ text_f.T).argmax(1)].float().mean())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def format_figures(figures: dict) -> str:
    """One readable paragraph of `evaluate`'s figures."""
    n = figures["objects"]
    return (
        f"held-out: {n} objects, {figures['renders']} renders (chance top-1 {1 / n:.1%})\n"
        f"  image->text top-1 {figures['i2t_top1']:.1%}  top-5 {figures['i2t_top5']:.1%}\n"
        f"  text->image top-1 {figures['t2i_top1']:.1%}  top-5 {figures['t2i_top5']:.1%}\n"
        f"  colour words (12-way, 'a <colour> chair/car', {figures['color_renders']} renders) {figures['color_accuracy']:.1%}\n"
        f"  category of the best caption {figures['category_accuracy']:.1%}"
    )


# ----------------------------------------------------------------------------- helpers


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _cli_args(config: DomainTraining) -> list[str]:
    """The command-line options that reproduce `config` (architecture and augmentation included)."""
    flat = _jsonable(asdict(config))
    args = []
    for key, value in flat.items():
        if key in ("cache", "overwrite") or value is None:
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            name = "--" + (f"{key}.{sub}" if sub else key).replace("_", "-")
            args += [name, *map(str, v)] if isinstance(v, list) else [name, str(v)]
    return args


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    )
