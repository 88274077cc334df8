"""`clipnerf edit`: edit one object of a trained run by text or exemplar, from the command line."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import numpy as np

from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.errors import UserError
from clipnerf_ns.validation import MAX_COUNT, MAX_RESOLUTION, STRENGTH_BOUNDS, Bounds

if TYPE_CHECKING:  # torch is imported by the commands that run, not at start-up
    from torch import Tensor


@dataclass(kw_only=True)
class EditCommand:
    """Edit one object of a trained run with a text prompt or an exemplar image. Writes before and
    after images, the edited codes (codes.safetensors) and a config.yml that `ns-render` and
    `ns-viewer` load to show the edited object."""

    load_config: Path
    """config.yml of a mapper run (ns-train clip-nerf-mappers; both modes) or of a clip-nerf run (optimize mode only)."""
    output_dir: Path
    """Folder to write (atomically)."""
    object: Optional[str] = None
    """The object to edit: a training object's id (chair_0007) or index."""
    codes: Optional[Path] = None
    """The object to edit: a codes file (from clipnerf invert or an earlier clipnerf edit)."""
    prompt: Optional[str] = None
    """What the object should become, e.g. 'a red chair' or 'a chair with a tall back'."""
    exemplar: Optional[Path] = None
    """An image whose look the object should take (instead of a prompt)."""
    target: Literal["shape", "appearance", "both"] = "both"
    """Which code(s) the edit may change; `both` changes the shape code first, then the appearance code."""
    strength: Annotated[float, Bounds(*STRENGTH_BOUNDS)] = 1.0
    """Scale of the code change (0 = no edit; above 1 exaggerates; negative: the opposite way)."""
    mode: Literal["mapper", "optimize"] = "mapper"
    """`mapper`: one forward pass through the trained mappers; `optimize`: optimise this object's code change."""
    steps: Annotated[int, Bounds(1, MAX_COUNT)] = 40
    """Optimisation steps (optimize mode)."""
    seed: int = 0
    """Seed of the optimize mode's random views."""
    clip: ClipConfig = field(default_factory=ClipConfig)
    """CLIP for optimize mode on a clip-nerf run (a mapper run always uses the CLIP its mappers were trained with)."""
    resolution: Annotated[int, Bounds(8, MAX_RESOLUTION)] = 128
    """Side of the before/after images (pixels)."""
    azimuth: float = 40.0
    """Camera azimuth of the before/after images (degrees)."""
    elevation: Annotated[float, Bounds(-90, 90)] = 25.0
    """Camera elevation of the before/after images (degrees)."""
    overwrite: bool = False
    """Replace the output folder if it exists."""

    def main(self) -> Path:
        import torch
        from PIL import Image

        from clipnerf_ns.atomic import atomic_output_dir, check_output_dir, output_lock
        from clipnerf_ns.editing.codes_io import load_codes, model_fingerprint, save_codes
        from clipnerf_ns.editing.edit import Edit, editor_for, read_exemplar
        from clipnerf_ns.runs import load_run, nerf_of, orbit_camera, read_run_config, resolve_object, to_uint8, write_render_config

        if (self.object is None) == (self.codes is None):
            raise UserError("give the object to edit with exactly one of --object ID or --codes FILE")
        if (self.prompt is None) == (self.exemplar is None):
            raise UserError("give exactly one of --prompt TEXT or --exemplar IMAGE")
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("empty prompt: describe the edit, e.g. --prompt 'a red chair'")
        check_output_dir(self.output_dir, self.overwrite)
        with output_lock(self.output_dir):  # held for the whole run: a second edit into this folder stops at once
            exemplar = read_exemplar(self.exemplar) if self.exemplar is not None else None
            config = read_run_config(self.load_config)
            _, pipeline = load_run(self.load_config)
            nerf = nerf_of(pipeline)
            fingerprint = model_fingerprint(nerf.field)
            if self.codes is not None:
                sizes = nerf.config.field
                codes, source_info = load_codes(self.codes, fingerprint, sizes.shape_dim, sizes.appearance_dim)
                source = {"codes": str(self.codes), "from": source_info}
            else:
                index = resolve_object(nerf.object_ids, self.object)
                codes = nerf.object_codes(torch.tensor(index, device=nerf.box_min.device)).detach()
                source = {"object": nerf.object_ids[index]}
            editor = editor_for(pipeline.model, self.clip)
            edit = Edit(self.prompt, exemplar, self.target, self.strength, self.mode, self.steps, self.seed)
            start = time.perf_counter()
            edited = editor.apply(edit, codes)
            seconds = time.perf_counter() - start
            camera = orbit_camera(self.resolution, self.azimuth, self.elevation)
            before = to_uint8(nerf.render_view(camera, codes)["rgb"])
            after = to_uint8(nerf.render_view(camera, edited)["rgb"])
            with atomic_output_dir(self.output_dir, self.overwrite) as tmp:
                Image.fromarray(before).save(tmp / "before.png")
                Image.fromarray(after).save(tmp / "after.png")
                Image.fromarray(np.concatenate([before, after], axis=1)).save(tmp / "comparison.png")
                info = {"source": source, "edit": edit.describe(), "clip": editor.clip.name, "seconds": seconds}
                save_codes(tmp / "codes.safetensors", edited, fingerprint, info)
                config.pipeline.model.render_codes = (self.output_dir / "codes.safetensors").resolve()
                write_render_config(config, tmp)
        print(f"edit took {seconds:.2f} s ({self.mode}); before/after in {self.output_dir}/comparison.png")
        print(f"render it: ns-render camera-path --load-config {self.output_dir}/config.yml --camera-path-filename PATH --output-path edited.mp4")
        return self.output_dir


def named_color_of(prompt: str, noun: str) -> Optional[str]:
    """The colour name of a whole-object colour prompt ('a crimson chair' -> 'red'), else None."""
    from clipnerf_ns.data.synth import COLOR_SYNONYMS

    words = prompt.strip().lower()
    for article in ("a ", "an "):
        if words.startswith(article) and words.endswith(" " + noun):
            middle = words[len(article) : -len(noun) - 1]
            for name, synonyms in COLOR_SYNONYMS.items():
                if middle in synonyms:
                    return name
    return None


def judge_verdicts(test, answers: tuple[str, str], test_text: Tensor, embeddings: tuple[Tensor, Tensor]) -> dict:
    """Does the object have what `test.prompt` asks for, before and after the edit: the judge's
    answers to the test's question, and the evaluator CLIP's choice between prompt and opposite
    (`test_text`: their embeddings) for the (before, after) image embeddings."""
    picks = [bool(float(e @ test_text[0]) > float(e @ test_text[1])) for e in embeddings]
    return {"judge_question": test.question, "judge_before": answers[0], "judge_after": answers[1],
            "judge_has_before": answers[0] == test.answer, "judge_has_after": answers[1] == test.answer,
            "evaluator_has_before": picks[0], "evaluator_has_after": picks[1]}


def judged_flips(records: list[dict]) -> dict:
    """Per shape prompt with a binary test: among the objects that lacked it before the edit, the
    share that have it after, as the judge and as the evaluator CLIP see it."""
    out = {}
    for prompt in dict.fromkeys(r["prompt"] for r in records if "judge_has_before" in r):
        rows = [r for r in records if r["prompt"] == prompt and "judge_has_before" in r]
        lacking = [r for r in rows if not r["judge_has_before"]]
        lacking_clip = [r for r in rows if not r["evaluator_has_before"]]
        out[prompt] = {
            "objects": len(rows),
            "judge_lacking_before": len(lacking),
            "judge_flip_rate": float(np.mean([r["judge_has_after"] for r in lacking])) if lacking else float("nan"),
            "evaluator_flip_rate": float(np.mean([r["evaluator_has_after"] for r in lacking_clip]))
            if lacking_clip else float("nan"),
        }
    return out


@dataclass(kw_only=True)
class EvalCommand:
    """Measure a mapper run's edits on objects the mappers never trained on: edit latency, colour
    accuracy of colour prompts (CIE Lab), five-way prompt accuracy judged by a second CLIP, and
    disentanglement (silhouettes under appearance edits, colours under shape edits)."""

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
        import json

        import torch
        from PIL import Image

        from clipnerf_ns.atomic import atomic_output_dir, check_output_dir
        from clipnerf_ns.clip.encoder import ClipEncoder
        from clipnerf_ns.data.synth import NAMED_COLORS
        from clipnerf_ns.editing.edit import Edit, editor_for, render_views
        from clipnerf_ns.editing.prompts import load_prompt_library
        from clipnerf_ns.eval import metrics
        from clipnerf_ns.eval.judge import Judge
        from clipnerf_ns.models.clip_nerf import Codes
        from clipnerf_ns.runs import load_run, orbit_camera, to_uint8

        check_output_dir(self.output_dir, self.overwrite)
        _, pipeline = load_run(self.load_config)
        model = pipeline.model
        if not hasattr(model, "mappers"):
            raise UserError(f"{self.load_config}: not a mapper run (train one with ns-train clip-nerf-mappers)")
        nerf, editor = model.nerf, editor_for(pipeline.model)
        library = model.library if self.prompts is None else load_prompt_library(self.prompts, model.category)
        # Named columns, not fixed positions: a short library (or another one) has no 8th prompt.
        grid_prompts = list(dict.fromkeys(self.pictured or (*library.appearance[:2], *library.shape[:2])))
        for prompt in grid_prompts:
            if prompt not in (*library.appearance, *library.shape):
                raise UserError(f"--pictured: {prompt!r} is not in the prompt library")
        heldout = model.heldout[: self.max_objects]
        if not heldout and not self.prior_objects:
            raise UserError(f"{self.load_config}: no held-out objects to edit; pass --prior-objects N")
        evaluator = ClipEncoder.load(self.evaluator, device=nerf.box_min.device)
        judge = Judge.load(self.judge)
        category = model.category
        tests = {t.prompt: t for t in library.tests}
        with torch.no_grad():
            test_texts = {p: evaluator.encode_text([t.prompt, t.opposite]) for p, t in tests.items()}
        judged_view = (torch.tensor([40.0]), torch.tensor([25.0]))  # framed as each model's training views

        evaluator_framing = (64, evaluator.frame_extent(category))  # (size, framing box)
        judge_framing = (judge.image_size, judge.frame_extent(category))

        def view(codes: Codes, framing) -> torch.Tensor:
            return render_views(nerf, Codes(codes.z_s[None], codes.z_a[None]), *judged_view, *framing)

        def judge_view(codes: Codes, evaluator_view: torch.Tensor) -> torch.Tensor:
            """The judge's view, the evaluator's own when both frame views alike (rendered once)."""
            return evaluator_view if judge_framing == evaluator_framing else view(codes, judge_framing)

        generator = torch.Generator().manual_seed(self.seed)
        device = nerf.box_min.device
        subjects = [(nerf.object_ids[i], nerf.object_codes(torch.tensor(i, device=device)).detach()) for i in heldout]
        drawn = nerf.sample_prior(self.prior_objects, generator).to(device)
        subjects += [(f"prior_{k}", Codes(drawn.z_s[k], drawn.z_a[k])) for k in range(self.prior_objects)]
        camera = orbit_camera(self.resolution, 40.0, 25.0)
        noun = library.neutral.split()[-1]

        rows, records = [], []
        from rich.progress import track

        for name, codes in track(subjects, description="editing held-out objects"):
            before = nerf.render_view(camera, codes)
            tiles = {}
            with torch.no_grad():  # the unedited object, seen once for every prompt
                seen_before = view(codes, evaluator_framing)
                image_before = evaluator.encode_image(seen_before)[0]
                judged_before = (judge.answers(judge_view(codes, seen_before), category)
                                 if category in judge.questions else {})
            for target in ("appearance", "shape"):
                prompts = library.for_target(target)
                for prompt in prompts:
                    edited = editor.apply(Edit(prompt=prompt, target=target), codes)
                    after = nerf.render_view(camera, edited)
                    if prompt in grid_prompts:
                        tiles[prompt] = to_uint8(after["rgb"])
                    others = [p for p in prompts if p != prompt]
                    picks = torch.randperm(len(others), generator=generator)[:4].tolist()
                    candidates = [prompt] + [others[i] for i in picks]
                    colour = named_color_of(prompt, noun)
                    before_color = metrics.object_mean_color(before["rgb"], before["accumulation"])
                    after_color = metrics.object_mean_color(after["rgb"], after["accumulation"])
                    record = {
                        "object": name, "target": target, "prompt": prompt, "candidates": candidates,
                        "iou": metrics.silhouette_iou(before["accumulation"], after["accumulation"]),
                        "color_change": float(metrics.delta_e(before_color, after_color)),
                    }
                    if colour is not None:
                        named = torch.tensor(NAMED_COLORS[colour])
                        record.update(color=colour, delta_e_before=float(metrics.delta_e(before_color.cpu(), named)),
                                      delta_e_after=float(metrics.delta_e(after_color.cpu(), named)))
                    with torch.no_grad():
                        seen = view(edited, evaluator_framing)
                        record["_image"] = evaluator.encode_image(seen)[0]
                        record["_image_before"] = image_before
                        record["_text"] = evaluator.encode_text(candidates)
                        if prompt in tests and judged_before:
                            test = tests[prompt]
                            answers = (judged_before[test.question][0], judge.answers(judge_view(edited, seen), category)[test.question][0])
                            record.update(judge_verdicts(test, answers, test_texts[prompt],
                                                         (image_before, record["_image"])))
                    records.append(record)
            rows.append(np.concatenate([to_uint8(before["rgb"])] + [tiles[p] for p in grid_prompts], axis=1))

        def five_way(key: str, target: str) -> float:
            chosen = [r for r in records if r["target"] == target]
            return metrics.n_way_accuracy(torch.stack([r[key] for r in chosen]), torch.stack([r["_text"] for r in chosen]),
                                          torch.zeros(len(chosen), dtype=torch.long))

        latency = self._latency(editor, nerf, subjects[0][1], library.appearance[0])
        coloured = [r for r in records if "color" in r]
        mean = lambda values: float(np.nanmean(values)) if values else float("nan")  # noqa: E731 (an edit may empty a silhouette)
        summary = {
            "objects": len(subjects), "edits": len(records),
            "latency_s": latency,
            "five_way_accuracy": {t: five_way("_image", t) for t in ("appearance", "shape")},
            "five_way_accuracy_unedited": {t: five_way("_image_before", t) for t in ("appearance", "shape")},
            # Fewer than five when the library has fewer prompts for the target.
            "candidates": {t: min(5, len(library.for_target(t))) for t in ("appearance", "shape")},
            "color_delta_e_before": mean([r["delta_e_before"] for r in coloured]),
            "color_delta_e_after": mean([r["delta_e_after"] for r in coloured]),
            "color_closer_share": mean([float(r["delta_e_after"] < r["delta_e_before"]) for r in coloured]),
            "appearance_edit_silhouette_iou_min": min(r["iou"] for r in records if r["target"] == "appearance"),
            "shape_edit_color_change_delta_e": mean([r["color_change"] for r in records if r["target"] == "shape"]),
            "appearance_edit_color_change_delta_e": mean([r["color_change"] for r in records if r["target"] == "appearance"]),
            "judged_shape_edits": judged_flips(records),
            "evaluator": evaluator.name, "editor_clip": editor.clip.name, "judge": judge.name,
            "grid_columns": ["before"] + grid_prompts,
        }
        with atomic_output_dir(self.output_dir, self.overwrite) as tmp:
            clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
            (tmp / "eval.json").write_text(json.dumps({"summary": summary, "edits": clean}, indent=1))
            Image.fromarray(np.concatenate(rows, axis=0)).save(tmp / "edits.png")
        print(json.dumps(summary, indent=1))
        return self.output_dir

    def _latency(self, editor, nerf, codes, prompt: str) -> dict:
        """Seconds from prompt to one rendered view: text encoding, mappers, occupancy grid, render."""
        from clipnerf_ns.editing.edit import Edit
        from clipnerf_ns.runs import orbit_camera

        camera = orbit_camera(self.latency_resolution, 40.0, 25.0)
        times = []
        for k in range(self.latency_repeats + 1):
            start = time.perf_counter()
            edited = editor.apply(Edit(prompt=f"{prompt}" if k % 2 else f"{prompt} ", target="both"), codes)
            nerf.render_view(camera, edited)
            times.append(time.perf_counter() - start)
        times = times[1:]  # the first call warms caches up
        return {"median": float(np.median(times)), "max": float(np.max(times)), "resolution": self.latency_resolution}
