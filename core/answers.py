"""Final-answer extraction, normalization, equivalence and majority voting over answers.

`extract_answer` finds the short final answer in a model's reply. `normalize_answer` maps an
answer to a canonical form so that different spellings of the same answer compare equal:

- numbers: "$18.00", "18 dollars" and "18" become "18"; "1,000" becomes "1000"; "3/4" and "0.75"
  become "0.75"; "75%" becomes "75" (the percent sign is dropped, not divided by 100); an
  equation such as "17 + 25 = 42" becomes its result "42";
- multiple-choice letters: "(B)", "B)", "b" and "Option B" become "B";
- yes/no: "Yes.", "yes, it is" become "yes";
- other short text: lower case, without punctuation and the articles "a", "an", "the".

Free-form answers that do not normalize equal can still be judged equal by an optional verifier
callback (for example a model call); without one they count as different. Numbers, letters and
yes/no never go to the verifier, because their normal forms are exact.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

AnswerKind = Literal["number", "choice", "yes_no", "text", "empty"]
AnswerVerifier = Callable[[str, str], bool]
"""Tells whether two free-form answers mean the same. It is called only when normal forms differ."""

MAX_UNIT_CHARS = 30

# Marker patterns match case-insensitively, and the last marker in a reply wins.
_ANSWER_MARKER = re.compile(
    r"\b(?:final\s+answer|answer)\s*(?:\*\*)?\s*(?:is\b\s*:?|:|=)[ \t]*(?P<value>[^\n]*)",
    re.IGNORECASE,
)
_HASH_MARKER = re.compile(r"####[ \t]*(?P<value>[^\n]*)")
_BOXED_OPEN = re.compile(r"\\boxed\s*\{")
_LEADING_MARKER = re.compile(
    r"^\s*(?:the\s+)?(?:final\s+answer|answer)\s*(?:\*\*)?\s*(?:is\b\s*:?|:|=)\s*", re.IGNORECASE
)
_NUMBER_IN_TEXT = re.compile(
    r"(?<!\w)[-−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?%?"
)
_NUMERIC_QUESTION = re.compile(
    r"\d|\bhow\s+(?:many|much|long|far|old)\b|\bwhat\s+number\b", re.IGNORECASE
)

_NUMBER_ANSWER = re.compile(
    r"^(?:[a-z]\s*=\s*)?"
    r"(?P<sign>[-−+])?\s*(?P<currency>[$€£¥])?\s*(?P<sign_after>[-−])?"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<denominator>\d+))?"
    r"\s*(?:%|percent\b)?"
    r"\s*(?P<unit>[^\W\d_][^\d]{0," + str(MAX_UNIT_CHARS) + r"})?$",
    re.IGNORECASE,
)
_CHOICE_ALONE = re.compile(r"^(?:option|choice)?\s*\(?([a-j])\)?$", re.IGNORECASE)
_CHOICE_WITH_TEXT = re.compile(r"^(?:option|choice)?\s*(?:\(([a-j])\)|([a-j])[.):])\s+\S", re.I)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans({char: " " for char in string.punctuation + "“”‘’«»…–—"})
_TRAILING_PUNCTUATION = ".,;:!?"

_SMALL_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten "
    "eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {word: value for value, word in enumerate(_SMALL_NUMBER_WORDS.split())}


@dataclass(frozen=True, slots=True)
class NormalizedAnswer:
    """An answer's canonical value and what kind of answer it is."""

    kind: AnswerKind
    value: str


@dataclass(frozen=True, slots=True)
class VoteGroup:
    """Answers that count as the same, in the order they were first seen."""

    key: str
    answer: str
    indices: tuple[int, ...]

    @property
    def votes(self) -> int:
        return len(self.indices)


@dataclass(frozen=True, slots=True)
class VoteTally:
    """The result of a majority vote: groups by descending votes, ties by first appearance."""

    groups: tuple[VoteGroup, ...]
    voters: int

    @property
    def winner(self) -> VoteGroup | None:
        return self.groups[0] if self.groups else None

    @property
    def agreement(self) -> tuple[int, int]:
        """Return (votes for the winner, answers that voted)."""
        return (self.groups[0].votes if self.groups else 0, self.voters)

    def votes_for(self, answer: str) -> int:
        """Return how many votes the group of `answer` received, 0 when it did not vote."""
        key = normalize_answer(answer)
        return next((group.votes for group in self.groups if group.key == key), 0)


def extract_answer(text: str, *, question: str | None = None) -> str:
    """Return the short final answer stated in a model's reply.

    Looks for the last marker: "Answer: …", "final answer is …", "\\boxed{…}" or "#### …".
    Without a marker it returns the last number when `question` looks numeric (it contains a
    digit or "how many"/"how much"), else the last non-empty line.
    """
    marked = _last_marked_value(text)
    if marked is not None:
        return marked
    if question is not None and is_numeric_question(question):
        numbers = _NUMBER_IN_TEXT.findall(text)
        if numbers:
            return str(numbers[-1]).strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _clean_value(lines[-1]) if lines else ""


def has_answer_marker(text: str) -> bool:
    """Tell whether the reply states a final answer with one of the markers."""
    return _last_marked_value(text) is not None


def is_numeric_question(question: str) -> bool:
    return _NUMERIC_QUESTION.search(question) is not None


def normalize_answer(text: str) -> str:
    """Return the canonical form of an answer, for voting and comparison."""
    return classify_answer(text).value


def classify_answer(text: str) -> NormalizedAnswer:
    """Normalize an answer and say whether it is a number, a letter, yes/no or text."""
    value = _strip_leading_marker(text)
    value = _clean_value(value)
    if not value:
        return NormalizedAnswer("empty", "")
    for classify in (_as_choice, _as_yes_no, _as_number, _as_equation_result):
        normalized = classify(value)
        if normalized is not None:
            return normalized
    return NormalizedAnswer("text", _normalize_text(value))


def answers_equivalent(first: str, second: str, *, verifier: AnswerVerifier | None = None) -> bool:
    """Tell whether two answers mean the same.

    Equal normal forms are equivalent. Two free-form text answers with different normal forms go
    to `verifier` when one is given. Every other pair counts as different.
    """
    left, right = classify_answer(first), classify_answer(second)
    if left.kind == "empty" or right.kind == "empty":
        return False
    if left.value == right.value:
        return True
    if verifier is not None and left.kind == "text" and right.kind == "text":
        return verifier(first, second)
    return False


def tally_votes(answers: Sequence[str], *, verifier: AnswerVerifier | None = None) -> VoteTally:
    """Group answers by normal form and count votes. Empty answers do not vote.

    The winner has the most votes; among equal counts the group seen first wins, so the result
    depends only on the order of `answers`. With a verifier, a text answer joins the first
    earlier text group the verifier judges equivalent.
    """
    keys: list[str] = []
    representatives: list[str] = []
    members: list[list[int]] = []
    voters = 0
    for index, answer in enumerate(answers):
        normalized = classify_answer(answer)
        if normalized.kind == "empty":
            continue
        voters += 1
        position = _find_group(normalized, answer, keys, representatives, verifier)
        if position is None:
            keys.append(normalized.value)
            representatives.append(answer)
            members.append([index])
        else:
            members[position].append(index)
    groups = [
        VoteGroup(key=key, answer=answer, indices=tuple(indices))
        for key, answer, indices in zip(keys, representatives, members, strict=True)
    ]
    # sorted() is stable, so groups with equal votes keep their first-seen order.
    ranked = sorted(groups, key=lambda group: -group.votes)
    return VoteTally(groups=tuple(ranked), voters=voters)


def _find_group(
    normalized: NormalizedAnswer,
    answer: str,
    keys: list[str],
    representatives: list[str],
    verifier: AnswerVerifier | None,
) -> int | None:
    if normalized.value in keys:
        return keys.index(normalized.value)
    if verifier is None or normalized.kind != "text":
        return None
    for position, representative in enumerate(representatives):
        if classify_answer(representative).kind == "text" and verifier(representative, answer):
            return position
    return None


def _last_marked_value(text: str) -> str | None:
    """Return the value after the last answer marker, or None when there is no marker."""
    found: list[tuple[int, str]] = []
    for pattern in (_ANSWER_MARKER, _HASH_MARKER):
        for match in pattern.finditer(text):
            value = match.group("value").strip()
            if not _clean_value(value):
                value = _next_line(text, match.end())
            found.append((match.start(), value))
    for match in _BOXED_OPEN.finditer(text):
        content = _braced_content(text, match.end())
        if content is not None:
            found.append((match.start(), content))
    found = [(start, value) for start, value in found if _clean_value(value)]
    if not found:
        return None
    _, value = max(found, key=lambda item: item[0])
    return _clean_value(value)


def _next_line(text: str, position: int) -> str:
    """Return the first non-empty line after `position`, for "Answer:" alone on its line."""
    for line in text[position:].splitlines():
        if line.strip():
            return line.strip()
    return ""


def _braced_content(text: str, start: int) -> str | None:
    """Return the text up to the brace that closes the one opened just before `start`."""
    depth = 1
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[start:position]
    return None


def _strip_leading_marker(text: str) -> str:
    marked = _last_marked_value(text)
    if marked is not None:
        return marked
    return _LEADING_MARKER.sub("", text.strip())


def _clean_value(value: str) -> str:
    """Strip markdown, LaTeX wrappers, quotes and trailing sentence punctuation."""
    cleaned = value.strip()
    boxed = _BOXED_OPEN.match(cleaned)
    if boxed:
        cleaned = _braced_content(cleaned, boxed.end()) or cleaned
    cleaned = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", cleaned)
    cleaned = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/\2", cleaned)
    cleaned = cleaned.replace("\\$", "$").replace("\\%", "%").replace("\\!", "")
    cleaned = cleaned.strip("*`_ \t")
    if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] == "$":
        cleaned = cleaned[1:-1].strip()
    cleaned = cleaned.strip("\"'“”‘’ \t")
    cleaned = cleaned.rstrip(_TRAILING_PUNCTUATION).strip("*`_\"'“”‘’ \t")
    return cleaned


def _as_choice(value: str) -> NormalizedAnswer | None:
    match = _CHOICE_ALONE.match(value) or _CHOICE_WITH_TEXT.match(value)
    if match is None:
        return None
    letter = next(group for group in match.groups() if group)
    return NormalizedAnswer("choice", letter.upper())


def _as_yes_no(value: str) -> NormalizedAnswer | None:
    words = value.lower().translate(_PUNCTUATION).split()
    if words and words[0] in ("yes", "no"):
        return NormalizedAnswer("yes_no", words[0])
    return None


def _as_number(value: str) -> NormalizedAnswer | None:
    number = _parse_number(value)
    if number is None:
        return None
    return NormalizedAnswer("number", _format_number(number))


def _as_equation_result(value: str) -> NormalizedAnswer | None:
    """Read "17 + 25 = 42" as its result 42, when the part after the last "=" is a number."""
    if "=" not in value:
        return None
    return _as_number(_clean_value(value.rsplit("=", 1)[1]))


def _parse_number(value: str) -> Fraction | None:
    lowered = value.lower().strip()
    if lowered in _NUMBER_WORDS:
        return Fraction(_NUMBER_WORDS[lowered])
    match = _NUMBER_ANSWER.match(value.strip())
    if match is None:
        return None
    number = Fraction(match.group("number").replace(",", ""))
    denominator = match.group("denominator")
    if denominator is not None:
        if int(denominator) == 0:
            return None
        number /= int(denominator)
    if (match.group("sign") or match.group("sign_after") or "") in ("-", "−"):
        number = -number
    return number


def _format_number(number: Fraction) -> str:
    """Write a number canonically: "18", "0.75", or "1/3" when no finite decimal exists."""
    if number.denominator == 1:
        return str(number.numerator)
    remaining = number.denominator
    for factor in (2, 5):
        while remaining % factor == 0:
            remaining //= factor
    if remaining != 1:
        return f"{number.numerator}/{number.denominator}"
    decimal = Decimal(number.numerator) / Decimal(number.denominator)
    return format(decimal.normalize(), "f")


def _normalize_text(value: str) -> str:
    lowered = value.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())
