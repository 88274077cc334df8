"""Benchmark: the cost of one compact-CLIP training step and of the CLIP's part of a mapper step.

    OMP_NUM_THREADS=1 python bench/bench_clip_step.py [--sizes 64 128] [--steps 6] [--answer-questions 1 4]
        [--vision-widths 16 32]

For each input size: the median time of `clipnerf train-clip`'s training step (batch of 128, every
loss on, augmentation included) on freshly initialised weights, and one forward and backward of
the vision tower over 4 views (what a mapper step adds to its rendering). Then the text tower over
one batch's captions, encoded to the full context (open_clip's `encode_text`) and trimmed to the
longest caption (`encode_text_trimmed`, what training uses). Prints figures; not a test.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from clipnerf_ns.clip.domain import AttributeHeads, label_table, new_model, param_groups, sample_batch, train_step
from clipnerf_ns.clip.domain_config import ClipArchitecture, DomainTraining
from clipnerf_ns.clip.domain_data import render_objects
from clipnerf_ns.clip.encoder import encode_text_trimmed, new_tokenizer


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="CLIP input sizes to time")
    parser.add_argument("--steps", type=int, default=6, help="training steps timed per size (the first is a warm-up)")
    parser.add_argument("--answer-questions", type=int, nargs="+", default=[1],
                        help="train-clip's --answer-questions values to time the step with (questions per image)")
    parser.add_argument("--vision-widths", type=int, nargs="+", default=[16],
                        help="vision towers' widths to time (--arch.vision-width; the shipped CLIPs have 16)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    for size in args.sizes:
        data = render_objects(5, DomainTraining.categories, 140, 2, 8, "default", size, framing="category",
                              description=f"rendering at {size} px")  # one set for every width
        labels, train_idx = label_table(data), np.arange(len(data.categories))
        for width in args.vision_widths:
            config = DomainTraining(out=Path("unused.safetensors"), arch=ClipArchitecture(image_size=size, vision_width=width))
            model = new_model(config.arch, config.seed)
            label = f"{size} px, vision width {width}"
            heads = AttributeHeads(config.arch.embed_dim, AttributeHeads.answer_counts(config.categories))
            optimizer = torch.optim.AdamW(param_groups(torch.nn.ModuleList([model, heads]), config.weight_decay), lr=1e-4)
            tokenize, g = new_tokenizer(config.arch.context_length), torch.Generator().manual_seed(0)
            for questions in args.answer_questions:
                step_config = dataclasses.replace(config, answer_questions=questions)
                times = [timed(lambda: train_step(model, heads, optimizer, sample_batch(data, train_idx, step_config, g),
                                                  tokenize, labels, data.categories, step_config)) for _ in range(args.steps)]
                print(f"{label}, {questions} answer question(s) per image: training step {np.median(times[1:]):.2f} s "
                      f"(median of {len(times) - 1})")
            views = torch.rand(4, 3, size, size)
            vision = np.median([timed(lambda: model.encode_image(views).sum().backward()) for _ in range(5)])
            print(f"{label}: vision tower forward + backward over 4 views {vision * 1000:.0f} ms")
    captions = tokenize(sample_batch(data, train_idx, config, g).captions * 6)
    full = np.median([timed(lambda: model.encode_text(captions).sum().backward()) for _ in range(3)])
    trimmed = np.median([timed(lambda: encode_text_trimmed(model, captions).sum().backward()) for _ in range(3)])
    print(f"text tower forward + backward over {len(captions)} captions: full context {full:.2f} s, "
          f"trimmed to the longest caption ({int(captions.argmax(-1).max()) + 1} of {captions.shape[1]} tokens) {trimmed:.2f} s")


if __name__ == "__main__":
    main()
