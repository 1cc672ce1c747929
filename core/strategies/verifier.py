"""Judging answers with the answering model itself: a verifier prompt, score parsing, certainty.

The verifier is the same model behind the same BudgetedClient, so its calls count against the
question's budget. TODO: a separate verifier model (its own ModelClient) is not supported yet.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.llm.base import ChatMessage, SamplingOptions
from core.strategies.base import BudgetedClient, StrategyInput
from core.strategies.sampling import chat_or_none

logger = logging.getLogger(__name__)

NEUTRAL_SCORE = 0.5
VERIFY_PROMPT = (
    "Check a proposed answer to a question.\n\n"
    "Question: {question}\n\n"
    "Proposed answer:\n{answer}\n\n"
    "Is the proposed answer correct? Reply with a score from 0 (certainly wrong) to 10 "
    "(certainly correct), then one short sentence."
)

SCORE_SCALES = (1.0, 5.0, 10.0, 100.0)

_MARKDOWN = re.compile(r"\*\*|__|`")
# A score written as a fraction ("8/10", "4 out of 5") or after a label ("Score: 8").
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)(?!\s*[-+*/×=^]|\d)")
_LABELED = re.compile(r"\b(?:score|rating|confidence|grade)\b[^\d\n]{0,12}(\d+(?:\.\d+)?)\s*(%)?")
# A number that opens the reply, unless arithmetic follows it ("17 + 25 = 42" is no score).
_LEADING = re.compile(r"^\W*?(\d+(?:\.\d+)?)\s*(%)?(?!\s*[-+*/×=^]\s*\d|\d)")
_NEGATIVE = re.compile(
    r"\b(?:incorrect|not\s+(?:correct|right|accurate)|wrong|no|false|invalid|inaccurate)\b"
)
_POSITIVE = re.compile(r"\b(?:correct|yes|right|true|valid|accurate)\b")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The verifier's reading of one answer: a score from 0 to 1 and whether it parsed."""

    score: float
    parsed: bool
    reply: str


def parse_score(text: str) -> float | None:
    """Read a 0–1 correctness score from a verifier's reply, or None when it states none.

    Accepts a fraction over 1, 5, 10 or 100 ("8/10", "4 out of 5"), "Score: 8",
    "confidence 90%", a reply that opens with a number, and verdict words (yes/no,
    correct/incorrect, right/wrong, true/false). A bare integer is on the 0–10 scale and a
    decimal up to 1 is a probability, so "1" reads 0.1 and "1.0" reads 1.0.
    """
    lowered = _MARKDOWN.sub("", text).strip().lower()
    for fraction in _FRACTION.finditer(lowered):
        value, scale = float(fraction.group(1)), float(fraction.group(2))
        if scale in SCORE_SCALES and value <= scale:
            return value / scale
    for pattern in (_LABELED, _LEADING):
        match = pattern.search(lowered)
        if match is not None:
            score = _number_as_score(match.group(1), is_percent=bool(match.group(2)))
            if score is not None:
                return score
    return _verdict_word_score(lowered)


def _number_as_score(token: str, *, is_percent: bool) -> float | None:
    value = float(token)
    if is_percent:
        return value / 100 if value <= 100 else None
    if "." in token and value <= 1:
        return value
    if value <= 10:
        return value / 10
    return None


def _verdict_word_score(lowered: str) -> float | None:
    """Score the first verdict word: 0 for a negative one, 1 for a positive one."""
    negative = _NEGATIVE.search(lowered)
    positive = _POSITIVE.search(lowered)
    if negative is None and positive is None:
        return None
    if positive is None or (negative is not None and negative.start() <= positive.start()):
        return 0.0
    return 1.0


def verification_messages(request: StrategyInput, answer_text: str) -> list[ChatMessage]:
    """Return the request's conversation with the question replaced by the verifier prompt."""
    prompt = VERIFY_PROMPT.format(question=request.question, answer=answer_text.strip())
    return request.messages(prompt)


async def verify_answer(
    client: BudgetedClient,
    request: StrategyInput,
    answer_text: str,
    *,
    max_tokens: int,
    seed: int,
    purpose: str = "verify",
) -> Verdict | None:
    """Ask the model whether an answer is correct; None when the budget cannot fit the call.

    An unparseable reply scores NEUTRAL_SCORE (0.5), neither for nor against the answer.
    """
    options = SamplingOptions(temperature=0.0, seed=seed, max_tokens=max_tokens)
    messages = verification_messages(request, answer_text)
    result = await chat_or_none(client, messages, options, purpose=purpose)
    if result is None:
        return None
    score = parse_score(result.text)
    if score is None:
        return Verdict(score=NEUTRAL_SCORE, parsed=False, reply=result.text.strip())
    return Verdict(score=min(max(score, 0.0), 1.0), parsed=True, reply=result.text.strip())


def self_certainty(token_logprobs: Sequence[Sequence[float]] | None) -> float | None:
    """Return how peaked the model's next-token distributions were, from 0 (flat) to 1.

    For each generated token the top-k log-probabilities are renormalized to a distribution p
    over those k tokens, and the token scores KL(p || uniform) / log k, which equals
    1 - H(p) / log k: 1 when one token holds all the mass, 0 when the k tokens are equally
    likely. The result is the mean over tokens. Dividing by log k bounds the score to [0, 1], so
    it mixes with the verifier's 0–1 score. Tokens with fewer than two candidates are skipped.
    Returns None without log-probabilities.
    """
    if not token_logprobs:
        return None
    scores: list[float] = []
    for top in token_logprobs:
        if len(top) < 2:
            continue
        probabilities = [math.exp(value) for value in top]
        total = sum(probabilities)
        if total <= 0:
            continue
        entropy = -sum(p / total * math.log(p / total) for p in probabilities if p > 0)
        scores.append(1.0 - entropy / math.log(len(top)))
    return sum(scores) / len(scores) if scores else None
