"""The compact offline CLIP: contrastive training on renders and captions of procedural objects.

Data: procedural chairs and cars (`synth.sample_object`), each rendered from several random
cameras on the upper hemisphere and framed on the object (`render.framing_intrinsics`: the
object fills the 64 px frame, so legs, slats and armrests are two to three pixels wide rather
than one) or, with `framing` "category", on a box of its category's largest size centred on it
(`render.framing_corners`: a taller back or a longer car fills more of the frame, so sizes can be
seen; the shipped `compact` is trained so), and described by captions (`synth.make_captions`,
"default" or "alt" templates). The last objects of each category are held out. Training
composites the renders over mostly white backgrounds and softens, shifts and perturbs them
towards what NeRF renders look like.

The loss is open_clip's symmetric InfoNCE with five additions that make the model see what
captions name, not only colour: a share of the captions is built around one attribute question
(`data.attribute_captions`), each such caption's image is also contrasted with its hard negative
(the same caption with that attribute changed, as NegCLIP does), each image must pick the true
one of a question's short answer captions ("a chair with a slatted back" / "... a solid back" /
"a stool", or the twelve "a <colour> chair": the zero-shot choice that mappers and benches
make), optionally prefer each such true answer over the false answers of its other questions
("four legs" over "a wide seat" for a narrow chair: the choice across questions that
`clipnerf eval`'s five-way test makes), and linear heads on the image embedding predict every
attribute question's answer (an auxiliary loss; the heads are not saved).
The result is a self-describing .safetensors file that `ClipEncoder` loads.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.clip.domain_config import ClipArchitecture, DomainTraining
from clipnerf_ns.clip.domain_data import (
    CLIP_MEAN,
    CLIP_STD,
    DomainData,
    augment,
    frame_extents,
    load_or_render_with_front,
    render_settings,
)
from clipnerf_ns.clip.domain_eval import evaluate
from clipnerf_ns.data.attribute_captions import answer_captions, applicable, focused_pair
from clipnerf_ns.data.attributes import QUESTIONS
from clipnerf_ns.errors import UserError
from clipnerf_ns.progress import progress_bar
from clipnerf_ns.validation import check_numbers

# ----------------------------------------------------------------------------- model and training


def new_model(arch: ClipArchitecture, seed: int) -> torch.nn.Module:
    """A freshly initialised compact CLIP (open_clip architecture)."""
    # deferred: open_clip is slow to import, and the judge's training needs none of it
    from clipnerf_ns.clip.encoder import build_clip

    torch.manual_seed(seed)
    return build_clip(arch.open_clip_config())


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


def contrastive_loss(image_f: Tensor, text_f: Tensor, logit_scale: Tensor,
                     negative_f: Optional[Tensor] = None, has_negative: Optional[Tensor] = None) -> Tensor:
    """Symmetric InfoNCE over a batch of unit-norm pairs (open_clip's ClipLoss), where each image
    may also be contrasted with its own hard-negative text (NegCLIP): image i must prefer text i
    over every other text of the batch and over negative_f[i] where has_negative[i]."""
    logits = logit_scale * image_f @ text_f.T
    target = torch.arange(len(image_f))
    image_logits = logits
    if negative_f is not None:
        own = logit_scale * (image_f * negative_f).sum(-1, keepdim=True)
        image_logits = torch.cat([logits, own.masked_fill(~has_negative[:, None], float("-inf"))], dim=1)
    return 0.5 * (F.cross_entropy(image_logits, target) + F.cross_entropy(logits.T, target))


def answer_loss(image_f: Float[Tensor, "b d"], answer_f: Float[Tensor, "u d"], choices: Tensor, target: Tensor,
                logit_scale: Tensor, offset: Optional[Tensor] = None, weight: Optional[Tensor] = None) -> Tensor:
    """Cross-entropy of each image's choice among its own answer captions: choices (b, k) indexes
    rows of answer_f (-1 pads shorter answer sets), target (b,) is the true column; `offset` (b, k)
    is added to the logits in training only (logit adjustment, `answer_log_priors`); `weight` (b,)
    scales each row's term (`question_weights`; the mean is over rows, so 1 leaves a row as it was)."""
    logits = logit_scale * image_f @ answer_f.T
    picked = logits.gather(1, choices.clamp(min=0))
    if offset is not None:
        picked = picked + offset
    terms = F.cross_entropy(picked.masked_fill(choices < 0, float("-inf")), target, reduction="none")
    return (terms if weight is None else terms * weight).mean()


def cross_answer_choices(choices: Tensor, true_answer: Tensor, rows: Tensor) -> Tensor:
    """For each asked question (rows of `choices`, as `answer_loss` takes them), its true answer
    caption (column 0) and the false answer captions of the other questions asked of the same
    image (`rows`: the image of each question), -1 padded; duplicates of the true caption left out.
    With target 0, `answer_loss` of these is the choice among prompts of different questions."""
    true_caption = choices.gather(1, true_answer[:, None])[:, 0]
    columns = torch.arange(choices.shape[1])
    sets = []
    for k in range(len(choices)):
        others = (rows == rows[k]) & (torch.arange(len(choices)) != k)
        false = choices[others][(columns[None] != true_answer[others][:, None]) & (choices[others] >= 0)]
        sets.append([int(true_caption[k])] + [int(c) for c in false.unique() if c != true_caption[k]])
    width = max(len(s) for s in sets)
    return torch.tensor([s + [-1] * (width - len(s)) for s in sets])


def question_weights(keys: list[str], focus: tuple[str, ...], focus_weight: float) -> Tensor:
    """(len(keys),) weight of each asked question (`head_key`): `focus_weight` for the questions
    named in `focus`, 1 for the others."""
    return torch.tensor([focus_weight if key.split("__", 1)[1] in focus else 1.0 for key in keys])


def answer_log_priors(labels: Tensor, categories: list[str], rows: np.ndarray) -> dict[str, Tensor]:
    """Per question (`head_key`): the log share of each answer among the objects `rows` it applies
    to (add-one smoothed). Added to the answer loss's logits, it makes the scores the model learns
    those of balanced accuracy (Menon et al. 2021, logit adjustment): a plain cross-entropy learns
    to lean towards common answers (1 chair in 6 has three legs)."""
    priors = {}
    for category in sorted(set(categories)):
        mine = rows[[categories[i] == category for i in rows]]
        for j, q in enumerate(QUESTIONS[category]):
            y = labels[mine, j]
            counts = torch.bincount(y[y >= 0], minlength=len(q.answers)).float() + 1
            priors[head_key(category, q.name)] = torch.log(counts / counts.sum())
    return priors


def head_key(category: str, question: str) -> str:
    """Module name of a question's head (module names may not contain dots)."""
    return f"{category}__{question}"


class AttributeHeads(torch.nn.Module):
    """One linear classifier per (category, question) over a feature vector."""

    def __init__(self, in_dim: int, answers: dict[str, int]) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleDict({key: torch.nn.Linear(in_dim, n) for key, n in answers.items()})

    @staticmethod
    def answer_counts(categories) -> dict[str, int]:
        return {head_key(c, q.name): len(q.answers) for c in categories for q in QUESTIONS[c]}

    def forward(self, features: Tensor, category: str, question: str) -> Tensor:
        return self.heads[head_key(category, question)](features)

    def loss(self, features: Tensor, categories: list[str], labels: Tensor,
             focus: tuple[str, ...] = (), focus_weight: float = 1.0) -> Tensor:
        """Mean over the heads of the cross-entropy on the rows it applies to, the heads of the
        questions in `focus` counted `focus_weight` times; labels (b, questions) holds answer
        indices in `QUESTIONS[category]` order, -1 where a question does not apply."""
        terms = []
        for category in sorted(set(categories)):
            rows = torch.tensor([c == category for c in categories])
            for j, q in enumerate(QUESTIONS[category]):
                y = labels[rows, j]
                if bool((y >= 0).any()):
                    term = F.cross_entropy(self(features[rows], category, q.name), y, ignore_index=-1)
                    terms.append(term * (focus_weight if q.name in focus else 1.0))
        return torch.stack(terms).mean() if terms else features.sum() * 0.0


def label_table(data: DomainData) -> Tensor:
    """(objects, questions) answer indices of every object (-1: does not apply, or other category's column)."""
    width = max(len(QUESTIONS[c]) for c in set(data.categories))
    labels = torch.full((len(data.attributes), width), -1, dtype=torch.long)
    for i, (c, a) in enumerate(zip(data.categories, data.attributes)):
        row = [q.label(a) for q in QUESTIONS[c]]
        labels[i, : len(row)] = torch.tensor(row)
    return labels


@dataclass
class Batch:
    images: Tensor
    objects: np.ndarray
    captions: list[str]
    negatives: list[Optional[str]]
    answers: list[list[str]] = field(default_factory=list)
    """Per question asked (when the answer loss is on): the answer captions of one of an image's questions."""
    true_answer: list[int] = field(default_factory=list)
    """Per question asked: the index of its true answer in `answers`."""
    answer_rows: list[int] = field(default_factory=list)
    """Per question asked: the batch row of the image it is asked of."""
    answer_keys: list[str] = field(default_factory=list)
    """Per question asked: its `head_key` (category and question)."""


def sample_batch(data: DomainData, train_idx: np.ndarray, config: DomainTraining, g: torch.Generator) -> Batch:
    """Distinct training objects, one random view each; a general caption, or on a share of them
    a caption focused on one attribute question with its hard negative."""
    pick = train_idx[torch.randperm(len(train_idx), generator=g)[: config.batch_size].numpy()]
    views = torch.randint(0, data.rgba.shape[1], (len(pick),), generator=g).numpy()
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g)))
    captions, negatives = [], []
    for i in pick:
        questions = applicable(data.categories[i], data.attributes[i])
        if questions and rng.random() < config.focused_captions:
            focus = questions[int(rng.integers(len(questions)))]
            positive, negative = focused_pair(data.categories[i], data.attributes[i], focus, rng, config.templates)
            captions.append(positive)
            negatives.append(negative if config.hard_negatives else None)
        else:
            captions.append(data.captions[i][int(rng.integers(len(data.captions[i])))])
            negatives.append(None)
    answers, true_answer, answer_rows, answer_keys = [], [], [], []
    if config.answer_weight > 0:  # drawn after the captions, so the captions do not depend on it
        for row, i in enumerate(pick):
            questions = applicable(data.categories[i], data.attributes[i])
            first = int(rng.integers(len(questions)))  # one question draws as it always did: recorded recipes replay
            more = [int(k) for k in rng.permutation(len(questions)) if k != first] if config.answer_questions > 1 else []
            for k in [first] + more[: config.answer_questions - 1]:
                answers.append(answer_captions(data.categories[i], data.attributes[i], questions[k], rng, config.templates))
                true_answer.append(questions[k].label(data.attributes[i]))
                answer_rows.append(row)
                answer_keys.append(head_key(data.categories[i], questions[k].name))
    images = augment(torch.from_numpy(data.rgba[pick, views]), config.augment, g)
    return Batch(images, pick, captions, negatives, answers, true_answer, answer_rows, answer_keys)


def train_step(model, heads: Optional[AttributeHeads], optimizer, batch: Batch, tokenize, labels: Tensor,
               categories: list[str], config: DomainTraining, log_priors: Optional[dict[str, Tensor]] = None) -> float:
    """One step of contrastive (+ hard negative, + answer, + attribute) loss; returns the loss.
    `log_priors` (`answer_log_priors`) adjusts the answer loss's logits when given.
    The logit scale is clamped at 100, as open_clip does."""
    # deferred: open_clip is slow to import, and the judge's training needs none of it
    from clipnerf_ns.clip.encoder import encode_text_trimmed, preprocess_images

    x = preprocess_images(batch.images, config.arch.image_size, CLIP_MEAN, CLIP_STD)
    raw_image = model.encode_image(x)
    image_f = F.normalize(raw_image, dim=-1)
    has_negative = torch.tensor([n is not None for n in batch.negatives])
    texts = batch.captions + [n for n in batch.negatives if n is not None]
    text_all = F.normalize(encode_text_trimmed(model, tokenize(texts)), dim=-1)
    text_f, negative_f = text_all[: len(batch.captions)], None
    if bool(has_negative.any()):
        negative_f = torch.zeros_like(text_f)
        negative_f[has_negative] = text_all[len(batch.captions):]
    loss = contrastive_loss(image_f, text_f, model.logit_scale.exp(), negative_f, has_negative)
    if batch.answers:
        unique = sorted({c for answers in batch.answers for c in answers})  # the same few captions recur
        row = {c: k for k, c in enumerate(unique)}
        width = max(len(a) for a in batch.answers)
        choices = torch.tensor([[row[c] for c in a] + [-1] * (width - len(a)) for a in batch.answers])
        answer_f = F.normalize(encode_text_trimmed(model, tokenize(unique)), dim=-1)
        offset = None
        if log_priors is not None:
            offset = torch.zeros(choices.shape)
            for k, key in enumerate(batch.answer_keys):
                offset[k, : len(log_priors[key])] = log_priors[key]
        weight = question_weights(batch.answer_keys, config.focus_questions, config.focus_weight) if config.focus_questions else None
        loss = loss + config.answer_weight * answer_loss(
            image_f[batch.answer_rows], answer_f, choices, torch.tensor(batch.true_answer), model.logit_scale.exp(), offset,
            weight)
        if config.cross_answer_weight > 0:
            cross = cross_answer_choices(choices, torch.tensor(batch.true_answer), torch.tensor(batch.answer_rows))
            loss = loss + config.cross_answer_weight * answer_loss(
                image_f[batch.answer_rows], answer_f, cross, torch.zeros(len(cross), dtype=torch.long), model.logit_scale.exp())
    if heads is not None and config.attribute_weight > 0:
        rows = torch.from_numpy(batch.objects)
        loss = loss + config.attribute_weight * heads.loss(raw_image, [categories[i] for i in batch.objects], labels[rows],
                                                          config.focus_questions, config.focus_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def train_clip(config: DomainTraining) -> tuple[Path, dict]:
    """Render (or load) the data, train, save atomically, evaluate on held-out objects.
    Returns (the weights file, the figures)."""
    # deferred: open_clip is slow to import, and the judge's training needs none of it
    from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder, Preprocess, new_tokenizer, save_compact

    _validate(config)
    model, init_record = initial_model(config)
    start = time.perf_counter()
    data = load_or_render_with_front(render_settings(config), config.front_views, config.cache)
    render_s = time.perf_counter() - start
    train_idx = np.flatnonzero(~data.heldout)
    tokenize = new_tokenizer(config.arch.context_length)
    labels = label_table(data)
    log_priors = answer_log_priors(labels, data.categories, train_idx) if config.answer_balance else None
    heads = AttributeHeads(config.arch.embed_dim, AttributeHeads.answer_counts(config.categories))
    trained = torch.nn.ModuleList([model, heads]) if config.attribute_weight > 0 else model
    optimizer = torch.optim.AdamW(param_groups(trained, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    g = torch.Generator().manual_seed(config.seed)
    losses = []
    model.train()
    t0 = time.perf_counter()
    with progress_bar() as progress:
        bar = progress.add_task("training compact CLIP", total=config.steps, status="")
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config.steps, config.lr, config.warmup_steps)
            batch = sample_batch(data, train_idx, config, g)
            losses.append(train_step(model, heads, optimizer, batch, tokenize, labels, data.categories, config,
                                     log_priors))
            if step % 10 == 0 or step == config.steps - 1:
                progress.update(bar, status=f"loss {np.mean(losses[-50:]):.3f}")
                if not progress.console.is_terminal and step % 100 == 0:  # a log file gets a line now and then
                    progress.console.print(f"step {step}/{config.steps} loss {np.mean(losses[-50:]):.3f}")
            progress.advance(bar)
    train_s = time.perf_counter() - t0
    model.eval()
    arch = config.arch
    preprocess = Preprocess(arch.image_size, CLIP_MEAN, CLIP_STD, arch.context_length,
                            frame_extents(config.framing, config.categories))
    training = {
        **jsonable(asdict(config)), "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "render_seconds": round(render_s, 1), "train_seconds": round(train_s, 1),
        "command": "clipnerf train-clip " + " ".join(cli_args(config)), **init_record,
    }
    heldout = data.subset(data.heldout)
    if len(heldout.captions):
        # figures need the final weights as ClipEncoder loads them (fp16 on disk): save, load, score, save again
        save_compact(model, arch.open_clip_config(), preprocess, training, _check_out(config))
        encoder = ClipEncoder.load(ClipConfig(model="compact", checkpoint=config.out))
        training["heldout_figures"] = evaluate(encoder, heldout)
    save_compact(model, arch.open_clip_config(), preprocess, training, _check_out(config, again=True))
    return config.out, training


def initial_model(config: DomainTraining) -> tuple[torch.nn.Module, dict]:
    """(the model training starts from, what the new file records of it): fresh weights, or those
    of `config.init` with its fingerprint and its own training record (how it was made)."""
    if config.init is None:
        return new_model(config.arch, config.seed), {}
    # deferred: open_clip is slow to import, and the judge's training needs none of it
    from clipnerf_ns.clip.encoder import load_for_training

    torch.manual_seed(config.seed)
    model, record = load_for_training(config.init, config.arch.open_clip_config())
    return model, init_record(config.init, record)


def init_record(init: Path, training: dict) -> dict:
    """What a file trained further from `init` records of it: its fingerprint and its own training
    record, so every stage can be replayed."""
    return {"init_sha256": hashlib.sha256(init.read_bytes()).hexdigest(), "init_training": training}


def _validate(config: DomainTraining) -> None:
    check_numbers(config)  # the ranges of single options are their `Bounds`
    known = {q.name for c in config.categories for q in QUESTIONS[c]}
    unknown = [name for name in config.focus_questions if name not in known]
    checks = [
        (0 <= config.heldout_objects < config.num_objects,
         f"--heldout-objects must be in [0, --num-objects), got {config.heldout_objects}"),
        (len(config.categories) >= 1, "--categories needs at least one category"),
        (config.cross_answer_weight == 0 or (config.answer_weight > 0 and config.answer_questions >= 2),
         "--cross-answer-weight needs --answer-weight above 0 and --answer-questions 2 or more"),
        (config.out.suffix == ".safetensors", f"--out must end in .safetensors, got {config.out}"),
        (not unknown, f"--focus-questions: no question {', '.join(unknown)} in {', '.join(config.categories)}; "
                      f"valid: {', '.join(sorted(known))}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    _check_out(config)


def _check_out(config: DomainTraining, again: bool = False) -> Path:
    if config.out.exists() and not (config.overwrite or again):
        raise UserError(f"{config.out} exists; pass --overwrite to replace it")
    return config.out


# ----------------------------------------------------------------------------- helpers


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def cli_args(config: DomainTraining) -> list[str]:
    """The command-line options that reproduce `config` (architecture and augmentation included)."""
    flat = jsonable(asdict(config))
    args = []
    for key, value in flat.items():
        if key in ("cache", "overwrite") or value is None or value == []:  # tyro reads a missing list as its default
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            name = (f"{key}.{sub}" if sub else key).replace("_", "-")
            if isinstance(v, bool):  # tyro's flags: --name / --no-name
                args.append(f"--{name}" if v else f"--no-{name}")
            else:
                args += [f"--{name}", *map(str, v)] if isinstance(v, list) else [f"--{name}", str(v)]
    return args
