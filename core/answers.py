"""Final-answer extraction and equivalence, used for voting and scoring."""

from __future__ import annotations

import re

_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)


def extract_answer(text: str) -> str:
    """Return the short final answer stated in a model's reply."""
    matches = _ANSWER_LINE.findall(text)
    if matches:
        return str(matches[-1]).strip().rstrip(".")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
