"""Tests for self-refine: the critique loop, choosing the best version, scoring and budget."""

from __future__ import annotations

import pytest

from core.llm.base import ChatMessage, SamplingOptions
from core.llm.embedded import EmbeddedClient
from core.strategies.base import BudgetedClient, StrategyInput, StrategyResult, parse_options
from core.strategies.sampling import BUDGET_EXHAUSTED_ANSWER, REASONING_INSTRUCTION
from core.strategies.self_refine import (
    SelfRefineOptions,
    SelfRefineStrategy,
    critique_finds_no_error,
    critique_messages,
    revise_messages,
)
from core.strategies.verifier import verification_messages
from tests.core.strategies.support import VALID_STOP_REASONS, RecordingClient, assert_costs_match

QUESTION = StrategyInput(question="What is 2 + 3?")


def script(versions: list[str], critiques: list[str], verdicts: dict[str, str]):
    """Reply to drafts and revisions in order, to critiques in order, to verifiers by answer."""
    remaining_versions = list(versions)
    remaining_critiques = list(critiques)

    def reply(messages: list[ChatMessage], sampling: SamplingOptions) -> str:
        content = messages[-1].content
        if content.startswith("Check a proposed answer"):
            for text, verdict in verdicts.items():
                if f"Proposed answer:\n{text}\n" in content:
                    return verdict
            raise AssertionError(f"no verdict scripted for {content!r}")
        if content.startswith("Review a proposed answer"):
            return remaining_critiques.pop(0)
        return remaining_versions.pop(0)

    return reply


def options(**values: object) -> SelfRefineOptions:
    parsed = parse_options("self_refine", SelfRefineOptions, dict(values))
    assert isinstance(parsed, SelfRefineOptions)
    return parsed


async def run(
    scripted: RecordingClient, *, budget_tokens: int = 10_000, **values: object
) -> tuple[StrategyResult, BudgetedClient]:
    client = BudgetedClient(scripted, budget_tokens=budget_tokens)
    result = await SelfRefineStrategy().run(QUESTION, client=client, options=options(**values))
    return result, client


@pytest.mark.parametrize(
    ("critique", "no_error"),
    [
        ("NO ERRORS", True),
        ("No errors found.", True),
        ("There are no mistakes.", True),
        ("The answer is correct.", True),
        ("The solution is fully correct.", True),
        ("There are no errors in step 1, but step 2 is wrong.", False),
        ("The answer is incorrect.", False),
        ("The answer is not correct.", False),
        ("Step 2 should be 5.", False),
        ("Looks good to me.", False),
        ("", False),
    ],
)
def test_critique_finds_no_error(critique: str, no_error: bool) -> None:
    assert critique_finds_no_error(critique) is no_error


async def test_stops_when_no_error_found() -> None:
    scripted = RecordingClient(script(["Answer: 5"], ["NO ERRORS"], {"Answer: 5": "8"}))

    result, client = await run(scripted, rounds=3)

    assert result.stop_reason == "no_error_found"
    assert result.short_answer == "5"
    assert [record.purpose for record in client.records] == ["draft", "verify", "critique"]
    assert "critique 1: no error found" in result.trace
    assert_costs_match(result, client, scripted)


async def test_returns_best_scored_not_last() -> None:
    scripted = RecordingClient(
        script(
            ["Answer: 5", "Answer: 6", "Answer: 7"],
            ["Step 1 is wrong.", "Still wrong."],
            {"Answer: 5": "9", "Answer: 6": "2", "Answer: 7": "3"},
        )
    )

    result, client = await run(scripted, rounds=2)

    assert result.stop_reason == "max_rounds"
    assert result.short_answer == "5"
    assert [candidate.score for candidate in result.candidates] == [0.9, 0.2, 0.3]
    assert result.details["chosen_version"] == 0
    assert result.trace[-1] == "chosen: draft (score 0.90) of 3"
    assert [record.purpose for record in client.records] == [
        "draft",
        "verify",
        "critique",
        "revise",
        "verify",
        "critique",
        "revise",
        "verify",
    ]
    assert_costs_match(result, client, scripted)


async def test_score_tie_prefers_votes_then_later() -> None:
    scripted = RecordingClient(
        script(
            ["Answer: 5", "Answer: 6", "Answer: 6"],
            ["Wrong sum.", "Wrong again."],
            {"Answer: 5": "8", "Answer: 6": "8"},
        )
    )

    result, _ = await run(scripted, rounds=2)

    assert result.details["chosen_version"] == 2
    assert result.short_answer == "6"


async def test_agreement_scoring_makes_no_verifier_calls() -> None:
    scripted = RecordingClient(
        script(["Answer: 5", "Answer: 6", "Answer: 6"], ["Wrong sum.", "Wrong again."], {})
    )

    result, client = await run(scripted, rounds=2, scoring="agreement")

    assert [record.purpose for record in client.records] == [
        "draft",
        "critique",
        "revise",
        "critique",
        "revise",
    ]
    assert [candidate.score for candidate in result.candidates] == pytest.approx(
        [1 / 3, 2 / 3, 2 / 3]
    )
    assert result.details["chosen_version"] == 2


async def test_revision_continues_conversation() -> None:
    scripted = RecordingClient(
        script(
            ["Answer: 4", "Answer: 5"], ["The sum is wrong."], {"Answer: 4": "1", "Answer: 5": "9"}
        )
    )

    result, _ = await run(scripted, rounds=1)

    revise_call = scripted.calls[3]
    assert [message.role for message in revise_call.messages] == ["user", "assistant", "user"]
    assert revise_call.messages[0].content == f"What is 2 + 3?\n\n{REASONING_INSTRUCTION}"
    assert revise_call.messages[1].content == "Answer: 4"
    assert revise_call.messages[2].content.startswith(
        "Here is feedback on your answer:\nThe sum is wrong.\n\n"
    )
    assert [call.options.seed for call in scripted.calls] == [0, 0, 1, 2, 0]
    assert result.short_answer == "5"


async def test_zero_rounds_completes_with_draft() -> None:
    scripted = RecordingClient(script(["Answer: 5"], [], {"Answer: 5": "8"}))

    result, _ = await run(scripted, rounds=0)

    assert result.stop_reason == "completed"
    assert result.calls == 2


async def test_budget_fits_exactly_three_calls() -> None:
    # Draft 25 + 2, verification 42 + 1, critique its prompt + 3; the revision would need its
    # prompt plus 16 new tokens, and the budget leaves one token less than that.
    scripted = RecordingClient(
        script(["Answer: 5", "Answer: 6"], ["It is wrong."], {"Answer: 5": "8"})
    )
    critique_prompt = scripted.count_tokens(critique_messages(QUESTION, "Answer: 5"))
    revise_prompt = scripted.count_tokens(revise_messages(QUESTION, "Answer: 5", "It is wrong."))
    verify_prompt = scripted.count_tokens(verification_messages(QUESTION, "Answer: 5"))
    spent = 27 + (verify_prompt + 1) + (critique_prompt + 3)
    budget = spent + revise_prompt + 15

    result, client = await run(scripted, budget_tokens=budget, rounds=2)

    assert result.calls == 3
    assert len(scripted.calls) == 3
    assert result.stop_reason == "budget_exhausted"
    assert result.total_tokens == spent
    assert result.short_answer == "5"
    assert_costs_match(result, client, scripted)


async def test_unscored_revision_is_neutral() -> None:
    # The revision fits but its verification does not, so it scores 0.5 and loses to 0.8.
    scripted = RecordingClient(
        script(["Answer: 5", "Answer: 6"], ["It is wrong."], {"Answer: 5": "8", "Answer: 6": "9"})
    )
    verify_prompt = scripted.count_tokens(verification_messages(QUESTION, "Answer: 5"))
    critique_prompt = scripted.count_tokens(critique_messages(QUESTION, "Answer: 5"))
    revise_prompt = scripted.count_tokens(revise_messages(QUESTION, "Answer: 5", "It is wrong."))
    budget = 27 + (verify_prompt + 1) + (critique_prompt + 3) + (revise_prompt + 2) + 50

    result, _ = await run(scripted, budget_tokens=budget, rounds=2)

    assert result.calls == 4
    assert result.stop_reason == "budget_exhausted"
    assert [candidate.score for candidate in result.candidates] == [0.8, 0.5]
    assert result.short_answer == "5"
    assert "stopped: no budget left to score the revision 1" in result.trace


async def test_no_budget_returns_fallback() -> None:
    scripted = RecordingClient(script(["Answer: 5"], [], {}))

    result, _ = await run(scripted, budget_tokens=40)

    assert result.calls == 0
    assert result.answer_text == BUDGET_EXHAUSTED_ANSWER
    assert result.stop_reason == "budget_exhausted"


@pytest.mark.model
async def test_embedded_run_well_formed(embedded_client: EmbeddedClient) -> None:
    client = BudgetedClient(embedded_client, budget_tokens=600)

    result = await SelfRefineStrategy().run(
        StrategyInput(question="What is 17 + 25?"),
        client=client,
        options=options(rounds=1, max_tokens=96, critique_max_tokens=64),
    )

    assert result.answer_text
    assert result.calls >= 1
    assert result.total_tokens <= 600
    assert result.stop_reason in VALID_STOP_REASONS
