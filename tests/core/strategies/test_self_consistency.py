"""Tests for self-consistency: votes, seeds, early stopping, budget cut-off and concurrency."""

from __future__ import annotations

import time

import pytest

from core.llm.base import ChatMessage, SamplingOptions
from core.llm.embedded import EmbeddedClient
from core.strategies.base import (
    BudgetedClient,
    Progress,
    StrategyInput,
    StrategyResult,
    parse_options,
)
from core.strategies.sampling import BUDGET_EXHAUSTED_ANSWER
from core.strategies.self_consistency import (
    SelfConsistencyOptions,
    SelfConsistencyStrategy,
    beta_stop_probability,
)
from tests.core.strategies.support import VALID_STOP_REASONS, RecordingClient, assert_costs_match

QUESTION = StrategyInput(question="What is 2 + 3?")
# "What is 2 + 3?" (5 words) plus the 16-word reasoning instruction, plus 4 for the message.
PROMPT_TOKENS = 25


def by_seed(*answers: str):
    """Reply "Answer: X" where X is the answer listed for the call's seed."""

    def reply(messages: list[ChatMessage], options: SamplingOptions) -> str:
        assert options.seed is not None
        return f"Answer: {answers[options.seed]}"

    return reply


def options(**values: object) -> SelfConsistencyOptions:
    parsed = parse_options("self_consistency", SelfConsistencyOptions, dict(values))
    assert isinstance(parsed, SelfConsistencyOptions)
    return parsed


async def run(
    scripted: RecordingClient, *, budget_tokens: int = 10_000, **values: object
) -> tuple[StrategyResult, BudgetedClient]:
    client = BudgetedClient(scripted, budget_tokens=budget_tokens)
    result = await SelfConsistencyStrategy().run(QUESTION, client=client, options=options(**values))
    return result, client


@pytest.mark.parametrize(
    ("leader", "runner_up", "expected"),
    [
        (0, 0, 0.5),
        (3, 0, 15 / 16),
        (4, 0, 31 / 32),
        (4, 1, 57 / 64),
        (5, 1, 120 / 128),
        (6, 1, 247 / 256),
        (2, 2, 0.5),
    ],
)
def test_beta_stop_probability(leader: int, runner_up: int, expected: float) -> None:
    assert beta_stop_probability(leader, runner_up) == pytest.approx(expected, abs=1e-12)


async def test_beta_stops_after_four_agreeing() -> None:
    # All answers agree, so a = k and b = 0 after k samples: P = 1 - 1/2**(k + 1).
    # k = 3 gives 0.9375 < 0.95 and k = 4 gives 0.96875 >= 0.95, so exactly 4 calls.
    scripted = RecordingClient(by_seed(*["5"] * 8))

    result, client = await run(scripted, samples=8)

    assert result.calls == 4
    assert result.stop_reason == "early_stop"
    assert result.agreement == (4, 4)
    assert result.short_answer == "5"
    assert result.trace[-2] == (
        "stopped early: Beta posterior 0.969 >= 0.95 with votes 4 to 0 after 4 samples"
    )
    assert_costs_match(result, client, scripted)


async def test_beta_stops_after_seven_with_dissent() -> None:
    # Seeds 0..7 answer 5, 6, 5, 5, 5, 5, 5, 5. After 6 samples a = 5, b = 1:
    # P = P(Bin(7, 1/2) <= 5) = 1 - 8/128 = 0.9375 < 0.95. After 7 samples a = 6, b = 1:
    # P = P(Bin(8, 1/2) <= 6) = 1 - 9/256 = 0.9648 >= 0.95, so sampling stops at 7.
    scripted = RecordingClient(by_seed("5", "6", "5", "5", "5", "5", "5", "5"))

    result, _ = await run(scripted, samples=8)

    assert result.calls == 7
    assert result.stop_reason == "early_stop"
    assert result.agreement == (6, 7)
    assert result.short_answer == "5"


async def test_esc_stops_on_unanimous_window() -> None:
    scripted = RecordingClient(by_seed("5", "6", "5", "5", "7", "7"))

    result, _ = await run(scripted, samples=6, stop_rule="esc", window=2)

    assert result.calls == 4
    assert result.stop_reason == "early_stop"
    assert result.agreement == (3, 4)
    assert "stopped early: window of 2 samples is unanimous" in result.trace


async def test_early_stop_off_takes_all_samples() -> None:
    scripted = RecordingClient(by_seed(*["5"] * 8))

    result, client = await run(scripted, samples=8, early_stop=False)

    assert result.calls == 8
    assert result.stop_reason == "completed"
    assert result.agreement == (8, 8)
    assert_costs_match(result, client, scripted)


async def test_last_window_does_not_check_rule() -> None:
    # With samples=4 the fourth sample is the last anyway, so the run ends "completed".
    scripted = RecordingClient(by_seed(*["5"] * 4))

    result, _ = await run(scripted, samples=4)

    assert result.calls == 4
    assert result.stop_reason == "completed"


async def test_seeds_recorded_on_candidates() -> None:
    scripted = RecordingClient(by_seed(*["5", "6", "7"] * 4))

    result, client = await run(scripted, samples=3, base_seed=0, early_stop=False)

    assert [candidate.seed for candidate in result.candidates] == [0, 1, 2]
    assert [call.options.seed for call in scripted.calls] == [0, 1, 2]
    assert [record.seed for record in client.records] == [0, 1, 2]
    assert result.details["seeds"] == [0, 1, 2]


async def test_base_seed_offsets_seeds() -> None:
    scripted = RecordingClient(lambda messages, sampling: "Answer: 5")

    result, _ = await run(scripted, samples=2, base_seed=100, early_stop=False)

    assert [candidate.seed for candidate in result.candidates] == [100, 101]


async def test_tie_goes_to_first_sampled() -> None:
    scripted = RecordingClient(by_seed("6", "5", "5", "6"))

    result, _ = await run(scripted, samples=4, early_stop=False)

    assert result.short_answer == "6"
    assert result.agreement == (2, 4)
    assert result.answer_text == "Answer: 6"


async def test_equivalent_answers_share_votes() -> None:
    scripted = RecordingClient(by_seed("$18.00", "18", "17", "18 dollars"))

    result, _ = await run(scripted, samples=4, early_stop=False)

    assert result.short_answer == "$18.00"
    assert result.agreement == (3, 4)
    assert [candidate.votes for candidate in result.candidates] == [3, 3, 1, 3]


async def test_prompt_tokens_exact() -> None:
    scripted = RecordingClient(by_seed("5"))

    result, _ = await run(scripted, samples=1)

    assert result.prompt_tokens == PROMPT_TOKENS
    assert result.completion_tokens == 2


async def test_budget_fits_exactly_three_calls() -> None:
    # Each call costs 25 prompt + 2 completion tokens. After 3 calls 40 tokens remain, and the
    # 4th call would need 25 for its prompt plus at least 16 new tokens, so it is never made.
    budget = 3 * (PROMPT_TOKENS + 2) + PROMPT_TOKENS + 15
    scripted = RecordingClient(by_seed(*["5", "6"] * 4))

    result, client = await run(scripted, budget_tokens=budget, samples=8, early_stop=False)

    assert result.calls == 3
    assert len(scripted.calls) == 3
    assert result.stop_reason == "budget_exhausted"
    assert result.total_tokens == 81
    assert result.total_tokens <= budget
    assert result.agreement == (2, 3)
    assert result.trace[-2] == "stopped: budget exhausted after 3 samples"
    assert_costs_match(result, client, scripted)


async def test_no_budget_returns_fallback() -> None:
    scripted = RecordingClient(by_seed("5"))

    result, _ = await run(scripted, budget_tokens=PROMPT_TOKENS + 15, samples=4)

    assert result.calls == 0
    assert result.answer_text == BUDGET_EXHAUSTED_ANSWER
    assert result.stop_reason == "budget_exhausted"
    assert result.candidates == ()


async def test_past_deadline_reports_deadline() -> None:
    scripted = RecordingClient(by_seed("5"))
    client = BudgetedClient(scripted, budget_tokens=10_000, deadline=time.monotonic() - 1)

    result = await SelfConsistencyStrategy().run(QUESTION, client=client, options=options())

    assert result.calls == 0
    assert result.stop_reason == "deadline"


async def test_unfinished_paths_do_not_vote() -> None:
    # Seed 1 rambles past max_tokens without an answer line, so it is cut and does not vote.
    long_reply = " ".join(["step"] * 30) + " 7"

    def reply(messages: list[ChatMessage], sampling: SamplingOptions) -> str:
        return long_reply if sampling.seed == 1 else "Answer: 5"

    scripted = RecordingClient(reply)

    result, _ = await run(scripted, samples=3, max_tokens=16, early_stop=False)

    assert result.agreement == (2, 2)
    assert [candidate.votes for candidate in result.candidates] == [2, 0, 2]
    assert result.trace[1] == (
        "sample 2 (seed 1): step step step step step step step step… (unfinished)"
    )


async def test_samples_overlap_up_to_max_parallel() -> None:
    scripted = RecordingClient(by_seed(*["5"] * 8), max_parallel=4, seconds_per_call=0.02)

    result, _ = await run(scripted, samples=8, early_stop=False, window=8)

    assert result.calls == 8
    assert scripted.max_in_flight == 4


async def test_default_window_is_max_parallel() -> None:
    # Window 4 (max_parallel): after 4 agreeing samples P = 0.96875, so one window suffices.
    scripted = RecordingClient(by_seed(*["5"] * 8), max_parallel=4, seconds_per_call=0.02)

    result, _ = await run(scripted, samples=8)

    assert result.calls == 4
    assert scripted.max_in_flight == 4
    assert result.stop_reason == "early_stop"


async def test_progress_after_each_window() -> None:
    scripted = RecordingClient(by_seed(*["5", "6"] * 4))
    client = BudgetedClient(scripted, budget_tokens=10_000)
    reports: list[Progress] = []

    async def record(progress: Progress) -> None:
        reports.append(progress)

    await SelfConsistencyStrategy().run(
        QUESTION, client=client, options=options(samples=4, window=2), progress=record
    )

    assert [report.done for report in reports] == [2, 4]
    assert reports[0].describe() == "thinking: self-consistency, 2 of 4 samples"


def test_unknown_option_lists_known() -> None:
    from core.errors import StrategyOptionError

    with pytest.raises(StrategyOptionError) as caught:
        options(sample=3)

    assert str(caught.value) == (
        "unknown option(s) 'sample' for strategy 'self_consistency'; known options: base_seed, "
        "confidence, early_stop, max_tokens, samples, stop_rule, temperature, window"
    )


@pytest.mark.model
async def test_embedded_run_well_formed(embedded_client: EmbeddedClient) -> None:
    client = BudgetedClient(embedded_client, budget_tokens=600)

    result = await SelfConsistencyStrategy().run(
        StrategyInput(question="What is 17 + 25?"),
        client=client,
        options=options(samples=3, max_tokens=96),
    )

    assert result.answer_text
    assert result.calls >= 1
    assert result.total_tokens <= 600
    assert result.stop_reason in VALID_STOP_REASONS


@pytest.mark.model
async def test_embedded_same_seed_same_result(embedded_client: EmbeddedClient) -> None:
    request = StrategyInput(question="What is 17 + 25?")
    settings = options(samples=3, max_tokens=64, early_stop=False, base_seed=7)

    first = await SelfConsistencyStrategy().run(
        request, client=BudgetedClient(embedded_client, budget_tokens=2_000), options=settings
    )
    second = await SelfConsistencyStrategy().run(
        request, client=BudgetedClient(embedded_client, budget_tokens=2_000), options=settings
    )

    assert [candidate.text for candidate in first.candidates] == [
        candidate.text for candidate in second.candidates
    ]
    assert first.short_answer == second.short_answer
    assert first.total_tokens == second.total_tokens
    assert [candidate.seed for candidate in first.candidates] == [7, 8, 9]
