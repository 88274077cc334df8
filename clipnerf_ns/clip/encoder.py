"""A frozen CLIP behind one small interface. This is the only module that imports open_clip.

Three ways to get weights, none of which touches the network unless asked:

- ``compact`` / ``compact-eval``: the project's own small CLIPs, trained on procedural chair and
  car renders (`clipnerf train-clip`) and shipped as self-describing ``.safetensors`` files in
  ``clipnerf_ns/clip/weights/`` (architecture and preprocessing in the file's metadata).
- an open_clip model name (``ViT-B-32``...) with ``checkpoint``: a local state dict file.
- an open_clip model name with ``pretrained``: open_clip downloads the weights (online only).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

with warnings.catch_warnings():  # open_clip's import calls torch.jit.script, which torch now deprecates
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    import open_clip
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from clipnerf_ns.atomic import save_safetensors
from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.errors import UserError

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED_MODELS: dict[str, str] = {"compact": "compact.safetensors", "compact-eval": "compact-eval.safetensors"}
FORMAT_TAG = "clipnerf_ns.compact_clip.v1"
"""safetensors metadata value of 'format' in the project's self-describing CLIP files."""


@dataclass(frozen=True)
class Preprocess:
    """How images and text reach the networks."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    frame_extents: Optional[dict[str, tuple[float, float, float]]] = None
    """Per category, the (x, y, z) box its views are framed on (`render.framing_corners`), where
    the model was trained on views that keep the objects' sizes; None: framed on the object."""


# ----------------------------------------------------------------------------- pure functions


def preprocess_images(
    images: Float[Tensor, "n h w 3"], image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Float[Tensor, "n 3 s s"]:
    """Differentiable CLIP preprocessing: centre-crop to square, bilinear antialiased resize to
    `image_size` (skipped when already that size), then mean/std normalisation."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"CLIP images must have shape (n, h, w, 3) with RGB in [0, 1], got {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """The prompts as a list; an empty or whitespace-only prompt is a UserError."""
    if isinstance(prompts, str):
        prompts = [prompts]
    out = list(prompts)
    for i, prompt in enumerate(out):
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"empty prompt (prompt {i}: {prompt!r}); give some words, e.g. 'a red chair'")
    return out


def overlong_prompts(prompts: Sequence[str], tokenizer, context_length: int) -> list[tuple[str, int]]:
    """(prompt, token count incl. start/end tokens) of the prompts longer than the context."""
    if not hasattr(tokenizer, "encode"):
        return []
    counts = [(p, len(tokenizer.encode(p)) + 2) for p in prompts]
    return [(p, n) for p, n in counts if n > context_length]


def build_clip(architecture: dict) -> nn.Module:
    """A fresh open_clip `CLIP` from {"embed_dim", "vision_cfg", "text_cfg", ...} (random weights)."""
    arch = dict(architecture)
    return open_clip.CLIP(
        embed_dim=arch.pop("embed_dim"),
        vision_cfg=open_clip.CLIPVisionCfg(**arch.pop("vision_cfg")),
        text_cfg=open_clip.CLIPTextCfg(**arch.pop("text_cfg")),
        **arch,
    )


def encode_text_trimmed(model: nn.Module, tokens: Tensor) -> Tensor:
    """`model.encode_text(tokens)` of an open_clip `CLIP` with argmax (end-token) pooling, run only
    over the columns up to the batch's longest caption. The text transformer's mask is causal, so the
    end token never sees the padding after it: the result is the same, at a fraction of the cost
    when captions are much shorter than the context (as training captions are)."""
    if getattr(model, "text_pool_type", "argmax") != "argmax":
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(dim=-1)]
    projection = model.text_projection
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def resize_position_grid(embedding: Tensor, grid: int) -> Tensor:
    """A vision tower's positional embedding, (1 + g * g, width) with the pooled token first, resized
    (bicubic) to a grid x grid layout: how a tower trained at one image size starts at another."""
    old = round((embedding.shape[0] - 1) ** 0.5)
    if old == grid:
        return embedding
    cells = embedding[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    cells = F.interpolate(cells, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([embedding[:1], cells.permute(0, 2, 3, 1).reshape(grid * grid, -1)])


def load_for_training(path: Path, architecture: dict) -> tuple[nn.Module, dict]:
    """(a fresh open_clip `CLIP` of `architecture` holding the weights of the compact CLIP file at
    `path`, that file's training record). The file's architecture must equal `architecture` but
    for the vision tower's image size, whose positional grid is resized to fit."""
    theirs = read_compact_metadata(path)["architecture"]
    same_but_size = {**theirs, "vision_cfg": {**theirs["vision_cfg"], "image_size": architecture["vision_cfg"]["image_size"]}}
    if same_but_size != architecture:  # checked before any weights are read
        raise UserError(f"--init {_describe(path)} has another architecture than --arch (only the image size may differ)")
    model, _, training = load_compact(path)
    fresh = build_clip(architecture)
    state = model.state_dict()
    for key, value in fresh.state_dict().items():
        if key.endswith("positional_embedding") and key.startswith("visual.") and value.shape != state[key].shape:
            state[key] = resize_position_grid(state[key], round((value.shape[0] - 1) ** 0.5))
    fresh.load_state_dict(state, strict=True)
    return fresh, training


def new_tokenizer(context_length: int):
    """open_clip's CLIP BPE tokenizer (vocabulary file shipped with open_clip; no network)."""
    return open_clip.SimpleTokenizer(context_length=context_length)


def contrastive_loss() -> nn.Module:
    """open_clip's symmetric InfoNCE loss: loss(image_features, text_features, logit_scale)."""
    return open_clip.ClipLoss()


def save_compact(model: nn.Module, architecture: dict, preprocess: Preprocess, training: dict, path: Path) -> Path:
    """Write a self-describing CLIP file (fp16 weights; architecture, preprocessing and training
    settings in the metadata) atomically: a temporary file in the same folder, then a rename."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT_TAG,
        "architecture": json.dumps(architecture),
        "preprocess": json.dumps(
            {"image_size": preprocess.image_size, "mean": list(preprocess.mean), "std": list(preprocess.std),
             "context_length": preprocess.context_length,
             **({"frame_extents": preprocess.frame_extents} if preprocess.frame_extents else {})}
        ),
        "training": json.dumps(training),
    }
    return save_safetensors(tensors, metadata, path)


def read_compact_metadata(path: Path) -> dict:
    """The metadata of a file written by `save_compact`, JSON fields decoded. UserError if the file
    is missing, unreadable or not such a file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"CLIP weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise UserError(f"cannot read CLIP weights file {path}: not a valid safetensors file ({err})") from None
    if meta.get("format") != FORMAT_TAG:
        raise UserError(
            f"{path} is not a clipnerf_ns compact CLIP file (no '{FORMAT_TAG}' metadata); for an open_clip "
            "state dict, name its architecture with --clip.model (e.g. ViT-B-32)"
        )
    try:
        return {k: json.loads(meta[k]) for k in ("architecture", "preprocess", "training")}
    except (KeyError, json.JSONDecodeError) as err:
        raise UserError(f"CLIP weights file {path} has malformed metadata ({err})") from None


def load_compact(path: Path) -> tuple[nn.Module, Preprocess, dict]:
    """(model in fp32, preprocessing, training settings) from a file written by `save_compact`."""
    from safetensors.torch import load_file

    meta = read_compact_metadata(path)
    model = build_clip(meta["architecture"])
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        model.load_state_dict(state, strict=True)
    except Exception as err:
        raise UserError(f"CLIP weights file {path} does not match its own architecture ({err})") from None
    p = meta["preprocess"]
    extents = {c: tuple(float(v) for v in e) for c, e in p["frame_extents"].items()} if "frame_extents" in p else None
    preprocess = Preprocess(int(p["image_size"]), tuple(p["mean"]), tuple(p["std"]), int(p["context_length"]), extents)
    return model, preprocess, meta["training"]


def _describe(path: Path) -> str:
    """A path relative to the working directory or the package root when possible."""
    path = Path(path).resolve()
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return str(path)


def _check_model_name(name: str) -> None:
    if name in SHIPPED_MODELS or name in open_clip.list_models():
        return
    examples = [*SHIPPED_MODELS, "ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50"]
    raise UserError(f"unknown CLIP model {name!r}; valid names include {', '.join(examples)} (any open_clip model name)")


def _load_named(config: ClipConfig) -> tuple[nn.Module, str]:
    """An open_clip model by name, with local weights or (when asked) downloaded ones."""
    name = config.model
    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if not path.is_file():
            raise UserError(f"CLIP weights file not found: {path}")
        model = open_clip.create_model(name, pretrained=None)
        try:
            open_clip.load_checkpoint(model, str(path), weights_only=True)
        except Exception as err:
            raise UserError(f"cannot load {path} as {name} weights: {str(err).splitlines()[0][:200]}") from None
        return model, f"{name} ({_describe(path)})"
    if config.pretrained is None:
        raise UserError(
            f"no weights for CLIP model {name!r}: give a local file with --clip.checkpoint FILE "
            "(or --clip.pretrained TAG to download), or use --clip.model compact"
        )
    tags = open_clip.list_pretrained_tags_by_model(name)
    if config.pretrained not in tags:
        raise UserError(f"unknown pretrained tag {config.pretrained!r} for {name}; available: {', '.join(tags) or 'none'}")
    try:
        model = open_clip.create_model(name, pretrained=config.pretrained)
    except Exception as err:  # offline: socket, HTTP or Hugging Face hub errors, whatever the library
        raise UserError(
            f"could not download CLIP weights {name}/{config.pretrained} ({type(err).__name__}; offline?); "
            f"supply them from a local file with --clip.model {name} --clip.checkpoint FILE"
        ) from None
    return model, f"{name} (pretrained {config.pretrained})"


def _named_preprocess(model: nn.Module) -> Preprocess:
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return Preprocess(
        int(size),
        tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        int(model.context_length),
    )


# ----------------------------------------------------------------------------- the encoder


class ClipEncoder(nn.Module):
    """A frozen CLIP: L2-normalised text and image embeddings; gradients flow to input images only.

    Always in eval mode (`.train()` is a no-op) with `requires_grad=False` on every parameter.
    """

    def __init__(self, model: nn.Module, tokenizer, preprocess: Preprocess, name: str, embed_dim: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.name = name
        self.embed_dim = embed_dim
        self.image_size = preprocess.image_size
        self.context_length = preprocess.context_length
        self.model.requires_grad_(False)
        super().train(False)

    @classmethod
    def load(cls, config: ClipConfig, device: str | torch.device = "cpu") -> "ClipEncoder":
        """Build the encoder `config` describes, on `device`."""
        _check_model_name(config.model)
        if config.model in SHIPPED_MODELS:
            if config.pretrained is not None:
                raise UserError(f"--clip.pretrained applies to open_clip models, not to {config.model!r}")
            path = Path(config.checkpoint) if config.checkpoint is not None else WEIGHTS_DIR / SHIPPED_MODELS[config.model]
            model, preprocess, _ = load_compact(path)
            tokenizer = new_tokenizer(preprocess.context_length)
            name = f"{config.model} ({_describe(path)})"
        else:
            model, name = _load_named(config)
            preprocess = _named_preprocess(model)
            tokenizer = open_clip.get_tokenizer(config.model)
        embed_dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None else None
        encoder = cls(model, tokenizer, preprocess, name, embed_dim or 0)
        encoder.to(device)
        if not encoder.embed_dim:  # towers without a plain projection matrix: measure it
            encoder.embed_dim = int(encoder.encode_text(["a chair"]).shape[-1])
        return encoder

    def frame_extent(self, category: str) -> Optional[tuple[float, float, float]]:
        """The box views of `category` are framed on for this CLIP (`render.framing_corners`), or
        None: framed on the object itself (OpenAI's and LAION's CLIPs, older compact files)."""
        return (self.preprocess.frame_extents or {}).get(category)

    def train(self, mode: bool = True) -> "ClipEncoder":
        """Frozen: stays in eval mode whatever is asked."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_text(self, prompts: Sequence[str]) -> Float[Tensor, "n d_clip"]:
        """Unit-norm embeddings of `prompts`. Prompts longer than the context are truncated, with a warning."""
        prompts = check_prompts(prompts)
        if not prompts:
            return torch.zeros(0, self.embed_dim, device=self.device)
        for prompt, count in overlong_prompts(prompts, self.tokenizer, self.context_length):
            warnings.warn(
                f"prompt {prompt!r} has {count} tokens, more than the CLIP context length {self.context_length} "
                f"of {self.name}; it is truncated",
                stacklevel=2,
            )
        tokens = self.tokenizer(prompts).to(self.device)
        with torch.no_grad():
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1)

    def encode_image(self, images: Float[Tensor, "n h w 3"]) -> Float[Tensor, "n d_clip"]:
        """Unit-norm embeddings of RGB images in [0, 1] of any size; differentiable w.r.t. `images`."""
        p = self.preprocess
        x = preprocess_images(images.to(self.device, torch.float32), p.image_size, p.mean, p.std)
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    def forward(self, images: Float[Tensor, "n h w 3"]) -> Float[Tensor, "n d_clip"]:
        return self.encode_image(images)
