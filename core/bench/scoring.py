"""Score one answer against its gold answer, and aggregate rows into per-entry figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.answers import answers_equivalent, extract_answer
from core.strategies.base import StrategyResult


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchRow:
    """One question answered by one entry: the answer, whether it is correct, and the cost.

    `strategy` is the entry's name (a strategy or a policy) and `chosen_strategy` the strategy
    that ran, which differs from it for a policy. `agreement` is "votes/samples" for voting
    strategies and empty otherwise. `error` is the message of a model error that ended the run.
    """

    line: int
    question: str
    gold: str
    strategy: str
    chosen_strategy: str
    answer: str
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    calls: int
    seconds: float
    model_seconds: float
    stop_reason: str
    agreement: str
    samples: int
    reason: str = ""
    difficulty: str = ""
    error: str = ""
    answer_text: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class EntrySummary:
    """The aggregate figures of one entry over every question it answered."""

    strategy: str
    questions: int
    correct: int
    mean_tokens: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    mean_calls: float
    mean_seconds: float
    errors: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0


def score_result(result: StrategyResult, *, question: str, gold: str) -> tuple[str, bool]:
    """Return the answer a result is scored on and whether it matches the gold answer.

    The strategy's short answer counts first. When it does not match, the answer extracted
    from the full reply counts too, because that reply is what the asker reads: a rambling
    "7 + 5 = 12" is right although its last line is no clean short answer. The extraction
    takes the last "answer: …" marker, else the last number when the question asks for a
    number, else the last line.
    """
    short = result.short_answer.strip()
    extracted = extract_answer(result.answer_text, question=question)
    for answer in (short, extracted):
        if is_correct(answer, gold):
            return answer, True
    return short or extracted, False


def is_correct(answer: str, gold: str) -> bool:
    """Tell whether an answer matches the gold answer; an empty answer is never correct."""
    return bool(answer.strip()) and answers_equivalent(answer, gold)


def summarize(rows: Iterable[BenchRow]) -> list[EntrySummary]:
    """Aggregate rows per entry, in the order the entries first appear."""
    grouped: dict[str, list[BenchRow]] = {}
    for row in rows:
        grouped.setdefault(row.strategy, []).append(row)
    return [_summarize_entry(name, entry_rows) for name, entry_rows in grouped.items()]


def _summarize_entry(name: str, rows: list[BenchRow]) -> EntrySummary:
    count = len(rows)
    return EntrySummary(
        strategy=name,
        questions=count,
        correct=sum(row.correct for row in rows),
        mean_tokens=sum(row.total_tokens for row in rows) / count,
        mean_prompt_tokens=sum(row.prompt_tokens for row in rows) / count,
        mean_completion_tokens=sum(row.completion_tokens for row in rows) / count,
        mean_calls=sum(row.calls for row in rows) / count,
        mean_seconds=sum(row.seconds for row in rows) / count,
        errors=sum(bool(row.error) for row in rows),
    )
