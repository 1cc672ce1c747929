"""Tests for best-of-n: verifier scores, self-certainty, tie-breaking, budget and concurrency."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from core.llm.base import ChatMessage, ChatResult, SamplingOptions
from core.llm.embedded import EmbeddedClient
from core.strategies.base import BudgetedClient, StrategyInput, StrategyResult, parse_options
from core.strategies.best_of_n import BestOfNOptions, BestOfNStrategy, combine_scores
from core.strategies.sampling import BUDGET_EXHAUSTED_ANSWER
from core.strategies.verifier import Verdict, verification_messages
from tests.core.strategies.support import VALID_STOP_REASONS, RecordingClient, assert_costs_match

QUESTION = StrategyInput(question="What is 2 + 3?")
SAMPLE_TOKENS = 25 + 2


def options(**values: object) -> BestOfNOptions:
    parsed = parse_options("best_of_n", BestOfNOptions, dict(values))
    assert isinstance(parsed, BestOfNOptions)
    return parsed


def script(replies_by_seed: list[str], verdicts: dict[str, str]):
    """Answer samples by seed, and verifier prompts by the candidate text they contain."""

    def reply(messages: list[ChatMessage], sampling: SamplingOptions) -> str:
        content = messages[-1].content
        if content.startswith("Check a proposed answer"):
            for text, verdict in verdicts.items():
                if f"Proposed answer:\n{text}\n" in content:
                    return verdict
            raise AssertionError(f"no verdict scripted for {content!r}")
        assert sampling.seed is not None
        return replies_by_seed[sampling.seed]

    return reply


async def run(
    scripted: RecordingClient, *, budget_tokens: int = 10_000, **values: object
) -> tuple[StrategyResult, BudgetedClient]:
    client = BudgetedClient(scripted, budget_tokens=budget_tokens)
    result = await BestOfNStrategy().run(QUESTION, client=client, options=options(**values))
    return result, client


async def test_highest_verifier_score_wins() -> None:
    scripted = RecordingClient(
        script(
            ["Answer: 5", "Answer: 6", "Answer: 7", "Answer: 5"],
            {"Answer: 5": "6", "Answer: 6": "9/10", "Answer: 7": "No."},
        )
    )

    result, client = await run(scripted, n=4)

    assert result.short_answer == "6"
    assert [candidate.score for candidate in result.candidates] == [0.6, 0.9, 0.0, 0.6]
    assert [candidate.votes for candidate in result.candidates] == [2, 1, 1, 2]
    assert result.calls == 8
    assert [record.purpose for record in client.records].count("verify") == 4
    assert result.stop_reason == "completed"
    assert result.agreement == (1, 4)
    assert_costs_match(result, client, scripted)


async def test_score_tie_goes_to_more_votes() -> None:
    scripted = RecordingClient(
        script(["Answer: 7", "Answer: 5", "Answer: 5"], {"Answer: 7": "8", "Answer: 5": "8"})
    )

    result, _ = await run(scripted, n=3)

    assert result.short_answer == "5"
    assert result.candidates[1].seed == 1
    assert result.trace[-1].startswith("chosen: candidate 2 (seed 1), score 0.80, 2 vote(s)")


async def test_vote_tie_goes_to_fewer_tokens() -> None:
    long_reply = "First add two and three carefully. Answer: 7"
    scripted = RecordingClient(
        script([long_reply, "Answer: 6"], {long_reply: "8", "Answer: 6": "8"})
    )

    result, _ = await run(scripted, n=2)

    assert result.short_answer == "6"


async def test_full_tie_goes_to_lower_seed() -> None:
    scripted = RecordingClient(
        script(["Answer: 7", "Answer: 6"], {"Answer: 7": "8", "Answer: 6": "8"})
    )

    result, _ = await run(scripted, n=2)

    assert result.short_answer == "7"


async def test_unparseable_verdict_is_neutral() -> None:
    scripted = RecordingClient(
        script(["Answer: 5", "Answer: 6"], {"Answer: 5": "hmm", "Answer: 6": "3"})
    )

    result, _ = await run(scripted, n=2)

    assert result.short_answer == "5"
    assert [candidate.score for candidate in result.candidates] == [0.5, 0.3]
    assert result.trace[2] == "score 1: 0.50 from verifier 0.50 ('hmm', unparseable so neutral)"


async def test_verify_off_makes_no_verifier_calls() -> None:
    scripted = RecordingClient(script(["Answer: 6", "Answer: 5", "Answer: 5"], {}))

    result, _ = await run(scripted, n=3, verify=False, self_certainty=False)

    assert result.calls == 3
    assert [candidate.score for candidate in result.candidates] == [0.5, 0.5, 0.5]
    assert result.short_answer == "5"


class CertaintyClient(RecordingClient):
    """Adds top-2 log-probabilities: seed 0 is unsure (0.5/0.5), seed 1 sure (0.9/0.1)."""

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        result = await super().chat(messages, options)
        if options.top_logprobs == 0:
            return result
        pair = (
            [math.log(0.5), math.log(0.5)] if options.seed == 0 else [math.log(0.9), math.log(0.1)]
        )
        with_logprobs = replace(result, token_logprobs=(tuple(pair), tuple(pair)))
        self.results[-1] = with_logprobs
        return with_logprobs


async def test_self_certainty_breaks_verifier_tie() -> None:
    # Both verdicts read 0.8. Certainty: seed 0 scores 0, seed 1 scores 1 - H(0.9, 0.1) / ln 2
    # = 0.531004, so the mixed scores are 0.4 and 0.5 * 0.8 + 0.5 * 0.531004 = 0.665502.
    scripted = CertaintyClient(
        script(["Answer: 5", "Answer: 6"], {"Answer: 5": "8", "Answer: 6": "8"})
    )

    result, _ = await run(scripted, n=2)

    assert result.short_answer == "6"
    assert result.candidates[0].score == pytest.approx(0.4)
    assert result.candidates[1].score == pytest.approx(0.665502, abs=1e-6)
    assert [call.options.top_logprobs for call in scripted.calls[:2]] == [5, 5]
    assert result.details["certainty"][0] == pytest.approx(0.0)


async def test_self_certainty_off_requests_no_logprobs() -> None:
    scripted = CertaintyClient(script(["Answer: 5"], {"Answer: 5": "8"}))

    result, _ = await run(scripted, n=1, self_certainty=False)

    assert scripted.calls[0].options.top_logprobs == 0
    assert result.details["certainty"] == [None]


def test_combine_scores_parts() -> None:
    verdict = Verdict(score=0.8, parsed=True, reply="8")

    assert combine_scores(verdict, 0.4, certainty_weight=0.25) == pytest.approx(0.7)
    assert combine_scores(verdict, None, certainty_weight=0.25) == pytest.approx(0.8)
    assert combine_scores(None, 0.4, certainty_weight=0.25) == pytest.approx(0.4)
    assert combine_scores(None, None, certainty_weight=0.25) == pytest.approx(0.5)


async def test_budget_fits_exactly_six_calls() -> None:
    # Four samples cost 27 tokens each. A verification costs its prompt plus 1 reply token, and
    # two of them fit. The third would need its prompt plus 16 new tokens, but only its prompt
    # plus 15 remain.
    scripted = RecordingClient(script(["Answer: 5"] * 4, {"Answer: 5": "8"}))
    verify_prompt = scripted.count_tokens(verification_messages(QUESTION, "Answer: 5"))
    budget = 4 * SAMPLE_TOKENS + 2 * (verify_prompt + 1) + verify_prompt + 15

    result, client = await run(scripted, budget_tokens=budget, n=4)

    assert verify_prompt == 42
    assert result.calls == 6
    assert len(scripted.calls) == 6
    assert result.stop_reason == "budget_exhausted"
    assert [candidate.score for candidate in result.candidates] == [0.8, 0.8, 0.5, 0.5]
    assert result.trace[-2] == "score 4: 0.50 from not verified: budget exhausted"
    assert result.total_tokens == budget - verify_prompt - 15
    assert_costs_match(result, client, scripted)


async def test_budget_cut_during_sampling() -> None:
    scripted = RecordingClient(script(["Answer: 5", "Answer: 6", "Answer: 7"], {}))

    result, _ = await run(scripted, budget_tokens=2 * SAMPLE_TOKENS + 40, n=3)

    assert result.calls == 2
    assert result.stop_reason == "budget_exhausted"
    assert "stopped sampling: budget exhausted" in result.trace
    assert len(result.candidates) == 2


async def test_no_budget_returns_fallback() -> None:
    scripted = RecordingClient(script(["Answer: 5"], {}))

    result, _ = await run(scripted, budget_tokens=40, n=2)

    assert result.calls == 0
    assert result.answer_text == BUDGET_EXHAUSTED_ANSWER


async def test_samples_overlap_up_to_max_parallel() -> None:
    scripted = RecordingClient(
        script(["Answer: 5"] * 4, {"Answer: 5": "8"}), max_parallel=4, seconds_per_call=0.02
    )

    result, _ = await run(scripted, n=4)

    assert result.calls == 8
    assert scripted.max_in_flight == 4
    assert [candidate.seed for candidate in result.candidates] == [0, 1, 2, 3]


@pytest.mark.model
async def test_embedded_run_well_formed(embedded_client: EmbeddedClient) -> None:
    client = BudgetedClient(embedded_client, budget_tokens=600)

    result = await BestOfNStrategy().run(
        StrategyInput(question="What is 17 + 25?"),
        client=client,
        options=options(n=2, max_tokens=96),
    )

    assert result.answer_text
    assert result.calls >= 1
    assert result.total_tokens <= 600
    assert result.stop_reason in VALID_STOP_REASONS


@pytest.mark.model
async def test_embedded_self_certainty_from_logprobs() -> None:
    # The shared client has no log-probabilities; this one keeps logits for every token.
    client_with_logprobs = EmbeddedClient(context_tokens=256, logprobs=True)
    client = BudgetedClient(client_with_logprobs, budget_tokens=200)
    try:
        result = await BestOfNStrategy().run(
            StrategyInput(question="What is 17 + 25?"),
            client=client,
            options=options(n=1, max_tokens=16, verify=False),
        )
    finally:
        await client_with_logprobs.close()

    certainty = result.details["certainty"][0]
    assert certainty is not None
    assert 0.0 < certainty < 1.0
    assert result.candidates[0].score == pytest.approx(certainty)
