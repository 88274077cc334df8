"""Can the text side alone learn which part a colour is on? A text-only fine-tune, measured (not a test).

    OMP_NUM_THREADS=1 python bench/bench_text_part_colours.py [--weights compact] [--steps 600] [--keep 2]

`bench_part_colours.py` shows the shipped CLIPs' image embeddings hold which part of a chair is
coloured (a linear probe reads it at 0.99 to 1.00) while their text side does not. This bench
freezes the image tower, embeds `--train-chairs` fresh chairs of seed 5000 once in four
colourings each (seat, back and legs in three different colours S, B, L; the whole chair in S;
S on the back and B on the seat; the whole chair in L), and trains the text tower so that the
first three colourings each pick their own description among "a chair with a S seat", "a S
chair", "a chair with a S back", "a chair with a B seat", and each of those three descriptions its
colouring among them; likewise the first and the last colourings between "a chair with L legs"
and "a L chair"; plus `--keep` times the squared change of the embeddings of the library's
prompts, tests, synonyms and colour words. `--save` writes the result as a compact CLIP file.
It prints, before and after, the choice table of `bench_part_colours.py` on `--eval-chairs` chairs
of seed 1000, the library's binary shape tests and 12-way colour words on 100 fresh chairs, and
how far the library's texts moved.
"""

import argparse
import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_part_colours import chairs_with_backs, choice_rates, embedded, painted, part_colourings  # the bench's folder

from clipnerf_ns.app.prompt_meanings import named_part_color_of
from clipnerf_ns.clip.domain_data import framing_of, render_objects
from clipnerf_ns.clip.domain_eval import binary_tests, color_accuracy, image_features
from clipnerf_ns.clip.encoder import (
    SHIPPED_MODELS,
    WEIGHTS_DIR,
    ClipConfig,
    ClipEncoder,
    encode_text_trimmed,
    load_compact,
    read_compact_metadata,
    save_compact,
)
from clipnerf_ns.data.synth_parts import NAMED_COLORS
from clipnerf_ns.editing.prompts import load_prompt_library

SEAT, BACK, LEGS = "a chair with a {} seat", "a chair with a {} back", "a chair with {} legs"


def training_groups(encoder, chairs: int) -> list:
    """(images of the four colourings, S, B, L) of each training chair: seat S, back B, legs L; all S;
    seat B, back S, legs L; all L."""
    rng, groups = np.random.default_rng(7), []
    for index, chair in chairs_with_backs(5000, chairs):
        s, b, legs = rng.choice(list(NAMED_COLORS), 3, replace=False)
        colourings = ({"seat": s, "back": b, "base": legs}, {"seat": s, "back": s, "base": s},
                      {"seat": b, "back": s, "base": legs}, {"seat": legs, "back": legs, "base": legs})
        # arms take the seat's colour
        groups.append((torch.stack([embedded(encoder, painted(chair, c, c["seat"]), index, 2) for c in colourings]), s, b, legs))
    return groups


def group_terms(images: torch.Tensor, s: str, b: str, legs: str, text, scale: torch.Tensor) -> list[torch.Tensor]:
    """Each colouring picks its own description among the confusable ones, and each description
    its colouring: "a chair with a S seat" the chair whose seat only is S, not the chair all in S."""
    seat, whole, leg = images[:3], images[[0, 3]], torch.arange(3)
    texts = text([SEAT.format(s), f"a {s} chair", BACK.format(s), SEAT.format(b)])
    leg_texts = text([LEGS.format(legs), f"a {legs} chair", LEGS.format(s)])
    return [F.cross_entropy(scale * seat @ texts.T, leg), F.cross_entropy(scale * texts[:3] @ seat.T, leg),
            F.cross_entropy(scale * whole @ leg_texts.T, torch.arange(2)),
            F.cross_entropy(scale * leg_texts[:2] @ whole.T, torch.arange(2))]


def train_text(encoder, groups: list, steps: int, lr: float, keep: float, keep_texts: list[str]) -> None:
    """Fine-tune `encoder`'s text tower in place on the groups (see the module's docstring)."""
    model = encoder.model
    params = [p for n, p in model.named_parameters() if not n.startswith("visual.") and n != "logit_scale"]
    for p in params:
        p.requires_grad_(True)

    def text(texts):
        return F.normalize(encode_text_trimmed(model, encoder.tokenizer(texts)).float(), dim=-1)

    with torch.no_grad():
        before = text(keep_texts)
    optimizer, scale = torch.optim.AdamW(params, lr=lr, weight_decay=0.0), model.logit_scale.exp().detach()
    start = time.perf_counter()
    for step in range(steps):
        terms = []
        for k in np.random.default_rng(step).choice(len(groups), 16, replace=False):
            terms += group_terms(*groups[k], text, scale)
        change = (text(keep_texts) - before).pow(2).sum(-1).mean()
        loss = torch.stack(terms).mean() + keep * change
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.3f} (change {change.item():.4f}), {time.perf_counter() - start:.0f} s", flush=True)
    for p in params:
        p.requires_grad_(False)


def choice_table(encoder, images: dict, prompts: list) -> str:
    """Per part prompt: part only over whole / over another part (`bench_part_colours.py`'s table)."""
    return " | ".join("{}: {:.2f} / {:.2f}".format(prompt.removeprefix("a chair with "), *choice_rates(encoder, images, prompt))
                      for prompt, _, _ in prompts)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="compact", help="a shipped CLIP's name")
    parser.add_argument("--train-chairs", type=int, default=400)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--keep", type=float, default=2.0, help="weight of the library texts' squared change")
    parser.add_argument("--eval-chairs", type=int, default=30, help="chairs of seed 1000 for the choice table")
    parser.add_argument("--save", type=Path, default=None,
                        help="write the fine-tuned CLIP here (a compact CLIP file; its training record names this bench)")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder = ClipEncoder.load(ClipConfig(model=args.weights))
    library = load_prompt_library(None, "chairs")
    prompts = [(p, *named_part_color_of(p, "chair")) for p in library.for_target("appearance") if named_part_color_of(p, "chair")]
    images = {}
    for index, chair in chairs_with_backs(1000, args.eval_chairs):
        for prompt, part, colour in prompts:
            for kind, mesh in part_colourings(chair, part, colour).items():
                images[index, prompt, kind] = embedded(encoder, mesh, index, 4)
    data = render_objects(1000, ["chairs"], 100, 2, 1, "default", encoder.image_size, description="rendering", band="front",
                          framing=framing_of(encoder, "chairs"))
    features = image_features(encoder, data)
    keep_texts = sorted(set(library.for_target("appearance")) | set(library.for_target("shape")) | {library.neutral}
                        | {x for t in library.tests for x in (t.prompt, t.opposite, *t.synonyms)}
                        | {f"a {c} chair" for c in NAMED_COLORS})
    old_texts = encoder.encode_text(keep_texts)
    for stage in ("before", "after"):
        if stage == "after":
            train_text(encoder, training_groups(encoder, args.train_chairs), args.steps, args.lr, args.keep, keep_texts)
        tests = binary_tests(encoder, data, library.tests, "chairs", features)
        colours = color_accuracy(encoder, features, [c for c in data.categories for _ in range(2)],
                                 [c for c in data.colors for _ in range(2)])
        accuracies = [t["accuracy"] for t in tests]
        print(f"{stage}: {choice_table(encoder, images, prompts)}\n{stage}: binary shape tests "
              f"{' '.join(f'{a:.2f}' for a in accuracies)} (lowest {min(accuracies):.2f}); colour words {colours:.2f}", flush=True)
    cosine = (encoder.encode_text(keep_texts) * old_texts).sum(-1)
    print(f"the library's texts: cosine to their old embeddings mean {cosine.mean():.3f}, lowest {cosine.min():.3f}")
    if args.save is not None:
        save(encoder, args)


def save(encoder, args) -> None:
    """The fine-tuned CLIP as a compact CLIP file, its training record naming the file it started from."""
    init = WEIGHTS_DIR / SHIPPED_MODELS[args.weights]
    _, preprocess, training = load_compact(init)
    record = {"text_stage": {"script": "bench/bench_text_part_colours.py", **{k: str(v) for k, v in vars(args).items()}},
              "init_sha256": hashlib.sha256(init.read_bytes()).hexdigest(), "init_training": training}
    print(f"wrote {save_compact(encoder.model, read_compact_metadata(init)['architecture'], preprocess, record, args.save)}")


if __name__ == "__main__":
    main()
