"""Tests for final-answer extraction, normalization, equivalence and voting."""

from __future__ import annotations

import pytest

from core.answers import (
    answers_equivalent,
    classify_answer,
    extract_answer,
    has_answer_marker,
    normalize_answer,
    tally_votes,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 5.", "5"),
        ("Step 1: 2 + 3 = 5.\nAnswer: 5", "5"),
        ("Answer: 4\nWait, let me recheck.\nAnswer: 5", "5"),
        ("So the final answer is $18.00.", "$18.00"),
        ("Thus \\boxed{\\frac{3}{4}} is it.", "3/4"),
        ("We get \\boxed{42}.", "42"),
        ("Natalia sold 72 clips.\n#### 72", "72"),
        ("**Answer:** Paris", "Paris"),
        ("**Answer**: (B)", "(B)"),
        ("Answer:\n42", "42"),
        ("The final answer is: yes.", "yes"),
        ("Answer: 7 first, then \\boxed{8}", "8"),
        ("Paris is the capital.\nIt is in France.", "It is in France"),
        ("", ""),
    ],
)
def test_extract_answer_markers(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_extract_answer_last_number_for_numeric_question() -> None:
    text = "First 17 + 20 = 37, then 37 + 5 = 42.\nThat is all."

    assert extract_answer(text, question="What is 17 + 25?") == "42"


def test_extract_answer_last_line_for_text_question() -> None:
    text = "Let me think.\nParis"

    assert extract_answer(text, question="What is the capital of France?") == "Paris"


def test_extract_answer_number_ignores_hyphen() -> None:
    assert extract_answer("Pages 3-4 hold 12 words", question="How many words?") == "12"


def test_has_answer_marker_true() -> None:
    assert has_answer_marker("so\nAnswer: 3")


def test_has_answer_marker_false() -> None:
    assert not has_answer_marker("I think it is 3.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$18.00", "18"),
        ("1,000", "1000"),
        ("3/4", "0.75"),
        ("0.750", "0.75"),
        ("75%", "75"),
        ("-5", "-5"),
        ("−5", "-5"),
        ("18 dollars", "18"),
        ("x = 12", "12"),
        ("1/3", "1/3"),
        ("five", "5"),
        ("17 + 25 = 42", "42"),
        ("x + 1 = y", "x 1 y"),
        ("(B)", "B"),
        ("B)", "B"),
        ("Answer: b", "B"),
        ("Option C", "C"),
        ("(d) Paris", "D"),
        ("Yes.", "yes"),
        ("yes, it is", "yes"),
        ("No, it is not.", "no"),
        ("The Eiffel Tower!", "eiffel tower"),
        ("  An apple ", "apple"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("42", "number"),
        ("(A)", "choice"),
        ("Yes", "yes_no"),
        ("Paris", "text"),
        ("  ", "empty"),
    ],
)
def test_classify_answer_kind(text: str, kind: str) -> None:
    assert classify_answer(text).kind == kind


@pytest.mark.parametrize(
    ("first", "second", "equivalent"),
    [
        ("$18.00", "18", True),
        ("1,000", "1000", True),
        ("3/4", "0.75", True),
        ("0.5", ".5", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("18", "18.0", True),
        ("18 dollars", "$18", True),
        ("50%", "50", True),
        ("Answer: 42", "42", True),
        ("The answer is 42.", "\\boxed{42}", True),
        ("#### 7", "seven", True),
        ("Answer: 17 + 25 = 42", "42", True),
        ("17 + 25 = 42", "17 + 25 = 32", False),
        ("-3", "−3", True),
        ("(B)", "B", True),
        ("B)", "b", True),
        ("Answer: b", "(B)", True),
        ("Option D", "D", True),
        ("Yes.", "yes", True),
        ("yes, it is", "YES", True),
        ("No", "no.", True),
        ("The Eiffel Tower", "eiffel tower", True),
        ("an apple", "Apple!", True),
        ("Paris.", "paris", True),
        ("New York City", "new-york city", True),
        ("18", "180", False),
        ("18", "-18", False),
        ("1/3", "0.33", False),
        ("3/4", "0.7", False),
        ("B", "D", False),
        ("(A)", "(C)", False),
        ("yes", "no", False),
        ("Paris", "London", False),
        ("", "", False),
        ("42", "", False),
    ],
)
def test_answers_equivalent(first: str, second: str, equivalent: bool) -> None:
    assert answers_equivalent(first, second) is equivalent


def test_verifier_called_for_text_answers() -> None:
    calls: list[tuple[str, str]] = []

    def verifier(first: str, second: str) -> bool:
        calls.append((first, second))
        return True

    assert answers_equivalent("the city of light", "Paris", verifier=verifier)
    assert calls == [("the city of light", "Paris")]


def test_verifier_not_called_for_numbers() -> None:
    calls: list[tuple[str, str]] = []

    def verifier(first: str, second: str) -> bool:
        calls.append((first, second))
        return True

    assert not answers_equivalent("18", "19", verifier=verifier)
    assert calls == []


def test_tally_votes_groups_normal_forms() -> None:
    tally = tally_votes(["$18", "17", "18.00", "18 dollars", "17"])

    assert tally.winner is not None
    assert tally.winner.key == "18"
    assert tally.winner.answer == "$18"
    assert tally.winner.indices == (0, 2, 3)
    assert tally.agreement == (3, 5)
    assert tally.votes_for("17") == 2


def test_tally_votes_tie_goes_to_first_seen() -> None:
    tally = tally_votes(["B", "(A)", "a", "b)"])

    assert tally.winner is not None
    assert tally.winner.key == "B"
    assert tally.agreement == (2, 4)


def test_tally_votes_skips_empty_answers() -> None:
    tally = tally_votes(["", "5", " "])

    assert tally.agreement == (1, 1)


def test_tally_votes_no_answers() -> None:
    tally = tally_votes([])

    assert tally.winner is None
    assert tally.agreement == (0, 0)


def test_tally_votes_merges_text_with_verifier() -> None:
    tally = tally_votes(
        ["Paris", "the French capital", "London"],
        verifier=lambda first, second: {first, second} == {"Paris", "the French capital"},
    )

    assert tally.winner is not None
    assert tally.winner.indices == (0, 1)
    assert tally.votes_for("London") == 1
