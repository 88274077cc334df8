"""Benchmark: what CLIP weights and the attribute judge see, on freshly generated procedural objects.

    OMP_NUM_THREADS=1 python bench/bench_clip.py [--weights compact compact-eval FILE...]
        [--judge FILE] [--seed 1000] [--objects 300] [--views 4] [--templates default alt] [--probe 600]
        [--judge-objects 600]

The objects come from `--seed`, which no shipped model was trained on (the CLIPs use seeds 0 and
1, the judge seed 2), so every object is held out. For each weights file:

- every binary test of the chairs and cars prompt libraries (`tests:` in clipnerf_ns/editing/prompt_libraries/*.yaml):
  the CLIP chooses between a prompt and its opposite ("a chair with a tall back" / "... a short
  back") on renders where the attributes say which is true; balanced accuracy (chance 0.50) in
  the library's words, in the test's synonyms, and framed as "a photo of ..."; then, in the
  library's words, the recall of each side, the AUC of the score margin (whether an error is
  the ranking's or a lean towards one answer) and the accuracy's 95% interval with the objects
  drawn again (how far the figure would move on other objects);
- 12-way colour words ("a <colour> chair/car"), with the library's colour names and with synonyms;
- per caption template set: image->text and text->image retrieval among all objects' captions.

With `--probe N`, a linear probe of each CLIP's image embedding per binary test, fit on N other
objects per category: what the embedding holds, whether or not the zero-shot choice reads it.

Each model sees the objects framed as its training views were (`--framing model`). Then the
judge's accuracy for every question on `--judge-objects` objects of the same seed, at random views
of the band and at the one view `clipnerf eval` judges edits from. Prints figures; not a test.

With `--partnet ../shared/data/partnet` the objects are real chairs instead (`--colorings` named
part colourings of each), their ground truth the attributes measured on PartNet's labelled parts
(`clipnerf_ns.data.partnet`): how far models trained on procedural chairs carry to real ones.
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipnerf_ns.clip.domain_data import framing_of, render_labelled_chairs, render_objects
from clipnerf_ns.clip.domain_eval import binary_tests, color_accuracy, evaluate, format_figures, image_features
from clipnerf_ns.clip.encoder import SHIPPED_MODELS, ClipConfig, ClipEncoder
from clipnerf_ns.data.cameras import VIEW_DEG
from clipnerf_ns.editing.prompts import load_prompt_library
from clipnerf_ns.eval.judge import Judge, accuracy, format_accuracy


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=list(SHIPPED_MODELS), help="shipped names or .safetensors files")
    parser.add_argument("--judge", type=Path, default=None, help="attribute judge file (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=1000, help="objects' seed (no shipped model used it)")
    parser.add_argument("--objects", type=int, default=300,
                        help="objects per category (at 100, a test with 12 objects on one side, as recline has, "
                             "moves by 0.03 between draws)")
    parser.add_argument("--views", type=int, default=4, help="random views per object")
    parser.add_argument("--templates", nargs="+", default=["default", "alt"], choices=["default", "alt"],
                        help="caption template sets for the retrieval figures")
    parser.add_argument("--resolution", type=int, default=None, help="render size of the CLIPs' views (other than a model's "
                             "input: resized); default: each model's own input size, as for the judge")
    parser.add_argument("--categories", nargs="+", default=["chairs", "cars"])
    parser.add_argument("--framing", default="model", choices=["model", "object", "category", "collection"],
                        help="views framed as each model's training views were ('model'), on the object, on its "
                             "category's box (sizes kept), or the collections' 40 deg views")
    parser.add_argument("--band", default="front", choices=["front", "all", "judged"],
                        help="cameras: 'front' (azimuth within 70 deg of the front, elevation 10-40), 'all' around, or "
                             "'judged': the one direction clipnerf eval judges edits from (on the evaluation ring; only "
                             "the distance varies, so use --views 1)")
    parser.add_argument("--judge-objects", type=int, default=600,
                        help="objects per category the judge is scored on (same seed; the first --objects are the "
                             "CLIPs' objects): at --views views of --band, and at the one view clipnerf eval judges "
                             "from; 0 skips the judge")
    parser.add_argument("--partnet", type=Path, default=None,
                        help="instead of procedural objects: the real PartNet chairs in this folder (e.g. ../shared/data/partnet), "
                             "with attributes measured on their labelled parts")
    parser.add_argument("--colorings", type=int, default=4, help="with --partnet: named part colourings of each chair")
    parser.add_argument("--probe", type=int, default=0, metavar="OBJECTS",
                        help="also fit a linear probe of each CLIP's image embedding per binary test, on this many "
                             "objects per category of seed --probe-seed (2 views each), and score it on the bench's "
                             "renders: what the embedding holds, against what the zero-shot choice reads of it")
    parser.add_argument("--probe-seed", type=int, default=3000, help="objects' seed of the probe's training renders")
    args = parser.parse_args()
    if args.partnet:  # real chairs are captioned with the default templates only
        args.categories, args.templates = ["chairs"], ["default"]

    encoders = [
        ClipEncoder.load(ClipConfig(model=w) if w in SHIPPED_MODELS else ClipConfig(model="compact", checkpoint=Path(w)))
        for w in args.weights
    ]
    judge = Judge.load(args.judge)

    def framing(model) -> str:
        return framing_of(model, args.categories[0]) if args.framing == "model" else args.framing

    renders: dict[tuple[str, str, int], object] = {}

    def size_of(model) -> int:
        return args.resolution or model.image_size

    def views(how: str, templates: str, size: int):
        """The bench's objects framed one way, captioned with one template set (rendered once)."""
        if (how, templates, size) not in renders:
            t0 = time.perf_counter()
            if args.partnet:
                renders[how, templates, size] = render_labelled_chairs(
                    args.partnet, args.colorings, args.views, size, args.seed, args.band, how)
                what = f"{len(renders[how, templates, size].attributes)} real chairs and colourings"
            else:
                renders[how, templates, size] = render_objects(
                    args.seed, args.categories, args.objects, args.views, 1, templates, size,
                    description="rendering", band=args.band, framing=how)
                what = f"{args.objects} objects per category"
            print(f"rendered {what} x {args.views} '{args.band}' views ({how} "
                  f"framing) at {size} px in {time.perf_counter() - t0:.0f} s (seed {args.seed})\n")
        return renders[how, templates, size]

    data = views(framing(encoders[0]), args.templates[0], size_of(encoders[0]))  # truth and captions: the same objects in every framing
    features = {e.name: image_features(e, views(framing(e), args.templates[0], size_of(e))) for e in encoders}
    print_binary_tests(encoders, features, data, args.categories, args.views)
    if args.probe and not args.partnet:
        rendered = {(how, size): render_objects(args.probe_seed, args.categories, args.probe, 2, 1, args.templates[0], size,
                                                description="rendering the probe's objects", band=args.band, framing=how)
                    for how, size in {(framing(e), size_of(e)) for e in encoders}}
        probe_data = {e.name: rendered[framing(e), size_of(e)] for e in encoders}
        print_probes(encoders, features, data, probe_data, args.categories, args.views)
    print_colors(encoders, features, data, args.views)
    for templates in args.templates:
        for encoder in encoders:
            print(f"\n{encoder.name}, '{templates}' captions ({framing(encoder)} framing):")
            print(format_figures(evaluate(encoder, views(framing(encoder), templates, size_of(encoder)))))
    if args.judge_objects > 0 or args.partnet:
        print_judge(judge, framing(judge), args, views)


def print_judge(judge, framing: str, args, views) -> None:
    """The judge's accuracy per question, at its own input size and framing: on real chairs, on
    their views; else on `--judge-objects` fresh objects per category, at random views of the
    band and at the view `clipnerf eval` judges edits from (`cameras.VIEW_DEG`; once, where that is the band)."""
    title = f"\nattribute judge ({judge.name}, {framing} framing), accuracy per question"
    if args.partnet:
        judged = views(framing, args.templates[0], judge.image_size)
        print(f"{title}:\n" + format_accuracy(accuracy(judge, judged.rgba, judged.categories, judged.attributes)))
        return
    bands = [(args.band, args.views), ("judged", 1)] if args.band != "judged" else [("judged", 1)]
    for band, n_views in bands:
        judged = render_objects(args.seed, args.categories, args.judge_objects, n_views, 1, args.templates[0],
                                judge.image_size, description="rendering the judge's objects", band=band, framing=framing)
        where = f"{n_views} random '{band}' views" if band != "judged" else f"the judged view {VIEW_DEG} (azimuth, elevation)"
        print(f"{title}, {args.judge_objects} objects per category at {where}:")
        print(format_accuracy(accuracy(judge, judged.rgba, judged.categories, judged.attributes)))


def print_binary_tests(encoders, features, data, categories, views) -> None:
    names = [Path(e.name.split(" (")[-1].rstrip(")")).stem for e in encoders]
    header = f"{'prompt vs opposite':<72} {'n+/n-':>9} " + " ".join(f"{n + ' lib/syn/photo':>27}" for n in names)
    for category in categories:
        library = load_prompt_library(None, category)
        framed = [type(t)(f"a photo of {t.prompt}", f"a photo of {t.opposite}", t.question, t.answer, t.where)
                  for t in library.tests]
        results = [(binary_tests(e, data, library.tests, category, features[e.name]),
                    binary_tests(e, data, framed, category, features[e.name])) for e in encoders]
        print(f"binary shape tests, {category} (balanced accuracy; chance 0.50; n = renders):")
        print(header)
        worst = [1.0] * len(encoders)
        for i, test in enumerate(library.tests):
            first = results[0][0][i]
            row = f"{test.prompt + ' / ' + test.opposite:<72.72} {first['positives']:>4}/{first['negatives']:<4} "
            for k, (plain, photo) in enumerate(results):
                lib, syn, ph = plain[i]["accuracy"], plain[i].get("synonym_accuracy", float("nan")), photo[i]["accuracy"]
                worst[k] = min([worst[k], *(v for v in (lib, syn, ph) if v == v)])
                row += f"{lib:>13.2f} {syn:>5.2f} {ph:>5.2f}   "
            print(row)
        print(f"{'lowest':<82} " + " ".join(f"{w:>25.2f}  " for w in worst) + "\n")
        print_margins(names, library.tests, [plain for plain, _ in results])


def print_margins(names, tests, results) -> None:
    """Where each zero-shot choice errs (library words): the recall of the prompt's side and of the
    opposite's, and the AUC of the score margin. A high AUC with unequal recalls is an embedding
    that orders the renders but cuts in the wrong place (a lean towards one answer); a low AUC, one
    that cannot order them. Then the 95% interval of the library words' balanced accuracy with the
    objects drawn again (views of one object err together): how far a figure would move on other
    objects of the category."""
    print("  the same choices: recall of the prompt's renders / of the opposite's / AUC of the margin / "
          "95% interval of the accuracy, objects resampled")
    for i, test in enumerate(tests):
        row = f"  {test.prompt + ' / ' + test.opposite:<70.70} {'':>9} "
        for figures in results:
            prompt, opposite, auc = (figures[i].get(k, float("nan")) for k in ("recall_prompt", "recall_opposite", "auc"))
            low, high = figures[i].get("interval", (float("nan"),) * 2)
            row += f"{prompt:>13.2f} {opposite:>5.2f} {auc:>5.2f} {low:.2f}-{high:.2f}   "
        print(row)
    print()


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3):
    """A class-balanced logistic regression of y (bool) on x (L-BFGS); returns x -> predicted bool.
    Features are standardised first (the fit set's mean and spread): a unit-norm embedding's
    coordinates are about 0.1, and the L2 penalty would otherwise hide what small directions hold
    (unstandardised, this probe read thick legs in `compact` at 0.61; standardised, 0.84)."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / scale
    w, b = torch.zeros(x.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    weight = torch.where(y, 0.5 / y.float().mean(), 0.5 / (1 - y.float().mean()))
    optimizer = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y.float(), weight=weight) + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda z: ((z - mean) / scale @ w.detach() + b.detach()) > 0


def balanced(predicted, truth) -> float:
    """Balanced accuracy of bool predictions against bool truth."""
    return 0.5 * float(predicted[truth].float().mean() + (~predicted[~truth]).float().mean())


def labelled(x, attributes, test, category):
    """The rows of x (one per render, `attributes` repeated per view) where the test applies, and its truth."""
    truth = [test.truth(category, a) for a in attributes]
    known = torch.tensor([t is not None for t in truth])
    return x[known], torch.tensor([bool(t) for t in truth])[known]


def print_probes(encoders, features, data, probe_data, categories, views) -> None:
    """Balanced accuracy of a linear probe of each CLIP's embedding on the bench's renders, per test."""
    for category in categories:
        # each model's embeddings of the probe's and the bench's renders of this category, computed once
        seen = {}
        for encoder in encoders:
            fit = probe_data[encoder.name]
            fit = fit.subset(np.array([c == category for c in fit.categories]))
            rows = np.array([c == category for c in data.categories])
            seen[encoder.name] = (image_features(encoder, fit), [a for a in fit.attributes for _ in range(2)],
                                  features[encoder.name][np.repeat(rows, views)],
                                  [a for a, r in zip(data.attributes, rows) if r for _ in range(views)])
        print(f"linear probe of the image embedding, {category} (fit on other objects; balanced accuracy on the bench's renders):")
        for test in load_prompt_library(None, category).tests:
            row = f"{test.prompt + ' / ' + test.opposite:<72.72}"
            for encoder in encoders:
                x_fit, fit_attributes, x_test, test_attributes = seen[encoder.name]
                x_fit, y_fit = labelled(x_fit, fit_attributes, test, category)
                x_test, y_test = labelled(x_test, test_attributes, test, category)
                ok = bool(y_fit.any() and (~y_fit).any() and y_test.any() and (~y_test).any())
                row += f" {balanced(fit_linear_probe(x_fit, y_fit)(x_test), y_test) if ok else float('nan'):>12.2f}"
            print(row)
        print()


def print_colors(encoders, features, data, views) -> None:
    cats = [c for c in data.categories for _ in range(views)]
    cols = [c for c in data.colors for _ in range(views)]
    for encoder in encoders:
        f = features[encoder.name]
        plain = color_accuracy(encoder, f, cats, cols)
        syn = color_accuracy(encoder, f, cats, cols, synonyms=True)
        n = sum(1 for c in cols if c)
        print(f"{encoder.name}: 12-way colour words {plain:.2f} (synonyms {syn:.2f}; {n} one-colour renders)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
