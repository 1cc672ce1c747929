"""Tests for tree search: beam selection, value scores, finishing, budget and concurrency."""

from __future__ import annotations

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
from core.strategies.tree_search import (
    FINAL_ANSWER_MAX_TOKENS,
    STEP_INSTRUCTION,
    VALUE_PROMPT,
    TreeSearchOptions,
    TreeSearchStrategy,
)
from tests.core.strategies.support import VALID_STOP_REASONS, RecordingClient, assert_costs_match

QUESTION = StrategyInput(question="What is 2 + 3?")
STEP_MESSAGES = [ChatMessage(role="user", content=f"What is 2 + 3?\n\n{STEP_INSTRUCTION}")]


def script(
    steps_by_seed: dict[int, str],
    values: dict[str, str],
    verdicts: dict[str, str],
    *,
    final_answer: str | None = None,
):
    """Reply to expansions by seed, to value prompts by steps, to verifier prompts by path.

    `final_answer` continues the "Answer:" line that a search without a finished path asks for.
    """

    def reply(messages: list[ChatMessage], sampling: SamplingOptions) -> str:
        content = messages[-1].content
        if final_answer is not None and sampling.max_tokens == FINAL_ANSWER_MAX_TOKENS:
            return final_answer
        if content.startswith("Rate a partial solution"):
            for steps, value in values.items():
                if f"Steps so far:\n{steps}\n\n" in content:
                    return value
            raise AssertionError(f"no value scripted for {content!r}")
        if content.startswith("Check a proposed answer"):
            for path, verdict in verdicts.items():
                if f"Proposed answer:\n{path}\n" in content:
                    return verdict
            raise AssertionError(f"no verdict scripted for {content!r}")
        assert sampling.seed is not None
        return steps_by_seed[sampling.seed]

    return reply


def options(**values: object) -> TreeSearchOptions:
    parsed = parse_options("tree_search", TreeSearchOptions, dict(values))
    assert isinstance(parsed, TreeSearchOptions)
    return parsed


async def run(
    scripted: RecordingClient, *, budget_tokens: int = 10_000, **values: object
) -> tuple[StrategyResult, BudgetedClient]:
    client = BudgetedClient(scripted, budget_tokens=budget_tokens)
    result = await TreeSearchStrategy().run(QUESTION, client=client, options=options(**values))
    return result, client


TWO_LEVEL_STEPS = {
    0: "Add 2 and 3.",
    1: "Multiply 2 by 3.",
    2: "Answer: 5",
    3: "2 + 3 = 5.",
    4: "Answer: 6",
    5: "2 * 3 = 6.",
}
TWO_LEVEL_VALUES = {
    "Add 2 and 3.": "8",
    "Multiply 2 by 3.": "2",
    "Add 2 and 3.\n2 + 3 = 5.": "7",
    "Multiply 2 by 3.\n2 * 3 = 6.": "3",
}
TWO_LEVEL_VERDICTS = {"Add 2 and 3.\nAnswer: 5": "9", "Multiply 2 by 3.\nAnswer: 6": "1"}


async def test_beam_finds_scored_answer() -> None:
    # Depth 1 keeps both root children (0.8, 0.2). Depth 2 ranks "Answer: 5" (0.9), "2 + 3 = 5."
    # (0.7), "2 * 3 = 6." (0.3), "Answer: 6" (0.1). The best child is finished, so the search stops.
    scripted = RecordingClient(script(TWO_LEVEL_STEPS, TWO_LEVEL_VALUES, TWO_LEVEL_VERDICTS))

    result, client = await run(scripted, beam_width=2, branching=2, max_depth=3)

    assert result.short_answer == "5"
    assert result.answer_text == "Add 2 and 3.\nAnswer: 5"
    assert result.stop_reason == "completed"
    assert result.nodes_expanded == 6
    assert result.calls == 12
    expansions = [call for call in scripted.calls if call.partial is not None]
    assert [call.options.seed for call in expansions] == [0, 1, 2, 3, 4, 5]
    assert [call.partial for call in expansions] == [
        "",
        "",
        "Add 2 and 3.\n",
        "Add 2 and 3.\n",
        "Multiply 2 by 3.\n",
        "Multiply 2 by 3.\n",
    ]
    assert all(call.options.stop == ("\n",) for call in expansions)
    assert list(expansions[0].messages) == STEP_MESSAGES
    assert [candidate.answer for candidate in result.candidates] == ["5", "6"]
    assert [candidate.score for candidate in result.candidates] == [0.9, 0.1]
    assert_costs_match(result, client, scripted)


async def test_trace_lists_kept_nodes() -> None:
    scripted = RecordingClient(script(TWO_LEVEL_STEPS, TWO_LEVEL_VALUES, TWO_LEVEL_VERDICTS))

    result, _ = await run(scripted, beam_width=2, branching=2, max_depth=3)

    assert (
        result.trace[0] == "depth 1: 2 children, kept 'Add 2 and 3.' 0.80, 'Multiply 2 by 3.' 0.20"
    )
    assert result.trace[1] == (
        "depth 2: 4 children, kept 'Answer: 5' 0.90 (finished), '2 + 3 = 5.' 0.70"
    )


async def test_value_prompt_contains_steps() -> None:
    scripted = RecordingClient(script(TWO_LEVEL_STEPS, TWO_LEVEL_VALUES, TWO_LEVEL_VERDICTS))

    await run(scripted, beam_width=2, branching=2, max_depth=3)

    value_call = scripted.calls[2]
    assert value_call.messages[-1].content == VALUE_PROMPT.format(
        question="What is 2 + 3?", steps="Add 2 and 3."
    )
    assert value_call.options.temperature == 0.0


async def test_max_depth_asks_for_answer() -> None:
    scripted = RecordingClient(
        script(
            {0: "Add 2 and 3.", 1: "Multiply 2 by 3."},
            {"Add 2 and 3.": "8", "Multiply 2 by 3.": "2"},
            {},
            final_answer=" 5",
        )
    )

    result, client = await run(scripted, beam_width=1, branching=2, max_depth=1)

    assert result.stop_reason == "max_rounds"
    assert result.short_answer == "5"
    assert result.answer_text == "Add 2 and 3.\nAnswer: 5"
    assert scripted.calls[-1].partial == "Add 2 and 3.\nAnswer:"
    assert client.records[-1].purpose == "answer"
    assert "reached max_depth 1 before the best path ended" in result.trace


async def test_lower_ranked_finished_child_does_not_stop() -> None:
    # Depth 1: "Answer: 6" is finished but scores 0.0 below the unfinished 0.5, so the search
    # goes on. Depth 2: "Answer: 5" scores 0.9 and ranks first, which ends the search.
    scripted = RecordingClient(
        script(
            {0: "Think: 2 + 3.", 1: "Answer: 6", 2: "Answer: 5", 3: "More."},
            {"Think: 2 + 3.": "5", "Think: 2 + 3.\nMore.": "4"},
            {"Answer: 6": "0", "Think: 2 + 3.\nAnswer: 5": "9"},
        )
    )

    result, _ = await run(scripted, beam_width=2, branching=2, max_depth=3)

    assert result.short_answer == "5"
    assert result.stop_reason == "completed"
    assert result.nodes_expanded == 4
    assert [candidate.answer for candidate in result.candidates] == ["6", "5"]


async def test_max_depth_keeps_better_finished_candidate() -> None:
    # Depth 1 ranks "Think." (0.8) over the finished "Answer: 5" (0.6). Depth 2 is the last, and
    # its best node (0.5) scores below 0.6, so no answer call is made and "5" is chosen.
    scripted = RecordingClient(
        script(
            {0: "Think.", 1: "Answer: 5", 2: "More.", 3: "Again."},
            {"Think.": "8", "Think.\nMore.": "5", "Think.\nAgain.": "4"},
            {"Answer: 5": "6"},
        )
    )

    result, client = await run(scripted, beam_width=2, branching=2, max_depth=2)

    assert result.short_answer == "5"
    assert result.stop_reason == "max_rounds"
    assert [record.purpose for record in client.records] == ["expand"] * 2 + ["value"] * 2 + [
        "expand"
    ] * 2 + ["value"] * 2


async def test_equal_scores_keep_earlier_expansion() -> None:
    scripted = RecordingClient(
        script(
            {0: "First idea.", 1: "Second idea.", 2: "Answer: 5", 3: "Answer: 5"},
            {"First idea.": "5", "Second idea.": "5"},
            {"First idea.\nAnswer: 5": "9"},
        )
    )

    result, _ = await run(scripted, beam_width=1, branching=2, max_depth=2)

    assert scripted.calls[4].partial == "First idea.\n"
    assert result.answer_text == "First idea.\nAnswer: 5"


async def test_empty_step_finishes_path() -> None:
    scripted = RecordingClient(
        script(
            {0: "2 + 3 = 5.", 1: ""},
            {"2 + 3 = 5.": "6"},
            {"2 + 3 = 5.": "8"},
        )
    )

    result, _ = await run(scripted, beam_width=1, branching=1, max_depth=3)

    assert result.short_answer == "5"
    assert result.answer_text == "2 + 3 = 5."
    assert result.nodes_expanded == 2
    assert result.stop_reason == "completed"


async def test_budget_fits_exactly_four_calls() -> None:
    # Two root expansions (35 + 4 tokens each) and two value calls fit. Every depth-2 expansion
    # and the final answer call need at least 55 tokens, and only 54 remain.
    scripted = RecordingClient(script(TWO_LEVEL_STEPS, TWO_LEVEL_VALUES, TWO_LEVEL_VERDICTS))
    root_prompt = scripted.count_tokens([*STEP_MESSAGES, ChatMessage("assistant", "")])
    value_prompts = [
        scripted.count_tokens(
            [ChatMessage("user", VALUE_PROMPT.format(question="What is 2 + 3?", steps=steps))]
        )
        for steps in ("Add 2 and 3.", "Multiply 2 by 3.")
    ]
    spent = 2 * (root_prompt + 4) + value_prompts[0] + 1 + value_prompts[1] + 1
    budget = spent + 54

    result, client = await run(scripted, budget_tokens=budget, beam_width=2, branching=2)

    assert root_prompt == 35
    assert result.calls == 4
    assert len(scripted.calls) == 4
    assert result.stop_reason == "budget_exhausted"
    assert result.total_tokens == spent
    assert result.nodes_expanded == 2
    assert "no budget for an answer line; using the best partial solution" in result.trace
    assert result.answer_text == "Add 2 and 3."
    assert_costs_match(result, client, scripted)


async def test_no_budget_returns_fallback() -> None:
    scripted = RecordingClient(script(TWO_LEVEL_STEPS, TWO_LEVEL_VALUES, TWO_LEVEL_VERDICTS))

    result, _ = await run(scripted, budget_tokens=40)

    assert result.calls == 0
    assert result.nodes_expanded is None
    assert result.stop_reason == "budget_exhausted"


async def test_expansions_overlap_up_to_max_parallel() -> None:
    steps = {seed: f"Idea {seed}. Answer: 5" for seed in range(4)}
    verdicts = {f"Idea {seed}. Answer: 5": "8" for seed in range(4)}
    scripted = RecordingClient(script(steps, {}, verdicts), max_parallel=4, seconds_per_call=0.02)

    result, _ = await run(scripted, beam_width=1, branching=4, max_depth=1)

    assert result.nodes_expanded == 4
    assert scripted.max_in_flight == 4


async def test_progress_counts_expansions() -> None:
    scripted = RecordingClient(script(TWO_LEVEL_STEPS, TWO_LEVEL_VALUES, TWO_LEVEL_VERDICTS))
    client = BudgetedClient(scripted, budget_tokens=10_000)
    reports: list[Progress] = []

    async def record(progress: Progress) -> None:
        reports.append(progress)

    await TreeSearchStrategy().run(
        QUESTION,
        client=client,
        options=options(beam_width=2, branching=2, max_depth=3),
        progress=record,
    )

    # A full search would expand 2 (root) + 2 rounds * 2 nodes * 2 branches = 10 nodes.
    assert [report.done for report in reports] == [1, 2, 3, 4, 5, 6]
    assert reports[-1].describe() == "thinking: tree-search, 6 of 10 expansions"


@pytest.mark.model
async def test_embedded_run_well_formed(embedded_client: EmbeddedClient) -> None:
    client = BudgetedClient(embedded_client, budget_tokens=600)

    result = await TreeSearchStrategy().run(
        StrategyInput(question="What is 17 + 25?"),
        client=client,
        options=options(beam_width=2, branching=2, max_depth=2, step_max_tokens=48),
    )

    assert result.answer_text
    assert result.calls >= 1
    assert result.total_tokens <= 600
    assert result.stop_reason in VALID_STOP_REASONS
    assert result.nodes_expanded is not None
    assert result.nodes_expanded >= 1
