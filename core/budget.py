"""Per-user token budgets: periods, remaining tokens, reservations and the usage ledger.

A user has an allowance of tokens per period (a day, a week or a month, each starting at 00:00
UTC). Within the current period:

    used      = sum of usage_ledger.tokens since the period start (negative "reset" rows included)
    reserved  = sum of questions.reserved_tokens over the user's unfinished questions
    remaining = limit - used - reserved

A worker reserves a question's planned maximum before it runs any model call, settles it to the
tokens really spent afterwards (ledger row and reserved_tokens=0 in one transaction, done by
`core.answering.record_answer`), and releases it (reserved_tokens=0, no ledger row) when the
question fails or is retried. A question is charged to the period in which it settles.

Concurrency: "compute remaining, then store the reservation" must not interleave with another
reservation for the same user, or two workers could each see the same free tokens and overspend
together. `lock_user` serializes those steps:

- PostgreSQL: `SELECT ... FOR UPDATE` on the user's row. Reservations for one user queue on that
  row lock; other users are not blocked. Under READ COMMITTED each later statement sees what the
  previous lock holder committed. Used and reserved tokens are read in one statement, so a
  settlement that commits meanwhile (it moves tokens from reserved to used without the user
  lock) is seen entirely or not at all.
- SQLite: no row locks exist, so the transaction starts with `BEGIN IMMEDIATE`, which takes the
  database's write lock at once. Writers are serialized database-wide, and the reads after it
  see every committed write. The engine's busy timeout makes a second worker wait instead of
  failing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from core.config import BudgetPeriod, Settings
from core.db import session_scope
from core.errors import BudgetExceededError, NotFoundError, UserBlockedError
from core.models import TERMINAL_STATUSES, AppSetting, Question, UsageEntry, User, utcnow

logger = logging.getLogger(__name__)

MIN_USEFUL_TOKENS = 64
MAX_BUDGET_TOKENS = 2_000_000_000
BUDGET_PERIODS: tuple[BudgetPeriod, ...] = ("day", "week", "month")
DEFAULTS_SETTING_KEY = "budget_default"
RESET_LEDGER_KIND = "reset"
PERIOD_ADJECTIVES: dict[str, str] = {"day": "daily", "week": "weekly", "month": "monthly"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetDefaults:
    """The allowance of users without their own: from the settings, or set by `budget default`."""

    tokens: int
    period: BudgetPeriod
    question_cap_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatus:
    """A user's budget in the current period. `limit_tokens` is None for an unlimited admin."""

    user_ref: str
    period: BudgetPeriod
    limit_tokens: int | None
    used_tokens: int
    reserved_tokens: int
    question_cap_tokens: int
    period_start: datetime
    resets_at: datetime
    is_blocked: bool = False

    @property
    def is_unlimited(self) -> bool:
        return self.limit_tokens is None

    @property
    def remaining_tokens(self) -> int | None:
        """Tokens still free in this period, never below 0; None when unlimited."""
        if self.limit_tokens is None:
            return None
        return max(0, self.limit_tokens - self.used_tokens - self.reserved_tokens)

    def as_dict(self) -> dict[str, Any]:
        """Return the status as JSON-ready values, for `--json` output."""
        return {
            "user": self.user_ref,
            "period": self.period,
            "limit_tokens": self.limit_tokens,
            "used_tokens": self.used_tokens,
            "reserved_tokens": self.reserved_tokens,
            "remaining_tokens": self.remaining_tokens,
            "question_cap_tokens": self.question_cap_tokens,
            "period_start": self.period_start.isoformat(),
            "resets_at": self.resets_at.isoformat(),
            "unlimited": self.is_unlimited,
            "blocked": self.is_blocked,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Tokens held for one question while it runs; the strategy's hard budget."""

    question_id: int
    tokens: int
    remaining_before: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    """One user's spending in a period, for the `usage` report."""

    user_ref: str
    tokens: int
    questions: int


# Periods and reset times.


def period_start(period: BudgetPeriod, now: datetime) -> datetime:
    """Return the start of the period that contains `now`: 00:00 UTC, Monday, or the 1st."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight
    if period == "week":
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def next_reset(period: BudgetPeriod, now: datetime) -> datetime:
    """Return when the period that contains `now` ends and the next one starts."""
    start = period_start(period, now)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def format_reset_moment(period: BudgetPeriod, resets_at: datetime) -> str:
    """Return when a budget resets, short: "00:00 UTC", "Monday 00:00 UTC", "1 Jan 00:00 UTC"."""
    if period == "day":
        return "00:00 UTC"
    if period == "week":
        return "Monday 00:00 UTC"
    return f"{resets_at.day} {resets_at:%b} 00:00 UTC"


def format_duration(seconds: float) -> str:
    """Return a rounded-up duration such as "3 h 12 min", "2 d 5 h" or "1 min"."""
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def describe_reset(status: BudgetStatus, now: datetime) -> str:
    """Return "at 00:00 UTC (in 3 h 12 min)", or "on Monday at …" for longer periods."""
    until = format_duration((status.resets_at - now).total_seconds())
    if status.period == "day":
        return f"at 00:00 UTC (in {until})"
    if status.period == "week":
        return f"on Monday at 00:00 UTC (in {until})"
    return f"on {status.resets_at.day} {status.resets_at:%B} at 00:00 UTC (in {until})"


def exhausted_message(
    status: BudgetStatus, now: datetime, *, needed_tokens: int = MIN_USEFUL_TOKENS
) -> str:
    """Return the chat message for a question that does not fit in the asker's budget."""
    adjective = PERIOD_ADJECTIVES[status.period]
    remaining = status.remaining_tokens or 0
    if status.limit_tokens == 0:
        return (
            f"Your {adjective} token budget is 0, so Ponder cannot answer. "
            "Ask an admin to raise it."
        )
    if remaining < MIN_USEFUL_TOKENS:
        return (
            f"Your {adjective} budget of {status.limit_tokens:,} tokens is used up; "
            f"it resets {describe_reset(status, now)}."
        )
    return (
        f"Your {adjective} budget of {status.limit_tokens:,} tokens has {remaining:,} left, too "
        f"few for this question (about {needed_tokens:,}); it resets {describe_reset(status, now)}."
    )


def over_cap_message(status: BudgetStatus, needed_tokens: int) -> str:
    """Return the chat message for a question that needs more than the per-question cap."""
    return (
        f"This question needs about {needed_tokens:,} tokens, more than the "
        f"{status.question_cap_tokens:,} one question may use. Please ask a shorter question."
    )


# Defaults and limits.


def load_defaults(session: Session, settings: Settings) -> BudgetDefaults:
    """Return the defaults an admin stored with `budget default`, else those of the settings."""
    stored = session.get(AppSetting, DEFAULTS_SETTING_KEY)
    value: dict[str, Any] = stored.value if stored is not None else {}
    return BudgetDefaults(
        tokens=int(value.get("tokens", settings.default_budget_tokens)),
        period=as_period(value.get("period"), settings.default_budget_period),
        question_cap_tokens=int(value.get("question_cap_tokens", settings.question_token_cap)),
    )


def save_defaults(session: Session, defaults: BudgetDefaults) -> None:
    """Store new defaults; they apply at once to every user without an own allowance."""
    value = {
        "tokens": defaults.tokens,
        "period": defaults.period,
        "question_cap_tokens": defaults.question_cap_tokens,
    }
    stored = session.get(AppSetting, DEFAULTS_SETTING_KEY)
    if stored is None:
        stored = AppSetting(key=DEFAULTS_SETTING_KEY, value=value)
    else:
        stored.value = value
        stored.updated_at = utcnow()
    session.add(stored)


def is_unlimited_user(user: User, settings: Settings) -> bool:
    """Tell whether the user is an admin listed in PONDER_ADMIN_IDS with no allowance limit.

    Discord server managers are admins for commands only; their questions count like anyone's.
    """
    return settings.admins_unlimited and user.ref in settings.admin_ids


def as_period(value: object, fallback: BudgetPeriod) -> BudgetPeriod:
    """Return `value` when it names a budget period, else `fallback`."""
    for period in BUDGET_PERIODS:
        if value == period:
            return period
    return fallback


def user_period(user: User, defaults: BudgetDefaults) -> BudgetPeriod:
    return as_period(user.budget_period, defaults.period)


# Reading the budget.


def _used_and_reserved(
    session: Session, user_id: int, start: datetime, *, excluding_question: int | None = None
) -> tuple[int, int]:
    """Return used and reserved tokens, read in one statement so both come from one snapshot."""
    used = (
        select(func.coalesce(func.sum(UsageEntry.tokens), 0))
        .where(UsageEntry.user_id == user_id, UsageEntry.created_at >= start)
        .scalar_subquery()
    )
    reserved_select = select(func.coalesce(func.sum(Question.reserved_tokens), 0)).where(
        Question.user_id == user_id, col(Question.status).not_in(TERMINAL_STATUSES)
    )
    if excluding_question is not None:
        reserved_select = reserved_select.where(Question.id != excluding_question)
    reserved = reserved_select.scalar_subquery()
    row = session.exec(select(used, reserved)).one()
    return int(row[0]), int(row[1])


def budget_status(
    session: Session,
    settings: Settings,
    user: User,
    *,
    now: datetime | None = None,
    excluding_question: int | None = None,
) -> BudgetStatus:
    """Return the user's budget in the period that contains `now` (default: the clock)."""
    assert user.id is not None
    moment = now or utcnow()
    defaults = load_defaults(session, settings)
    period = user_period(user, defaults)
    start = period_start(period, moment)
    used, reserved = _used_and_reserved(
        session, user.id, start, excluding_question=excluding_question
    )
    limit = None if is_unlimited_user(user, settings) else _user_limit(user, defaults)
    return BudgetStatus(
        user_ref=user.ref,
        period=period,
        limit_tokens=limit,
        used_tokens=used,
        reserved_tokens=reserved,
        question_cap_tokens=user.question_cap_tokens or defaults.question_cap_tokens,
        period_start=start,
        resets_at=next_reset(period, moment),
        is_blocked=user.is_blocked,
    )


def new_user_status(
    session: Session,
    settings: Settings,
    platform: str,
    user_id: str,
    *,
    now: datetime | None = None,
) -> BudgetStatus:
    """Return the budget a user who never asked would have: the defaults, nothing used."""
    user = User(id=0, platform=platform, platform_user_id=user_id)
    moment = now or utcnow()
    defaults = load_defaults(session, settings)
    return BudgetStatus(
        user_ref=user.ref,
        period=defaults.period,
        limit_tokens=None if is_unlimited_user(user, settings) else defaults.tokens,
        used_tokens=0,
        reserved_tokens=0,
        question_cap_tokens=defaults.question_cap_tokens,
        period_start=period_start(defaults.period, moment),
        resets_at=next_reset(defaults.period, moment),
    )


def _user_limit(user: User, defaults: BudgetDefaults) -> int:
    return user.budget_tokens if user.budget_tokens is not None else defaults.tokens


def check_can_ask(session: Session, settings: Settings, user: User) -> BudgetStatus:
    """Raise when the user is blocked or has too little budget left; return the status.

    This check at submit time takes no lock, so it only saves queuing hopeless questions; the
    worker's reservation is what enforces the limit.
    """
    now = utcnow()
    status = budget_status(session, settings, user, now=now)
    refusal = refusal_for(user, status, now)
    if refusal is not None:
        raise refusal
    return status


def check_can_ask_ref(
    session: Session, settings: Settings, platform: str, platform_user_id: str
) -> BudgetStatus:
    """Run `check_can_ask` for a user given by platform and id; one who never asked gets the
    defaults. Creates no user, so a refused newcomer leaves nothing stored.
    """
    user = session.exec(
        select(User).where(User.platform == platform, User.platform_user_id == platform_user_id)
    ).first()
    if user is not None:
        return check_can_ask(session, settings, user)
    now = utcnow()
    status = new_user_status(session, settings, platform, platform_user_id, now=now)
    refusal = refusal_for(User(platform=platform, platform_user_id=platform_user_id), status, now)
    if refusal is not None:
        raise refusal
    return status


def refusal_for(
    user: User, status: BudgetStatus, now: datetime, *, needed_tokens: int = MIN_USEFUL_TOKENS
) -> UserBlockedError | BudgetExceededError | None:
    """Return the error that stops this user from asking now, or None when a question that
    needs `needed_tokens` (at least MIN_USEFUL_TOKENS) fits.
    """
    if user.is_blocked:
        return UserBlockedError(
            f"user {user.ref} is blocked ({user.blocked_reason or 'no reason given'}); "
            f"an admin can run `ponder admin unblock {user.ref}`"
        )
    needed = max(needed_tokens, MIN_USEFUL_TOKENS)
    if status.question_cap_tokens < needed:
        return BudgetExceededError(
            f"a question of {status.user_ref} needs about {needed:,} tokens, more than the "
            f"per-question cap of {status.question_cap_tokens:,}; an admin can raise it with "
            f"`ponder admin budget set {status.user_ref} TOKENS --question-cap N`",
            user_message=over_cap_message(status, needed),
        )
    remaining = status.remaining_tokens
    if remaining is None or remaining >= needed:
        return None
    # The message starts with the asker's wording, because the console prints it to the asker.
    user_message = exhausted_message(status, now, needed_tokens=needed)
    return BudgetExceededError(
        f"{user_message} User {status.user_ref} has {remaining:,} tokens left "
        f"({status.used_tokens:,} used, {status.reserved_tokens:,} reserved since "
        f"{status.period_start:%Y-%m-%d %H:%M} UTC) and the question needs about {needed:,}; "
        "an admin can raise the budget with "
        f"`ponder admin budget set {status.user_ref} TOKENS`",
        user_message=user_message,
    )


# Locking, reserving, releasing.


def lock_user(session: Session, user_id: int) -> None:
    """Serialize budget changes of one user until the session commits; call it first.

    On SQLite this must be the transaction's first statement, because BEGIN IMMEDIATE cannot
    start inside a transaction that already wrote.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        return
    locked = session.exec(select(User.id).where(User.id == user_id).with_for_update()).first()
    if locked is None:
        raise NotFoundError(f"user id {user_id} does not exist")


def reserve_question_budget(
    engine: Engine,
    settings: Settings,
    question_id: int,
    *,
    planned_tokens: int,
    minimum_tokens: int = MIN_USEFUL_TOKENS,
) -> Reservation:
    """Reserve the tokens a question may spend: its plan, capped by the per-question cap and the
    remaining budget, and at least `minimum_tokens` (the cheapest useful answer).

    When the question cannot run (blocked user, or the minimum exceeds the cap or what is left),
    this marks it "refused" with the user's message, commits, and raises UserBlockedError or
    BudgetExceededError. Running it again for the same question replaces the earlier reservation.
    """
    needed = max(minimum_tokens, MIN_USEFUL_TOKENS)
    user_id = _question_user_id(engine, question_id)
    with session_scope(engine) as session:
        lock_user(session, user_id)
        question = session.get(Question, question_id)
        user = session.get(User, user_id)
        if question is None or user is None:
            raise NotFoundError(f"question {question_id} or its user {user_id} does not exist")
        now = utcnow()
        status = budget_status(session, settings, user, now=now, excluding_question=question_id)
        refusal = refusal_for(user, status, now, needed_tokens=needed)
        tokens = (
            0 if refusal is not None else reservable_tokens(status, max(planned_tokens, needed))
        )
        if refusal is not None:
            _mark_refused(session, question, refusal)
        else:
            question.reserved_tokens = tokens
            session.add(question)

    if refusal is not None:
        logger.info("refused question %d of %s: %s", question_id, status.user_ref, refusal)
        raise refusal
    logger.info(
        "reserved %d tokens for question %d (%s tokens were free)",
        tokens,
        question_id,
        "unlimited" if status.remaining_tokens is None else f"{status.remaining_tokens:,}",
    )
    return Reservation(
        question_id=question_id, tokens=tokens, remaining_before=status.remaining_tokens
    )


def reservable_tokens(status: BudgetStatus, planned_tokens: int) -> int:
    """Return the planned tokens capped by the per-question cap and the remaining budget."""
    tokens = min(planned_tokens, status.question_cap_tokens)
    if status.remaining_tokens is not None:
        tokens = min(tokens, status.remaining_tokens)
    return max(0, tokens)


def _question_user_id(engine: Engine, question_id: int) -> int:
    with session_scope(engine) as session:
        user_id = session.exec(select(Question.user_id).where(Question.id == question_id)).first()
    if user_id is None:
        raise NotFoundError(f"question {question_id} does not exist")
    return user_id


def _mark_refused(
    session: Session, question: Question, error: UserBlockedError | BudgetExceededError
) -> None:
    question.status = "refused"
    question.finished_at = utcnow()
    question.reserved_tokens = 0
    question.error = str(error)
    question.trace = {**question.trace, "user_message": error.user_message}
    session.add(question)


def release_reservation(question: Question) -> None:
    """Drop a question's reservation without charging anything; the caller commits."""
    # NOTE: tokens that a failed or retried attempt already spent are not charged, because the
    # ledger records answered questions only.
    question.reserved_tokens = 0


def settle_reservation(
    session: Session, question: Question, *, prompt_tokens: int, completion_tokens: int
) -> int:
    """Charge what an answered question spent and drop its reservation, in the caller's
    transaction, so used and reserved tokens change together. Returns the reserved tokens.
    """
    assert question.id is not None
    reserved = question.reserved_tokens
    question.reserved_tokens = 0
    session.add(question)
    session.add(
        UsageEntry(
            user_id=question.user_id,
            question_id=question.id,
            kind="answer",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens=prompt_tokens + completion_tokens,
        )
    )
    session.flush()
    return reserved


def user_status(session: Session, settings: Settings, user_id: int) -> BudgetStatus:
    """Return the budget of the user with this database id."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user id {user_id} does not exist")
    return budget_status(session, settings, user)


# Admin changes.


def reset_usage(session: Session, settings: Settings, user: User) -> int:
    """Cancel the user's usage in the current period with a negative "reset" ledger row.

    The ledger stays append-only. Returns the tokens cancelled (0 writes no row). Reservations of
    running questions stay; they settle into the new usage.
    """
    assert user.id is not None
    lock_user(session, user.id)
    status = budget_status(session, settings, user)
    if status.used_tokens == 0:
        return 0
    session.add(
        UsageEntry(
            user_id=user.id, question_id=None, kind=RESET_LEDGER_KIND, tokens=-status.used_tokens
        )
    )
    return status.used_tokens


def usage_report(
    session: Session, period: BudgetPeriod, *, top: int, now: datetime | None = None
) -> list[UsageRow]:
    """Return the users who spent the most tokens since the period start, most first.

    Counts what questions spent; "reset" rows are left out, so a reset does not hide spending.
    """
    start = period_start(period, now or utcnow())
    tokens = func.sum(UsageEntry.tokens)
    statement = (
        select(User.platform, User.platform_user_id, tokens, func.count(col(UsageEntry.id)))
        .join(User, col(User.id) == col(UsageEntry.user_id))
        .where(UsageEntry.created_at >= start, UsageEntry.kind != RESET_LEDGER_KIND)
        .group_by(col(User.id), col(User.platform), col(User.platform_user_id))
        .order_by(tokens.desc(), col(User.id))
        .limit(top)
    )
    return [
        UsageRow(user_ref=f"{platform}:{user_id}", tokens=int(total), questions=int(count))
        for platform, user_id, total, count in session.exec(statement).all()
    ]
