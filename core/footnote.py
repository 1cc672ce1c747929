"""The footnote under every answer: what it cost and how Ponder decided."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class FootnoteFacts:
    """The figures a footnote shows; optional parts are left out when None."""

    strategy: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    wall_seconds: float
    model_seconds: float
    model: str
    reason: str | None = None
    difficulty: str | None = None
    agreement: tuple[int, int] | None = None
    budget_remaining: int | None = None
    budget_resets: str | None = None
    stopped_early_for_budget: bool = False


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def format_footnote(facts: FootnoteFacts) -> str:
    """Return one or two compact lines: cost first, then the decision and the budget."""
    cost = " · ".join(
        [
            facts.strategy.replace("_", "-"),
            _plural(facts.calls, "call"),
            f"{facts.prompt_tokens:,} + {facts.completion_tokens:,} tokens",
            f"{facts.wall_seconds:.1f} s (model {facts.model_seconds:.1f} s)",
            facts.model,
        ]
    )
    decision: list[str] = []
    if facts.difficulty:
        decision.append(f"difficulty {facts.difficulty}")
    if facts.reason:
        decision.append(facts.reason)
    if facts.agreement is not None:
        agreed, total = facts.agreement
        decision.append(f"{agreed} of {total} samples agree")
    if facts.stopped_early_for_budget:
        decision.append("stopped early: budget used up")
    if facts.budget_remaining is not None:
        left = f"budget left {facts.budget_remaining:,} tokens"
        if facts.budget_resets:
            left += f", resets {facts.budget_resets}"
        decision.append(left)
    lines = [f"— {cost}"]
    if decision:
        lines.append("  " + " · ".join(decision))
    return "\n".join(lines)
