"""`clipnerf`: the project's command line (tyro subcommands). The commands live in `clipnerf_ns.app`;
this module only names them and turns user mistakes into one-line errors."""

from __future__ import annotations

import sys
import time
import warnings
from typing import Annotated, Union

import tyro

# nerfstudio's modules (imported by the editing commands) use torch.jit.script, which torch now
# deprecates: not the user's concern, and it must not precede our one-line errors.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)

from clipnerf_ns.app.collections import MergeCollections, RenderMeshes, Synth
from clipnerf_ns.app.demo import Demo
from clipnerf_ns.app.edit_command import EditCommand
from clipnerf_ns.app.eval_command import EvalCommand
from clipnerf_ns.app.export import ExportCommand
from clipnerf_ns.app.invert_command import Invert, TrainEncoder
from clipnerf_ns.app.part_training import TrainParts
from clipnerf_ns.app.pretrained import Pack
from clipnerf_ns.app.runs import Interpolate, SelectObject, Turntable
from clipnerf_ns.app.training import TrainClip, TrainJudge
from clipnerf_ns.errors import UserError
from clipnerf_ns.validation import check_numbers

Command = Union[
    Annotated[Synth, tyro.conf.subcommand("synth")],
    Annotated[RenderMeshes, tyro.conf.subcommand("render-meshes")],
    Annotated[MergeCollections, tyro.conf.subcommand("merge")],
    Annotated[SelectObject, tyro.conf.subcommand("select-object")],
    Annotated[Interpolate, tyro.conf.subcommand("interpolate")],
    Annotated[Turntable, tyro.conf.subcommand("turntable")],
    Annotated[Demo, tyro.conf.subcommand("demo")],
    Annotated[TrainClip, tyro.conf.subcommand("train-clip")],
    Annotated[TrainJudge, tyro.conf.subcommand("train-judge")],
    Annotated[EditCommand, tyro.conf.subcommand("edit")],
    Annotated[Invert, tyro.conf.subcommand("invert")],
    Annotated[TrainEncoder, tyro.conf.subcommand("train-encoder")],
    Annotated[TrainParts, tyro.conf.subcommand("train-parts")],
    Annotated[EvalCommand, tyro.conf.subcommand("eval")],
    Annotated[ExportCommand, tyro.conf.subcommand("export")],
    Annotated[Pack, tyro.conf.subcommand("pack")],
]


def entrypoint(argv: list[str] | None = None) -> None:
    """Parse the command line, run the command; user mistakes print one line and exit 2."""
    command = tyro.cli(Command, args=argv, prog="clipnerf")
    start = time.perf_counter()
    try:
        check_numbers(command)
        result = command.main()
    except UserError as err:
        print(f"clipnerf: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("clipnerf: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    print(f"wrote {result} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    entrypoint()
