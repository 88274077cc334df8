"""`clipnerf train-clip` and `clipnerf train-judge`: the shipped compact CLIPs and attribute judge
are made by these commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipnerf_ns.clip.domain_config import DomainTraining
from clipnerf_ns.eval.judge_config import JudgeTraining


@dataclass(kw_only=True)
class TrainClip(DomainTraining):
    """Train the compact offline CLIP on renders and captions of procedural chairs and cars, then
    print its zero-shot retrieval and colour-word accuracy on held-out objects. The shipped
    weights come from this command (see the README)."""

    def main(self) -> Path:
        # deferred: open_clip is slow to import
        from clipnerf_ns.clip.domain import train_clip
        from clipnerf_ns.clip.domain_eval import format_figures

        path, training = train_clip(self)
        _report(training, "heldout_figures", format_figures)
        return path


@dataclass(kw_only=True)
class TrainJudge(JudgeTraining):
    """Train the attribute judge (a small ConvNet, no CLIP) on procedural renders against their true
    attributes, then print its accuracy per question on held-out objects. The shipped judge comes
    from this command (see the README)."""

    def main(self) -> Path:
        from clipnerf_ns.eval.judge import format_accuracy, train_judge  # deferred: torch is slow to import

        path, training = train_judge(self)
        _report(training, "heldout_accuracy", format_accuracy)
        return path


def _report(training: dict, figures_key: str, format_figures) -> None:
    """Held-out figures and timings of a training command."""
    if figures_key in training:
        print(format_figures(training[figures_key]))
    loss = training["final_loss"]  # None after --steps 0 (rendering the cache only)
    print(f"trained in {training['train_seconds']:.0f} s (rendering {training['render_seconds']:.0f} s); "
          f"final loss {'none (no steps)' if loss is None else f'{loss:.3f}'}")
