"""Tests for learning from use: stored outcomes, AUROC, the refit, and the answering steps that
store difficulty, plan reason and outcome."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from core.answering import (
    build_input,
    plan_question,
    record_answer,
    record_plan,
    refine_plan,
    run_plan,
    start_question,
)
from core.calibration import auroc, calibrate, load_history, reset_weights
from core.config import Settings
from core.db import session_scope
from core.difficulty import default_model, extract_features, fitted_weights_path, load_model
from core.errors import ConfigurationError
from core.llm.scripted import ScriptedClient
from core.models import Question, User
from core.questions import load_question, submit_question
from core.schemas import AskRequest
from core.strategies.base import BudgetedClient

MEDIUM_WORD_PROBLEM = (
    "A baker makes 12 muffins and sells them for 3 dollars each. How much money does he make?"
)
HARD_WORD_PROBLEM = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
    "farmers' market?"
)

CAPITAL_QUESTION = "What is the capital of Peru?"
SMALL_HISTORY = [
    ("Is fire hot?", False),
    ("What is 17 * 23?", True),
    ("What is the capital of Peru?", False),
    ("A train travels 60 miles per hour for 3 hours. How far does it go?", True),
    ("Is the ocean salty?", True),
    ("Who wrote Hamlet?", False),
    (HARD_WORD_PROBLEM, True),
]


def test_auroc_counts_ordered_pairs() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([False, False, True, True])

    # Of the 4 (disagreed, agreed) pairs, 3 are ranked right: 0.35 < 0.4 is the miss.
    assert auroc(scores, labels) == 0.75


def test_auroc_counts_ties_half() -> None:
    assert auroc(np.array([0.5, 0.5]), np.array([False, True])) == 0.5


def test_auroc_needs_both_classes() -> None:
    assert auroc(np.array([0.1, 0.2]), np.array([True, True])) is None


def _store_history(engine: Engine, rows: list[tuple[str, bool]]) -> None:
    """Store answered questions with the features of `text` and the given disagreement."""
    with session_scope(engine) as session:
        user = User(platform="cli", platform_user_id="history")
        session.add(user)
        session.flush()
        assert user.id is not None
        for text, disagreed in rows:
            session.add(
                Question(
                    user_id=user.id,
                    platform="cli",
                    text=text,
                    status="answered",
                    features=extract_features(text).as_record(),
                    outcome={"disagreed": disagreed, "first_agreement": [1 if disagreed else 3, 3]},
                )
            )


def _yes_no_history(count: int) -> list[tuple[str, bool]]:
    """Half yes/no questions whose samples disagreed, half factual ones whose samples agreed.

    The default weights rate yes/no questions easier than factual ones (-0.3 against +0.2), so
    they rank this history backwards. The refit has to learn the opposite.
    """
    filler = ["", " really", " in general", " today, in your view"]
    rows: list[tuple[str, bool]] = []
    for index in range(count):
        padding = filler[index % len(filler)]
        if index % 2 == 0:
            rows.append((f"Is the ocean salty{padding}?", True))
        else:
            rows.append((f"What is the capital of Peru{padding}?", False))
    return rows


def test_refit_ranks_better_than_before(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, _yes_no_history(40))

    report = calibrate(migrated_engine, settings)

    assert report.questions == 40
    assert report.disagreed == 20
    assert report.auroc_before is not None
    assert report.auroc_after is not None
    assert report.auroc_after > report.auroc_before
    assert report.auroc_after == 1.0
    assert report.saved_to == fitted_weights_path(settings.data_dir)


def test_refit_is_saved_and_loaded(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, _yes_no_history(40))

    calibrate(migrated_engine, settings)

    model = load_model(settings.data_dir)
    saved = json.loads(fitted_weights_path(settings.data_dir).read_text())
    assert model.source == str(fitted_weights_path(settings.data_dir))
    assert model.weights["type_yes_no"] > model.weights["type_factual"]
    assert saved["questions"] == 40
    assert model.score(extract_features("Is the ocean salty?")) > model.score(
        extract_features("What is the capital of Peru?")
    )


def test_refit_keeps_count_weights_non_negative(
    migrated_engine: Engine, settings: Settings
) -> None:
    # Longer questions agree here, which pushes the length weight below 0 without the bound.
    rows = [("Is it?", True), ("Is the ocean salty in general, would you say so?", False)] * 15
    _store_history(migrated_engine, rows)

    report = calibrate(migrated_engine, settings)

    assert report.saved_to is not None
    assert load_model(settings.data_dir).weights["log_words"] >= 0.0


def test_too_little_history_changes_nothing(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, _yes_no_history(19))

    report = calibrate(migrated_engine, settings)

    assert report.saved_to is None
    assert report.message == (
        "too little history: 19 answered questions with agreement signals, at least 20 "
        "needed; nothing changed"
    )
    assert not fitted_weights_path(settings.data_dir).exists()
    assert load_model(settings.data_dir).source == "default"


def test_one_kind_of_label_changes_nothing(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, [("Is the ocean salty?", False)] * 25)

    report = calibrate(migrated_engine, settings)

    assert report.saved_to is None
    assert report.message == (
        "every one of the 25 questions agreed, so there is nothing to rank; nothing changed"
    )


def test_dry_run_saves_nothing(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, _yes_no_history(30))

    report = calibrate(migrated_engine, settings, dry_run=True)

    assert report.auroc_after == 1.0
    assert report.saved_to is None
    assert not fitted_weights_path(settings.data_dir).exists()


def test_refit_not_better_keeps_weights(migrated_engine: Engine, settings: Settings) -> None:
    # The default weights already rank every hard word problem above every capital question, so
    # no refit can beat their AUROC of 1.0.
    _store_history(migrated_engine, [(HARD_WORD_PROBLEM, True), (CAPITAL_QUESTION, False)] * 12)

    report = calibrate(migrated_engine, settings)

    assert report.auroc_before == 1.0
    assert report.auroc_cross_validated == 1.0
    assert report.saved_to is None
    assert report.message == (
        "kept the current weights: cross-validated AUROC 1.000 is not better than 1.000"
    )
    assert not fitted_weights_path(settings.data_dir).exists()


def test_refit_worse_out_of_sample_keeps_weights(
    migrated_engine: Engine, settings: Settings
) -> None:
    # Seven questions: the refit ranks them perfectly in-sample but worse than the defaults
    # when each question is scored by a fit that did not see it.
    _store_history(migrated_engine, SMALL_HISTORY)

    report = calibrate(migrated_engine, settings, min_questions=5, force=True)

    assert report.auroc_after == 1.0
    assert report.auroc_before is not None
    assert report.auroc_cross_validated is not None
    assert report.auroc_cross_validated < report.auroc_before
    assert report.saved_to is None
    assert report.message == (
        "kept the current weights: cross-validated AUROC 0.667 is not better than 0.833"
    )
    assert load_model(settings.data_dir).source == "default"


def test_min_questions_below_floor_rejected(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, _yes_no_history(40))

    with pytest.raises(ConfigurationError, match="below the floor of 20"):
        calibrate(migrated_engine, settings, min_questions=19)

    assert not fitted_weights_path(settings.data_dir).exists()


def test_reset_restores_default_weights(migrated_engine: Engine, settings: Settings) -> None:
    _store_history(migrated_engine, _yes_no_history(40))
    calibrate(migrated_engine, settings)
    assert load_model(settings.data_dir).source == str(fitted_weights_path(settings.data_dir))

    report = reset_weights(settings)

    assert report.deleted is True
    assert report.path == fitted_weights_path(settings.data_dir)
    assert not report.path.exists()
    assert load_model(settings.data_dir).source == "default"


def test_reset_without_saved_weights(settings: Settings) -> None:
    report = reset_weights(settings)

    assert report.deleted is False
    assert report.message == (
        f"no saved weights at {fitted_weights_path(settings.data_dir)}; the shipped default "
        "weights already apply"
    )


def _ask(engine: Engine, settings: Settings, text: str) -> int:
    question = submit_question(
        engine, settings, AskRequest(platform="cli", user_id="bo", text=text)
    )
    assert question.id is not None
    return question.id


def _answer(engine: Engine, settings: Settings, question_id: int, client: ScriptedClient) -> None:
    """Run the worker's answering steps, as tasks/answer.py does, without a broker."""
    question = start_question(engine, question_id)
    assert question is not None
    request = build_input(engine, question)
    plan = plan_question(question, settings)
    record_plan(engine, question_id, plan)
    budgeted = BudgetedClient(client, budget_tokens=plan.budget_tokens)

    async def run() -> None:
        final_plan = await refine_plan(budgeted, request, plan, settings)
        result = await run_plan(budgeted, request, final_plan)
        record_answer(engine, question_id, result, final_plan, model="scripted", wall_seconds=1)

    asyncio.run(run())


def test_answering_stores_difficulty_and_outcome(
    migrated_engine: Engine, settings: Settings
) -> None:
    question_id = _ask(migrated_engine, settings, HARD_WORD_PROBLEM)
    # The first 4 samples split 2 to 1 to 1, so 6 more may follow; self-consistency's Beta
    # rule stops those after 4 unanimous ones.
    samples = ["Answer: 18", "Answer: 18", "Answer: 20", "Answer: 21", *["Answer: 18"] * 4]
    client = ScriptedClient(samples)

    _answer(migrated_engine, settings, question_id, client)

    stored = load_question(migrated_engine, question_id)
    expected_score = default_model().score(extract_features(HARD_WORD_PROBLEM))
    assert stored.status == "answered"
    assert stored.short_answer == "18"
    assert stored.difficulty_level == "hard"
    assert stored.difficulty_score == round(expected_score, 4)
    assert stored.plan_reason == (
        f"hard question ({expected_score:.2f}): self-consistency with 4 samples, "
        "up to 10 if they disagree, 6,400 tokens"
    )
    assert stored.features["question_type"] == "math_word"
    assert stored.features["numbers"] == 4
    assert stored.outcome["first_agreement"] == [2, 4]
    assert stored.outcome["agreement"] == [6, 8]
    assert stored.outcome["disagreed"] is True
    assert stored.outcome["escalated"] is True
    assert stored.outcome["escalation_changed_answer"] is False
    assert stored.outcome["rungs_run"] == 2
    assert stored.outcome["tokens"] == stored.prompt_tokens + stored.completion_tokens
    assert stored.outcome["calls"] == 8
    assert stored.footnote is not None
    assert stored.footnote.splitlines()[1] == (
        f"  difficulty hard ({expected_score:.2f}) · self-consistency with 4 samples, up to 10 "
        "if they disagree, 6,400 tokens · 6 of 8 samples agree · "
        "escalated: 2 of 4 samples disagreed"
    )


def test_answering_probes_medium_question(migrated_engine: Engine, settings: Settings) -> None:
    question_id = _ask(migrated_engine, settings, MEDIUM_WORD_PROBLEM)
    # The probe's greedy and sampled answers agree, so the question is easy: one direct answer.
    client = ScriptedClient(["Answer: 36", "12 * 3 = 36. Answer: 36", "He makes 36 dollars."])

    _answer(migrated_engine, settings, question_id, client)

    stored = load_question(migrated_engine, question_id)
    assert [call.options.temperature for call in client.calls] == [0.0, 0.7, 0.0]
    assert stored.difficulty_level == "easy"
    assert stored.features["probe"]["kind"] == "agreement"
    assert stored.features["probe"]["answers"] == ["36", "36"]
    assert stored.plan_reason is not None
    assert stored.plan_reason.endswith("probe answers agree: direct answer, 1,200 tokens")
    assert stored.calls == 3
    assert stored.outcome["disagreed"] is None
    assert stored.outcome["tokens"] == stored.prompt_tokens + stored.completion_tokens


def test_history_reads_answered_questions(migrated_engine: Engine, settings: Settings) -> None:
    question_id = _ask(migrated_engine, settings, HARD_WORD_PROBLEM)
    samples = ["Answer: 18", "Answer: 18", "Answer: 20", "Answer: 21", *["Answer: 18"] * 4]
    _answer(migrated_engine, settings, question_id, ScriptedClient(samples))
    _ask(migrated_engine, settings, "still queued, so not history")

    history = load_history(migrated_engine)

    assert [row.question_id for row in history] == [question_id]
    assert history[0].disagreed is True
    assert history[0].features == extract_features(HARD_WORD_PROBLEM)


@pytest.fixture(autouse=True)
def _no_saved_weights(settings: Settings) -> None:
    assert not Path(fitted_weights_path(settings.data_dir)).exists()
