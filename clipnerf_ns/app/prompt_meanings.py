"""What a prompt means to the attribute judge, and which prompts a five-way choice may offer
together (`clipnerf eval`): the words of colour and part colour prompts, what the judge reads when
a prompt holds, and the distractors that are neither implied by a prompt nor already true."""

from __future__ import annotations

from typing import Optional

from clipnerf_ns.data.attributes import QUESTIONS, applies_judged
from clipnerf_ns.data.synth_parts import COLOR_SYNONYMS

PART_COLOUR_QUESTIONS = {"seat": "seat_color", "back": "back_color", "base": "leg_color", "arms": "arm_color"}
"""The judge's colour question of each part a part colour prompt names."""


def named_color_of(prompt: str, noun: str) -> Optional[str]:
    """The colour name of a whole-object colour prompt ('a crimson chair' -> 'red'), else None."""
    words = prompt.strip().lower()
    for article in ("a ", "an "):
        if words.startswith(article) and words.endswith(" " + noun):
            middle = words[len(article) : -len(noun) - 1]
            for name, synonyms in COLOR_SYNONYMS.items():
                if middle in synonyms:
                    return name
    return None


PART_WORDS = {"seat": "seat", "seat cushion": "seat", "back": "back", "backrest": "back", "legs": "base",
              "base": "base", "arms": "arms", "armrests": "arms"}
"""The words of a part colour prompt -> the part ("seat", "back", "base", "arms": PartNet's groups)."""


def named_part_color_of(prompt: str, noun: str) -> Optional[tuple[str, str]]:
    """(part, colour name) of a part colour prompt ('a chair with a crimson seat' -> ('seat', 'red')), else None."""
    words = prompt.strip().lower()
    head = f"a {noun} with "
    if not words.startswith(head):
        return None
    rest = words[len(head):].removeprefix("an ").removeprefix("a ")
    for word, part in PART_WORDS.items():
        if rest.endswith(" " + word):
            colour = rest[: -len(word) - 1]
            for name, synonyms in COLOR_SYNONYMS.items():
                if colour in synonyms:
                    return part, name
    return None


Meaning = frozenset  # of (judge question, the answers that make a prompt hold)

MATERIAL_COLORS = {"wooden": "brown"}
"""Material words of colour prompts, as the captions use them: a chair of one colour with brown legs is wooden."""


def prompt_meanings(library, category: str, conditions: bool = True) -> dict[str, Meaning]:
    """What the judge reads when each prompt of `library` holds, as (question, answers) pairs, all of
    which must hold where they apply: a binary test's prompt its answer, its opposite any other
    (within the test's `where` when that names the question: a solid back is not a stool's lack of
    one), both the test's `where` on other judged questions (a tall stool is a stool) unless
    `conditions` is False (what the prompt itself claims: a star base is a pedestal, whatever its
    leg count); a colour prompt every colour question of the category (chairs: seat, back, legs,
    arms) and a part colour prompt its part's. Prompts the judge cannot read are absent."""
    pairs: dict[str, set] = {}
    for test in library.tests:
        answers = answers_of(category, test.question)
        where = {key: answers_of(category, key) & set(values) for key, values in test.where if answers_of(category, key)}
        within = where.get(test.question, answers) - {test.answer}
        for prompt, values in ((test.prompt, {test.answer}), (test.opposite, within or answers - {test.answer})):
            pairs.setdefault(prompt, set()).update({(test.question, frozenset(values))}, {
                (key, frozenset(v)) for key, v in where.items() if conditions and v and key != test.question})
    noun = library.neutral.split()[-1]
    colour_questions = [q.name for q in QUESTIONS.get(category, ()) if not q.shape]
    for prompt in library.appearance:
        words = prompt.strip().lower().removeprefix("a ").removeprefix("an ").removesuffix(" " + noun)
        colour, part = named_color_of(prompt, noun) or MATERIAL_COLORS.get(words), named_part_color_of(prompt, noun)
        if colour is not None:
            pairs[prompt] = {(q, frozenset({colour})) for q in colour_questions}
        elif part is not None:
            pairs[prompt] = {(PART_COLOUR_QUESTIONS[part[0]], frozenset({part[1]}))}
    return {prompt: frozenset(p) for prompt, p in pairs.items()}


def answers_of(category: str, name: str) -> set[str]:
    """The answers of the judge's question `name` ({} when it asks no such question: "kind")."""
    return {a for q in QUESTIONS.get(category, ()) if q.name == name for a in q.answers}


def entails(meaning: Optional[Meaning], other: Optional[Meaning]) -> bool:
    """Whether whatever shows `meaning` shows `other` too: each pair of `other` is narrowed by one
    of `meaning` (a red chair has a red seat; a tall stool is a stool). Unknown meanings entail nothing."""
    return bool(meaning) and bool(other) and all(
        any(q == q2 and values <= values2 for q, values in meaning) for q2, values2 in other)


def holds(meaning: Optional[Meaning], answers: dict[str, str]) -> bool:
    """Whether the judge's `answers` show what a prompt of this `meaning` asks: every pair that
    applies holds, and at least one applies."""
    applying = [(q, values) for q, values in meaning or () if q in answers and applies_judged(q, answers)]
    return bool(applying) and all(answers[q] in values for q, values in applying)


def distinct_distractors(prompt: str, prompts, meanings: dict[str, Meaning], before: dict[str, str],
                         claims: Optional[dict[str, Meaning]] = None, implied: frozenset = frozenset(),
                         undecided: frozenset = frozenset()) -> list[str]:
    """The prompts a five-way choice may offer beside `prompt`: not true of whatever `prompt` is true
    of (its synonyms, "a chair with a red seat" for "a red chair"; "a chair with a star base" for
    "an office chair": what a candidate claims, `claims`, as against where its test applies; and the
    category's own laws, `implied` (prompt, candidate) pairs: `category_implications`), nor of the
    object before the edit (`before`: its answers, true ones or the judge's; empty when nothing is
    known of it), nor about a question the object has no clear answer to (`undecided`: a seat of
    middling width is neither wide nor narrow). Any of these would make the choice a coin toss for a
    perfect edit."""
    claims = meanings if claims is None else claims
    return [p for p in prompts if p != prompt and not entails(meanings.get(prompt), claims.get(p))
            and (prompt, p) not in implied and not holds(meanings.get(p), before)
            and not any(q in undecided for q, _ in claims.get(p) or ())]


def true_answers(category: str, attributes: Optional[dict]) -> Optional[tuple[dict[str, str], frozenset]]:
    """An object's answers to the judge's questions from its true attributes, and the questions
    that apply to it with no clear answer (`Question.answer`'s middle thirds: a seat of middling
    width); None when it has no attributes, or lacks one (a real chair's unmeasured part)."""
    try:
        answers = {q.name: q.answer(attributes) for q in QUESTIONS.get(category, ())} if attributes else {}
    except KeyError:
        return None
    if not answers:
        return None
    rules = {q: a or "" for q, a in answers.items()}
    undecided = frozenset(q for q, a in answers.items() if a is None and applies_judged(q, rules))
    return {q: a for q, a in answers.items() if a is not None}, undecided


def category_implications(prompts, meanings: dict[str, Meaning], claims: dict[str, Meaning], truths: list[dict[str, str]],
                          min_objects: int = 20) -> frozenset:
    """(prompt, candidate) pairs where every object of a collection (`truths`: its objects' true
    answers, `true_answers`) that shows what `prompt` means also shows what `candidate` claims, over
    at least `min_objects` such objects: what the category implies beyond the words (procedural
    three-legged chairs all have round seats, so a three-legged edit of a square seat must make
    it round)."""
    pairs = set()
    for prompt in prompts:
        showing = [t for t in truths if holds(meanings.get(prompt), t)]
        if len(showing) >= min_objects:
            pairs.update((prompt, c) for c in prompts if c != prompt and claims.get(c)
                         and all(holds(claims[c], t) for t in showing))
    return frozenset(pairs)
