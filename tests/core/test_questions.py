"""Tests for storing questions: validation of bad input and nothing half-written."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from core.config import Settings
from core.db import session_scope
from core.errors import InvalidQuestionError
from core.models import Question, User
from core.questions import parse_user_ref, submit_question
from core.schemas import AskRequest


def _count(engine: Engine, table: type[Question] | type[User]) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the question is empty"),
        ("   \n\t ", "the question is empty"),
        ("x" * 100_000, "the question is 100,000 characters long; the maximum is 4,000"),
        ("What is\x00 2 + 2?", "the question contains NUL bytes"),
    ],
)
def test_submit_rejects_bad_text(
    migrated_engine: Engine, settings: Settings, text: str, expected: str
) -> None:
    request = AskRequest(platform="cli", user_id="alice", text=text)

    with pytest.raises(InvalidQuestionError) as caught:
        submit_question(migrated_engine, settings, request)

    assert expected in str(caught.value)
    assert caught.value.user_message
    assert _count(migrated_engine, Question) == 0
    assert _count(migrated_engine, User) == 0


def test_submit_stores_stripped_question(migrated_engine: Engine, settings: Settings) -> None:
    request = AskRequest(platform="cli", user_id="alice", text="  What is 2 + 3?  ")

    question = submit_question(migrated_engine, settings, request)

    assert question.id is not None
    assert question.text == "What is 2 + 3?"
    assert question.status == "queued"
    assert _count(migrated_engine, User) == 1


def test_submit_reuses_existing_user(migrated_engine: Engine, settings: Settings) -> None:
    for text in ("first?", "second?"):
        submit_question(
            migrated_engine, settings, AskRequest(platform="cli", user_id="bob", text=text)
        )

    assert _count(migrated_engine, User) == 1
    assert _count(migrated_engine, Question) == 2


def test_submit_rejects_unknown_follow_up(migrated_engine: Engine, settings: Settings) -> None:
    request = AskRequest(platform="cli", user_id="bob", text="and then?", follow_up_of_id=999)

    with pytest.raises(Exception, match="question 999 does not exist"):
        submit_question(migrated_engine, settings, request)

    assert _count(migrated_engine, Question) == 0


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("telegram:123456", ("telegram", "123456")),
        ("cli:alice", ("cli", "alice")),
        ("discord:80351110224678912", ("discord", "80351110224678912")),
        ("cli:a.b_c-D9", ("cli", "a.b_c-D9")),
        ("cli:" + "x" * 64, ("cli", "x" * 64)),
    ],
)
def test_parse_user_ref_valid(ref: str, expected: tuple[str, str]) -> None:
    assert parse_user_ref(ref) == expected


@pytest.mark.parametrize("ref", ["alice", ":123", "telegram:", "te lg:1", "cli:" + "x" * 65])
def test_parse_user_ref_invalid(ref: str) -> None:
    with pytest.raises(InvalidQuestionError):
        parse_user_ref(ref)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("foo:bar", "invalid platform 'foo': use one of cli, discord, telegram, in lower case"),
        ("CLI:alice", "invalid platform 'CLI': use one of cli, discord, telegram, in lower case"),
        ("telegram:abc", "invalid telegram user id 'abc': use the positive decimal number"),
        ("telegram:-5", "invalid telegram user id '-5': use the positive decimal number"),
        ("telegram:0042", "invalid telegram user id '0042': use the positive decimal number"),
        ("discord:0", "invalid discord user id '0': use the positive decimal number"),
        ("discord:1" + "0" * 20, "invalid discord user id '1" + "0" * 20 + "'"),
        ("telegram:42\n", "invalid telegram user id '42\\n'"),
        ("cli: alice", "invalid cli user id ' alice': use 1 to 64 ASCII letters, digits"),
        ("cli:alice:bob", "invalid cli user id 'alice:bob': use 1 to 64 ASCII letters, digits"),
        ("cli:al ice", "invalid cli user id 'al ice'"),
        ("cli:al\x00ice", "invalid cli user id 'al\\x00ice'"),
        ("alice", "invalid user 'alice'; write it as platform:id"),
    ],
)
def test_parse_user_ref_message(ref: str, message: str) -> None:
    with pytest.raises(InvalidQuestionError) as caught:
        parse_user_ref(ref)

    assert str(caught.value).startswith(message)
