"""Benchmark: where in a compact CLIP's vision tower an attribute is lost.

    OMP_NUM_THREADS=2 python bench/bench_clip_depth.py [--weights compact compact-eval FILE...]
        [--fit-objects 600] [--objects 100] [--tests "wide seat" reclined ...]

For each chairs binary test of the prompt library whose prompt contains one of `--tests`, a
class-balanced linear probe (`bench_clip.fit_linear_probe`) of the tower's features at each depth:
after the stem, after each of the ModifiedResNet's four stages (mean and max pooled over the
grid), after the attention pooling and the unit-norm embedding. Fit on `--fit-objects` chairs of
seed 3000 (2 front views each), scored on the bench's chairs (seed 1000, 4 front views each;
balanced accuracy, chance 0.50). If no depth reads an attribute better than the embedding, the
tower never learnt it (train the tower); if an early stage does, the pooling or the projection
drops it. Prints figures; not a test.
"""

import argparse
import warnings

import torch
import torch.nn.functional as F
from bench_clip import balanced, fit_linear_probe, labelled

from clipnerf_ns.clip.domain_data import framing_of, over_white, render_objects
from clipnerf_ns.clip.encoder import SHIPPED_MODELS, ClipConfig, ClipEncoder, preprocess_images
from clipnerf_ns.editing.prompts import load_prompt_library

DEPTHS = ("stem", "layer1", "layer2", "layer3", "layer4", "attnpool", "embedding")


def tower_features(encoder, data, batch: int = 256) -> dict:
    """(renders, features) at each of `DEPTHS` for every view of `data`, over white."""
    tower, p = encoder.model.visual, encoder.preprocess
    images, out = over_white(data.rgba), {k: [] for k in DEPTHS}

    def pooled(x):
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)

    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = preprocess_images(images[i : i + batch], p.image_size, p.mean, p.std)
            x = tower.stem(x)
            out["stem"].append(pooled(x))
            for name in ("layer1", "layer2", "layer3", "layer4"):
                x = getattr(tower, name)(x)
                out[name].append(pooled(x))
            x = tower.attnpool(x)
            out["attnpool"].append(x)
            out["embedding"].append(F.normalize(x, dim=-1))
    return {k: torch.cat(v) for k, v in out.items()}


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=list(SHIPPED_MODELS), help="shipped names or .safetensors files")
    parser.add_argument("--fit-objects", type=int, default=600, help="chairs the probes are fit on (seed 3000, 2 views)")
    parser.add_argument("--objects", type=int, default=100, help="chairs the probes are scored on (seed 1000, 4 views)")
    parser.add_argument("--tests", nargs="+", default=["wide seat", "round seat", "thick legs", "three legs", "reclined"],
                        help="words of the prompts of the chairs tests to probe")
    args = parser.parse_args()
    encoders = [ClipEncoder.load(ClipConfig(model=w) if w in SHIPPED_MODELS else ClipConfig(model="compact", checkpoint=w))
                for w in args.weights]
    tests = [t for t in load_prompt_library(None, "chairs").tests if any(w in t.prompt for w in args.tests)]
    for encoder in encoders:
        if not hasattr(encoder.model.visual, "stem"):
            raise SystemExit(f"{encoder.name}: not a ResNet vision tower; this bench probes the ModifiedResNet's stages")
        framing, size = framing_of(encoder, "chairs"), encoder.image_size
        fit = render_objects(3000, ["chairs"], args.fit_objects, 2, 1, "default", size, band="front", framing=framing,
                             description="rendering the probes' chairs")
        scored = render_objects(1000, ["chairs"], args.objects, 4, 1, "default", size, band="front", framing=framing,
                                description="rendering the bench's chairs")
        x_fit, x_scored = tower_features(encoder, fit), tower_features(encoder, scored)
        fit_attributes = [a for a in fit.attributes for _ in range(2)]
        scored_attributes = [a for a in scored.attributes for _ in range(4)]
        print(f"\n{encoder.name}: linear probe by depth (balanced accuracy on the bench's chairs)")
        print(f"{'test':<34}" + "".join(f"{d:>11}" for d in DEPTHS))
        for test in tests:
            row = f"{test.prompt[:33]:<34}"
            for depth in DEPTHS:
                xf, yf = labelled(x_fit[depth], fit_attributes, test, "chairs")
                xs, ys = labelled(x_scored[depth], scored_attributes, test, "chairs")
                row += f"{balanced(fit_linear_probe(xf, yf, l2=1e-2)(xs), ys):>11.2f}"
            print(row)


if __name__ == "__main__":
    main()
