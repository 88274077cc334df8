"""Prompt libraries (`prompt_libraries/<category>.yaml` beside this module, shipped in the package):
what the mappers are trained to follow.

A library names the category's neutral prompt (the source of directional losses) and two lists
of prompts: shape edits for the shape mapper, appearance edits for the appearance mapper; and,
optionally, the words that name each semantic part, which make a colour prompt that names one part
a part edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from clipnerf_ns.data.attributes import QUESTIONS, question
from clipnerf_ns.errors import UserError

# Inside the package, so that an installed wheel has them as a checkout does.
PROMPTS_DIR = Path(__file__).parent / "prompt_libraries"


@dataclass(frozen=True)
class BinaryTest:
    """A prompt against its opposite, with the attribute question that tells which one is true."""

    prompt: str
    opposite: str
    question: str
    """The attribute judge's question (`clipnerf_ns.data.attributes`)."""
    answer: str
    """The answer to `question` that `prompt` asks for; any other answer makes `opposite` true."""
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Only objects whose attribute (key) is one of the values."""
    synonyms: Optional[tuple[str, str]] = None
    """The same pair in other words users type."""

    def truth(self, category: str, attributes: dict) -> Optional[bool]:
        """True if `prompt` describes the object, False if `opposite` does, None if the test does not apply."""
        for key, values in self.where:
            if str(attributes.get(key)) not in values:
                return None
        answer = question(category, self.question).answer(attributes)
        return None if answer is None else answer == self.answer


@dataclass(frozen=True)
class PromptLibrary:
    neutral: str
    shape: tuple[str, ...]
    appearance: tuple[str, ...]
    tests: tuple[BinaryTest, ...] = ()
    """Binary tests of the library's shape prompts (empty when the file has none)."""
    parts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """The category's semantic parts (as its part head names them) and the words that name each."""

    def for_target(self, target: str) -> tuple[str, ...]:
        return self.shape if target == "shape" else self.appearance

    def named_part(self, prompt: str) -> Optional[str]:
        """The one part a prompt names ("a chair with a red seat" -> "seat"), else None (no part, or several)."""
        named = {part for part, words in self.parts for word in words if re.search(rf"\b{re.escape(word)}\b", prompt.lower())}
        return named.pop() if len(named) == 1 else None


def load_prompt_library(path: Optional[Path], category: str) -> PromptLibrary:
    """The library at `path`, or the project's library for `category` when `path` is None."""
    path = Path(path) if path is not None else PROMPTS_DIR / f"{category}.yaml"
    if not path.is_file():
        raise UserError(f"{path}: no prompt library for category {category!r} (pass one with --pipeline.model.prompts FILE)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("neutral"), str):
        raise UserError(f"{path}: a prompt library needs 'neutral' (a prompt) and lists 'shape' and 'appearance'")
    lists = {}
    for key in ("shape", "appearance"):
        items = raw.get(key)
        if not isinstance(items, list) or not items or not all(isinstance(p, str) and p.strip() for p in items):
            raise UserError(f"{path}: '{key}' must be a non-empty list of prompts")
        lists[key] = tuple(items)
    return PromptLibrary(raw["neutral"], lists["shape"], lists["appearance"], _tests(path, raw.get("tests") or [], category),
                         _parts(path, raw.get("parts") or {}))


def _parts(path: Path, raw) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, dict) or not all(isinstance(words, list) and words and all(isinstance(w, str) and w.strip() for w in words)
                                            for words in raw.values()):
        raise UserError(f"{path}: 'parts' must map each part's name to a list of the words that name it")
    return tuple((str(part), tuple(w.strip().lower() for w in words)) for part, words in raw.items())


def _tests(path: Path, items, category: str) -> tuple[BinaryTest, ...]:
    known = {q.name: q.answers for q in QUESTIONS.get(category, ())}
    tests = []
    for i, item in enumerate(items if isinstance(items, list) else [None]):
        fields = ("prompt", "opposite", "question", "answer")
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k].strip() for k in fields):
            raise UserError(f"{path}: tests[{i}] needs the strings {', '.join(fields)}")
        if known and item["answer"] not in known.get(item["question"], ()):
            raise UserError(f"{path}: tests[{i}]: {item['question']!r} has no answer {item['answer']!r} for {category}")
        where, synonyms = item.get("where") or {}, item.get("synonyms")
        if not isinstance(where, dict) or not all(isinstance(v, list) for v in where.values()):
            raise UserError(f"{path}: tests[{i}]: 'where' must map attribute names to lists of values")
        if synonyms is not None and not (isinstance(synonyms, list) and len(synonyms) == 2
                                         and all(isinstance(x, str) and x.strip() for x in synonyms)):
            raise UserError(f"{path}: tests[{i}]: 'synonyms' must be two prompts [prompt, opposite]")
        tests.append(BinaryTest(item["prompt"], item["opposite"], item["question"], item["answer"],
                                tuple((k, tuple(str(v) for v in vs)) for k, vs in where.items()),
                                tuple(synonyms) if synonyms else None))
    return tuple(tests)
