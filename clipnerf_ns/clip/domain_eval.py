"""The compact CLIP's zero-shot figures: retrieval among captions, colour words, and the binary
attribute tests of the prompt libraries (a prompt against its opposite), on rendered objects."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from clipnerf_ns.clip.domain_data import COLOR_NOUNS, DomainData, over_white
from clipnerf_ns.data.captions import fix_articles
from clipnerf_ns.data.synth_parts import COLOR_SYNONYMS, NAMED_COLORS


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


def color_accuracy(encoder, image_f: Float[Tensor, "n d"], categories: list[str], colors: list[str],
                   synonyms: bool = False) -> float:
    """Share of images whose true colour name wins among "a <colour> <noun>" for the 12 names
    (`synonyms`: each colour's second word instead, "scarlet", "grey", "navy blue"...)."""
    names = list(NAMED_COLORS)
    words = [COLOR_SYNONYMS[n][1] for n in names] if synonyms else names
    correct, total = 0, 0
    for category in sorted(set(categories)):
        rows = [i for i, (c, col) in enumerate(zip(categories, colors)) if c == category and col]
        if not rows:
            continue
        text = encoder.encode_text([fix_articles(f"a {word} {COLOR_NOUNS[category]}") for word in words])
        pred = (image_f[rows] @ text.T).argmax(1)
        truth = torch.tensor([names.index(colors[i]) for i in rows])
        correct += int((pred == truth).sum())
        total += len(rows)
    return correct / max(total, 1)


def evaluate(encoder, data: DomainData, caption_index: int = 0, batch: int = 256) -> dict:
    """Zero-shot figures of `encoder` on every view of `data`'s objects, over white: retrieval
    among all objects' captions (each object's caption number `caption_index`) and colour words."""
    n_obj, n_views = data.rgba.shape[:2]
    image_f = image_features(encoder, data, batch)
    with torch.no_grad():
        text_f = encoder.encode_text([caps[caption_index] for caps in data.captions])
    owner = torch.arange(n_obj).repeat_interleave(n_views)
    figures = {"objects": n_obj, "renders": len(image_f)}
    figures["i2t_top1"], figures["t2i_top1"] = retrieval_accuracy(image_f, text_f, owner, 1)
    figures["i2t_top5"], figures["t2i_top5"] = retrieval_accuracy(image_f, text_f, owner, 5)
    render_categories = [c for c in data.categories for _ in range(n_views)]
    render_colors = [c for c in data.colors for _ in range(n_views)]
    figures["color_accuracy"] = color_accuracy(encoder, image_f, render_categories, render_colors)
    figures["color_renders"] = sum(1 for c in render_colors if c)
    same = torch.tensor([c == o for c in render_categories for o in data.categories]).view(len(image_f), n_obj)
    # category from retrieval: is the best caption one of the same category?
    figures["category_accuracy"] = float(same[torch.arange(len(image_f)), (image_f @ text_f.T).argmax(1)].float().mean())
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def image_features(encoder, data: DomainData, batch: int = 256) -> Tensor:
    """(objects * views, d) unit-norm embeddings of every view of `data`, composited over white."""
    return embed_images(encoder, over_white(data.rgba), batch)


def embed_images(encoder, images: Float[Tensor, "n h w 3"], batch: int = 256) -> Tensor:
    """(n, d) unit-norm embeddings of RGB images in [0, 1], `batch` at a time, without gradients."""
    with torch.no_grad():
        return torch.cat([encoder.encode_image(images[i : i + batch]) for i in range(0, len(images), batch)])


def binary_accuracy(encoder, image_f: Tensor, truth: list[Optional[bool]], prompt: str, opposite: str,
                    objects: Optional[np.ndarray] = None) -> dict:
    """How often `encoder` prefers the true one of (prompt, opposite): balanced accuracy over the
    renders where `truth` (one entry per render) is True (prompt true) or False (opposite true);
    with the recall of each side and the AUC of the score margin, which tell an embedding that
    cannot order the renders from one that orders them but cuts in the wrong place. Given
    `objects` (each render's object index), also its 95% interval with the objects resampled."""
    text = encoder.encode_text([prompt, opposite])
    margin = image_f @ (text[0] - text[1])  # > 0: prefers the prompt
    pos = torch.tensor([t is True for t in truth])
    neg = torch.tensor([t is False for t in truth])
    if not bool(pos.any()) or not bool(neg.any()):
        return {"positives": int(pos.sum()), "negatives": int(neg.sum()), "accuracy": float("nan")}
    recall_prompt, recall_opposite = float((margin[pos] >= 0).float().mean()), float((margin[neg] < 0).float().mean())
    figures = {"positives": int(pos.sum()), "negatives": int(neg.sum()),
               "accuracy": round(0.5 * (recall_prompt + recall_opposite), 4),
               "recall_prompt": round(recall_prompt, 4), "recall_opposite": round(recall_opposite, 4),
               "auc": round(ranking_auc(margin[pos], margin[neg]), 4)}
    if objects is not None:
        right = torch.where(pos, margin >= 0, margin < 0).numpy()
        figures["interval"] = tuple(round(x, 4) for x in balanced_accuracy_interval(right, pos.numpy(), neg.numpy(), objects))
    return figures


def balanced_accuracy_interval(right: np.ndarray, pos: np.ndarray, neg: np.ndarray, objects: np.ndarray,
                               draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of a balanced accuracy (per render: `right`, and whether it counts on the positive
    or the negative side) when the objects are drawn again with replacement, all the views of one
    object together: views of one object err together, so the objects, not the renders, are the sample."""
    ids, group = np.unique(objects, return_inverse=True)
    sums = [np.bincount(group, weights=w, minlength=len(ids)) for w in (right & pos, pos, right & neg, neg)]
    counts = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=draws)
    hit_pos, n_pos, hit_neg, n_neg = (counts @ s for s in sums)
    with np.errstate(invalid="ignore", divide="ignore"):  # a draw without one side has no accuracy
        accuracy = 0.5 * (hit_pos / n_pos + hit_neg / n_neg)
    low, high = np.nanpercentile(accuracy, [2.5, 97.5])
    return float(low), float(high)


def ranking_auc(positive: Tensor, negative: Tensor) -> float:
    """Share of (positive, negative) pairs that the score orders right (ties count half): the
    balanced accuracy the best threshold could reach, near enough, where 0.5 is chance."""
    diff = positive[:, None] - negative[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


def binary_tests(encoder, data: DomainData, tests, category: str, image_f: Optional[Tensor] = None) -> list[dict]:
    """`binary_accuracy` of each test (`editing.prompts.BinaryTest`) on `data`'s objects of
    `category`, in the test's words and, where it has them, in its synonyms."""
    rows = np.array([c == category for c in data.categories])
    sub = data.subset(rows)
    feats = image_features(encoder, sub) if image_f is None else image_f[np.repeat(rows, data.rgba.shape[1])]
    views = data.rgba.shape[1]
    objects = np.repeat(np.arange(len(sub.attributes)), views)
    out = []
    for test in tests:
        truth = [t for a in sub.attributes for t in [test.truth(category, a)] * views]
        figures = {"prompt": test.prompt, "opposite": test.opposite,
                   **binary_accuracy(encoder, feats, truth, test.prompt, test.opposite, objects)}
        if test.synonyms:
            figures["synonyms"] = list(test.synonyms)
            figures["synonym_accuracy"] = binary_accuracy(encoder, feats, truth, *test.synonyms)["accuracy"]
        out.append(figures)
    return out


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
