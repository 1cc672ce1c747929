"""Token shape checks, mention stripping and the decision whether a message is a question."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bots.discord.parsing import (
    MENTION_USAGE,
    IncomingMessage,
    MessageDecision,
    bot_user_id_from_token,
    decide_message,
    strip_bot_mention,
    validate_token,
)
from core.errors import ConfigurationError
from tests.bots.discord.conftest import BOT_TOKEN, BOT_USER_ID, make_token

ASKER_ID = 2_200_000_000_000_000_001
ANSWER_MESSAGE_ID = 5_500_000_000_000_000_009


def incoming(content: str, **fields: object) -> IncomingMessage:
    values: dict[str, object] = {
        "author_id": ASKER_ID,
        "author_is_bot": False,
        "content": content,
        "mentions_bot": False,
        "is_direct_message": False,
    }
    values.update(fields)
    return IncomingMessage(**values)  # type: ignore[arg-type]


def test_validate_token_accepts_bot_token() -> None:
    assert validate_token(SecretStr(BOT_TOKEN)) == BOT_TOKEN


def test_validate_token_strips_blanks() -> None:
    assert validate_token(SecretStr(f"  {BOT_TOKEN}\n")) == BOT_TOKEN


def test_bot_user_id_from_token() -> None:
    assert bot_user_id_from_token(make_token(123456789012345678)) == 123456789012345678


@pytest.mark.parametrize("token", [None, SecretStr(""), SecretStr("   ")])
def test_validate_token_missing(token: SecretStr | None) -> None:
    with pytest.raises(ConfigurationError, match="PONDER_DISCORD_TOKEN is not set"):
        validate_token(token)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (f"Bot {BOT_TOKEN}", "starts with 'Bot '"),
        ("abc.def", "2 dot-separated part"),
        (BOT_TOKEN + ".extra", "4 dot-separated part"),
        (BOT_TOKEN.replace(".", ". ", 1), "malformed"),
        ("bm90IGFuIGlk.GabcDe." + "x" * 38, "does not encode a user id"),
    ],
)
def test_validate_token_malformed_hides_token(token: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected) as raised:
        validate_token(SecretStr(token))

    assert token.strip() not in str(raised.value)
    assert token.split(".")[-1] not in str(raised.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"<@{BOT_USER_ID}> what is 2 + 3?", "what is 2 + 3?"),
        (f"<@!{BOT_USER_ID}> what is 2 + 3?", "what is 2 + 3?"),
        (f"what is 2 + 3? <@{BOT_USER_ID}>", "what is 2 + 3?"),
        (f"so <@{BOT_USER_ID}> what is 2 + 3?", "so what is 2 + 3?"),
        (f"<@{BOT_USER_ID}>\n```py\nprint(1)\n```", "```py\nprint(1)\n```"),
        (f"<@{BOT_USER_ID}> ask <@987654321> too", "ask <@987654321> too"),
        (f"<@{BOT_USER_ID}>", ""),
        (f"<@{BOT_USER_ID}> <@!{BOT_USER_ID}>", ""),
    ],
)
def test_strip_bot_mention(content: str, expected: str) -> None:
    assert strip_bot_mention(content, BOT_USER_ID) == expected


def test_mention_is_question() -> None:
    decision = decide_message(
        incoming(f"<@{BOT_USER_ID}> is ice cold?", mentions_bot=True), bot_user_id=BOT_USER_ID
    )

    assert decision == MessageDecision(kind="question", text="is ice cold?")


def test_mention_only_gets_usage() -> None:
    decision = decide_message(
        incoming(f"<@!{BOT_USER_ID}>  ", mentions_bot=True), bot_user_id=BOT_USER_ID
    )

    assert decision == MessageDecision(kind="usage", text=MENTION_USAGE)


def test_message_without_mention_ignored() -> None:
    decision = decide_message(incoming("is ice cold?"), bot_user_id=BOT_USER_ID)

    assert decision.kind == "ignore"


def test_bot_author_ignored() -> None:
    decision = decide_message(
        incoming(f"<@{BOT_USER_ID}> hi", mentions_bot=True, author_is_bot=True),
        bot_user_id=BOT_USER_ID,
    )

    assert decision.kind == "ignore"


def test_own_message_ignored() -> None:
    decision = decide_message(
        incoming("hi", author_id=BOT_USER_ID, is_direct_message=True), bot_user_id=BOT_USER_ID
    )

    assert decision.kind == "ignore"


def test_direct_message_is_question() -> None:
    decision = decide_message(
        incoming("is ice cold?", is_direct_message=True), bot_user_id=BOT_USER_ID
    )

    assert decision == MessageDecision(kind="question", text="is ice cold?")


def test_reply_to_bot_is_follow_up_candidate() -> None:
    message = incoming(
        "and times 2?",
        referenced_message_id=ANSWER_MESSAGE_ID,
        referenced_author_id=BOT_USER_ID,
    )

    decision = decide_message(message, bot_user_id=BOT_USER_ID)

    assert decision == MessageDecision(
        kind="question", text="and times 2?", follow_up_of_message_id=ANSWER_MESSAGE_ID
    )


def test_reply_to_unknown_message_with_mention_checked() -> None:
    message = incoming(
        f"<@{BOT_USER_ID}> and times 2?",
        mentions_bot=True,
        referenced_message_id=ANSWER_MESSAGE_ID,
    )

    decision = decide_message(message, bot_user_id=BOT_USER_ID)

    assert decision.follow_up_of_message_id == ANSWER_MESSAGE_ID


def test_reply_to_someone_else_with_mention_is_new_question() -> None:
    message = incoming(
        f"<@{BOT_USER_ID}> is that right?",
        mentions_bot=True,
        referenced_message_id=ANSWER_MESSAGE_ID,
        referenced_author_id=ASKER_ID + 1,
    )

    decision = decide_message(message, bot_user_id=BOT_USER_ID)

    assert decision == MessageDecision(kind="question", text="is that right?")


def test_silent_reply_without_content_ignored() -> None:
    # Without the Message Content intent a reply that does not ping the bot arrives empty.
    message = incoming(
        "", referenced_message_id=ANSWER_MESSAGE_ID, referenced_author_id=BOT_USER_ID
    )

    decision = decide_message(message, bot_user_id=BOT_USER_ID)

    assert decision.kind == "ignore"
