"""Storing questions: validation, users, and the question's status changes."""

from __future__ import annotations

import logging
import re

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from core.budget import check_can_ask_ref
from core.config import Settings
from core.db import session_scope
from core.errors import InvalidQuestionError, NotFoundError
from core.models import AnswerMessage, Question, User, utcnow
from core.ratelimit import enforce_rate_limit
from core.schemas import EFFORTS, AskRequest

logger = logging.getLogger(__name__)

CLI_PLATFORM = "cli"
DISCORD_PLATFORM = "discord"
TELEGRAM_PLATFORM = "telegram"
PLATFORMS = (CLI_PLATFORM, DISCORD_PLATFORM, TELEGRAM_PLATFORM)
MAX_PLATFORM_USER_ID_CHARS = 64
CLI_USER_ID_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_PLATFORM_USER_ID_CHARS}}}")
# Discord ids are 64-bit snowflakes, at most 20 digits; Telegram user ids are shorter.
NUMERIC_USER_ID_PATTERN = re.compile(r"[1-9][0-9]{0,19}")


def validate_question_text(text: str, *, max_chars: int) -> str:
    """Return the question stripped of surrounding blanks, or raise InvalidQuestionError."""
    if "\x00" in text:
        raise InvalidQuestionError(
            "the question contains NUL bytes; send it as plain text",
            user_message="Your question contains invalid characters (NUL bytes). "
            "Please send it as plain text.",
        )
    stripped = text.strip()
    if not stripped:
        raise InvalidQuestionError(
            "the question is empty; write a question after the command",
            user_message="Your question is empty. Please write a question.",
        )
    if len(stripped) > max_chars:
        raise InvalidQuestionError(
            f"the question is {len(stripped):,} characters long; the maximum is {max_chars:,}. "
            "Shorten it and ask again",
            user_message=f"Your question is too long ({len(stripped):,} characters; the "
            f"maximum is {max_chars:,}). Please shorten it.",
        )
    return stripped


def validate_user_ref(platform: str, user_id: str) -> None:
    """Raise InvalidQuestionError unless `platform` is a known platform and `user_id` has its form.

    Discord and Telegram user ids are positive decimal numbers without leading zeros, so that
    `telegram:0042` cannot become a second user beside `telegram:42`; Telegram's negative ids
    belong to chats, not users. Console ids are 1 to 64 ASCII letters, digits, '.', '_' or '-'.
    """
    if platform not in PLATFORMS:
        raise InvalidQuestionError(
            f"invalid platform {platform[:80]!r}: use one of {', '.join(PLATFORMS)}, in lower case"
        )
    if platform == CLI_PLATFORM:
        if not CLI_USER_ID_PATTERN.fullmatch(user_id):
            raise InvalidQuestionError(
                f"invalid {platform} user id {user_id[:80]!r}: use 1 to "
                f"{MAX_PLATFORM_USER_ID_CHARS} ASCII letters, digits, '.', '_' or '-', for "
                "example cli:alice"
            )
    elif not NUMERIC_USER_ID_PATTERN.fullmatch(user_id):
        raise InvalidQuestionError(
            f"invalid {platform} user id {user_id[:80]!r}: use the positive decimal number "
            f"without leading zeros that {platform} assigns, for example {platform}:123456"
        )


def parse_user_ref(ref: str) -> tuple[str, str]:
    """Split `platform:id` into its parts, for example `telegram:123` into ("telegram", "123")."""
    platform, separator, user_id = ref.partition(":")
    if not separator or not platform or not user_id:
        raise InvalidQuestionError(
            f"invalid user {ref[:80]!r}; write it as platform:id, for example telegram:123456 or "
            "cli:alice"
        )
    validate_user_ref(platform, user_id)
    return platform, user_id


def get_or_create_user(
    session: Session, platform: str, platform_user_id: str, display_name: str | None = None
) -> User:
    """Return the user, creating it on first contact; safe when two workers race to create it.

    The insert uses ON CONFLICT DO NOTHING instead of a savepoint, because pysqlite's legacy
    transaction handling releases a SAVEPOINT as a commit of its own.
    """
    statement = select(User).where(
        User.platform == platform, User.platform_user_id == platform_user_id
    )
    user = session.exec(statement).first()
    if user is not None:
        return user
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    inserted = session.connection().execute(
        insert(User)
        .values(
            platform=platform,
            platform_user_id=platform_user_id,
            display_name=display_name,
            created_at=utcnow(),
            is_blocked=False,
        )
        .on_conflict_do_nothing(index_elements=["platform", "platform_user_id"])
    )
    user = session.exec(statement).one()
    if inserted.rowcount:
        logger.info("created user %s (id %s)", user.ref, user.id)
    return user


def find_user(session: Session, platform: str, platform_user_id: str) -> User | None:
    return session.exec(
        select(User).where(User.platform == platform, User.platform_user_id == platform_user_id)
    ).first()


def submit_question(engine: Engine, settings: Settings, request: AskRequest) -> Question:
    """Validate and store a question with status "queued"; the caller enqueues it afterwards.

    Raises UserBlockedError for a blocked asker, BudgetExceededError when too little budget
    is left and RateLimitedError when the asker asks too often; in each case nothing is stored.
    """
    text = validate_question_text(request.text, max_chars=settings.max_question_chars)
    validate_user_ref(request.platform, request.user_id)
    if request.effort not in EFFORTS:
        raise InvalidQuestionError(
            f"invalid effort {request.effort!r}; valid values: {', '.join(EFFORTS)}"
        )

    with session_scope(engine) as session:
        check_can_ask_ref(session, settings, request.platform, request.user_id)
        user = get_or_create_user(session, request.platform, request.user_id, request.display_name)
        if (
            request.follow_up_of_id is not None
            and session.get(Question, request.follow_up_of_id) is None
        ):
            raise NotFoundError(f"question {request.follow_up_of_id} does not exist")
        enforce_rate_limit(session, settings, user)
        assert user.id is not None
        question = Question(
            user_id=user.id,
            platform=request.platform,
            chat_id=request.chat_id,
            thread_id=request.thread_id,
            message_id=request.message_id,
            follow_up_of_id=request.follow_up_of_id,
            text=text,
            effort=request.effort,
            requested_strategy=request.strategy,
            strategy_options=dict(request.strategy_options),
            delivery=dict(request.delivery),
        )
        session.add(question)
        session.flush()
    logger.info(
        "stored question %s from %s:%s (%d chars)",
        question.id,
        request.platform,
        request.user_id,
        len(text),
    )
    return question


def load_question(engine: Engine, question_id: int) -> Question:
    with session_scope(engine) as session:
        question = session.get(Question, question_id)
        if question is None:
            raise NotFoundError(f"question {question_id} does not exist")
        return question


def record_answer_messages(
    engine: Engine, question: Question, chat_id: str | None, message_ids: list[str]
) -> None:
    """Remember which platform messages carry a question's answer; repeated ids are ignored."""
    if chat_id is None or not message_ids:
        return
    assert question.id is not None
    with session_scope(engine) as session:
        known = set(
            session.exec(
                select(AnswerMessage.message_id).where(
                    AnswerMessage.platform == question.platform,
                    AnswerMessage.chat_id == chat_id,
                    AnswerMessage.message_id.in_(message_ids),  # type: ignore[attr-defined]
                )
            ).all()
        )
        for message_id in message_ids:
            if message_id not in known:
                session.add(
                    AnswerMessage(
                        question_id=question.id,
                        platform=question.platform,
                        chat_id=chat_id,
                        message_id=message_id,
                    )
                )


def find_answered_question(
    engine: Engine, platform: str, chat_id: str, message_id: str
) -> Question | None:
    """Return the question whose answer is the given platform message, for follow-ups."""
    with session_scope(engine) as session:
        return session.exec(
            select(Question)
            .join(AnswerMessage, AnswerMessage.question_id == Question.id)  # type: ignore[arg-type]
            .where(
                AnswerMessage.platform == platform,
                AnswerMessage.chat_id == chat_id,
                AnswerMessage.message_id == message_id,
            )
        ).first()
