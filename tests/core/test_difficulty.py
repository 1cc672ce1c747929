"""Tests for the difficulty features, the logistic score, the weights files and the probe."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from core.difficulty import (
    FEATURE_NAMES,
    DifficultyModel,
    ProbeResult,
    apply_probe,
    classify_question,
    default_model,
    estimate_difficulty,
    extract_features,
    fitted_weights_path,
    load_model,
    run_probe,
    save_model,
)
from core.errors import ConfigurationError
from core.llm.base import ChatMessage, ChatResult, SamplingOptions
from core.llm.scripted import ScriptedClient
from core.strategies.base import BudgetedClient, StrategyInput

MEDIUM_WORD_PROBLEM = (
    "A baker makes 12 muffins and sells them for 3 dollars each. How much money does he make?"
)
HARD_WORD_PROBLEM = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
    "farmers' market?"
)
CODE_QUESTION = (
    "Why does this Python function return None?\n```python\ndef add(a, b):\n    a + b\n```"
)

LEVEL_CASES = [
    ("hi", "trivial"),
    ("What is 2+3?", "easy"),
    (MEDIUM_WORD_PROBLEM, "medium"),
    (HARD_WORD_PROBLEM, "hard"),
    (CODE_QUESTION, "medium"),
]

TYPE_CASES = [
    ("hi", "chat"),
    ("Is ice cold?", "yes_no"),
    ("Which planet is largest? (A) Mars (B) Jupiter (C) Venus", "multiple_choice"),
    ("What is 4 + 4? A) 6 B) 8 C) 10 D) 12. Answer with the letter.", "multiple_choice"),
    ("a) first do this, then b) that", "chat"),
    ("What is the capital of France?", "factual"),
    ("How many legs does a spider have?", "factual"),
    ("What is 2+3?", "arithmetic"),
    ("What is 3 times 4?", "arithmetic"),
    (MEDIUM_WORD_PROBLEM, "math_word"),
    (CODE_QUESTION, "code"),
    ("Write a short poem about the sea.", "open_ended"),
]


@pytest.mark.parametrize(("text", "level"), LEVEL_CASES)
def test_levels_of_reference_questions(text: str, level: str) -> None:
    assert estimate_difficulty(text, default_model()).level == level


@pytest.mark.parametrize(("text", "question_type"), TYPE_CASES)
def test_question_types(text: str, question_type: str) -> None:
    assert classify_question(text) == question_type


def test_features_of_hard_problem() -> None:
    features = extract_features(HARD_WORD_PROBLEM)

    # 16, three, four, 2.
    assert features.numbers == 4
    # "per" twice.
    assert features.operations == 2
    # "every" three times and "remainder".
    assert features.multi_step_cues == 4
    assert features.has_code_fence is False


def test_code_fence_detected() -> None:
    assert extract_features(CODE_QUESTION).has_code_fence is True


def test_scores_rise_along_reference_table() -> None:
    model = default_model()
    scores = [
        estimate_difficulty(text, model).score
        for text in ("hi", "What is 2+3?", MEDIUM_WORD_PROBLEM, HARD_WORD_PROBLEM)
    ]

    assert scores == sorted(scores)


def test_score_is_a_probability() -> None:
    model = default_model()
    for text, _ in LEVEL_CASES:
        score = estimate_difficulty(text, model).score
        assert 0.0 < score < 1.0


@pytest.mark.parametrize(
    ("base", "harder"),
    [
        ("Tom has 5 apples.", "Tom has 5 apples and 7 pears."),
        ("Tom has 5 apples. How many?", "Tom has 5 apples, then buys 3 more. How many in total?"),
        ("What is 4 + 2?", "What is 4 + 2 * 3?"),
        ("Explain gravity.", "Explain gravity to a child, then to a physicist, in detail please."),
    ],
)
def test_more_steps_never_lower_score(base: str, harder: str) -> None:
    model = default_model()

    assert estimate_difficulty(harder, model).score > estimate_difficulty(base, model).score


def test_count_weights_are_non_negative() -> None:
    weights = default_model().weights
    for name in ("log_words", "numbers", "operations", "multi_step", "code_fence"):
        assert weights[name] >= 0


def test_default_weights_name_every_feature() -> None:
    assert sorted(default_model().weights) == sorted(FEATURE_NAMES)


def test_level_bounds() -> None:
    model = default_model()

    assert model.level(0.09) == "trivial"
    assert model.level(0.1) == "easy"
    assert model.level(0.3) == "medium"
    assert model.level(0.6) == "hard"


def test_probe_worth_it_only_near_medium() -> None:
    model = default_model()

    assert model.is_worth_probing(0.2) is False
    assert model.is_worth_probing(0.26) is True
    assert model.is_worth_probing(0.45) is True
    assert model.is_worth_probing(0.64) is True
    assert model.is_worth_probing(0.66) is False


def test_load_model_without_saved_file_uses_default(tmp_path: Path) -> None:
    assert load_model(tmp_path).source == "default"


def test_saved_model_takes_precedence(tmp_path: Path) -> None:
    refitted = default_model().with_weights(
        bias=-1.0, weights=dict.fromkeys(FEATURE_NAMES, 0.0), source="test"
    )
    save_model(refitted, fitted_weights_path(tmp_path), extra={"questions": 25})

    loaded = load_model(tmp_path)

    assert loaded.bias == -1.0
    assert loaded.source == str(fitted_weights_path(tmp_path))
    assert math.isclose(loaded.score(extract_features("hi")), 1 / (1 + math.e))


def test_invalid_saved_weights_raise(tmp_path: Path) -> None:
    fitted_weights_path(tmp_path).write_text(json.dumps({"bias": 0}), encoding="utf-8")

    with pytest.raises(ConfigurationError) as raised:
        load_model(tmp_path)

    assert "are invalid" in str(raised.value)
    assert "delete the file" in str(raised.value)


def test_weights_with_unknown_feature_raise(tmp_path: Path) -> None:
    record = default_model().as_file()
    record["weights"]["exclamation_marks"] = 1.0
    fitted_weights_path(tmp_path).write_text(json.dumps(record), encoding="utf-8")

    with pytest.raises(ConfigurationError) as raised:
        load_model(tmp_path)

    assert "exclamation_marks" in str(raised.value)


def test_features_record_round_trip() -> None:
    features = extract_features(HARD_WORD_PROBLEM)

    assert type(features).from_record(features.as_record()) == features


def _probe(kind: str, confidence: float) -> ProbeResult:
    return ProbeResult(
        kind=kind,  # type: ignore[arg-type]
        confidence=confidence,
        answers=(),
        mean_logprob=None,
        calls=2,
        tokens=100,
    )


def test_agreeing_probe_makes_question_easier() -> None:
    model = default_model()
    estimate = estimate_difficulty(MEDIUM_WORD_PROBLEM, model)

    probed = apply_probe(estimate, _probe("agreement", 1.0), model)

    assert math.isclose(probed.score, 0.65 * estimate.score)
    assert probed.level == "easy"


def test_disagreeing_probe_makes_question_harder() -> None:
    model = default_model()
    estimate = estimate_difficulty(MEDIUM_WORD_PROBLEM, model)

    probed = apply_probe(estimate, _probe("agreement", 0.0), model)

    assert math.isclose(probed.score, 0.65 * estimate.score + 0.35)
    assert probed.level == "hard"


def test_probe_without_logprobs_compares_two_answers() -> None:
    client = ScriptedClient(["Answer: 36", "So 12 * 3 = 36. Answer: 36"])
    budgeted = BudgetedClient(client, budget_tokens=1_000)

    probe = asyncio.run(run_probe(budgeted, StrategyInput(question=MEDIUM_WORD_PROBLEM)))

    assert probe is not None
    assert probe.kind == "agreement"
    assert probe.confidence == 1.0
    assert probe.answers == ("36", "36")
    assert [call.options.temperature for call in client.calls] == [0.0, 0.7]
    assert budgeted.calls == 2
    assert probe.tokens == budgeted.spent_tokens


def test_probe_answers_differ() -> None:
    client = ScriptedClient(["Answer: 36", "Answer: 15"])
    budgeted = BudgetedClient(client, budget_tokens=1_000)

    probe = asyncio.run(run_probe(budgeted, StrategyInput(question=MEDIUM_WORD_PROBLEM)))

    assert probe is not None
    assert probe.confidence == 0.0


class LogprobClient(ScriptedClient):
    """A scripted client that also returns top-1 log-probabilities for every token."""

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        result = await super().chat(messages, options)
        logprobs = ((-0.5, -2.0), (-1.5, -3.0)) if options.top_logprobs else None
        return ChatResult(
            text=result.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            model_seconds=result.model_seconds,
            finish_reason=result.finish_reason,
            model=result.model,
            seed=result.seed,
            token_logprobs=logprobs,
        )


def test_probe_with_logprobs_makes_one_call() -> None:
    client = LogprobClient(["Answer: 36"])
    budgeted = BudgetedClient(client, budget_tokens=1_000)

    probe = asyncio.run(run_probe(budgeted, StrategyInput(question=MEDIUM_WORD_PROBLEM)))

    assert probe is not None
    assert probe.kind == "logprobs"
    assert probe.mean_logprob == -1.0
    assert math.isclose(probe.confidence, math.exp(-1.0))
    assert budgeted.calls == 1


def test_probe_skipped_when_budget_too_small() -> None:
    client = ScriptedClient(["Answer: 36"])
    budgeted = BudgetedClient(client, budget_tokens=10)

    probe = asyncio.run(run_probe(budgeted, StrategyInput(question=MEDIUM_WORD_PROBLEM)))

    assert probe is None
    assert client.calls == []


def test_model_type_is_frozen() -> None:
    model: DifficultyModel = default_model()

    with pytest.raises(AttributeError):
        model.bias = 0.0  # type: ignore[misc]
