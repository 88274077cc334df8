"""Benchmark: zero-shot figures of CLIP weights on freshly generated (held-out) procedural objects.

    OMP_NUM_THREADS=1 python bench/bench_clip.py [--weights compact compact-eval FILE...]
        [--seed 1000] [--objects 100] [--views 4] [--templates default alt] [--resolution 64]

For each weights file and caption template set: image->text and text->image top-1/top-5
retrieval among the captions of all objects (one caption per object), 12-way colour-word
accuracy ("a <colour> chair/car") and the category of the best caption. The objects come from
`--seed`, which neither shipped model was trained on (they use seeds 0 and 1), so every object
is held out. `--resolution` other than the model's input size exercises the resize path.
Prints figures; it is not a test.
"""

import argparse
import time
import warnings
from pathlib import Path

from clipnerf_ns.clip.domain import evaluate, format_figures, render_objects
from clipnerf_ns.clip.encoder import SHIPPED_MODELS, ClipConfig, ClipEncoder


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=list(SHIPPED_MODELS))
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=100, help="objects per category")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--templates", nargs="+", default=["default", "alt"], choices=["default", "alt"])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--categories", nargs="+", default=["chairs", "cars"])
    args = parser.parse_args()

    encoders = [
        ClipEncoder.load(ClipConfig(model=w) if w in SHIPPED_MODELS else ClipConfig(model="compact", checkpoint=Path(w)))
        for w in args.weights
    ]
    for templates in args.templates:
        t0 = time.perf_counter()
        data = render_objects(args.seed, args.categories, args.objects, args.views, 1, templates, args.resolution,
                              description=f"rendering ({templates} captions)")
        print(f"rendered {len(data.captions)} objects x {args.views} views at {args.resolution} px "
              f"in {time.perf_counter() - t0:.0f} s (seed {args.seed})")
        for encoder in encoders:
            t0 = time.perf_counter()
            figures = evaluate(encoder, data)
            print(f"\n{encoder.name}, '{templates}' captions ({time.perf_counter() - t0:.1f} s)")
            print(format_figures(figures))
        print()


if __name__ == "__main__":
    main()
