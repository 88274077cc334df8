"""The one progress bar of long work (rendering collections, training, evaluation, inversion,
mesh export): what, a bar, done / total, a status line (loss, PSNR...), time spent and left."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(transient: bool = False, disable: bool = False) -> Progress:
    """A rich Progress; its tasks may carry a `status` field (`add_task(..., status="")`)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=transient, disable=disable,
    )
