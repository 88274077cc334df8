"""`clipnerf eval`'s work: every prompt of a library applied to held-out objects, judged by the
evaluator CLIP and the attribute judge, and summarised (see `app.eval_command`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from clipnerf_ns.app.prompt_meanings import (
    PART_COLOUR_QUESTIONS,
    category_implications,
    distinct_distractors,
    holds,
    named_color_of,
    named_part_color_of,
    prompt_meanings,
    true_answers,
)
from clipnerf_ns.clip.config import ClipConfig
from clipnerf_ns.clip.encoder import ClipEncoder
from clipnerf_ns.codes import Codes
from clipnerf_ns.data.attributes import QUESTIONS, applies_judged
from clipnerf_ns.data.cameras import VIEW_DEG, orbit_camera
from clipnerf_ns.data.images import to_uint8
from clipnerf_ns.data.synth_parts import NAMED_COLORS
from clipnerf_ns.editing.edit import Edit, render_views
from clipnerf_ns.eval import metrics
from clipnerf_ns.eval.judge import Judge


def judged_view(nerf, codes: Codes, size: int, extent: Optional[tuple]) -> torch.Tensor:
    """The one judged view of `codes` (the commands' view direction), `size` pixels framed on
    `extent` (a judge's or evaluator's `frame_extent`; None: on the object)."""
    direction = (torch.tensor([VIEW_DEG[0]]), torch.tensor([VIEW_DEG[1]]))
    return render_views(nerf, codes.shared(), *direction, size, extent)


def judged_shape(nerf, judge: Judge, codes: Codes) -> dict[str, str]:
    """The attribute judge's answers to its shape questions for `codes`, from the judged view."""
    with torch.no_grad():
        image = judged_view(nerf, codes, judge.image_size, judge.frame_extent(nerf.category))
        answers = judge.answers(image, nerf.category)
    return {question: answer[0] for question, answer in answers.items() if not question.endswith("_color")}


@dataclass
class EditJudges:
    """What judges an edit: the evaluator CLIP (never the one the mappers were trained with) and
    the attribute judge, each shown views framed as its training views were."""

    nerf: object  # ClipNerfModel
    evaluator: object  # ClipEncoder
    judge: object  # Judge
    tests: dict  # prompt -> the library's binary test of it
    test_texts: dict  # prompt -> evaluator embeddings of (prompt, opposite)
    meanings: dict  # prompt -> what the judge sees when the prompt holds (`prompt_meanings`)
    claims: dict  # prompt -> what the prompt itself claims (`prompt_meanings(..., conditions=False)`)
    implied: frozenset = frozenset()  # (prompt, candidate) pairs the category implies (`category_implications`)
    truths: dict = field(default_factory=dict)  # object id -> its true answers (`true_answers`; None: the judge reads it)
    text_cache: dict = field(default_factory=dict)  # prompt -> evaluator embedding

    @staticmethod
    def load(evaluator_config: ClipConfig, judge_path: Optional[Path], nerf, library) -> "EditJudges":
        evaluator = ClipEncoder.load(evaluator_config, device=nerf.box_min.device)
        tests = {t.prompt: t for t in library.tests}
        with torch.no_grad():
            texts = {p: evaluator.encode_text([t.prompt, t.opposite]) for p, t in tests.items()}
        meanings, claims = (prompt_meanings(library, nerf.category, conditions=c) for c in (True, False))
        attributes = nerf.kwargs["metadata"].get("attributes") or []
        truths = {name: true_answers(nerf.category, a) for name, a in zip(nerf.object_ids, attributes)}
        implied = category_implications([*library.appearance, *library.shape], meanings, claims,
                                        [t[0] for t in truths.values() if t is not None])
        return EditJudges(nerf, evaluator, Judge.load(judge_path), tests, texts, meanings, claims, implied, truths)

    def framing(self, of: str) -> tuple[int, Optional[tuple]]:
        """(view size, framing box) of the evaluator's or the judge's training views."""
        model = self.evaluator if of == "evaluator" else self.judge
        return model.image_size, model.frame_extent(self.nerf.category)

    def view(self, codes, of: str, evaluator_view=None):
        """The one judged view (the commands' view direction) of `codes` for the evaluator or the
        judge; the judge reuses the evaluator's view when both frame views alike."""

        if evaluator_view is not None and self.framing("judge") == self.framing("evaluator"):
            return evaluator_view
        return judged_view(self.nerf, codes, *self.framing(of))

    def shape_questions(self) -> list[str]:
        """The judge's shape questions of the category (not its colour questions)."""
        judged = {name for name, _ in self.judge.questions.get(self.nerf.category, ())}
        return [q.name for q in QUESTIONS.get(self.nerf.category, ()) if q.shape and q.name in judged]

    def texts(self, prompts: list[str]) -> torch.Tensor:
        """The evaluator's embeddings of `prompts` (rows), each prompt encoded once per evaluation."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self.text_cache]
        if missing:
            self.text_cache.update(zip(missing, self.evaluator.encode_text(missing)))
        return torch.stack([self.text_cache[p] for p in prompts])

    def answers(self, codes, evaluator_view) -> dict:
        """The judge's answers for `codes` ({} when it knows nothing of the category)."""
        category = self.nerf.category
        if category not in self.judge.questions:
            return {}
        return self.judge.answers(self.view(codes, "judge", evaluator_view), category)


def edit_subjects(nerf, heldout: list[int], prior_objects: int, generator) -> list[tuple[str, object]]:
    """(name, codes) of the objects to edit: the held-out training objects and draws from the prior."""

    device = nerf.box_min.device
    subjects = [(nerf.object_ids[i], nerf.object_codes(torch.tensor(i, device=device)).detach()) for i in heldout]
    drawn = nerf.sample_prior(prior_objects, generator).to(device)
    return subjects + [(f"prior_{k}", Codes(drawn.z_s[k], drawn.z_a[k])) for k in range(prior_objects)]


def judge_edits(editor, judges: EditJudges, library, pictured: list[str], name: str, codes, resolution: int,
                generators: tuple) -> tuple[np.ndarray, list[dict]]:
    """Every prompt of the library applied to one object: a record per edit, and the row of
    edits.png (before, then the pictured prompts' edits). `generators` draw the five-way candidates:
    any of the library's prompts, and distinct ones (`distinct_distractors`), these from the
    object's true answers where known (`EditJudges.truths`: held-out objects of the collection),
    else from the judge's reading (draws from the prior)."""

    nerf, evaluator = judges.nerf, judges.evaluator
    any_generator, distinct_generator = generators
    camera = orbit_camera(resolution, *VIEW_DEG, nerf.orbit)
    before = nerf.render_view(camera, codes)
    with torch.no_grad():  # the unedited object, seen once for every prompt
        seen_before = judges.view(codes, "evaluator")
        image_before = evaluator.encode_image(seen_before)[0]
        answers_before = first_answers(judges.answers(codes, seen_before))
    truth = judges.truths.get(name)
    known, undecided = truth or (answers_before, frozenset())  # what the distractors must not be true of
    shape_questions = judges.shape_questions()
    tiles, records = {}, []
    for target in ("appearance", "shape"):
        prompts = library.for_target(target)
        for prompt in prompts:
            edited = editor.apply(Edit(prompt=prompt, target=target), codes)
            after = nerf.render_view(camera, edited)
            if prompt in pictured:
                tiles[prompt] = to_uint8(after["rgb"])
            others = [p for p in prompts if p != prompt]
            candidates_any = [prompt] + [others[i] for i in torch.randperm(len(others), generator=any_generator)[:4].tolist()]
            record = {"object": name, "target": target, "prompt": prompt, "candidates_any": candidates_any,
                      **image_measures(before, after, named_color_of(prompt, library.neutral.split()[-1]))}
            with torch.no_grad():
                seen = judges.view(edited, "evaluator")
                distinct = distinct_distractors(prompt, prompts, judges.meanings, known, judges.claims, judges.implied, undecided)
                drawn = torch.randperm(len(distinct), generator=distinct_generator)[:4].tolist()
                record["candidates"] = [prompt] + [distinct[i] for i in drawn]
                record["candidates_from"] = "attributes" if truth else "judge"
                record.update(_image=evaluator.encode_image(seen)[0], _image_before=image_before,
                              _text=judges.texts(record["candidates"]), _text_any=judges.texts(candidates_any),
                              _text_distinct=judges.texts([prompt] + distinct))
                record["evaluator_pick"] = record["candidates"][int((record["_text"] @ record["_image"]).argmax())]
                record["five_way"] = metrics.expected_n_way_accuracy(record["_image"], record["_text_distinct"], 5)
                meaning = judges.meanings.get(prompt)  # whether the judge saw what the prompt asks before the edit
                record["prompt_held_before"] = holds(meaning, answers_before) if meaning and answers_before else None
                part_colour = named_part_color_of(prompt, library.neutral.split()[-1]) if target == "appearance" else None
                judged = answers_before and (prompt in judges.tests or part_colour is not None)  # the judge reads the edit
                answers = (answers_before, first_answers(judges.answers(edited, seen))) if judged else ()
                if prompt in judges.tests and answers:
                    record.update(judge_verdicts(judges.tests[prompt], answers, shape_questions,
                                                 judges.test_texts[prompt], (image_before, record["_image"])))
                if part_colour is not None and answers:
                    record.update(part_colour_verdicts(*part_colour, answers))
            records.append(record)
    row = np.concatenate([to_uint8(before["rgb"])] + [tiles[p] for p in pictured], axis=1)
    return row, records


def image_measures(before: dict, after: dict, colour: Optional[str]) -> dict:
    """Silhouette IoU and colour change between the renders before and after an edit, and for a
    colour prompt the distance (CIE Lab) of each to the named colour."""

    before_color = metrics.object_mean_color(before["rgb"], before["accumulation"])
    after_color = metrics.object_mean_color(after["rgb"], after["accumulation"])
    measures = {"iou": metrics.silhouette_iou(before["accumulation"], after["accumulation"]),
                "color_change": float(metrics.delta_e(before_color, after_color)),
                "haze_before": metrics.haze(before["accumulation"]), "haze_after": metrics.haze(after["accumulation"])}
    if colour is not None:
        named = torch.tensor(NAMED_COLORS[colour])
        measures.update(color=colour, delta_e_before=float(metrics.delta_e(before_color.cpu(), named)),
                        delta_e_after=float(metrics.delta_e(after_color.cpu(), named)))
    return measures


def part_measures(before: dict, after: dict, part: torch.Tensor, colour: str, min_pixels: int = 4) -> dict:
    """A part colour edit measured on the part's pixels (`part`, a bool (h, w) mask of the unedited
    render's frame): the distance (CIE Lab) of the part's mean colour to the named colour before
    and after, and the colour change of the rest of the object; None values where the part shows
    fewer than `min_pixels` pixels."""
    silhouette, part = metrics.silhouette(before["accumulation"]), part.to(before["rgb"].device)
    shown, rest = silhouette & part, silhouette & ~part
    named = torch.tensor(NAMED_COLORS[colour])
    measures = {"color": colour, "part_pixels": int(shown.sum()),
                "iou": metrics.silhouette_iou(before["accumulation"], after["accumulation"]),
                "delta_e_before": None, "delta_e_after": None, "rest_color_change": None}
    if int(shown.sum()) >= min_pixels:
        measures.update(delta_e_before=float(metrics.delta_e(before["rgb"][shown].mean(0).cpu(), named)),
                        delta_e_after=float(metrics.delta_e(after["rgb"][shown].mean(0).cpu(), named)))
    if int(rest.sum()) >= min_pixels:
        measures["rest_color_change"] = float(metrics.delta_e(before["rgb"][rest].mean(0), after["rgb"][rest].mean(0)))
    return measures


def summarize_edits(records: list[dict], library, latency: dict) -> dict:
    """eval.json's summary of the edit records."""

    def five_way(image: str, target: str, holders_only: bool = False, texts: str = "_text_distinct") -> float:
        chosen = [r for r in records if r["target"] == target and (r.get("judge_has_before") or not holders_only)]
        if not chosen:
            return float("nan")
        if texts == "_text_distinct":  # over every draw of four distinct distractors
            return float(np.mean([metrics.expected_n_way_accuracy(r[image], r[texts], 5) for r in chosen]))
        one = torch.zeros(1, dtype=torch.long)  # candidates differ in number: one choice at a time
        return float(np.mean([metrics.n_way_accuracy(r[image][None], r[texts][None], one) for r in chosen]))

    def mean(values) -> float:  # nan-aware: an edit may empty a silhouette
        return float(np.nanmean(values)) if values else float("nan")

    coloured = [r for r in records if "color" in r]
    targets = ("appearance", "shape")
    return {
        "objects": len({r["object"] for r in records}), "edits": len(records),
        "latency_s": latency,
        # The prompt among itself and four distinct others (`distinct_distractors`), averaged exactly
        # over every draw of the four (`expected_n_way_accuracy`); "five_way_accuracy_drawn" below is one draw.
        "five_way_accuracy": {t: mean([r["five_way"] for r in records if r["target"] == t]) for t in targets},
        "five_way_accuracy_by_prompt": {p: mean([r["five_way"] for r in records if r["prompt"] == p])
                                        for p in dict.fromkeys(r["prompt"] for r in records)},
        # Edits of objects the judge did not see with what the prompt asks (a stool asked for a back, not a
        # chair asked for the back it has, which tests the evaluator's reading of an unedited chair).
        "five_way_accuracy_where_new": {t: mean([r["five_way"] for r in records if r["target"] == t
                                                 and r.get("prompt_held_before") is False]) for t in targets},
        "five_way_accuracy_unedited": {t: five_way("_image_before", t) for t in targets},
        # The ceiling of the figure above: unedited objects the judge sees with what the prompt
        # asks already, among the same candidates.
        "five_way_accuracy_of_holders": {t: five_way("_image_before", t, holders_only=True) for t in targets},
        # One draw of the four (each edit's "candidates" and "evaluator_pick"): the figures until late on 6 December.
        "five_way_accuracy_drawn": {
            "edited": {t: five_way("_image", t, texts="_text") for t in targets},
            "unedited": {t: five_way("_image_before", t, texts="_text") for t in targets},
            "of_holders": {t: five_way("_image_before", t, holders_only=True, texts="_text") for t in targets}},
        # At most five; fewer when the library has fewer, or fewer distinct ones, for the object.
        "candidates": {t: min(5, len(library.for_target(t))) for t in targets},
        "candidates_mean": {t: mean([len(r["candidates"]) for r in records if r["target"] == t]) for t in targets},
        # Until the night of 6 December: the prompt among four others of the library drawn at random, which
        # may be its synonyms or already true of the object.
        "five_way_any_candidates": {
            "edited": {t: five_way("_image", t, texts="_text_any") for t in targets},
            "unedited": {t: five_way("_image_before", t, texts="_text_any") for t in targets},
            "of_holders": {t: five_way("_image_before", t, holders_only=True, texts="_text_any") for t in targets}},
        "color_delta_e_before": mean([r["delta_e_before"] for r in coloured]),
        "color_delta_e_after": mean([r["delta_e_after"] for r in coloured]),
        "color_closer_share": mean([float(r["delta_e_after"] < r["delta_e_before"]) for r in coloured]),
        "appearance_edit_silhouette_iou_min": min(r["iou"] for r in records if r["target"] == "appearance"),
        "shape_edit_color_change_delta_e": mean([r["color_change"] for r in records if r["target"] == "shape"]),
        "appearance_edit_color_change_delta_e": mean([r["color_change"] for r in records if r["target"] == "appearance"]),
        "haze": {t: {"before": mean([r["haze_before"] for r in records if r["target"] == t]),
                     "after": mean([r["haze_after"] for r in records if r["target"] == t])} for t in targets},
        "judged_shape_edits": judged_flips(records),
        "judged_shape_families": judged_families(records),
        "judged_part_colour_edits": judged_part_colours(records),
    }


def edit_latency(editor, codes, prompt: str, resolution: int, repeats: int) -> dict:
    """Seconds from prompt to one rendered view: text encoding, mappers, occupancy grid, render."""

    nerf = editor.nerf
    camera = orbit_camera(resolution, *VIEW_DEG, nerf.orbit)
    times = []
    for k in range(repeats + 1):
        start = time.perf_counter()
        edited = editor.apply(Edit(prompt=f"{prompt}" if k % 2 else f"{prompt} ", target="both"), codes)
        nerf.render_view(camera, edited)
        times.append(time.perf_counter() - start)
    times = times[1:]  # the first call warms caches up
    return {"median": float(np.median(times)), "max": float(np.max(times)), "resolution": resolution}


def first_answers(answers: dict[str, list[str]]) -> dict[str, str]:
    """{question: answer} of the first image of a judge's answers."""
    return {q: a[0] for q, a in answers.items()}


def other_questions(questions, asked: str, before: dict, after: dict) -> list[str]:
    """The `questions` other than `asked` that apply to the judge's answers both before and after
    an edit (a stool has no back height), less those whose change is what `asked` needs in order to
    apply (a stool asked for armrests must get a back): those whose answers an edit should keep."""
    def makes_asked_apply(q: str) -> bool:
        return not applies_judged(asked, before) and applies_judged(asked, {**before, q: after[q]})

    return [q for q in questions if q != asked and applies_judged(q, before) and applies_judged(q, after)
            and not makes_asked_apply(q)]


def judge_verdicts(test, answers: tuple[dict, dict], shape_questions: list[str], test_text, embeddings: tuple) -> dict:
    """Does the object have what `test.prompt` asks for, before and after the edit: the judge's
    answers (`answers`: {question: answer} before and after), and the evaluator CLIP's choice between
    prompt and opposite (`test_text`: their embeddings) for the (before, after) image embeddings.
    Also which of the other shape questions the judge answers alike before and after, among those
    that apply to both renders (a stool has no back height)."""
    before, after = answers
    picks = [bool(float(e @ test_text[0]) > float(e @ test_text[1])) for e in embeddings]
    others = other_questions(shape_questions, test.question, before, after)
    return {"judge_question": test.question, "judge_before": before[test.question], "judge_after": after[test.question],
            "judge_has_before": before[test.question] == test.answer, "judge_has_after": after[test.question] == test.answer,
            "judge_others_compared": others, "judge_others_changed": [q for q in others if before[q] != after[q]],
            "evaluator_has_before": picks[0], "evaluator_has_after": picks[1]}


def part_colour_verdicts(part: str, colour: str, answers: tuple[dict, dict]) -> dict:
    """Does the judge see the named part in the named colour before and after a part colour edit,
    and which of the other parts' colours (those that apply to both renders) it reads alike."""
    before, after = answers
    question = PART_COLOUR_QUESTIONS[part]
    if question not in before or not applies_judged(question, before):
        return {}  # a stool has no back to colour
    others = other_questions(list(PART_COLOUR_QUESTIONS.values()), question, before, after)
    others = [q for q in others if q in before and q in after]
    return {"part_question": question, "part_has_before": before[question] == colour, "part_has_after": after[question] == colour,
            "part_others_compared": others, "part_others_changed": [q for q in others if before[q] != after[q]]}


def judged_part_colours(records: list[dict]) -> dict:
    """Per part colour prompt, as the judge reads the renders: among objects whose part was not
    already the named colour, the share that have it after the edit; and the share of the other
    parts' colours it reads alike before and after (1.0: the edit kept to its part)."""
    out = {}
    for prompt in dict.fromkeys(r["prompt"] for r in records if "part_question" in r):
        rows = [r for r in records if r["prompt"] == prompt and "part_question" in r]
        lacking = [r["part_has_after"] for r in rows if not r["part_has_before"]]
        compared = sum(len(r["part_others_compared"]) for r in rows)
        out[prompt] = {"edits": len(rows), "lacking_before": len(lacking),
                       "flip_rate": float(np.mean(lacking)) if lacking else float("nan"),
                       "other_parts_kept": 1.0 - sum(len(r["part_others_changed"]) for r in rows) / compared
                       if compared else float("nan")}
    return out


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


def judged_families(records: list[dict]) -> dict:
    """Per question the judge asks of shape edits (a family of prompts: "an armchair" and "a chair
    with armrests" both ask "armrests"): the flip rate pooled over its prompts (among edits of
    objects the judge saw without the answer, the share with it after), the share of the other
    shape questions that apply before and after which the judge answers alike, the mean colour
    change (Delta E), the haze before and after, and the haze of the objects the judge saw with the
    answer already (thin parts such as slats or arms add semi-transparent edge pixels: what an
    edit that adds them may fairly reach)."""
    out = {}
    for question in dict.fromkeys(r["judge_question"] for r in records if "judge_question" in r):
        rows = [r for r in records if r.get("judge_question") == question]
        lacking = [r["judge_has_after"] for r in rows if not r["judge_has_before"]]
        holders = [r["haze_before"] for r in rows if r["judge_has_before"]]
        compared = sum(len(r["judge_others_compared"]) for r in rows)
        out[question] = {
            "prompts": list(dict.fromkeys(r["prompt"] for r in rows)), "edits": len(rows), "lacking_before": len(lacking),
            "flip_rate": float(np.mean(lacking)) if lacking else float("nan"),
            "others_unchanged": 1.0 - sum(len(r["judge_others_changed"]) for r in rows) / compared
            if compared else float("nan"),
            "color_change_delta_e": float(np.nanmean([r["color_change"] for r in rows])),
            "haze_before": float(np.nanmean([r["haze_before"] for r in rows])),
            "haze_after": float(np.nanmean([r["haze_after"] for r in rows])),
            "haze_of_objects_with_it": float(np.nanmean(holders)) if holders else float("nan"),
        }
    return out
