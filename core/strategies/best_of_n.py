"""The `best_of_n` strategy: sample n reasoning paths, score each, and keep the best-scored one.

Each candidate is scored by a verifier, which is the answering model itself asked whether the
answer is correct (core/strategies/verifier.py), and, where the backend returns token
log-probabilities, by its self-certainty: the mean over generated tokens of 1 - H(p) / log k for
the renormalized top-k distribution p, which is KL(p || uniform) / log k. With both, the score is
(1 - certainty_weight) * verifier + certainty_weight * certainty. An unparseable verifier reply
scores 0.5, and so does a candidate with neither score.

The highest score wins. Ties go to the answer more candidates share (after normalization), then
to the candidate that cost fewer tokens, then to the lower seed. Samples, and then the
verifications, run concurrently up to `client.max_parallel` at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from core.answers import tally_votes
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
    gather_or_cancel,
    no_answer_result,
    reasoning_messages,
    report,
    sample_paths,
    shorten,
)
from core.strategies.verifier import NEUTRAL_SCORE, Verdict, self_certainty, verify_answer

logger = logging.getLogger(__name__)


class BestOfNOptions(StrategyOptions):
    """Options of `best_of_n`."""

    n: int = Field(default=4, ge=1, le=32, description="Number of sampled candidates.")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    base_seed: int = Field(default=0, description="Candidate i uses seed base_seed + i.")
    max_tokens: int = Field(default=512, ge=16, description="Maximum new tokens per candidate.")
    verify: bool = Field(default=True, description="Score candidates with a verifier call each.")
    verifier_max_tokens: int = Field(default=24, ge=16, description="Verifier reply length.")
    self_certainty: bool = Field(
        default=True, description="Request log-probabilities and score self-certainty."
    )
    top_logprobs: int = Field(default=5, ge=2, le=20, description="k of the top-k certainty.")
    certainty_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of self-certainty next to the verifier."
    )


@dataclass(frozen=True, slots=True)
class Scored:
    """A candidate sample with its score and the votes its answer received."""

    sample: Sample
    score: float
    votes: int
    verdict: Verdict | None
    certainty: float | None

    @property
    def tokens(self) -> int:
        return self.sample.result.total_tokens

    def rank_key(self) -> tuple[float, int, int, int]:
        """Sort key: higher score, more votes, fewer tokens, lower seed."""
        return (self.score, self.votes, -self.tokens, -self.sample.seed)


def combine_scores(
    verdict: Verdict | None, certainty: float | None, *, certainty_weight: float
) -> float:
    """Mix the verifier score and self-certainty; a missing part leaves the other alone."""
    if verdict is not None and certainty is not None:
        return (1 - certainty_weight) * verdict.score + certainty_weight * certainty
    if verdict is not None:
        return verdict.score
    if certainty is not None:
        return certainty
    return NEUTRAL_SCORE


class BestOfNStrategy:
    """Sample n candidates, score each with the model as verifier, and keep the best."""

    name: ClassVar[str] = "best_of_n"
    description: ClassVar[str] = (
        "Samples n answers, scores each with a verifier prompt, and keeps the best-scored one."
    )
    options_type: ClassVar[type[StrategyOptions]] = BestOfNOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, BestOfNOptions)
        samples, trace = await self._sample(request, client, options, progress)
        stop_reason: StopReason = "completed"
        if len(samples) < options.n:
            stop_reason = exhausted_stop_reason(client)
            trace.append(f"stopped sampling: {stop_reason.replace('_', ' ')}")
        if not samples:
            return no_answer_result(self.name, client, stop_reason=stop_reason, trace=tuple(trace))

        verdicts = await self._verify(request, client, options, samples, progress)
        if options.verify and any(verdict is None for verdict in verdicts):
            stop_reason = exhausted_stop_reason(client)
        scored = self._score(samples, verdicts, options, trace)
        best = max(scored, key=Scored.rank_key)
        trace.append(
            f"chosen: candidate {best.sample.index + 1} (seed {best.sample.seed}), score "
            f"{best.score:.2f}, {best.votes} vote(s), {best.tokens} tokens"
        )
        return result_from_client(
            self.name,
            client,
            answer_text=best.sample.text,
            short_answer=best.sample.answer,
            candidates=tuple(
                item.sample.to_candidate(score=item.score, votes=item.votes) for item in scored
            ),
            stop_reason=stop_reason,
            trace=tuple(trace),
            agreement=(best.votes, len(scored)),
            details={
                "scores": [round(item.score, 4) for item in scored],
                "certainty": [item.certainty for item in scored],
            },
        )

    async def _sample(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        options: BestOfNOptions,
        progress: ProgressCallback | None,
    ) -> tuple[list[Sample], list[str]]:
        sampling = SamplingOptions(
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            top_logprobs=options.top_logprobs if options.self_certainty else 0,
        )
        drawn = 0

        async def sampled(sample: Sample) -> None:
            nonlocal drawn
            drawn += 1
            await report(progress, self.name, "samples", done=drawn, total=options.n)

        batch = await sample_paths(
            client,
            reasoning_messages(request),
            sampling,
            indices=range(options.n),
            base_seed=options.base_seed,
            question=request.question,
            on_sample=sampled,
        )
        samples = [sample for sample in batch if sample is not None]
        trace = [
            f"sample {sample.index + 1} (seed {sample.seed}): {shorten(sample.answer)}"
            for sample in samples
        ]
        return samples, trace

    async def _verify(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        options: BestOfNOptions,
        samples: list[Sample],
        progress: ProgressCallback | None,
    ) -> list[Verdict | None]:
        if not options.verify:
            return [None] * len(samples)
        checked = 0

        async def verify(sample: Sample) -> Verdict | None:
            nonlocal checked
            verdict = await verify_answer(
                client,
                request,
                sample.text,
                max_tokens=options.verifier_max_tokens,
                seed=sample.seed,
            )
            checked += 1
            await report(progress, self.name, "verifications", done=checked, total=len(samples))
            return verdict

        return await gather_or_cancel([verify(sample) for sample in samples])

    def _score(
        self,
        samples: list[Sample],
        verdicts: list[Verdict | None],
        options: BestOfNOptions,
        trace: list[str],
    ) -> list[Scored]:
        tally = tally_votes([sample.answer for sample in samples])
        scored: list[Scored] = []
        for sample, verdict in zip(samples, verdicts, strict=True):
            certainty = self_certainty(sample.result.token_logprobs)
            score = combine_scores(verdict, certainty, certainty_weight=options.certainty_weight)
            scored.append(Scored(sample, score, tally.votes_for(sample.answer), verdict, certainty))
            trace.append(_score_line(sample, verdict, certainty, score, verify=options.verify))
        return scored


def _score_line(
    sample: Sample, verdict: Verdict | None, certainty: float | None, score: float, *, verify: bool
) -> str:
    parts: list[str] = []
    if verdict is not None:
        reply = shorten(verdict.reply, limit=24)
        reading = "" if verdict.parsed else ", unparseable so neutral"
        parts.append(f"verifier {verdict.score:.2f} ({reply!r}{reading})")
    elif verify:
        parts.append("not verified: budget exhausted")
    if certainty is not None:
        parts.append(f"self-certainty {certainty:.2f}")
    return f"score {sample.index + 1}: {score:.2f}" + (f" from {', '.join(parts)}" if parts else "")
