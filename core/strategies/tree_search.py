"""The `tree_search` strategy: beam search over reasoning steps, scored by the model itself.

A node is a partial solution: the reasoning lines written so far. Each round, every node in the
beam proposes `branching` next steps. A step is one line, sampled by continuing the node's text
as the assistant's message (a raw continuation that stops at the newline), and each proposal has
its own seed `base_seed + k`, where k counts expansions. The model then acts as the value
function. It rates each unfinished child from 0 to 10 for how promising it is, and each finished
child with the verifier prompt of core/strategies/verifier.py. Both replies are parsed by
`parse_score` (unparseable replies score 0.5). The `beam_width` best children form the next
beam; ties go to the earlier expansion.

A child is finished when its new step states a final answer ("Answer: …") or when the model
ends its reply instead of writing another step. Finished children leave the beam and become
candidates, whether or not they ranked among the best. The search stops when the best child of
a round is finished, when no unfinished node is left, after `max_depth` rounds, or when the
budget runs out. If an unfinished node then outscores every candidate, it is asked for its
answer line and joins them. The answer is the best-scored candidate, with ties going to the
answer more candidates share, then to the shorter path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import Field

from core.answers import extract_answer, has_answer_marker, tally_votes
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
    chat_or_none,
    exhausted_stop_reason,
    gather_or_cancel,
    no_answer_result,
    report,
    shorten,
)
from core.strategies.verifier import NEUTRAL_SCORE, parse_score, verify_answer

logger = logging.getLogger(__name__)

STEP_INSTRUCTION = (
    "Solve the problem step by step, one short step per line. "
    'Write the final answer on the last line as "Answer: <answer>".'
)
VALUE_PROMPT = (
    "Rate a partial solution to a question.\n\n"
    "Question: {question}\n\n"
    "Steps so far:\n{steps}\n\n"
    "How promising are these steps for reaching the correct answer? Reply with a score from "
    "0 (hopeless) to 10 (certainly on track)."
)
ANSWER_PROMPT_TEXT = "Answer:"
FINAL_ANSWER_MAX_TOKENS = 32


class TreeSearchOptions(StrategyOptions):
    """Options of `tree_search`."""

    beam_width: int = Field(default=2, ge=1, le=8, description="Nodes kept per round.")
    branching: int = Field(default=2, ge=1, le=8, description="Next steps proposed per node.")
    max_depth: int = Field(default=4, ge=1, le=16, description="Maximum reasoning steps.")
    step_max_tokens: int = Field(default=96, ge=16, description="Maximum new tokens per step.")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    base_seed: int = Field(default=0, description="Expansion k uses seed base_seed + k.")
    value_max_tokens: int = Field(default=16, ge=16, description="Value reply length.")

    def max_expansions(self) -> int:
        """Expansions of a full search: the root has one node, later rounds beam_width."""
        return self.branching + (self.max_depth - 1) * self.beam_width * self.branching


@dataclass(frozen=True, slots=True)
class Node:
    """A partial or finished solution: its steps, score and what its path cost."""

    steps: tuple[str, ...]
    seed: int | None = None
    score: float = NEUTRAL_SCORE
    is_finished: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def text(self) -> str:
        return "\n".join(self.steps)

    @property
    def continuation_prefix(self) -> str:
        """The assistant text to continue: the steps so far, each ended by a newline."""
        return "".join(f"{step}\n" for step in self.steps)

    def answer(self, question: str) -> str:
        return extract_answer(self.text, question=question)


@dataclass(slots=True)
class SearchState:
    """What the search has found so far.

    `finished` holds every finished child, the candidates for the answer. `is_solved` is set
    when the best child of a round was finished. `proposals` counts planned expansions, which
    fixes their seeds, and `nodes_expanded` counts the expansion calls that returned.
    """

    beam: list[Node]
    finished: list[Node] = field(default_factory=list)
    is_solved: bool = False
    proposals: int = 0
    nodes_expanded: int = 0
    exhausted_by: str | None = None
    trace: list[str] = field(default_factory=list)


class TreeSearchStrategy:
    """Beam search over reasoning steps with the model as value function."""

    name: ClassVar[str] = "tree_search"
    description: ClassVar[str] = (
        "Beam search over reasoning steps, each scored 0-10 by the model as value function."
    )
    options_type: ClassVar[type[StrategyOptions]] = TreeSearchOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, TreeSearchOptions)
        messages = request.messages(f"{request.question}\n\n{STEP_INSTRUCTION}")
        state = SearchState(beam=[Node(steps=())])
        stop_reason: StopReason = "completed"
        for depth in range(1, options.max_depth + 1):
            children = await self._expand(request, client, options, messages, state, progress)
            self._select(children, options, state, depth)
            if state.exhausted_by is not None:
                stop_reason = exhausted_stop_reason(client)
                state.trace.append(f"stopped: {state.exhausted_by}")
                break
            if state.is_solved or not state.beam:
                break
        else:
            stop_reason = "max_rounds"
            state.trace.append(f"reached max_depth {options.max_depth} before the best path ended")

        await self._finish_best(request, client, messages, state)
        if not state.finished:
            return no_answer_result(
                self.name, client, stop_reason=stop_reason, trace=tuple(state.trace)
            )
        return self._result(request, client, state, stop_reason)

    async def _expand(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        options: TreeSearchOptions,
        messages: list[ChatMessage],
        state: SearchState,
        progress: ProgressCallback | None,
    ) -> list[Node]:
        """Propose `branching` next steps for every beam node, then score the children.

        A call the budget cannot fit yields no child (or a neutral score) and records why in
        `state.exhausted_by`, so that the children already paid for are still ranked.
        """
        parents = [node for node in state.beam for _ in range(options.branching)]
        seeds = [options.base_seed + state.proposals + offset for offset in range(len(parents))]
        state.proposals += len(parents)

        async def propose(node: Node, seed: int) -> Node | None:
            sampling = SamplingOptions(
                temperature=options.temperature,
                seed=seed,
                max_tokens=options.step_max_tokens,
                stop=("\n",),
            )
            try:
                result = await client.continue_chat(
                    messages, node.continuation_prefix, sampling, purpose="expand"
                )
            except BudgetExhaustedError as exc:
                state.exhausted_by = str(exc)
                return None
            state.nodes_expanded += 1
            await report(
                progress,
                self.name,
                "expansions",
                done=state.nodes_expanded,
                total=options.max_expansions(),
            )
            return _child(node, result, seed)

        grown = await gather_or_cancel(
            [propose(node, seed) for node, seed in zip(parents, seeds, strict=True)]
        )
        children = [child for child in grown if child is not None]
        scores = await gather_or_cancel(
            [self._value(request, client, options, state, child) for child in children]
        )
        return [_with_score(child, score) for child, score in zip(children, scores, strict=True)]

    async def _value(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        options: TreeSearchOptions,
        state: SearchState,
        node: Node,
    ) -> float:
        """Score a child: the verifier for a finished one, the value prompt otherwise.

        Returns NEUTRAL_SCORE, and records why, when the budget cannot fit the call.
        """
        if node.is_finished:
            verdict = await verify_answer(
                client,
                request,
                node.text,
                max_tokens=options.value_max_tokens,
                seed=options.base_seed,
                purpose="value",
            )
            if verdict is None:
                state.exhausted_by = "no budget left to score a finished path"
                return NEUTRAL_SCORE
            return verdict.score
        prompt = VALUE_PROMPT.format(question=request.question, steps=node.text)
        sampling = SamplingOptions(
            temperature=0.0, seed=options.base_seed, max_tokens=options.value_max_tokens
        )
        result = await chat_or_none(client, request.messages(prompt), sampling, purpose="value")
        if result is None:
            state.exhausted_by = "no budget left to score a partial path"
            return NEUTRAL_SCORE
        score = parse_score(result.text)
        return NEUTRAL_SCORE if score is None else min(max(score, 0.0), 1.0)

    def _select(
        self, children: list[Node], options: TreeSearchOptions, state: SearchState, depth: int
    ) -> None:
        """Keep the best `beam_width` children; finished ones leave the beam as candidates.

        Without children (every expansion was out of budget) the old beam stays, so that its
        best node can still give an answer.
        """
        if not children:
            state.trace.append(f"depth {depth}: no children")
            return
        ranked = sorted(children, key=lambda node: -node.score)
        kept = ranked[: options.beam_width]
        state.finished.extend(node for node in ranked if node.is_finished)
        state.beam = [node for node in kept if not node.is_finished]
        state.is_solved = ranked[0].is_finished
        summary = ", ".join(
            f"{shorten(node.steps[-1], limit=30)!r} {node.score:.2f}"
            + (" (finished)" if node.is_finished else "")
            for node in kept
        )
        state.trace.append(f"depth {depth}: {len(children)} children, kept {summary}")

    async def _finish_best(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        messages: list[ChatMessage],
        state: SearchState,
    ) -> None:
        """Ask the best unfinished node for its answer line if it outscores every candidate.

        Without budget for that call, the node's text itself becomes a candidate.
        """
        if not state.beam:
            return
        best = max(state.beam, key=lambda node: node.score)
        best_finished = max((node.score for node in state.finished), default=None)
        if not best.steps or (best_finished is not None and best.score <= best_finished):
            return
        sampling = SamplingOptions(
            temperature=0.0, seed=best.seed, max_tokens=FINAL_ANSWER_MAX_TOKENS, stop=("\n",)
        )
        try:
            result = await client.continue_chat(
                messages, best.continuation_prefix + ANSWER_PROMPT_TEXT, sampling, purpose="answer"
            )
        except BudgetExhaustedError:
            state.trace.append("no budget for an answer line; using the best partial solution")
            state.finished.append(best)
            return
        line = f"{ANSWER_PROMPT_TEXT} {result.text.strip()}"
        state.trace.append(f"asked the best partial solution for its answer: {shorten(line)}")
        state.finished.append(
            Node(
                steps=(*best.steps, line),
                seed=best.seed,
                score=best.score,
                is_finished=True,
                prompt_tokens=best.prompt_tokens + result.prompt_tokens,
                completion_tokens=best.completion_tokens + result.completion_tokens,
            )
        )

    def _result(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        state: SearchState,
        stop_reason: StopReason,
    ) -> StrategyResult:
        nodes = state.finished
        answers = [node.answer(request.question) for node in nodes]
        tally = tally_votes(answers)
        ranked = sorted(
            range(len(nodes)),
            key=lambda index: (
                -nodes[index].score,
                -tally.votes_for(answers[index]),
                len(nodes[index].steps),
            ),
        )
        best_index = ranked[0]
        best = nodes[best_index]
        state.trace.append(
            f"chosen: {shorten(answers[best_index])!r} with score {best.score:.2f} "
            f"after {state.nodes_expanded} expansions"
        )
        candidates = tuple(
            Candidate(
                text=node.text,
                answer=answer,
                prompt_tokens=node.prompt_tokens,
                completion_tokens=node.completion_tokens,
                seed=node.seed,
                score=node.score,
                votes=tally.votes_for(answer),
            )
            for node, answer in zip(nodes, answers, strict=True)
        )
        return result_from_client(
            self.name,
            client,
            answer_text=best.text,
            short_answer=answers[best_index],
            candidates=candidates,
            stop_reason=stop_reason,
            trace=tuple(state.trace),
            nodes_expanded=state.nodes_expanded,
        )


def _child(parent: Node, result: ChatResult, seed: int) -> Node | None:
    """Build the child a proposal makes; None when the root got an empty step."""
    step = result.text.strip()
    if not step and not parent.steps:
        return None
    finished = not step or has_answer_marker(step)
    return Node(
        steps=(*parent.steps, step) if step else parent.steps,
        seed=seed,
        is_finished=finished,
        prompt_tokens=parent.prompt_tokens + result.prompt_tokens,
        completion_tokens=parent.completion_tokens + result.completion_tokens,
    )


def _with_score(node: Node, score: float) -> Node:
    return Node(
        steps=node.steps,
        seed=node.seed,
        score=score,
        is_finished=node.is_finished,
        prompt_tokens=node.prompt_tokens,
        completion_tokens=node.completion_tokens,
    )
