"""Tests for `ponder admin`: budgets, usage, blocking and traces on the embedded SQLite database."""

from __future__ import annotations

import getpass
import json

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from bots.cli.main import app
from core.db import session_scope
from core.models import AuditEntry
from tasks.runtime import get_runtime


def _admin(*args: str) -> Result:
    return CliRunner().invoke(app, ["admin", *args])


def _json(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


def test_budget_set_then_show(ponder_env: dict[str, str]) -> None:
    set_result = _admin("budget", "set", "telegram:42", "5k", "--period", "week")
    shown = _json(_admin("budget", "show", "telegram:42", "--json"))

    assert set_result.exit_code == 0, set_result.output
    assert set_result.stdout.startswith("Set telegram:42's budget to 5,000 tokens per week.")
    assert shown["limit_tokens"] == 5_000
    assert shown["used_tokens"] == 0
    assert shown["reserved_tokens"] == 0
    assert shown["remaining_tokens"] == 5_000
    assert shown["period"] == "week"
    assert str(shown["resets_at"]).endswith("T00:00:00+00:00")


def test_show_unknown_user_fails(ponder_env: dict[str, str]) -> None:
    result = _admin("budget", "show", "telegram:42")

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "No user telegram:42 has asked Ponder yet."


def test_show_unknown_user_json(ponder_env: dict[str, str]) -> None:
    result = _admin("budget", "show", "telegram:42", "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"error": "No user telegram:42 has asked Ponder yet."}


def test_invalid_period_rejected(ponder_env: dict[str, str]) -> None:
    result = _admin("budget", "set", "telegram:42", "100", "--period", "year")

    assert result.exit_code == 2
    assert "'year'; valid periods: day, week, month" in result.stderr


def test_invalid_tokens_rejected(ponder_env: dict[str, str]) -> None:
    result = _admin("budget", "set", "telegram:42", "lots")

    assert result.exit_code == 2
    assert "invalid token count 'lots'" in result.stderr


def test_default_reset_block_unblock(ponder_env: dict[str, str]) -> None:
    _admin("budget", "set", "telegram:42", "1000")

    default = _admin("budget", "default", "20000", "--period", "month", "--question-cap", "600")
    reset = _admin("budget", "reset", "telegram:42")
    blocked = _admin("block", "telegram:42", "--reason", "spam")
    shown = _admin("budget", "show", "telegram:42")
    unblocked = _admin("unblock", "telegram:42")

    assert default.stdout == (
        "The default budget is now 20,000 tokens per month, up to 600 per question. It applies "
        "to every user without an own budget.\n"
    )
    # telegram:42 has no own period, so the new default period (month) applies to it.
    assert reset.stdout == (
        "telegram:42 used no tokens this month; nothing to reset. 1,000 of 1,000 tokens are left.\n"
    )
    assert blocked.stdout.startswith("Blocked telegram:42 (spam).")
    assert shown.stdout.rstrip().endswith("Blocked: spam.")
    assert unblocked.stdout == "Unblocked telegram:42.\n"


def test_usage_empty_json(ponder_env: dict[str, str]) -> None:
    payload = _json(_admin("usage", "--top", "3", "--period", "week", "--json"))

    assert payload["period"] == "week"
    assert payload["users"] == []


def test_why_unknown_question(ponder_env: dict[str, str]) -> None:
    result = _admin("why", "404")

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "No question 404 exists."


def test_admin_actions_audited(ponder_env: dict[str, str]) -> None:
    _admin("budget", "set", "telegram:42", "1000")
    _admin("block", "telegram:7")

    with session_scope(get_runtime().engine) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()

    assert [row.actor for row in rows] == [f"cli:{getpass.getuser()}"] * 2
    assert [row.action for row in rows] == ["budget_set", "block"]
    assert [row.target for row in rows] == ["telegram:42", "telegram:7"]
    assert [row.details["ok"] for row in rows] == [True, False]


@pytest.mark.model
def test_ask_json_reports_budget(ponder_env: dict[str, str]) -> None:
    _admin("budget", "set", "cli:alice", "3000", "--question-cap", "200")

    asked = CliRunner().invoke(app, ["ask", "--json", "--user", "cli:alice", "What is 2 + 3?"])
    shown = _json(_admin("budget", "show", "cli:alice", "--json"))
    why = _json(_admin("why", "1", "--json"))

    payload = _json(asked)
    spent = int(str(payload["prompt_tokens"])) + int(str(payload["completion_tokens"]))
    assert payload["effort"] == "auto"
    assert 0 < spent <= 200
    assert payload["budget_remaining"] == 3_000 - spent
    assert shown["remaining_tokens"] == 3_000 - spent
    assert shown["used_tokens"] == spent
    assert why["status"] == "answered"
    assert why["user"] == "cli:alice"
    assert why["tokens"] == spent
    assert spent <= int(str(why["reserved_tokens"])) <= 200


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("bob", "error: invalid user 'bob'; write it as platform:id"),
        ("CLI:bob", "error: invalid platform 'CLI': use one of cli, discord, telegram"),
        ("telegram:0042", "error: invalid telegram user id '0042'"),
    ],
)
def test_budget_set_rejects_invalid_user(
    ponder_env: dict[str, str], user: str, message: str
) -> None:
    result = _admin("budget", "set", user, "5000")

    assert result.exit_code == 1
    assert result.stderr.startswith(message)
