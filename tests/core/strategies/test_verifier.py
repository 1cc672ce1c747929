"""Tests for the verifier: score parsing, self-certainty and the verification call."""

from __future__ import annotations

import math

import pytest

from core.strategies.base import BudgetedClient, StrategyInput
from core.strategies.verifier import (
    NEUTRAL_SCORE,
    parse_score,
    self_certainty,
    verification_messages,
    verify_answer,
)
from tests.core.strategies.support import RecordingClient

QUESTION = StrategyInput(question="What is 2 + 3?")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("8", 0.8),
        ("8.", 0.8),
        ("**9**", 0.9),
        ("10", 1.0),
        ("0", 0.0),
        ("1", 0.1),
        ("1.0", 1.0),
        ("0.25", 0.25),
        ("8/10", 0.8),
        ("Rating: **7**/10", 0.7),
        ("4 out of 5", 0.8),
        ("Score: 3. The sum is wrong.", 0.3),
        ("confidence: 90%", 0.9),
        ("Yes, it is right.", 1.0),
        ("Correct.", 1.0),
        ("No.", 0.0),
        ("The answer is incorrect.", 0.0),
        ("The answer is not correct.", 0.0),
        ("That is wrong; 2 + 3 is 5.", 0.0),
        ("17 + 25 = 42, so the answer is correct.", 1.0),
        ("1/2 + 1/4 = 3/4 is true", 1.0),
        ("10 - correct", 1.0),
        ("7 - looks fine", 0.7),
    ],
)
def test_parse_score(reply: str, expected: float) -> None:
    assert parse_score(reply) == pytest.approx(expected)


@pytest.mark.parametrize("reply", ["", "hmm", "I cannot tell.", "42", "3 + 4 = 7 is fine"])
def test_parse_score_none(reply: str) -> None:
    assert parse_score(reply) is None


def test_self_certainty_flat_is_zero() -> None:
    flat = [math.log(0.25)] * 4

    assert self_certainty([flat, flat]) == pytest.approx(0.0)


def test_self_certainty_peaked_near_one() -> None:
    peaked = [math.log(0.999997), math.log(0.000001), math.log(0.000001), math.log(0.000001)]

    certainty = self_certainty([peaked])

    assert certainty is not None
    assert certainty > 0.99


def test_self_certainty_two_tokens_exact() -> None:
    # p = (0.9, 0.1): H = -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325083 nats; 1 - H / ln 2 = 0.531004.
    # A flat second token (0.5, 0.5) scores 0, so the mean is 0.265502.
    tokens = [[math.log(0.9), math.log(0.1)], [math.log(0.5), math.log(0.5)]]

    assert self_certainty(tokens) == pytest.approx(0.531004 / 2, abs=1e-6)


def test_self_certainty_renormalizes_top_k() -> None:
    # Top-2 log-probabilities of 0.3 and 0.3 renormalize to (0.5, 0.5): a flat choice.
    assert self_certainty([[math.log(0.3), math.log(0.3)]]) == pytest.approx(0.0)


def test_self_certainty_without_logprobs() -> None:
    assert self_certainty(None) is None
    assert self_certainty([[0.0]]) is None


def test_verification_prompt_contains_answer() -> None:
    messages = verification_messages(QUESTION, "  Answer: 5\n")

    assert messages[-1].role == "user"
    assert "Question: What is 2 + 3?" in messages[-1].content
    assert "Proposed answer:\nAnswer: 5\n\n" in messages[-1].content


async def test_verify_answer_reads_score() -> None:
    scripted = RecordingClient(["7 - looks fine"])
    client = BudgetedClient(scripted, budget_tokens=1_000)

    verdict = await verify_answer(client, QUESTION, "Answer: 5", max_tokens=24, seed=3)

    assert verdict is not None
    assert verdict.score == pytest.approx(0.7)
    assert verdict.parsed
    assert scripted.calls[0].options.temperature == 0.0
    assert scripted.calls[0].options.seed == 3
    assert client.records[0].purpose == "verify"


async def test_verify_answer_unparseable_is_neutral() -> None:
    client = BudgetedClient(RecordingClient(["hmm"]), budget_tokens=1_000)

    verdict = await verify_answer(client, QUESTION, "Answer: 5", max_tokens=24, seed=0)

    assert verdict is not None
    assert verdict.score == NEUTRAL_SCORE
    assert not verdict.parsed


async def test_verify_answer_none_without_budget() -> None:
    scripted = RecordingClient(["8"])
    client = BudgetedClient(scripted, budget_tokens=20)

    verdict = await verify_answer(client, QUESTION, "Answer: 5", max_tokens=24, seed=0)

    assert verdict is None
    assert scripted.calls == []
