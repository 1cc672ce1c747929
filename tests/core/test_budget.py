"""Tests for per-user budgets: periods, reservations, settlement, resets and concurrency."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import Engine, func
from sqlmodel import select

from core.answering import (
    build_input,
    plan_question,
    record_answer,
    record_failure,
    requeue_question,
    run_plan,
    start_question,
)
from core.budget import (
    MIN_USEFUL_TOKENS,
    BudgetDefaults,
    budget_status,
    format_duration,
    format_reset_moment,
    next_reset,
    period_start,
    reserve_question_budget,
    reset_usage,
    save_defaults,
    usage_report,
)
from core.config import BudgetPeriod, Settings
from core.db import create_db_engine, session_scope, upgrade
from core.errors import BudgetExceededError, ModelUnavailableError, UserBlockedError
from core.llm.scripted import ScriptedClient, ScriptedReply
from core.models import AppSetting, Question, UsageEntry, User
from core.questions import get_or_create_user, load_question, submit_question
from core.schemas import AskRequest
from core.strategies.base import BudgetedClient

# "What is 2 + 3?" is 5 words plus 4 tokens for the message: the scripted client counts 9 prompt
# tokens, and a reply with completion_tokens=91 makes every answer cost exactly 100 tokens.
QUESTION = "What is 2 + 3?"
PROMPT_TOKENS = 9
ANSWER_TOKENS = 100


def _reply() -> ScriptedReply:
    return ScriptedReply("The answer is 5.", completion_tokens=ANSWER_TOKENS - PROMPT_TOKENS)


def _settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


def _set_user_budget(
    engine: Engine, ref: str, *, tokens: int, period: BudgetPeriod = "day", cap: int | None = None
) -> int:
    platform, user_id = ref.split(":")
    with session_scope(engine) as session:
        user = get_or_create_user(session, platform, user_id)
        user.budget_tokens = tokens
        user.budget_period = period
        user.question_cap_tokens = cap
        session.add(user)
        session.flush()
        assert user.id is not None
        return user.id


def _ask(engine: Engine, settings: Settings, ref: str = "telegram:7") -> int:
    platform, user_id = ref.split(":")
    question = submit_question(
        engine,
        settings,
        AskRequest(platform=platform, user_id=user_id, text=QUESTION, strategy="direct"),
    )
    assert question.id is not None
    return question.id


def _answer(engine: Engine, settings: Settings, question_id: int) -> None:
    """Run one question the way the worker does: plan, reserve, run, settle."""
    question = start_question(engine, question_id)
    assert question is not None
    plan = plan_question(question, settings)
    reservation = reserve_question_budget(
        engine, settings, question_id, planned_tokens=plan.budget_tokens
    )
    client = BudgetedClient(ScriptedClient([_reply()]), budget_tokens=reservation.tokens)
    result = asyncio.run(run_plan(client, build_input(engine, question), plan))
    record_answer(
        engine, question_id, result, plan, model="scripted", wall_seconds=0.1, settings=settings
    )


def _status(engine: Engine, settings: Settings, ref: str = "telegram:7"):
    platform, user_id = ref.split(":")
    with session_scope(engine) as session:
        user = session.exec(
            select(User).where(User.platform == platform, User.platform_user_id == user_id)
        ).one()
        return budget_status(session, settings, user)


def _ledger_sum(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.coalesce(func.sum(UsageEntry.tokens), 0))).one())


# Periods.


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "start", "reset"),
    [
        ("day", _utc(2026, 3, 4, 15, 30), _utc(2026, 3, 4), _utc(2026, 3, 5)),
        ("day", _utc(2026, 12, 31, 23, 59), _utc(2026, 12, 31), _utc(2027, 1, 1)),
        ("week", _utc(2026, 3, 4, 15, 30), _utc(2026, 3, 2), _utc(2026, 3, 9)),
        ("week", _utc(2026, 3, 2, 0, 0), _utc(2026, 3, 2), _utc(2026, 3, 9)),
        ("week", _utc(2026, 3, 8, 23, 59), _utc(2026, 3, 2), _utc(2026, 3, 9)),
        ("month", _utc(2026, 2, 28, 12, 0), _utc(2026, 2, 1), _utc(2026, 3, 1)),
        ("month", _utc(2026, 12, 15, 0, 0), _utc(2026, 12, 1), _utc(2027, 1, 1)),
    ],
)
def test_period_bounds(
    period: BudgetPeriod, now: datetime, start: datetime, reset: datetime
) -> None:
    assert period_start(period, now) == start
    assert next_reset(period, now) == reset


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1, "1 min"),
        (60, "1 min"),
        (61, "2 min"),
        (3 * 3600 + 12 * 60, "3 h 12 min"),
        (3 * 3600, "3 h"),
        (2 * 86400 + 5 * 3600, "2 d 5 h"),
        (6 * 86400, "6 d"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("period", "expected"),
    [("day", "00:00 UTC"), ("week", "Monday 00:00 UTC"), ("month", "1 Apr 00:00 UTC")],
)
def test_format_reset_moment(period: BudgetPeriod, expected: str) -> None:
    assert format_reset_moment(period, datetime(2026, 4, 1, tzinfo=UTC)) == expected


# Reservations and settlement.


def test_reservation_capped_by_question_cap(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=10_000, cap=300)
    question_id = _ask(migrated_engine, settings)

    reservation = reserve_question_budget(
        migrated_engine, settings, question_id, planned_tokens=8_000
    )

    assert reservation.tokens == 300
    assert reservation.remaining_before == 10_000
    assert load_question(migrated_engine, question_id).reserved_tokens == 300


def test_reservation_capped_by_remaining(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=250)
    first = _ask(migrated_engine, settings)
    second = _ask(migrated_engine, settings)

    reserve_question_budget(migrated_engine, settings, first, planned_tokens=150)
    reservation = reserve_question_budget(migrated_engine, settings, second, planned_tokens=150)

    assert reservation.tokens == 100
    assert _status(migrated_engine, settings).reserved_tokens == 250
    assert _status(migrated_engine, settings).remaining_tokens == 0


def test_reserve_twice_replaces_reservation(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    question_id = _ask(migrated_engine, settings)

    reserve_question_budget(migrated_engine, settings, question_id, planned_tokens=600)
    again = reserve_question_budget(migrated_engine, settings, question_id, planned_tokens=600)

    assert again.tokens == 600
    assert _status(migrated_engine, settings).reserved_tokens == 600


@time_machine.travel(datetime(2026, 3, 4, 20, 48, tzinfo=UTC), tick=False)
def test_refusal_marks_question_refused(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=5_000)
    first = _ask(migrated_engine, settings)
    second = _ask(migrated_engine, settings)
    reserve_question_budget(migrated_engine, settings, first, planned_tokens=5_000 - 10)

    with pytest.raises(BudgetExceededError) as caught:
        reserve_question_budget(migrated_engine, settings, second, planned_tokens=500)

    expected = (
        "Your daily budget of 5,000 tokens is used up; it resets at 00:00 UTC (in 3 h 12 min)."
    )
    assert caught.value.user_message == expected
    refused = load_question(migrated_engine, second)
    assert refused.status == "refused"
    assert refused.reserved_tokens == 0
    assert refused.trace["user_message"] == expected
    assert _ledger_sum(migrated_engine) == 0


def test_reservation_covers_minimum(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    question_id = _ask(migrated_engine, settings)

    reservation = reserve_question_budget(
        migrated_engine, settings, question_id, planned_tokens=0, minimum_tokens=120
    )

    assert reservation.tokens == 120


def test_minimum_over_cap_refused(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000, cap=100)
    question_id = _ask(migrated_engine, settings)

    with pytest.raises(BudgetExceededError) as caught:
        reserve_question_budget(
            migrated_engine, settings, question_id, planned_tokens=0, minimum_tokens=120
        )

    assert caught.value.user_message == (
        "This question needs about 120 tokens, more than the 100 one question may use. Please "
        "ask a shorter question."
    )
    assert load_question(migrated_engine, question_id).status == "refused"


@time_machine.travel(datetime(2026, 3, 4, 23, 30, tzinfo=UTC), tick=False)
def test_minimum_over_remaining_refused(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=200)
    first = _ask(migrated_engine, settings)
    second = _ask(migrated_engine, settings)
    reserve_question_budget(migrated_engine, settings, first, planned_tokens=110)

    with pytest.raises(BudgetExceededError) as caught:
        reserve_question_budget(
            migrated_engine, settings, second, planned_tokens=0, minimum_tokens=120
        )

    assert caught.value.user_message == (
        "Your daily budget of 200 tokens has 90 left, too few for this question (about 120); it "
        "resets at 00:00 UTC (in 30 min)."
    )


def test_answer_settles_reservation(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    question_id = _ask(migrated_engine, settings)

    _answer(migrated_engine, settings, question_id)

    stored = load_question(migrated_engine, question_id)
    status = _status(migrated_engine, settings)
    assert stored.reserved_tokens == 0
    assert _ledger_sum(migrated_engine) == ANSWER_TOKENS
    assert status.used_tokens == ANSWER_TOKENS
    assert status.remaining_tokens == 1_000 - ANSWER_TOKENS
    assert stored.trace["budget"]["reserved_tokens"] == 1_000
    assert stored.trace["budget"]["remaining_tokens"] == 900
    assert "budget left 900 tokens, resets 00:00 UTC" in (stored.footnote or "")


def test_footnote_energy_estimate(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    question_id = _ask(migrated_engine, settings)
    question = start_question(migrated_engine, question_id)
    assert question is not None
    plan = plan_question(question, settings)
    reserve_question_budget(migrated_engine, settings, question_id, planned_tokens=500)
    client = BudgetedClient(ScriptedClient([_reply()]), budget_tokens=500)
    result = asyncio.run(run_plan(client, build_input(migrated_engine, question), plan))
    # 36 model seconds at 30 W are 0.3 Wh; at 0.25 per kWh they cost 0.000075.
    result = replace(result, model_seconds=36.0)
    energy_settings = _settings(settings, watts=30.0, price_per_kwh=0.25)

    record_answer(
        migrated_engine,
        question_id,
        result,
        plan,
        model="scripted",
        wall_seconds=40.0,
        settings=energy_settings,
    )

    footnote = load_question(migrated_engine, question_id).footnote or ""
    assert "≈0.3 Wh, €0.000075" in footnote


def test_failure_releases_reservation(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    question_id = _ask(migrated_engine, settings)
    start_question(migrated_engine, question_id)
    reserve_question_budget(migrated_engine, settings, question_id, planned_tokens=400)

    record_failure(migrated_engine, question_id, ModelUnavailableError("connection refused"))

    assert load_question(migrated_engine, question_id).reserved_tokens == 0
    assert _ledger_sum(migrated_engine) == 0
    assert _status(migrated_engine, settings).remaining_tokens == 1_000


def test_requeue_releases_reservation(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    question_id = _ask(migrated_engine, settings)
    start_question(migrated_engine, question_id)
    reserve_question_budget(migrated_engine, settings, question_id, planned_tokens=400)

    requeue_question(migrated_engine, question_id, "model busy")

    assert load_question(migrated_engine, question_id).reserved_tokens == 0
    assert _status(migrated_engine, settings).reserved_tokens == 0


# Submit-time checks, defaults and admins.


def test_submit_rejects_blocked_user(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    with session_scope(migrated_engine) as session:
        user = session.exec(select(User).where(User.platform_user_id == "7")).one()
        user.is_blocked = True
        user.blocked_reason = "spam"
        session.add(user)

    with pytest.raises(UserBlockedError) as caught:
        _ask(migrated_engine, settings)

    assert "user telegram:7 is blocked (spam)" in str(caught.value)
    with session_scope(migrated_engine) as session:
        assert session.exec(select(func.count()).select_from(Question)).one() == 0


@time_machine.travel(datetime(2026, 3, 4, 22, 0, tzinfo=UTC), tick=False)
def test_submit_rejects_exhausted_budget(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=MIN_USEFUL_TOKENS + ANSWER_TOKENS - 1)
    _answer(migrated_engine, settings, _ask(migrated_engine, settings))

    with pytest.raises(BudgetExceededError) as caught:
        _ask(migrated_engine, settings)

    assert caught.value.user_message == (
        "Your daily budget of 163 tokens is used up; it resets at 00:00 UTC (in 2 h)."
    )
    with session_scope(migrated_engine) as session:
        assert session.exec(select(func.count()).select_from(Question)).one() == 1


def test_new_user_refused_stores_nothing(migrated_engine: Engine, settings: Settings) -> None:
    with pytest.raises(BudgetExceededError):
        _ask(migrated_engine, _settings(settings, default_budget_tokens=0), "telegram:99")

    with session_scope(migrated_engine) as session:
        assert session.exec(select(func.count()).select_from(User)).one() == 0


def test_stored_default_applies(migrated_engine: Engine, settings: Settings) -> None:
    _ask(migrated_engine, settings)
    with session_scope(migrated_engine) as session:
        save_defaults(session, BudgetDefaults(tokens=1_234, period="week", question_cap_tokens=200))

    status = _status(migrated_engine, settings)

    assert status.limit_tokens == 1_234
    assert status.period == "week"
    assert status.question_cap_tokens == 200
    with session_scope(migrated_engine) as session:
        assert session.get(AppSetting, "budget_default") is not None


def test_admin_is_unlimited(migrated_engine: Engine, settings: Settings) -> None:
    admin_settings = _settings(settings, admin_ids=["telegram:7"])
    _set_user_budget(migrated_engine, "telegram:7", tokens=0)
    question_id = _ask(migrated_engine, admin_settings)

    reservation = reserve_question_budget(
        migrated_engine, admin_settings, question_id, planned_tokens=50_000
    )

    assert reservation.tokens == admin_settings.question_token_cap
    assert reservation.remaining_before is None
    assert _status(migrated_engine, admin_settings).is_unlimited


def test_admin_limited_when_disabled(migrated_engine: Engine, settings: Settings) -> None:
    limited = _settings(settings, admin_ids=["telegram:7"], admins_unlimited=False)
    _set_user_budget(migrated_engine, "telegram:7", tokens=500)

    status = _status(migrated_engine, limited)

    assert status.limit_tokens == 500


def test_reset_usage_writes_negative_row(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)
    _answer(migrated_engine, settings, _ask(migrated_engine, settings))

    with session_scope(migrated_engine) as session:
        user = session.exec(select(User).where(User.platform_user_id == "7")).one()
        cancelled = reset_usage(session, settings, user)

    assert cancelled == ANSWER_TOKENS
    assert _status(migrated_engine, settings).used_tokens == 0
    with session_scope(migrated_engine) as session:
        kinds = session.exec(select(UsageEntry.kind, UsageEntry.tokens)).all()
    assert sorted(kinds) == [("answer", ANSWER_TOKENS), ("reset", -ANSWER_TOKENS)]


def test_usage_report_ignores_resets(migrated_engine: Engine, settings: Settings) -> None:
    for ref, count in (("telegram:1", 1), ("telegram:2", 3), ("discord:3", 2)):
        _set_user_budget(migrated_engine, ref, tokens=10_000)
        for _ in range(count):
            _answer(migrated_engine, settings, _ask(migrated_engine, settings, ref))
    with session_scope(migrated_engine) as session:
        user = session.exec(select(User).where(User.platform_user_id == "2")).one()
        reset_usage(session, settings, user)

    with session_scope(migrated_engine) as session:
        rows = usage_report(session, "day", top=2)

    assert [row.user_ref for row in rows] == ["telegram:2", "discord:3"]
    assert [row.tokens for row in rows] == [300, 200]
    assert [row.questions for row in rows] == [3, 2]


# Resets at the period boundary, with a frozen clock.


@pytest.mark.parametrize(
    ("period", "spent_at", "last_moment", "boundary"),
    [
        (
            "day",
            datetime(2026, 3, 4, 9, 0, tzinfo=UTC),
            datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 5, 0, 0, tzinfo=UTC),
        ),
        (
            "week",
            datetime(2026, 3, 4, 9, 0, tzinfo=UTC),
            datetime(2026, 3, 8, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 9, 0, 0, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2026, 2, 14, 9, 0, tzinfo=UTC),
            datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
        ),
    ],
)
def test_budget_resets_at_boundary(
    migrated_engine: Engine,
    settings: Settings,
    period: BudgetPeriod,
    spent_at: datetime,
    last_moment: datetime,
    boundary: datetime,
) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=ANSWER_TOKENS + 50, period=period)
    with time_machine.travel(spent_at, tick=False):
        _answer(migrated_engine, settings, _ask(migrated_engine, settings))

    with time_machine.travel(last_moment, tick=False):
        before = _status(migrated_engine, settings)
        with pytest.raises(BudgetExceededError) as caught:
            _ask(migrated_engine, settings)
    with time_machine.travel(boundary, tick=False):
        after = _status(migrated_engine, settings)
        _ask(migrated_engine, settings)

    assert before.remaining_tokens == 50
    assert before.resets_at == boundary
    assert "(in 1 min)" in caught.value.user_message
    assert after.used_tokens == 0
    assert after.remaining_tokens == ANSWER_TOKENS + 50
    assert after.period_start == boundary


# Concurrency: many threads reserve for one user at once.


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    upgrade(postgres_url)
    engine = create_db_engine(postgres_url)
    yield engine
    engine.dispose()


def _reserve_concurrently(engine: Engine, settings: Settings, *, threads: int) -> list[int]:
    """Reserve 100 tokens for each of `threads` questions at once; return the granted tokens."""
    question_ids = [_ask(engine, settings) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    granted: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def reserve(question_id: int) -> None:
        barrier.wait()
        try:
            reservation = reserve_question_budget(engine, settings, question_id, planned_tokens=100)
        except BudgetExceededError:
            with lock:
                refused.append(question_id)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                granted.append(reservation.tokens)

    workers = [threading.Thread(target=reserve, args=(qid,)) for qid in question_ids]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert len(granted) + len(refused) == threads
    return granted


def _check_no_overspend(engine: Engine, settings: Settings, granted: list[int]) -> None:
    status = _status(engine, settings)
    assert sum(granted) == 1_000
    assert len(granted) == 10
    assert status.reserved_tokens == 1_000
    with session_scope(engine) as session:
        refused = session.exec(
            select(func.count()).select_from(Question).where(Question.status == "refused")
        ).one()
    assert refused == 30


@pytest.mark.slow
def test_concurrent_reservations_sqlite(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=1_000)

    granted = _reserve_concurrently(migrated_engine, settings, threads=40)

    _check_no_overspend(migrated_engine, settings, granted)


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_reservations_postgres(postgres_engine: Engine, settings: Settings) -> None:
    _set_user_budget(postgres_engine, "telegram:7", tokens=1_000)

    granted = _reserve_concurrently(postgres_engine, settings, threads=40)

    _check_no_overspend(postgres_engine, settings, granted)


@time_machine.travel(datetime(2026, 3, 4, 22, 0, tzinfo=UTC), tick=False)
def test_submit_refusal_uses_asker_wording(migrated_engine: Engine, settings: Settings) -> None:
    _set_user_budget(migrated_engine, "telegram:7", tokens=MIN_USEFUL_TOKENS + ANSWER_TOKENS - 1)
    _answer(migrated_engine, settings, _ask(migrated_engine, settings))

    with pytest.raises(BudgetExceededError) as caught:
        _ask(migrated_engine, settings)

    assert str(caught.value) == (
        "Your daily budget of 163 tokens is used up; it resets at 00:00 UTC (in 2 h). User "
        "telegram:7 has 63 tokens left (100 used, 0 reserved since 2026-03-04 00:00 UTC) and the "
        "question needs about 64; an admin can raise the budget with "
        "`ponder admin budget set telegram:7 TOKENS`"
    )
