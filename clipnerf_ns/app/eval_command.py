"""`clipnerf eval`: how well a mapper run's edits work, on objects the mappers never trained on,
judged by a second CLIP and by the attribute judge (no CLIP)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import numpy as np

from clipnerf_ns.atomic import atomic_output_dir, check_output_dir
from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.errors import UserError
from clipnerf_ns.validation import MAX_RESOLUTION, Bounds


@dataclass(kw_only=True)
class EvalCommand:
    """Measure a mapper run's edits on objects the mappers never trained on: edit latency, colour
    accuracy of colour prompts (CIE Lab), five-way prompt accuracy judged by a second CLIP (each
    prompt among four others that neither follow from it nor are true of the object already,
    averaged over every draw of the four; overall, per prompt, and on objects that lacked it),
    disentanglement (silhouettes under appearance edits, colours under shape edits), the haze of
    the renders before and after, and the attribute judge's verdicts on shape edits: per prompt
    and per family of prompts (the question the judge asks), the share of objects lacking the
    attribute that have it after, and the share of the other shape answers left unchanged."""

    load_config: Path
    """config.yml of a mapper run (ns-train clip-nerf-mappers)."""
    output_dir: Path = Path("edit_eval")
    """Folder for eval.json and edits.png (written atomically)."""
    evaluator: ClipConfig = field(default_factory=lambda: ClipConfig(model="compact-eval"))
    """The judge of the five-way test: never the CLIP the mappers were trained with."""
    judge: Optional[Path] = None
    """Attribute judge file (no CLIP) whose verdicts on the shape edits are reported beside the
    evaluator's (default: the shipped one)."""
    prompts: Optional[Path] = None
    """Prompt library (YAML, in the format of the shipped ones) whose prompts are evaluated;
    default: the library the mappers were trained with."""
    pictured: tuple[str, ...] = ()
    """Prompts whose edits edits.png shows, one column each (prompts of the library); default: the
    first two of each list."""
    max_objects: Annotated[Optional[int], Bounds(0, 100_000)] = None
    """Edit only the first this many of the run's held-out objects (default: all of them)."""
    prior_objects: Annotated[int, Bounds(0, 1000)] = 4
    """Draws from the code prior edited besides the run's held-out objects."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 96
    """Side of the judged renders (pixels)."""
    latency_resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Side of the view rendered in the latency measurement (pixels)."""
    latency_repeats: Annotated[int, Bounds(1, 1000)] = 10
    """Edits timed for the latency figure."""
    seed: int = 0
    """Seed of the prior draws and of the five-way candidates."""
    overwrite: bool = False
    """Replace the output folder if it exists."""

    def main(self) -> Path:
        # deferred: the command line imports this module at start-up, and these import torch and nerfstudio
        import torch
        from PIL import Image
        from rich.progress import track

        from clipnerf_ns.app.edit_evaluation import EditJudges, edit_latency, edit_subjects, judge_edits, summarize_edits
        from clipnerf_ns.editing.edit import editor_for
        from clipnerf_ns.editing.prompts import load_prompt_library
        from clipnerf_ns.pipelines.runs import load_run

        check_output_dir(self.output_dir, self.overwrite)
        _, pipeline = load_run(self.load_config)
        model = pipeline.model
        if not hasattr(model, "mappers"):
            raise UserError(f"{self.load_config}: not a mapper run (train one with ns-train clip-nerf-mappers)")
        library = model.library if self.prompts is None else load_prompt_library(self.prompts, model.category)
        # Named columns, not fixed positions: a short library (or another one) has no 8th prompt.
        pictured = list(dict.fromkeys(self.pictured or (*library.appearance[:2], *library.shape[:2])))
        for prompt in pictured:
            if prompt not in (*library.appearance, *library.shape):
                raise UserError(f"--pictured: {prompt!r} is not in the prompt library")
        heldout = model.heldout[: self.max_objects]
        if not heldout and not self.prior_objects:
            raise UserError(f"{self.load_config}: no held-out objects to edit; pass --prior-objects N")
        editor = editor_for(model)
        judges = EditJudges.load(self.evaluator, self.judge, model.nerf, library)
        generator = torch.Generator().manual_seed(self.seed)
        subjects = edit_subjects(model.nerf, heldout, self.prior_objects, generator)
        generators = (generator, torch.Generator().manual_seed(self.seed + 1))  # five-way candidates: any, distinct
        rows, records = [], []
        for name, codes in track(subjects, description="editing held-out objects"):
            row, edits = judge_edits(editor, judges, library, pictured, name, codes, self.resolution, generators)
            rows.append(row)
            records += edits
        latency = edit_latency(editor, subjects[0][1], library.appearance[0], self.latency_resolution, self.latency_repeats)
        summary = summarize_edits(records, library, latency) | {
            "evaluator": judges.evaluator.name, "editor_clip": editor.clip.name, "judge": judges.judge.name,
            "grid_columns": ["before"] + pictured,
            # (prompt, candidate) pairs no five-way choice offers together: the collection implies the second
            "five_way_implied": sorted(map(list, judges.implied)),
        }
        with atomic_output_dir(self.output_dir, self.overwrite) as tmp:
            clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
            (tmp / "eval.json").write_text(json.dumps({"summary": summary, "edits": clean}, indent=1))
            Image.fromarray(np.concatenate(rows, axis=0)).save(tmp / "edits.png")
        print(json.dumps(summary, indent=1))
        return self.output_dir
