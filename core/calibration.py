"""Learning from use: the outcome signals stored per answer, and refitting the difficulty model.

Every answered question stores its features (questions.features) and its outcome
(questions.outcome, written by `outcome_record`). A question whose first voting step drew at
least two samples has a label: did those samples disagree? `calibrate` refits the logistic
difficulty model to predict that label and saves the weights to the data folder, where
`core.difficulty.load_model` finds them.

The fit is plain full-batch gradient descent on the mean log-loss over standardized features,
with an L2 penalty that pulls each weight toward the current model's. With the few dozen
questions a small deployment collects, the penalty keeps unseen features (say, no code questions
yet) at their current weights instead of letting them drift. Weights of the count features stay
at or above 0, so more numbers, steps or words never make a question look easier.

A refit is saved only when its cross-validated AUROC beats the current weights' AUROC on the
same questions, because the in-sample AUROC of a fit on a few questions is close to 1 whatever
the features mean. `reset_weights` deletes the saved file, so `load_model` returns the shipped
defaults again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine
from sqlmodel import col, select

from core.config import Settings
from core.db import session_scope
from core.difficulty import (
    FEATURE_NAMES,
    DifficultyModel,
    QuestionFeatures,
    fitted_weights_path,
    load_model,
    save_model,
)
from core.errors import ConfigurationError
from core.escalation import Escalation
from core.models import Question
from core.strategies.base import StrategyResult

logger = logging.getLogger(__name__)

OUTCOME_VERSION = 1
MIN_HISTORY_QUESTIONS = 20
CROSS_VALIDATION_FOLDS = 5
GRADIENT_STEPS = 2_000
LEARNING_RATE = 0.5
L2_PENALTY = 0.05
SHUFFLE_SEED = 0
NONNEGATIVE_FEATURES = frozenset({"log_words", "numbers", "operations", "multi_step"})

FloatArray = npt.NDArray[np.float64]


def outcome_record(result: StrategyResult, escalation: Escalation | None) -> dict[str, Any]:
    """Return the outcome signals of an answered question, for questions.outcome.

    `disagreed` is the calibration label: whether the first voting step's samples (before any
    escalation) were not unanimous; None when it drew fewer than two samples.
    """
    first = escalation.first_agreement if escalation else result.agreement
    scores = [candidate.score for candidate in result.candidates if candidate.score is not None]
    return {
        "version": OUTCOME_VERSION,
        "strategy": result.strategy,
        "agreement": list(result.agreement) if result.agreement else None,
        "first_agreement": list(first) if first else None,
        "disagreed": first[0] < first[1] if first and first[1] >= 2 else None,
        "verifier_score": max(scores) if scores else None,
        "escalated": bool(escalation and escalation.escalated),
        "rungs_run": escalation.rungs_run if escalation else 1,
        "escalation_changed_answer": bool(escalation and escalation.changed_answer),
        "stop_reason": result.stop_reason,
        "samples": len(result.candidates),
        "calls": result.calls,
        "tokens": result.total_tokens,
    }


def count_questions(count: int) -> str:
    """Return "1 answered question" or "N answered questions"."""
    return f"{count} answered question{'' if count == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One answered question usable for calibration: its features and whether samples disagreed."""

    question_id: int
    features: QuestionFeatures
    disagreed: bool


def load_history(engine: Engine) -> list[HistoryRow]:
    """Return the answered questions that have features and a disagreement label."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Question.id, Question.features, Question.outcome)
            .where(Question.status == "answered")
            .order_by(col(Question.id))
        ).all()
    history: list[HistoryRow] = []
    skipped = 0
    for question_id, features, outcome in rows:
        label = (outcome or {}).get("disagreed")
        if not features or not isinstance(label, bool) or question_id is None:
            continue
        try:
            parsed = QuestionFeatures.from_record(features)
        except ValueError:
            skipped += 1
            continue
        history.append(HistoryRow(question_id, parsed, label))
    if skipped:
        logger.warning("skipped %d answered questions with malformed features", skipped)
    return history


def feature_matrix(history: list[HistoryRow]) -> FloatArray:
    vectors = [row.features.vector() for row in history]
    return np.array([[vector[name] for name in FEATURE_NAMES] for vector in vectors], dtype=float)


def auroc(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> float | None:
    """Return the area under the ROC curve, ties counted half; None without both classes.

    It is the probability that a random question whose samples disagreed scores higher than a
    random one whose samples agreed (the Mann-Whitney U statistic over n1 * n0).
    """
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_ranks = (ends - counts + 1 + ends) / 2.0
    ranks = average_ranks[inverse]
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def model_scores(model: DifficultyModel, matrix: FloatArray) -> FloatArray:
    weights = np.array([model.weights[name] for name in FEATURE_NAMES])
    logits: FloatArray = model.bias + matrix @ weights
    scores: FloatArray = 1.0 / (1.0 + np.exp(-logits))
    return scores


def fit_logistic(
    matrix: FloatArray, labels: npt.NDArray[np.bool_], prior: DifficultyModel
) -> tuple[float, dict[str, float]]:
    """Fit bias and weights by gradient descent, starting from and pulled toward `prior`."""
    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale == 0] = 1.0
    standardized = (matrix - mean) / scale
    target = labels.astype(float)

    prior_raw = np.array([prior.weights[name] for name in FEATURE_NAMES])
    prior_weights = prior_raw * scale
    weights = prior_weights.copy()
    bias = prior.bias + float(prior_raw @ mean)
    nonnegative = np.array([name in NONNEGATIVE_FEATURES for name in FEATURE_NAMES])

    for _ in range(GRADIENT_STEPS):
        predicted = 1.0 / (1.0 + np.exp(-(bias + standardized @ weights)))
        error = predicted - target
        weights_gradient = standardized.T @ error / len(target) + L2_PENALTY * (
            weights - prior_weights
        )
        bias -= LEARNING_RATE * float(error.mean())
        weights -= LEARNING_RATE * weights_gradient
        weights[nonnegative] = np.maximum(weights[nonnegative], 0.0)

    raw_weights = weights / scale
    raw_bias = bias - float(raw_weights @ mean)
    return raw_bias, {name: float(raw_weights[i]) for i, name in enumerate(FEATURE_NAMES)}


def cross_validated_auroc(
    matrix: FloatArray, labels: npt.NDArray[np.bool_], prior: DifficultyModel
) -> float | None:
    """Return the AUROC of out-of-fold scores: each question scored by a fit without it."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
    folds = np.array_split(order, CROSS_VALIDATION_FOLDS)
    scores = np.zeros(len(labels))
    for fold in folds:
        training = np.setdiff1d(order, fold)
        bias, weights = fit_logistic(matrix[training], labels[training], prior)
        fitted = prior.with_weights(bias=bias, weights=weights, source="fold")
        scores[fold] = model_scores(fitted, matrix[fold])
    return auroc(scores, labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationReport:
    """The result of `calibrate`: counts, AUROC before and after, and where the weights went.

    `saved_to` is None when nothing changed: a dry run, too little history, one kind of label,
    or a refit whose cross-validated AUROC does not beat `auroc_before`.
    """

    questions: int
    disagreed: int
    auroc_before: float | None
    auroc_after: float | None
    auroc_cross_validated: float | None
    saved_to: Path | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "disagreed": self.disagreed,
            "auroc_before": self.auroc_before,
            "auroc_after": self.auroc_after,
            "auroc_cross_validated": self.auroc_cross_validated,
            "saved_to": str(self.saved_to) if self.saved_to else None,
            "message": self.message,
        }


def calibrate(
    engine: Engine,
    settings: Settings,
    *,
    dry_run: bool = False,
    min_questions: int = MIN_HISTORY_QUESTIONS,
    force: bool = False,
) -> CalibrationReport:
    """Refit the difficulty model on the stored history and save it if it ranks better.

    With fewer than `min_questions` labelled questions, labels of one kind only, or a refit whose
    cross-validated AUROC is not above the current weights' AUROC, it changes nothing and states
    why in the report's message. A `dry_run` never saves. Raises ConfigurationError when
    `min_questions` is below MIN_HISTORY_QUESTIONS and `force` is False.
    """
    check_min_questions(min_questions, force=force)
    history = load_history(engine)
    labels = np.array([row.disagreed for row in history], dtype=bool)
    disagreed = int(labels.sum())
    current = load_model(settings.data_dir)

    def unchanged(message: str) -> CalibrationReport:
        return CalibrationReport(
            questions=len(history),
            disagreed=disagreed,
            auroc_before=None,
            auroc_after=None,
            auroc_cross_validated=None,
            saved_to=None,
            message=message,
        )

    if len(history) < min_questions:
        return unchanged(
            f"too little history: {count_questions(len(history))} with agreement signals, "
            f"at least {min_questions} needed; nothing changed"
        )
    if disagreed in (0, len(history)):
        kind = "disagreed" if disagreed else "agreed"
        return unchanged(
            f"every one of the {len(history)} questions {kind}, so there is nothing to rank; "
            "nothing changed"
        )

    matrix = feature_matrix(history)
    before = auroc(model_scores(current, matrix), labels)
    bias, weights = fit_logistic(matrix, labels, current)
    refitted = current.with_weights(bias=bias, weights=weights, source="ponder calibrate")
    after = auroc(model_scores(refitted, matrix), labels)
    held_out = cross_validated_auroc(matrix, labels, current)

    def report(saved_to: Path | None, message: str) -> CalibrationReport:
        return CalibrationReport(
            questions=len(history),
            disagreed=disagreed,
            auroc_before=before,
            auroc_after=after,
            auroc_cross_validated=held_out,
            saved_to=saved_to,
            message=message,
        )

    if not _ranks_better(held_out, before):
        logger.info(
            "kept the current difficulty weights: cross-validated AUROC %s, current %s",
            held_out,
            before,
        )
        return report(
            None,
            f"kept the current weights: cross-validated AUROC {_format_auroc(held_out)} is not "
            f"better than {_format_auroc(before)}",
        )
    if dry_run:
        return report(None, "dry run; nothing changed")

    saved_to = fitted_weights_path(settings.data_dir)
    save_model(
        refitted,
        saved_to,
        extra={
            "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "questions": len(history),
            "disagreed": disagreed,
            "auroc_before": before,
            "auroc_after": after,
            "auroc_cross_validated": held_out,
        },
    )
    logger.info("saved refitted difficulty weights to %s", saved_to)
    return report(
        saved_to, f"saved the weights to {saved_to}; undo with `ponder calibrate --reset`"
    )


def check_min_questions(min_questions: int, *, force: bool) -> None:
    """Raise ConfigurationError when `min_questions` is below the floor and `force` is False."""
    if min_questions >= MIN_HISTORY_QUESTIONS or force:
        return
    raise ConfigurationError(
        f"minimum of {min_questions} questions is below the floor of {MIN_HISTORY_QUESTIONS}, "
        "where the cross-validated AUROC is too unreliable to decide on saving; raise "
        "--min-questions, or pass --force to refit anyway"
    )


def _ranks_better(held_out: float | None, before: float | None) -> bool:
    # Both AUROCs are computed on the same questions. The in-sample AUROC of the refit is not
    # compared, because it rewards memorizing the history.
    if held_out is None or before is None:
        return False
    return held_out > before


def _format_auroc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetReport:
    """The result of `reset_weights`: the weights file and whether one was deleted."""

    path: Path
    deleted: bool

    @property
    def message(self) -> str:
        if self.deleted:
            return f"deleted {self.path}; the shipped default weights apply from the next question"
        return f"no saved weights at {self.path}; the shipped default weights already apply"

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "deleted": self.deleted, "message": self.message}


def reset_weights(settings: Settings) -> ResetReport:
    """Delete the weights `calibrate` saved, so that `load_model` returns the shipped defaults."""
    path = fitted_weights_path(settings.data_dir)
    try:
        path.unlink()
    except FileNotFoundError:
        return ResetReport(path=path, deleted=False)
    except OSError as exc:
        raise ConfigurationError(
            f"could not delete difficulty weights {str(path)!r}: {exc}; fix the folder's "
            "permissions and run `ponder calibrate --reset` again"
        ) from exc
    logger.info("deleted refitted difficulty weights %s", path)
    return ResetReport(path=path, deleted=True)
