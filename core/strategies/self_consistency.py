"""The `self_consistency` strategy: a majority vote over sampled reasoning paths, stopping early.

Self-consistency (Wang et al. 2022) samples several step-by-step reasoning paths at a temperature
above zero, extracts each path's final answer, and returns the answer most paths reach. Path i
uses seed `base_seed + i`, which every candidate records, so a run with the same question, seed
and settings repeats on a backend that honours seeds (the embedded one does).

Paths are sampled in windows of `window` samples. The samples of one window start together and
run concurrently up to `client.max_parallel` at once. The embedded backend runs one call at a
time and llama.cpp keeps the previous prompt in its cache, so each later sample of the same
question re-reads only the tokens after the shared prompt prefix.

After each window a stopping rule decides whether the vote is settled (`early_stop` turns this
off, and `samples` is the maximum either way):

- `beta`, the rule of Adaptive-Consistency (Aggarwal et al. 2023). Let a be the votes of the
  leading answer and b the votes of the runner-up. With a uniform prior, the leader's share p of
  those a + b votes has the posterior Beta(a + 1, b + 1). Sampling stops once
  P(p > 1/2) >= `confidence`. For whole-number parameters the Beta tail equals a binomial sum,
  P(p > 1/2) = P(Binomial(a + b + 1, 1/2) <= a), which `beta_stop_probability` computes exactly.
  Worked example with confidence 0.95, window 1 and every sample answering 5: after 3 samples
  P = P(Binomial(4, 1/2) <= 3) = 15/16 = 0.9375, which is too low. After 4 samples
  P = P(Binomial(5, 1/2) <= 4) = 31/32 = 0.96875, so sampling stops after 4 of 8 samples.
- `esc`, the rule of Early-Stopping Self-Consistency (Li et al. 2024): stop when every sample of
  the latest window reached the same answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import ClassVar, Literal

from pydantic import Field

from core.answers import VoteTally, tally_votes
from core.llm.base import SamplingOptions
from core.strategies.base import (
    BudgetedClient,
    ProgressCallback,
    StopReason,
    StrategyInput,
    StrategyOptions,
    StrategyResult,
    result_from_client,
)
from core.strategies.sampling import (
    Sample,
    exhausted_stop_reason,
    no_answer_result,
    reasoning_messages,
    report,
    sample_paths,
    shorten,
)

logger = logging.getLogger(__name__)

ESC_DEFAULT_WINDOW_SAMPLES = 4
StopRule = Literal["beta", "esc"]


class SelfConsistencyOptions(StrategyOptions):
    """Options of `self_consistency`."""

    samples: int = Field(default=8, ge=1, le=64, description="Maximum number of sampled paths.")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    base_seed: int = Field(default=0, description="Path i uses seed base_seed + i.")
    max_tokens: int = Field(default=512, ge=16, description="Maximum new tokens per path.")
    early_stop: bool = Field(default=True, description="Stop once the stopping rule fires.")
    stop_rule: StopRule = Field(default="beta", description="beta or esc.")
    confidence: float = Field(
        default=0.95, gt=0.0, lt=1.0, description="Posterior the beta rule must reach."
    )
    window: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Samples per round before the rule is checked; default client.max_parallel for "
            f"beta and max(client.max_parallel, {ESC_DEFAULT_WINDOW_SAMPLES}) for esc."
        ),
    )


@dataclass(frozen=True, slots=True)
class StopDecision:
    """Whether the stopping rule fired, and the trace line that explains why."""

    stop: bool
    reason: str


def beta_stop_probability(leader_votes: int, runner_up_votes: int) -> float:
    """Return P(p > 1/2) for p ~ Beta(leader_votes + 1, runner_up_votes + 1).

    Worked example: 5 samples answer 42, 42, 17, 42, 42, so a = 4 and b = 1. Then
    P = P(Binomial(6, 1/2) <= 4) = 1 - (C(6,5) + C(6,6)) / 2**6 = 1 - 7/64 = 0.890625, which
    is below 0.95, so sampling goes on. Had all 5 answered 42 (a = 5, b = 0),
    P = 1 - 1/64 = 0.984375 and sampling would stop.
    """
    trials = leader_votes + runner_up_votes + 1
    favourable = sum(comb(trials, successes) for successes in range(leader_votes + 1))
    return float(Fraction(favourable, 2**trials))


def beta_rule(tally: VoteTally, *, confidence: float) -> StopDecision:
    leader = tally.groups[0].votes if tally.groups else 0
    runner_up = tally.groups[1].votes if len(tally.groups) > 1 else 0
    probability = beta_stop_probability(leader, runner_up)
    reason = (
        f"Beta posterior {probability:.3f} {'>=' if probability >= confidence else '<'} "
        f"{confidence:g} with votes {leader} to {runner_up} after {tally.voters} samples"
    )
    return StopDecision(stop=leader > 0 and probability >= confidence, reason=reason)


def esc_rule(window: list[Sample | None]) -> StopDecision:
    """Fire when every sample of the window finished and all reached one answer."""
    finished = [sample for sample in window if sample is not None and sample.is_finished]
    answers = tally_votes([sample.answer for sample in finished])
    unanimous = (
        len(finished) == len(window) and len(answers.groups) == 1 and answers.voters == len(window)
    )
    if unanimous:
        return StopDecision(stop=True, reason=f"window of {len(window)} samples is unanimous")
    return StopDecision(stop=False, reason=f"window of {len(window)} samples disagrees")


def resolve_window(options: SelfConsistencyOptions, max_parallel: int) -> int:
    if options.window is not None:
        return options.window
    if options.stop_rule == "esc":
        return max(max_parallel, ESC_DEFAULT_WINDOW_SAMPLES)
    return max(max_parallel, 1)


def vote(samples: list[Sample]) -> tuple[VoteTally, list[Sample], str | None]:
    """Tally the finished paths, or every path when none finished; return a note for the trace."""
    finished = [sample for sample in samples if sample.is_finished]
    voters = finished or samples
    note = None
    if not finished and samples:
        note = "no path finished; voting over the unfinished paths"
    elif len(finished) < len(samples):
        note = f"{len(samples) - len(finished)} unfinished path(s) without an answer do not vote"
    return tally_votes([sample.answer for sample in voters]), voters, note


class SelfConsistencyStrategy:
    """Sample reasoning paths with distinct seeds and return the majority answer."""

    name: ClassVar[str] = "self_consistency"
    description: ClassVar[str] = (
        "Majority vote over sampled reasoning paths, stopping early once the vote is settled."
    )
    options_type: ClassVar[type[StrategyOptions]] = SelfConsistencyOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, SelfConsistencyOptions)
        window = resolve_window(options, client.max_parallel)
        messages = reasoning_messages(request)
        sampling = SamplingOptions(temperature=options.temperature, max_tokens=options.max_tokens)
        samples: list[Sample] = []
        trace: list[str] = []
        stop_reason: StopReason = "completed"

        started = 0
        while started < options.samples:
            indices = range(started, min(started + window, options.samples))
            started = indices.stop
            batch = await sample_paths(
                client,
                messages,
                sampling,
                indices=indices,
                base_seed=options.base_seed,
                question=request.question,
            )
            trace.extend(
                _sample_line(index, options.base_seed, sample)
                for index, sample in zip(indices, batch, strict=True)
            )
            samples.extend(sample for sample in batch if sample is not None)
            await report(progress, self.name, "samples", done=len(samples), total=options.samples)
            if any(sample is None for sample in batch):
                stop_reason = exhausted_stop_reason(client)
                break
            decision = self._check(options, samples, batch)
            if decision is not None and decision.stop:
                trace.append(f"stopped early: {decision.reason}")
                stop_reason = "early_stop"
                break
        return self._result(client, samples, trace, stop_reason)

    def _check(
        self, options: SelfConsistencyOptions, samples: list[Sample], batch: list[Sample | None]
    ) -> StopDecision | None:
        if not options.early_stop or len(samples) >= options.samples:
            return None
        if options.stop_rule == "esc":
            return esc_rule(batch)
        tally, _, _ = vote(samples)
        return beta_rule(tally, confidence=options.confidence)

    def _result(
        self,
        client: BudgetedClient,
        samples: list[Sample],
        trace: list[str],
        stop_reason: StopReason,
    ) -> StrategyResult:
        if stop_reason in ("budget_exhausted", "deadline"):
            trace.append(f"stopped: {stop_reason.replace('_', ' ')} after {len(samples)} samples")
        if not samples:
            return no_answer_result(self.name, client, stop_reason=stop_reason, trace=tuple(trace))

        tally, voters, note = vote(samples)
        if note:
            trace.append(note)
        winner = tally.winner
        assert winner is not None
        chosen = voters[winner.indices[0]]
        trace.append(
            f"majority answer {shorten(chosen.answer)!r} with {winner.votes} of {tally.voters}"
        )
        candidates = tuple(
            sample.to_candidate(votes=tally.votes_for(sample.answer) if sample in voters else 0)
            for sample in samples
        )
        return result_from_client(
            self.name,
            client,
            answer_text=chosen.text,
            short_answer=chosen.answer,
            candidates=candidates,
            stop_reason=stop_reason,
            trace=tuple(trace),
            agreement=tally.agreement,
            details={"seeds": [sample.seed for sample in samples]},
        )


def _sample_line(index: int, base_seed: int, sample: Sample | None) -> str:
    seed = base_seed + index
    if sample is None:
        return f"sample {index + 1} (seed {seed}): skipped, budget exhausted"
    suffix = "" if sample.is_finished else " (unfinished)"
    return f"sample {index + 1} (seed {seed}): {shorten(sample.answer)}{suffix}"
