"""The footnote under every answer: what it cost and how Ponder decided."""

from __future__ import annotations

import math
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
    escalation: str | None = None
    budget_remaining: int | None = None
    budget_resets: str | None = None
    stopped_early_for_budget: bool = False
    energy_wh: float | None = None
    energy_cost: float | None = None
    currency_symbol: str = "€"


def estimate_energy(
    *, model_seconds: float, watts: float | None, price_per_kwh: float | None
) -> tuple[float | None, float | None]:
    """Estimate the energy (Wh) and its price from the model's busy time and a fixed power draw.

    An estimate only: it assumes the machine draws `watts` for exactly the model seconds, and
    ignores idle power and other work on the machine.
    """
    if watts is None:
        return None, None
    energy_wh = watts * model_seconds / 3600
    cost = None if price_per_kwh is None else energy_wh / 1000 * price_per_kwh
    return energy_wh, cost


def format_significant(value: float, digits: int = 2) -> str:
    """Format a positive number with `digits` significant digits, or as a whole number when it
    has more integer digits than that, never with an exponent.

    >>> format_significant(0.000123)
    '0.00012'
    >>> format_significant(0.3)
    '0.3'
    >>> format_significant(1234.5)
    '1,234'
    """
    if value <= 0:
        return "0"
    exponent = math.floor(math.log10(value))
    decimals = max(0, digits - 1 - exponent)
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _energy_part(facts: FootnoteFacts) -> str | None:
    if facts.energy_wh is None:
        return None
    part = f"≈{format_significant(facts.energy_wh)} Wh"
    if facts.energy_cost is not None:
        part += f", {facts.currency_symbol}{format_significant(facts.energy_cost)}"
    return part


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
    energy = _energy_part(facts)
    if energy:
        cost += f" · {energy}"
    decision: list[str] = []
    if facts.difficulty:
        decision.append(f"difficulty {facts.difficulty}")
    if facts.reason:
        decision.append(facts.reason)
    if facts.agreement is not None:
        agreed, total = facts.agreement
        decision.append(f"{agreed} of {total} samples agree")
    if facts.escalation:
        decision.append(facts.escalation)
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
