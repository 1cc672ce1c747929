"""Per-user rate limit on questions, checked before a question is stored or queued.

A user may ask `rate_limit_per_minute` questions in any rolling 60 seconds, and 0 turns the limit
off. Admins and the local console (platform `cli`, which only someone with a shell on the host
can use) are exempt. Only accepted questions count, so a user who floods is not locked out for
longer than the window.

Two stores keep the count:

- Redis, when the broker is a Redis URL: one sorted set per user, holding the time of each
  accepted question. A Lua script drops entries older than the window, counts the rest and adds
  the new one in one atomic step, using the Redis server's clock, so that workers and bots on
  several machines share one exact count.
- The database otherwise, or when Redis does not answer: the user's questions created in the
  window. The caller's transaction locks the user's row first (`SELECT ... FOR UPDATE` on
  PostgreSQL), so two concurrent questions of one user are counted one after the other. SQLite
  has no row locks and serializes writers instead.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy import func
from sqlmodel import Session, col, select

from core.config import Settings
from core.errors import RateLimitedError
from core.models import Question, User, utcnow

logger = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60.0
REDIS_TIMEOUT_SECONDS = 2.0
REDIS_KEY_PREFIX = "ponder:ratelimit:"
REDIS_SCHEMES = ("redis", "rediss")
EXEMPT_PLATFORMS = frozenset({"cli"})

# KEYS[1]: the user's sorted set. ARGV: window in ms, limit, a unique member for this question.
# Returns {1, 0} when accepted, or {0, ms until the oldest entry leaves the window}.
SLIDING_WINDOW_SCRIPT = """
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window_ms = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window_ms - now_ms}
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window_ms)
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether one more question is accepted, and if not, how long until one would be."""

    is_allowed: bool
    retry_after_seconds: float


def enforce_rate_limit(session: Session, settings: Settings, user: User) -> None:
    """Raise RateLimitedError when `user` has used up the questions of the current minute.

    Call it inside the transaction that stores the question, after the user row exists.
    """
    limit = settings.rate_limit_per_minute
    if limit == 0 or user.platform in EXEMPT_PLATFORMS or user.ref in settings.admin_ids:
        return
    decision = _redis_or_database_decision(session, settings, user, limit)
    if decision.is_allowed:
        return
    wait_seconds = max(1, math.ceil(decision.retry_after_seconds))
    logger.info("rate limit: rejected a question from %s for %d s", user.ref, wait_seconds)
    raise RateLimitedError(
        f"user {user.ref!r} asked {limit} questions within {RATE_WINDOW_SECONDS:g} s, the "
        f"maximum (PONDER_RATE_LIMIT_PER_MINUTE); the next one is accepted in {wait_seconds} s",
        user_message=f"You can ask {limit} questions per minute. Please wait {wait_seconds} s "
        "and ask again.",
    )


def _redis_or_database_decision(
    session: Session, settings: Settings, user: User, limit: int
) -> RateDecision:
    url = settings.broker_url
    if url and url.split(":", 1)[0] in REDIS_SCHEMES:
        key = f"{settings.broker_key_prefix}{REDIS_KEY_PREFIX}{user.ref}"
        try:
            return redis_decision(
                redis_client(url), key, limit=limit, window_seconds=RATE_WINDOW_SECONDS
            )
        except redis.RedisError as exc:
            logger.warning("rate limit: Redis failed (%s); counting in the database instead", exc)
    assert user.id is not None
    return database_decision(
        session, user.id, limit=limit, window_seconds=RATE_WINDOW_SECONDS, now=utcnow()
    )


@lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    """Return one Redis client (and connection pool) per URL for this process."""
    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )


def redis_decision(
    client: redis.Redis, key: str, *, limit: int, window_seconds: float
) -> RateDecision:
    """Count one question against `key` in Redis if it fits within `limit` per window."""
    window_ms = int(window_seconds * 1000)
    reply: Any = client.eval(SLIDING_WINDOW_SCRIPT, 1, key, window_ms, limit, uuid.uuid4().hex)
    is_allowed, retry_after_ms = int(reply[0]), int(reply[1])
    return RateDecision(is_allowed=bool(is_allowed), retry_after_seconds=retry_after_ms / 1000)


def database_decision(
    session: Session, user_id: int, *, limit: int, window_seconds: float, now: datetime
) -> RateDecision:
    """Count the user's questions stored within the window, under a lock on the user's row."""
    session.get(User, user_id, with_for_update=True, populate_existing=True)
    window_start = now - timedelta(seconds=window_seconds)
    recent = session.exec(
        select(func.count(), func.min(Question.created_at)).where(
            Question.user_id == user_id, col(Question.created_at) > window_start
        )
    ).one()
    count, oldest = int(recent[0]), recent[1]
    if count < limit:
        return RateDecision(is_allowed=True, retry_after_seconds=0.0)
    if oldest is not None and oldest.tzinfo is None:
        # SQLite returns naive datetimes; Ponder stores UTC.
        oldest = oldest.replace(tzinfo=now.tzinfo)
    retry_after = (oldest + timedelta(seconds=window_seconds) - now).total_seconds()
    return RateDecision(is_allowed=False, retry_after_seconds=max(retry_after, 0.0))
