"""Confidence-gated escalation: run a plan's rungs in turn, the next only while samples disagree.

The first rung is cheap. After it, the vote decides: when the winning answer has at least
`plan.escalate_below` of the votes, the answer is kept. Otherwise, if the question's budget still
covers the next rung's minimum, the next rung runs on the same BudgetedClient, so every rung
(and the difficulty probe before them) shares one hard budget. Rungs of the same sampling
strategy continue with new seeds and pool their votes: 3 samples then 4 more vote as 7.

Each rung may spend up to its `share` of the budget that was left when the ladder started,
counted together with the rungs before it; the last rung may spend all that is left. So a
rung cannot starve the rungs after it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from core.answers import answers_equivalent, tally_votes
from core.planner import DEFAULT_ESCALATE_BELOW, Plan, Rung, rung_minimum
from core.strategies.base import (
    BudgetedClient,
    Candidate,
    ProgressCallback,
    StrategyInput,
    StrategyOptions,
    StrategyResult,
    parse_options,
    result_from_client,
)
from core.strategies.registry import get_strategy

logger = logging.getLogger(__name__)

ESCALATION_DETAILS_KEY = "escalation"
SEED_OPTIONS = ("base_seed", "seed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """The ladder's course: rungs run, why it escalated or stopped, and whether that changed
    the answer."""

    rungs_run: int
    rungs_planned: int
    first_answer: str
    first_agreement: tuple[int, int] | None
    notes: tuple[str, ...]
    held_back: str | None
    changed_answer: bool

    @property
    def escalated(self) -> bool:
        return self.rungs_run > 1

    @property
    def note(self) -> str | None:
        """Return the footnote's text: the first escalation, or why it did not happen."""
        if self.notes:
            return self.notes[0]
        return self.held_back

    def as_record(self) -> dict[str, Any]:
        return {
            "rungs_run": self.rungs_run,
            "rungs_planned": self.rungs_planned,
            "first_answer": self.first_answer,
            "first_agreement": list(self.first_agreement) if self.first_agreement else None,
            "notes": list(self.notes),
            "held_back": self.held_back,
            "changed_answer": self.changed_answer,
        }


def escalation_from_result(result: StrategyResult) -> Escalation | None:
    """Return the escalation record that `run_ladder` stored in the result, if any."""
    record = result.details.get(ESCALATION_DETAILS_KEY)
    if not isinstance(record, dict):
        return None
    first = record.get("first_agreement")
    return Escalation(
        rungs_run=int(record["rungs_run"]),
        rungs_planned=int(record["rungs_planned"]),
        first_answer=str(record["first_answer"]),
        first_agreement=(int(first[0]), int(first[1])) if first else None,
        notes=tuple(str(note) for note in record["notes"]),
        held_back=record["held_back"],
        changed_answer=bool(record["changed_answer"]),
    )


@dataclass(frozen=True, slots=True)
class _Gate:
    escalate: bool
    note: str | None


def gate(
    agreement: tuple[int, int] | None,
    *,
    escalate_below: float,
    remaining_tokens: int,
    next_minimum_tokens: int,
) -> _Gate:
    """Decide whether to run the next rung, with the note the footnote shows."""
    if agreement is None or agreement[1] == 0:
        return _Gate(False, None)
    agreed, total = agreement
    if agreed / total >= escalate_below:
        return _Gate(False, None)
    disagreed = f"{total - agreed} of {total} samples disagreed"
    if remaining_tokens < next_minimum_tokens:
        return _Gate(
            False,
            f"not escalated: {disagreed}, but {remaining_tokens:,} tokens left "
            f"and the next step needs {next_minimum_tokens:,}",
        )
    return _Gate(True, f"escalated: {disagreed}")


async def run_ladder(
    client: BudgetedClient,
    request: StrategyInput,
    plan: Plan,
    *,
    progress: ProgressCallback | None = None,
) -> StrategyResult:
    """Run the plan's rungs on one budgeted client, escalating while the samples disagree."""
    rungs = plan.ladder
    total_budget = client.budget_tokens
    start_spent = client.spent_tokens
    available = max(0, total_budget - start_spent)
    prompt_tokens = client.count_tokens(request.messages())

    results: list[tuple[Rung, StrategyResult]] = []
    notes: list[str] = []
    held_back: str | None = None
    for index, rung in enumerate(rungs):
        if results:
            decision = gate(
                _pooled(results).agreement,
                escalate_below=plan.escalate_below,
                remaining_tokens=client.remaining_tokens,
                next_minimum_tokens=rung_minimum(rung, prompt_tokens),
            )
            if not decision.escalate:
                held_back = decision.note
                break
            assert decision.note is not None
            notes.append(decision.note)
            logger.info("%s; running %s", decision.note, rung.describe())

        is_last = index == len(rungs) - 1
        limit = total_budget if is_last else start_spent + math.floor(available * rung.share)
        client.budget_tokens = min(total_budget, limit)
        try:
            result = await _run_rung(client, request, rung, _seed_offset(results, rung), progress)
        finally:
            client.budget_tokens = total_budget
        results.append((rung, result))

    return _combined(client, results, rungs_planned=len(rungs), notes=notes, held_back=held_back)


async def _run_rung(
    client: BudgetedClient,
    request: StrategyInput,
    rung: Rung,
    seed_offset: int,
    progress: ProgressCallback | None,
) -> StrategyResult:
    strategy = get_strategy(rung.strategy)
    raw = dict(rung.options)
    seed_option = next(
        (name for name in SEED_OPTIONS if name in strategy.options_type.model_fields), None
    )
    if seed_option is not None and seed_offset:
        raw[seed_option] = int(raw.get(seed_option, 0)) + seed_offset
    options = parse_options(strategy.name, strategy.options_type, raw)
    return await strategy.run(request, client=client, options=options, progress=progress)


def _seed_offset(results: list[tuple[Rung, StrategyResult]], rung: Rung) -> int:
    """Return how many samples earlier rungs of the same strategy drew, so new seeds differ."""
    return sum(len(result.candidates) for done, result in results if done.strategy == rung.strategy)


@dataclass(frozen=True, slots=True)
class _Pool:
    candidates: tuple[Candidate, ...]
    chosen: Candidate | None
    agreement: tuple[int, int] | None


def _pooled(results: list[tuple[Rung, StrategyResult]]) -> _Pool:
    """Pool the votes of the rungs when they share one voting strategy; else take the last."""
    last = results[-1][1]
    same_strategy = all(rung.strategy == results[0][0].strategy for rung, _ in results)
    if len(results) == 1 or not same_strategy or last.agreement is None:
        chosen = next((c for c in last.candidates if c.answer == last.short_answer), None)
        return _Pool(last.candidates, chosen, last.agreement)

    candidates = tuple(candidate for _, result in results for candidate in result.candidates)
    voters = [candidate for candidate in candidates if candidate.votes > 0]
    tally = tally_votes([candidate.answer for candidate in voters])
    if tally.winner is None:
        return _Pool(candidates, None, tally.agreement)
    chosen = voters[tally.winner.indices[0]]
    revoted = tuple(
        _with_votes(candidate, tally.votes_for(candidate.answer) if candidate.votes > 0 else 0)
        for candidate in candidates
    )
    return _Pool(revoted, chosen, tally.agreement)


def _with_votes(candidate: Candidate, votes: int) -> Candidate:
    return Candidate(
        text=candidate.text,
        answer=candidate.answer,
        prompt_tokens=candidate.prompt_tokens,
        completion_tokens=candidate.completion_tokens,
        seed=candidate.seed,
        score=candidate.score,
        votes=votes,
    )


def _combined(
    client: BudgetedClient,
    results: list[tuple[Rung, StrategyResult]],
    *,
    rungs_planned: int,
    notes: list[str],
    held_back: str | None,
) -> StrategyResult:
    """Build one result for the whole ladder; its cost covers every call on the client."""
    first = results[0][1]
    last = results[-1][1]
    pool = _pooled(results)
    answer_text = pool.chosen.text if pool.chosen and len(results) > 1 else last.answer_text
    short_answer = pool.chosen.answer if pool.chosen and len(results) > 1 else last.short_answer
    escalation = Escalation(
        rungs_run=len(results),
        rungs_planned=rungs_planned,
        first_answer=first.short_answer,
        first_agreement=first.agreement,
        notes=tuple(notes),
        held_back=held_back,
        changed_answer=len(results) > 1
        and not answers_equivalent(first.short_answer, short_answer),
    )
    trace: list[str] = []
    for index, (rung, result) in enumerate(results):
        if len(results) > 1 or rungs_planned > 1:
            trace.append(f"rung {index + 1}: {rung.describe()}")
        trace.extend(result.trace)
        if index < len(notes):
            trace.append(notes[index])
    if held_back:
        trace.append(held_back)
    return result_from_client(
        last.strategy,
        client,
        answer_text=answer_text,
        short_answer=short_answer,
        candidates=pool.candidates,
        stop_reason=last.stop_reason,
        trace=tuple(trace),
        agreement=pool.agreement,
        nodes_expanded=last.nodes_expanded,
        details={**last.details, ESCALATION_DETAILS_KEY: escalation.as_record()},
    )


class LadderOptions(StrategyOptions):
    """Options of the ladder as a strategy: its rungs and the escalation threshold."""

    rungs: tuple[Rung, ...] = Field(min_length=1)
    escalate_below: float = Field(default=DEFAULT_ESCALATE_BELOW, gt=0, le=1)


class LadderStrategy:
    """A plan's escalation ladder behind the strategy interface, for the benchmark's policies.

    It is not in the strategy registry: askers choose single strategies, and the planner builds
    ladders.
    """

    name: ClassVar[str] = "ladder"
    description: ClassVar[str] = "Run rungs in turn, the next only while the samples disagree."
    options_type: ClassVar[type[StrategyOptions]] = LadderOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, LadderOptions)
        plan = Plan(
            strategy=options.rungs[0].strategy,
            options=dict(options.rungs[0].options),
            budget_tokens=client.budget_tokens,
            rungs=options.rungs,
            escalate_below=options.escalate_below,
        )
        return await run_ladder(client, request, plan, progress=progress)
