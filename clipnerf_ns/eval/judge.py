"""The attribute judge: a small ConvNet that answers visual questions about renders.

It answers the questions of `clipnerf_ns.data.attributes` ("does this chair have armrests?",
"what colour is its seat?") from one RGB render, and was trained on procedural renders against
their true attributes, so shape edits can be measured as attribute flips without trusting any
CLIP. Architecture: four conv stages (3x3 conv, batch norm, ReLU; max-pooled between stages, so
one-pixel legs and slats survive the downsampling), average and max pooling, one linear head per
question. Shipped as a self-describing safetensors file (`clipnerf_ns/eval/weights/judge.safetensors`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from clipnerf_ns.atomic import save_safetensors
from clipnerf_ns.clip.domain import AttributeHeads, cli_args, head_key, init_record, jsonable, label_table, lr_at
from clipnerf_ns.clip.domain_data import augment, frame_extents, load_or_render_with_front, over_white
from clipnerf_ns.data.attributes import QUESTIONS, question
from clipnerf_ns.errors import UserError
from clipnerf_ns.eval.judge_config import JudgeTraining
from clipnerf_ns.progress import progress_bar
from clipnerf_ns.validation import check_numbers

SHIPPED_JUDGE = Path(__file__).parent / "weights" / "judge.safetensors"
FORMAT_TAG = "clipnerf_ns.attribute_judge.v1"
_MEAN, _STD = 0.5, 0.25


class JudgeNet(nn.Module):
    """ConvNet trunk and one linear head per (category, question)."""

    def __init__(self, widths: tuple[int, ...], heads: dict[str, int], stem_stride: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for stage, width in enumerate(widths):
            for _ in range(1 if stage == 0 else 2):
                stride = stem_stride if stage == 0 else 1
                layers += [nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                c_in = width
            if stage < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.trunk = nn.Sequential(*layers)
        self.heads = AttributeHeads(2 * c_in, heads)

    def features(self, x: Float[Tensor, "b 3 s s"]) -> Float[Tensor, "b f"]:
        y = self.trunk(x)
        return torch.cat([y.mean((2, 3)), y.amax((2, 3))], dim=1)

    def logits(self, features: Tensor, category: str, question: str) -> Tensor:
        return self.heads(features, category, question)


def preprocess(images: Float[Tensor, "n h w 3"], size: int) -> Float[Tensor, "n 3 s s"]:
    """RGB in [0, 1] -> normalised (n, 3, size, size), resized (antialiased) when needed."""
    x = images.permute(0, 3, 1, 2).float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - _MEAN) / _STD


class Judge:
    """A trained judge: `answer_probabilities(images, category)` for every question of the category."""

    def __init__(self, net: JudgeNet, image_size: int, questions: dict[str, list[tuple[str, tuple[str, ...]]]],
                 training: dict, name: str, frame_extents: Optional[dict] = None) -> None:
        self.net = net.eval().requires_grad_(False)
        self.image_size = image_size
        self.frame_extents = frame_extents or {}
        """Per category, the box its views are framed on (`render.framing_corners`); absent: on the object."""
        self.questions = questions
        self.training = training
        self.name = name

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "Judge":
        """The judge in `path` (default: the shipped one). UserError if it is not a judge file."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path) if path is not None else SHIPPED_JUDGE
        if not path.is_file():
            raise UserError(f"attribute judge file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("format") != FORMAT_TAG:
                raise UserError(f"{path} is not an attribute judge file (no '{FORMAT_TAG}' metadata)")
            arch = json.loads(meta["architecture"])
            questions = {c: [(n, tuple(a)) for n, a in qs] for c, qs in json.loads(meta["questions"]).items()}
            training = json.loads(meta["training"])
            net = JudgeNet(tuple(arch["widths"]), {head_key(c, n): len(a) for c, qs in questions.items() for n, a in qs},
                           int(arch.get("stem_stride", 1)))
            net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
        except UserError:
            raise
        except Exception as err:  # corrupt header, missing keys, wrong shapes
            raise UserError(f"cannot read attribute judge file {path} ({str(err).splitlines()[0][:200]})") from None
        extents = {c: tuple(e) for c, e in arch.get("frame_extents", {}).items()}
        return cls(net, int(arch["image_size"]), questions, training, path.name, extents)

    def frame_extent(self, category: str) -> Optional[tuple[float, float, float]]:
        """The box views of `category` are framed on for this judge, or None (on the object)."""
        return self.frame_extents.get(category)

    def answer_probabilities(self, images: Float[Tensor, "n h w 3"], category: str) -> dict[str, Tensor]:
        """{question: (n, answers) probabilities} for RGB renders in [0, 1] (over white, as evaluated)."""
        if category not in self.questions:
            raise UserError(f"the attribute judge knows {', '.join(self.questions)}, not {category!r}")
        with torch.no_grad():
            f = self.net.features(preprocess(images.cpu(), self.image_size))
            return {q: self.net.logits(f, category, q).softmax(-1) for q, _ in self.questions[category]}

    def answers(self, images: Float[Tensor, "n h w 3"], category: str) -> dict[str, list[str]]:
        """{question: the most likely answer of each image}."""
        names = dict(self.questions[category])
        return {q: [names[q][i] for i in p.argmax(-1).tolist()] for q, p in self.answer_probabilities(images, category).items()}


# ----------------------------------------------------------------------------- training


def train_judge(config: JudgeTraining) -> tuple[Path, dict]:
    """Render (or load) the data, train, evaluate on the held-out objects, save atomically."""
    _validate(config)
    start = time.perf_counter()
    data = _training_data(config)
    render_s = time.perf_counter() - start
    labels = label_table(data)
    net, start_record = _initial_net(config)
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    g = torch.Generator().manual_seed(config.seed)
    train_idx = np.flatnonzero(~data.heldout)
    losses: list[float] = []
    t0 = time.perf_counter()
    net.train()
    with progress_bar() as progress:
        bar = progress.add_task("training the attribute judge", total=config.steps, status="")
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config.steps, config.lr, config.warmup_steps)
            pick = train_idx[torch.randint(0, len(train_idx), (config.batch_size,), generator=g).numpy()]
            views = torch.randint(0, data.rgba.shape[1], (len(pick),), generator=g).numpy()
            images = augment(torch.from_numpy(data.rgba[pick, views]), config.augment, g)
            features = net.features(preprocess(images, config.image_size))
            loss = net.heads.loss(features, [data.categories[i] for i in pick], labels[torch.from_numpy(pick)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0 or step == config.steps - 1:
                progress.update(bar, status=f"loss {np.mean(losses[-50:]):.3f}")
                if not progress.console.is_terminal and step % 100 == 0:  # a log file gets a line now and then
                    progress.console.print(f"step {step}/{config.steps} loss {np.mean(losses[-50:]):.3f}")
            progress.advance(bar)
    net.eval()
    training = {
        **jsonable(asdict(config)), "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "render_seconds": round(render_s, 1), "train_seconds": round(time.perf_counter() - t0, 1),
        "command": "clipnerf train-judge " + " ".join(cli_args(config)), **start_record,
    }
    questions = {c: [(q.name, list(q.answers)) for q in QUESTIONS[c]] for c in config.categories}
    judge = Judge(net, config.image_size, {c: [(n, tuple(a)) for n, a in qs] for c, qs in questions.items()},
                  training, config.out.name, frame_extents(config.framing, config.categories))
    heldout = data.subset(data.heldout)
    if len(heldout.attributes):
        training["heldout_accuracy"] = accuracy(judge, heldout.rgba, heldout.categories, heldout.attributes)
    _save(net, config, questions, training)
    return config.out, training


def _initial_net(config: JudgeTraining) -> tuple[JudgeNet, dict]:
    """(the net training starts from, what the new file records of it): fresh weights, or those
    of `config.init` with its fingerprint and its own training record (how it was made)."""
    torch.manual_seed(config.seed)
    net = JudgeNet(tuple(config.widths), AttributeHeads.answer_counts(config.categories), config.stem_stride)
    if config.init is None:
        return net, {}
    start = Judge.load(config.init)
    trained = start.training  # its settings
    mismatches = [name for name, mine, theirs in [
        ("--widths", list(config.widths), list(trained.get("widths", []))),
        ("--stem-stride", config.stem_stride, trained.get("stem_stride")),
        ("--image-size", config.image_size, start.image_size),
        ("--categories", sorted(config.categories), sorted(start.questions)),
    ] if mine != theirs]
    if mismatches:
        raise UserError(f"--init {config.init} was trained with other {', '.join(mismatches)}")
    try:
        net.load_state_dict(start.net.state_dict())
    except RuntimeError:  # the questions changed since it was trained
        raise UserError(f"--init {config.init} answers other questions than this version's judge") from None
    return net, init_record(config.init, start.training)


def _training_data(config: JudgeTraining):
    """The rendered objects (from the cache when it holds them): `views` all around, then
    `front_views` of the same objects from the front band."""
    settings = {
        "seed": config.seed, "categories": tuple(config.categories), "per_category": config.num_objects,
        "views": config.views, "captions": 1, "templates": "default", "size": config.image_size,
        "heldout_per_category": config.heldout_objects, "framing": config.framing,
    }
    return load_or_render_with_front(settings, config.front_views, config.cache)


def accuracy(judge: Judge, rgba: np.ndarray, categories: list[str], attributes: list[dict]) -> dict[str, dict]:
    """{category: {question: share of the renders (where it applies) answered right, over white}}."""
    out: dict[str, dict] = {}
    for category in sorted(set(categories)):
        rows = [i for i, c in enumerate(categories) if c == category]
        views = rgba.shape[1]
        images = over_white(rgba[rows])
        batches = [judge.answer_probabilities(images[i : i + 512], category) for i in range(0, len(images), 512)]
        probs = {q: torch.cat([b[q] for b in batches]) for q, _ in judge.questions[category]}
        asked = [question(category, name) for name, _ in judge.questions[category]]  # the judge's own, in its order
        table = torch.tensor([[q.label(attributes[i]) for q in asked] for i in rows]).repeat_interleave(views, 0)
        figures = {}
        for j, q in enumerate(asked):
            y = table[:, j]
            keep = y >= 0
            if bool(keep.any()):
                figures[q.name] = round(float((probs[q.name][keep].argmax(-1) == y[keep]).float().mean()), 4)
        out[category] = figures
    return out


def format_accuracy(accuracy_by_category: dict[str, dict]) -> str:
    """Per-question accuracy as readable lines, lowest first."""
    lines = []
    for category, figures in accuracy_by_category.items():
        worst = sorted(figures.items(), key=lambda kv: kv[1])
        lines.append(f"{category}: " + ", ".join(f"{q} {v:.1%}" for q, v in worst))
    return "\n".join(lines)


def _save(net: JudgeNet, config: JudgeTraining, questions: dict, training: dict) -> Path:
    extents = frame_extents(config.framing, config.categories)
    tensors = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in net.state_dict().items()}
    metadata = {
        "format": FORMAT_TAG,
        "architecture": json.dumps({"widths": list(config.widths), "image_size": config.image_size,
                                    "stem_stride": config.stem_stride, "mean": _MEAN, "std": _STD,
                                    **({"frame_extents": extents} if extents else {})}),
        "questions": json.dumps(questions),
        "training": json.dumps(training),
    }
    return save_safetensors(tensors, metadata, config.out)


def _validate(config: JudgeTraining) -> None:
    check_numbers(config)  # the ranges of single options are their `Bounds`
    checks = [
        (0 <= config.heldout_objects < config.num_objects, "--heldout-objects must be in [0, --num-objects)"),
        (len(config.widths) >= 1 and all(w >= 1 for w in config.widths), "--widths needs positive channel counts"),
        (config.stem_stride in (1, 2), "--stem-stride must be 1 or 2"),
        (config.image_size >= config.stem_stride * 2 ** (len(config.widths) - 1),
         "--image-size is too small for that many stages"),
        (config.out.suffix == ".safetensors", f"--out must end in .safetensors, got {config.out}"),
        (config.overwrite or not config.out.exists(), f"{config.out} exists; pass --overwrite to replace it"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
