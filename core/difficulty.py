"""Question difficulty: cheap text features, a logistic score in [0, 1], a level, and a probe.

The score estimates the probability that the model's samples disagree on the question, which is
what the planner needs to know before it spends: agreement means more samples would buy little.
It is `sigmoid(bias + sum(weight * feature))` over the features of `QuestionFeatures.vector`.
Default weights are hand-set in `difficulty_weights.json` next to this module, which explains
each one. `ponder calibrate` refits them from answered questions and saves them to
`difficulty_weights.json` in the data folder, and that file then takes precedence.

Near a level boundary a probe can refine the score for a few tokens: one short greedy answer
whose mean top-1 token log-probability measures the model's confidence, or, when the backend
returns no log-probabilities, a second short sample at temperature 0.7 whose answer either
matches the greedy one or not. The probe runs on the question's BudgetedClient, so its tokens
count against the question's budget and appear in the ledger.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.answers import answers_equivalent, extract_answer
from core.errors import ConfigurationError
from core.llm.base import ChatResult, SamplingOptions
from core.strategies.base import BudgetedClient, BudgetExhaustedError, StrategyInput

logger = logging.getLogger(__name__)

Level = Literal["trivial", "easy", "medium", "hard"]
LEVELS: tuple[Level, ...] = get_args(Level)
QuestionType = Literal[
    "chat", "yes_no", "multiple_choice", "factual", "arithmetic", "math_word", "code", "open_ended"
]
QUESTION_TYPES: tuple[QuestionType, ...] = get_args(QuestionType)
ProbeKind = Literal["logprobs", "agreement"]

WEIGHTS_FILE_NAME = "difficulty_weights.json"
FEATURES_VERSION = 1
MAX_COUNT_FEATURE = 10
PROBE_MAX_TOKENS = 64
PROBE_TEMPERATURE = 0.7
PROBE_SEED = 1

FEATURE_NAMES: tuple[str, ...] = (
    "log_words",
    "numbers",
    "operations",
    "multi_step",
    "code_fence",
    *(f"type_{name}" for name in QUESTION_TYPES if name != "chat"),
)

# Number words count as numbers in word problems; "one" is left out because it is more often a
# pronoun ("which one") than a quantity.
_NUMBER_WORDS = (
    r"two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundred|thousand|million|dozen"
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*|\b(?:" + _NUMBER_WORDS + r")\b", re.IGNORECASE)
_OPERATION_SYMBOL = re.compile(r"(?<=[\d\s)])[+\-*/×÷^](?=\s*[\d(])|(?<=\d)\s*%")
_OPERATION_WORD = re.compile(
    r"\b(?:plus|minus|times|multiplied|divided|sum|difference|product|quotient|percent|per|"
    r"twice|half|double|triple|squared?|average)\b",
    re.IGNORECASE,
)
_MULTI_STEP_CUE = re.compile(
    r"\b(?:then|after|before|later|each|every|total|altogether|in all|remaining|remainder|left|"
    r"how (?:many|much) more|more than|less than|fewer than)\b",
    re.IGNORECASE,
)
_CODE_FENCE = re.compile(r"```")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_CODE_TERM = re.compile(
    r"\b(?:python|javascript|typescript|java|c\+\+|c#|rust|golang|sql|bash|regex|function|"
    r"compiler?|syntax|algorithm|code|program|script|api|bug|exception|stack trace)\b",
    re.IGNORECASE,
)
_CHOICE_LINE = re.compile(r"(?m)^\s*\(?[A-Ea-e][).:]\s+\S")
# Inline options: "(A) Mars (b) Venus" or "A) 6 B) 8"; bare letters only in capitals, because
# "a) first" also starts an ordinary list.
_CHOICE_INLINE = re.compile(r"(?:\([A-Ea-e]\)|\b[A-E]\))\s*\S")
_EXPRESSION_LEAD = re.compile(
    r"^(?:what(?:'s| is)|calculate|compute|evaluate|solve)\s+", re.IGNORECASE
)
_EXPRESSION = re.compile(r"^[\d\s.,+\-*/×÷^()%=x]+$")
_SPELLED_OPERATOR = re.compile(
    r"\b(?:plus|minus|times|multiplied by|divided by|to the power of)\b", re.IGNORECASE
)
_QUANTITY_QUESTION = re.compile(
    r"\bhow (?:many|much|long|far|old)\b|\bwhat is the (?:total|sum|cost|price)\b|"
    r"\b(?:calculate|find)\b",
    re.IGNORECASE,
)
_YES_NO_LEAD = re.compile(
    r"(?:is|are|am|do|does|did|can|could|will|would|should|shall|has|have|had|was|were|may|"
    r"might|must)\b",
    re.IGNORECASE,
)
_FACTUAL_LEAD = re.compile(
    r"(?:who|whom|whose|what|where|when|which|how (?:many|much|old|long|far|big|tall))\b",
    re.IGNORECASE,
)
_OPEN_LEAD = re.compile(
    r"(?:why|how|explain|describe|write|compose|create|imagine|design|compare|discuss|summarize|"
    r"tell|suggest|give)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[\w'’]+")
_LONG_QUESTION_WORDS = 12
_WORD_PROBLEM_WORDS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionFeatures:
    """The cheap, text-only features of a question that the difficulty model reads."""

    chars: int
    words: int
    numbers: int
    operations: int
    multi_step_cues: int
    question_type: QuestionType
    has_code_fence: bool

    def vector(self) -> dict[str, float]:
        """Return the model inputs by name, in the order of FEATURE_NAMES."""
        values: dict[str, float] = {
            "log_words": math.log1p(self.words),
            "numbers": float(min(self.numbers, MAX_COUNT_FEATURE)),
            "operations": float(min(self.operations, MAX_COUNT_FEATURE)),
            "multi_step": float(min(self.multi_step_cues, MAX_COUNT_FEATURE)),
            "code_fence": 1.0 if self.has_code_fence else 0.0,
        }
        for name in QUESTION_TYPES:
            if name != "chat":
                values[f"type_{name}"] = 1.0 if self.question_type == name else 0.0
        return values

    def as_record(self) -> dict[str, Any]:
        """Return the features as JSON-ready values, for questions.features."""
        return {"version": FEATURES_VERSION, **asdict(self)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> QuestionFeatures:
        """Rebuild features stored by `as_record`; raises ValueError on a malformed record."""
        try:
            question_type = str(record["question_type"])
            if question_type not in QUESTION_TYPES:
                raise ValueError(f"unknown question type {question_type!r}")
            return cls(
                chars=int(record["chars"]),
                words=int(record["words"]),
                numbers=int(record["numbers"]),
                operations=int(record["operations"]),
                multi_step_cues=int(record["multi_step_cues"]),
                question_type=question_type,
                has_code_fence=bool(record["has_code_fence"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed features record {dict(record)!r}: {exc!r}") from exc


def extract_features(text: str) -> QuestionFeatures:
    """Count the features of a question's text; pure and fast, no model call."""
    words = _WORD.findall(text)
    return QuestionFeatures(
        chars=len(text),
        words=len(words),
        numbers=len(_NUMBER.findall(text)),
        operations=len(_OPERATION_SYMBOL.findall(text)) + len(_OPERATION_WORD.findall(text)),
        multi_step_cues=len(_MULTI_STEP_CUE.findall(text)),
        question_type=classify_question(text),
        has_code_fence=_CODE_FENCE.search(text) is not None,
    )


def classify_question(text: str) -> QuestionType:
    """Return the question's type by the first rule that matches, most specific first."""
    stripped = text.strip()
    word_count = len(_WORD.findall(stripped))
    if _is_code(stripped):
        return "code"
    if len(_CHOICE_LINE.findall(stripped)) >= 2 or len(_CHOICE_INLINE.findall(stripped)) >= 2:
        return "multiple_choice"
    if "which of the following" in stripped.lower():
        return "multiple_choice"
    if _is_expression(stripped):
        return "arithmetic"
    if _is_word_problem(stripped, word_count):
        return "math_word"
    if _YES_NO_LEAD.match(stripped):
        return "yes_no"
    if _FACTUAL_LEAD.match(stripped) and word_count <= _LONG_QUESTION_WORDS:
        return "factual"
    if _OPEN_LEAD.match(stripped) or word_count > _LONG_QUESTION_WORDS:
        return "open_ended"
    return "chat"


def _is_code(text: str) -> bool:
    return bool(_CODE_FENCE.search(text) or _INLINE_CODE.search(text) or _CODE_TERM.search(text))


def _is_expression(text: str) -> bool:
    """Tell whether the text is a bare calculation such as "What is 2 + 3?"."""
    body = _EXPRESSION_LEAD.sub("", text).rstrip("?. ")
    body = _SPELLED_OPERATOR.sub("+", body)
    return bool(
        body
        and _EXPRESSION.match(body)
        and any(char.isdigit() for char in body)
        and _OPERATION_SYMBOL.search(body)
    )


def _is_word_problem(text: str, word_count: int) -> bool:
    numbers = len(_NUMBER.findall(text))
    if numbers == 0 or word_count < _WORD_PROBLEM_WORDS:
        return False
    has_cue = _QUANTITY_QUESTION.search(text) or _MULTI_STEP_CUE.search(text)
    return bool(has_cue) or (numbers >= 2 and word_count >= _LONG_QUESTION_WORDS)


class _LevelBounds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trivial_below: float = Field(gt=0, lt=1)
    easy_below: float = Field(gt=0, lt=1)
    medium_below: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _check_order(self) -> _LevelBounds:
        if not self.trivial_below < self.easy_below < self.medium_below:
            raise ValueError(
                "level bounds must rise: trivial_below < easy_below < medium_below, got "
                f"{self.trivial_below}, {self.easy_below}, {self.medium_below}"
            )
        return self


class _ProbeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    margin: float = Field(ge=0, lt=0.5)
    weight: float = Field(ge=0, le=1)


class _WeightsFile(BaseModel):
    """The JSON layout of a weights file; `comment` and `notes` are documentation only."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = 1
    source: str = ""
    bias: float
    weights: dict[str, float]
    levels: _LevelBounds
    probe: _ProbeSettings

    @model_validator(mode="after")
    def _check_feature_names(self) -> _WeightsFile:
        unknown = sorted(set(self.weights) - set(FEATURE_NAMES))
        missing = sorted(set(FEATURE_NAMES) - set(self.weights))
        if unknown or missing:
            raise ValueError(
                f"weights must name exactly the features {', '.join(FEATURE_NAMES)}; "
                f"unknown: {unknown or 'none'}, missing: {missing or 'none'}"
            )
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class DifficultyModel:
    """The logistic difficulty model: weights, level bounds and probe settings."""

    bias: float
    weights: Mapping[str, float]
    trivial_below: float
    easy_below: float
    medium_below: float
    probe_margin: float
    probe_weight: float
    source: str

    def logit(self, features: QuestionFeatures) -> float:
        vector = features.vector()
        return self.bias + sum(self.weights[name] * vector[name] for name in FEATURE_NAMES)

    def score(self, features: QuestionFeatures) -> float:
        """Return the estimated probability that samples disagree, in [0, 1]."""
        return sigmoid(self.logit(features))

    def level(self, score: float) -> Level:
        if score < self.trivial_below:
            return "trivial"
        if score < self.easy_below:
            return "easy"
        if score < self.medium_below:
            return "medium"
        return "hard"

    def is_worth_probing(self, score: float) -> bool:
        """Tell whether a probe could change the level that matters for spending.

        That is the medium band and `probe_margin` either side of it: below it the question is
        cheap to answer anyway, and far above it no single probe would make it easy.
        """
        low = self.easy_below - self.probe_margin
        return low <= score < self.medium_below + self.probe_margin

    def with_weights(
        self, *, bias: float, weights: Mapping[str, float], source: str
    ) -> DifficultyModel:
        """Return a copy with other bias and weights, for calibration."""
        return DifficultyModel(
            bias=bias,
            weights=dict(weights),
            trivial_below=self.trivial_below,
            easy_below=self.easy_below,
            medium_below=self.medium_below,
            probe_margin=self.probe_margin,
            probe_weight=self.probe_weight,
            source=source,
        )

    def as_file(self, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return the JSON layout that `load_model` reads back."""
        return {
            "version": 1,
            "source": self.source,
            "bias": self.bias,
            "weights": {name: self.weights[name] for name in FEATURE_NAMES},
            "levels": {
                "trivial_below": self.trivial_below,
                "easy_below": self.easy_below,
                "medium_below": self.medium_below,
            },
            "probe": {"margin": self.probe_margin, "weight": self.probe_weight},
            **(extra or {}),
        }


def sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exponential = math.exp(value)
    return exponential / (1.0 + exponential)


def fitted_weights_path(data_dir: Path) -> Path:
    """Return where `ponder calibrate` saves refitted weights."""
    return data_dir / WEIGHTS_FILE_NAME


def parse_model(raw: str, *, source: str) -> DifficultyModel:
    """Parse a weights file's text, raising ConfigurationError that names the file."""
    try:
        parsed = _WeightsFile.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"difficulty weights {source!r} are not valid JSON ({exc.msg} at line {exc.lineno}); "
            "delete the file to use the defaults, or run `ponder calibrate` again"
        ) from exc
    except ValidationError as exc:
        raise ConfigurationError(
            f"difficulty weights {source!r} are invalid: {exc.errors()[0]['msg']}; delete the "
            "file to use the defaults, or run `ponder calibrate` again"
        ) from exc
    return DifficultyModel(
        bias=parsed.bias,
        weights=dict(parsed.weights),
        trivial_below=parsed.levels.trivial_below,
        easy_below=parsed.levels.easy_below,
        medium_below=parsed.levels.medium_below,
        probe_margin=parsed.probe.margin,
        probe_weight=parsed.probe.weight,
        source=source,
    )


def default_model() -> DifficultyModel:
    """Return the hand-set model shipped in the package."""
    text = resources.files("core").joinpath(WEIGHTS_FILE_NAME).read_text(encoding="utf-8")
    return parse_model(text, source="default")


def load_model(data_dir: Path | None) -> DifficultyModel:
    """Return the refitted model from the data folder when one was saved, else the default."""
    if data_dir is not None:
        path = fitted_weights_path(data_dir)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return default_model()
        except OSError as exc:
            raise ConfigurationError(
                f"could not read difficulty weights {str(path)!r}: {exc}; fix its permissions "
                "or delete it to use the defaults"
            ) from exc
        return parse_model(text, source=str(path))
    return default_model()


def save_model(model: DifficultyModel, path: Path, *, extra: Mapping[str, Any]) -> None:
    """Write the model as JSON, replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(model.as_file(extra=extra), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """The probe's measurement. `confidence` is in [0, 1], and 1 means the model looks sure."""

    kind: ProbeKind
    confidence: float
    answers: tuple[str, ...]
    mean_logprob: float | None
    calls: int
    tokens: int

    def as_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "confidence": round(self.confidence, 4),
            "answers": list(self.answers),
            "mean_logprob": None if self.mean_logprob is None else round(self.mean_logprob, 4),
            "calls": self.calls,
            "tokens": self.tokens,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DifficultyEstimate:
    """A question's difficulty: the score, its level, and what it was computed from."""

    score: float
    level: Level
    features: QuestionFeatures
    feature_score: float
    probe: ProbeResult | None = None

    def describe(self) -> str:
        """Return the level and score as the footnote shows them, for example "hard (0.78)"."""
        return f"{self.level} ({self.score:.2f})"

    def as_record(self) -> dict[str, Any]:
        """Return the features and probe as JSON-ready values, for questions.features."""
        record = self.features.as_record()
        record["feature_score"] = round(self.feature_score, 4)
        record["probe"] = self.probe.as_record() if self.probe is not None else None
        return record


def estimate_difficulty(text: str, model: DifficultyModel) -> DifficultyEstimate:
    """Estimate a question's difficulty from its text alone."""
    features = extract_features(text)
    score = model.score(features)
    return DifficultyEstimate(
        score=score, level=model.level(score), features=features, feature_score=score
    )


def apply_probe(
    estimate: DifficultyEstimate, probe: ProbeResult, model: DifficultyModel
) -> DifficultyEstimate:
    """Blend the probe into the score: `(1 - w) * score + w * (1 - confidence)`.

    With the default w = 0.35, a medium score of 0.45 becomes 0.29 (easy) when the probe's two
    answers agree and 0.64 (hard) when they differ.
    """
    weight = model.probe_weight
    score = (1 - weight) * estimate.feature_score + weight * (1 - probe.confidence)
    return DifficultyEstimate(
        score=score,
        level=model.level(score),
        features=estimate.features,
        feature_score=estimate.feature_score,
        probe=probe,
    )


async def run_probe(client: BudgetedClient, request: StrategyInput) -> ProbeResult | None:
    """Request one short greedy answer, and one sampled answer when no log-probabilities return.

    Returns None, without raising, when the budget cannot pay for the probe; the planner then
    keeps the text-only estimate.
    """
    messages = request.messages()
    greedy_options = SamplingOptions(
        temperature=0.0, seed=0, max_tokens=PROBE_MAX_TOKENS, top_logprobs=1
    )
    try:
        greedy = await client.chat(messages, greedy_options, purpose="probe")
    except BudgetExhaustedError as exc:
        logger.info("skipped the difficulty probe: %s", exc)
        return None
    greedy_answer = extract_answer(greedy.text, question=request.question)

    mean_logprob = mean_top_logprob(greedy)
    if mean_logprob is not None:
        return ProbeResult(
            kind="logprobs",
            confidence=math.exp(mean_logprob),
            answers=(greedy_answer,),
            mean_logprob=mean_logprob,
            calls=1,
            tokens=greedy.total_tokens,
        )

    # NOTE: the fallback compares the greedy answer with one sample at temperature 0.7. That costs
    # one call less than two fresh samples and still tests whether the answer is stable.
    sample_options = SamplingOptions(
        temperature=PROBE_TEMPERATURE, seed=PROBE_SEED, max_tokens=PROBE_MAX_TOKENS
    )
    try:
        sample = await client.chat(messages, sample_options, purpose="probe")
    except BudgetExhaustedError as exc:
        logger.info("difficulty probe stopped after one call: %s", exc)
        return None
    sample_answer = extract_answer(sample.text, question=request.question)
    agree = answers_equivalent(greedy_answer, sample_answer)
    return ProbeResult(
        kind="agreement",
        confidence=1.0 if agree else 0.0,
        answers=(greedy_answer, sample_answer),
        mean_logprob=None,
        calls=2,
        tokens=greedy.total_tokens + sample.total_tokens,
    )


def mean_top_logprob(result: ChatResult) -> float | None:
    """Return the mean log-probability of the most likely token at each position, if known."""
    if not result.token_logprobs:
        return None
    tops = [max(position) for position in result.token_logprobs if position]
    if not tops:
        return None
    return sum(tops) / len(tops)
