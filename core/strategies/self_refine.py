"""The `self_refine` strategy: draft, then critique and revise, and return the best version.

Self-Refine (Madaan et al. 2023) lets one model improve its own answer: it writes a draft,
critiques it, and revises it with that feedback, for up to `rounds` rounds. The loop stops early
when a critique finds no error (stop reason "no_error_found") or when the budget runs out.

Each version is scored, and the best-scored version is returned rather than the last, because
a revision can make a correct draft worse. With `scoring=verifier` every version costs one
verifier call (the prompt of core/strategies/verifier.py). With `scoring=agreement` a version
scores the share of versions whose final answer equals its own, which needs no extra calls. Ties
go to the answer more versions share, then to the later version.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from core.answers import extract_answer, tally_votes
from core.llm.base import ChatMessage, ChatResult, SamplingOptions
from core.strategies.base import (
    BudgetedClient,
    BudgetExhaustedError,
    Candidate,
    ProgressCallback,
    StopReason,
    StrategyInput,
    StrategyOptions,
    StrategyResult,
    result_from_client,
)
from core.strategies.sampling import (
    REASONING_INSTRUCTION,
    exhausted_stop_reason,
    no_answer_result,
    reasoning_messages,
    report,
    shorten,
)
from core.strategies.verifier import NEUTRAL_SCORE, Verdict, verify_answer

logger = logging.getLogger(__name__)

CRITIQUE_PROMPT = (
    "Review a proposed answer to a question.\n\n"
    "Question: {question}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "Check each step for mistakes. If the answer is fully correct, reply exactly: NO ERRORS. "
    "Otherwise list each mistake and how to fix it."
)
REVISE_PROMPT = (
    "Here is feedback on your answer:\n{feedback}\n\n"
    "Write an improved answer that fixes these mistakes. " + REASONING_INSTRUCTION
)
Scoring = Literal["verifier", "agreement"]

_NO_ERROR = re.compile(
    r"\bno\s+(?:errors?|mistakes?|issues?|problems?)\b"
    r"|\b(?:answer|solution)\s+is\s+(?:fully\s+|completely\s+|entirely\s+)?correct\b",
    re.IGNORECASE,
)
_ERROR_SIGNAL = re.compile(
    r"\b(?:incorrect|wrong|not\s+correct|should\s+be|instead\s+of|miscalculat\w*)\b",
    re.IGNORECASE,
)


class SelfRefineOptions(StrategyOptions):
    """Options of `self_refine`."""

    rounds: int = Field(default=2, ge=0, le=8, description="Maximum critique-and-revise rounds.")
    max_tokens: int = Field(default=512, ge=16, description="Maximum new tokens per version.")
    critique_max_tokens: int = Field(default=256, ge=16, description="Maximum critique tokens.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int = Field(default=0, description="Seed of the draft; call i uses seed + i.")
    scoring: Scoring = Field(default="verifier", description="verifier or agreement.")
    verifier_max_tokens: int = Field(default=24, ge=16, description="Verifier reply length.")


@dataclass(frozen=True, slots=True)
class Version:
    """One draft or revision, with its verifier verdict when it was scored by one."""

    index: int
    result: ChatResult
    answer: str
    verdict: Verdict | None = None

    @property
    def label(self) -> str:
        return "draft" if self.index == 0 else f"revision {self.index}"

    @property
    def text(self) -> str:
        return self.result.text.strip()


def critique_finds_no_error(critique: str) -> bool:
    """Tell whether a critique declares the answer free of errors and names no error itself."""
    return _NO_ERROR.search(critique) is not None and _ERROR_SIGNAL.search(critique) is None


def critique_messages(request: StrategyInput, answer_text: str) -> list[ChatMessage]:
    prompt = CRITIQUE_PROMPT.format(question=request.question, answer=answer_text.strip())
    return request.messages(prompt)


def revise_messages(request: StrategyInput, answer_text: str, feedback: str) -> list[ChatMessage]:
    """Continue the conversation: the question, the model's answer, then the feedback."""
    return [
        *reasoning_messages(request),
        ChatMessage(role="assistant", content=answer_text.strip()),
        ChatMessage(role="user", content=REVISE_PROMPT.format(feedback=feedback.strip())),
    ]


class SelfRefineStrategy:
    """Draft an answer, then critique and revise it, keeping the best-scored version."""

    name: ClassVar[str] = "self_refine"
    description: ClassVar[str] = (
        "Draft, critique and revise for a few rounds; returns the best-scored version."
    )
    options_type: ClassVar[type[StrategyOptions]] = SelfRefineOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, SelfRefineOptions)
        versions: list[Version] = []
        trace: list[str] = []
        try:
            stop_reason = await self._refine(request, client, options, versions, trace, progress)
        except BudgetExhaustedError as exc:
            stop_reason = exhausted_stop_reason(client)
            trace.append(f"stopped: {exc}")
        if not versions:
            return no_answer_result(self.name, client, stop_reason=stop_reason, trace=tuple(trace))
        return self._result(client, versions, options, trace, stop_reason)

    async def _refine(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        options: SelfRefineOptions,
        versions: list[Version],
        trace: list[str],
        progress: ProgressCallback | None,
    ) -> StopReason:
        """Run draft, critique and revise calls, appending to `versions` as they arrive."""
        draft = await client.chat(
            reasoning_messages(request), self._sampling(options, 0), purpose="draft"
        )
        await self._add_version(request, client, options, versions, trace, draft)
        for round_number in range(1, options.rounds + 1):
            current = versions[-1]
            critique = await client.chat(
                critique_messages(request, current.text),
                self._sampling(options, 2 * round_number - 1, critique=True),
                purpose="critique",
            )
            if critique_finds_no_error(critique.text):
                trace.append(f"critique {round_number}: no error found")
                await report(progress, self.name, "rounds", done=round_number, total=options.rounds)
                return "no_error_found"
            trace.append(f"critique {round_number}: {shorten(critique.text, limit=60)}")
            revision = await client.chat(
                revise_messages(request, current.text, critique.text),
                self._sampling(options, 2 * round_number),
                purpose="revise",
            )
            await self._add_version(request, client, options, versions, trace, revision)
            await report(progress, self.name, "rounds", done=round_number, total=options.rounds)
        return "max_rounds" if options.rounds else "completed"

    def _sampling(
        self, options: SelfRefineOptions, offset: int, *, critique: bool = False
    ) -> SamplingOptions:
        return SamplingOptions(
            temperature=options.temperature,
            seed=options.seed + offset,
            max_tokens=options.critique_max_tokens if critique else options.max_tokens,
        )

    async def _add_version(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        options: SelfRefineOptions,
        versions: list[Version],
        trace: list[str],
        result: ChatResult,
    ) -> None:
        """Store a new version, then score it when scoring uses the verifier."""
        version = Version(
            index=len(versions),
            result=result,
            answer=extract_answer(result.text, question=request.question),
        )
        versions.append(version)
        trace.append(f"{version.label}: {shorten(version.answer)}")
        if options.scoring != "verifier":
            return
        verdict = await verify_answer(
            client,
            request,
            version.text,
            max_tokens=options.verifier_max_tokens,
            seed=options.seed,
        )
        if verdict is None:
            raise BudgetExhaustedError(f"no budget left to score the {version.label}")
        versions[-1] = Version(
            index=version.index, result=result, answer=version.answer, verdict=verdict
        )
        trace.append(f"score {version.label}: {verdict.score:.2f}")

    def _result(
        self,
        client: BudgetedClient,
        versions: list[Version],
        options: SelfRefineOptions,
        trace: list[str],
        stop_reason: StopReason,
    ) -> StrategyResult:
        tally = tally_votes([version.answer for version in versions])

        def score(version: Version) -> float:
            if options.scoring == "agreement":
                return tally.votes_for(version.answer) / max(tally.voters, 1)
            return version.verdict.score if version.verdict is not None else NEUTRAL_SCORE

        best = max(
            versions,
            key=lambda version: (score(version), tally.votes_for(version.answer), version.index),
        )
        trace.append(f"chosen: {best.label} (score {score(best):.2f}) of {len(versions)}")
        candidates = tuple(
            _candidate(version, score(version), tally.votes_for(version.answer))
            for version in versions
        )
        return result_from_client(
            self.name,
            client,
            answer_text=best.text,
            short_answer=best.answer,
            candidates=candidates,
            stop_reason=stop_reason,
            trace=tuple(trace),
            details={"chosen_version": best.index, "versions": len(versions)},
        )


def _candidate(version: Version, score: float, votes: int) -> Candidate:
    return Candidate(
        text=version.text,
        answer=version.answer,
        prompt_tokens=version.result.prompt_tokens,
        completion_tokens=version.result.completion_tokens,
        seed=version.result.seed,
        score=score,
        votes=votes,
    )
