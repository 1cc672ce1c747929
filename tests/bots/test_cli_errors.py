"""Tests that `ponder` reports broken set-ups and bad input in one line, not a traceback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bots.cli.common import redact_url, reported_errors
from bots.cli.main import app, main
from core.config import get_settings
from tests.conftest import use_fresh_settings

SECRET = "s3cret-pw"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def use_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    use_fresh_settings()


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """Run the `ponder` entry point with `args`; return the exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["ponder", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_broker_down_names_stored_question(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    # A short answer wait keeps a regression, where the task goes to some other broker, from
    # hanging the suite for the default 900 s.
    use_env(
        monkeypatch,
        PONDER_BROKER_URL=f"redis://:{SECRET}@127.0.0.1:{port}/7",
        PONDER_ANSWER_WAIT_SECONDS="30",
    )

    result = CliRunner().invoke(app, ["ask", "Is ice cold?"])

    assert result.exit_code == 1
    assert last_line(result.stderr).startswith(
        f"error: cannot reach the broker at redis://:***@127.0.0.1:{port}/7 ("
    )
    assert last_line(result.stderr).endswith(
        "); question 1 is stored and will be answered when a worker and the broker are running"
    )
    assert SECRET not in result.output


@pytest.mark.parametrize("args", [["ask", "Is ice cold?"], ["db", "upgrade"]])
def test_database_down_one_line(
    ponder_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    port = closed_port()
    url = f"postgresql+psycopg://ponder:{SECRET}@127.0.0.1:{port}/ponder?password={SECRET}"
    use_env(monkeypatch, PONDER_DATABASE_URL=url)

    code, stderr = run_main(args, monkeypatch, capsys)

    assert code == 1
    assert last_line(stderr).startswith(
        f"error: cannot reach the database at postgresql+psycopg://ponder:***@127.0.0.1:{port}"
        "/ponder?password=***: connection failed"
    )
    assert last_line(stderr).endswith("; check PONDER_DATABASE_URL")
    assert SECRET not in stderr
    assert "Traceback" not in stderr


def test_unmigrated_database_one_line(
    ponder_env: dict[str, str],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(monkeypatch, PONDER_DATABASE_URL=postgres_url)

    code, stderr = run_main(["ask", "Is ice cold?"], monkeypatch, capsys)

    assert code == 1
    assert last_line(stderr) == "error: the database is not migrated; run `ponder db upgrade`"


@pytest.mark.parametrize("command", ["upgrade", "downgrade"])
def test_unknown_revision_one_line(ponder_env: dict[str, str], command: str) -> None:
    result = CliRunner().invoke(app, ["db", command, "nosuchrev"])

    assert result.exit_code == 1
    assert result.stderr == (
        "error: migration failed: Can't locate revision identified by 'nosuchrev'; "
        "`ponder db current` shows the revisions\n"
    )


def test_downgrade_help_warns_base_drops_data() -> None:
    result = CliRunner().invoke(app, ["db", "downgrade", "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "Reverting to base drops every table and its data." in result.stdout
    assert "Warning: base drops every table and the data in it." in result.stdout


def test_surrogate_question_one_line(
    ponder_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, stderr = run_main(["ask", "\udcff\udcfe"], monkeypatch, capsys)

    assert code == 1
    assert last_line(stderr).startswith("error: ")
    assert "Traceback" not in stderr


def test_reported_errors_unicode_encode_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited, reported_errors():
        "\udcff".encode()

    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == "error: the text is not valid UTF-8\n"


def test_reported_errors_overflow_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited, reported_errors():
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == (
        "error: invalid number: Python int too large to convert to SQLite INTEGER\n"
    )


def test_huge_question_id_one_line(
    ponder_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, stderr = run_main(["admin", "why", "99999999999999999999999"], monkeypatch, capsys)

    assert code != 0
    assert last_line(stderr).startswith("error: ")
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--log-level", "LOUD", "strategies"], {}),
        (["strategies"], {"PONDER_LOG_LEVEL": "LOUD"}),
    ],
)
def test_invalid_log_level_lists_levels(
    ponder_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
) -> None:
    use_env(monkeypatch, **env)

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2
    assert result.stderr == (
        "error: invalid log level 'LOUD'; valid levels: DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
    )


def test_unusable_data_dir_one_line(
    ponder_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.delenv("PONDER_DATABASE_URL")
    use_env(monkeypatch, PONDER_DATA_DIR=str(blocker / "data"))

    code, stderr = run_main(["ask", "Is ice cold?"], monkeypatch, capsys)

    assert code == 1
    assert last_line(stderr) == (
        f"error: cannot access {str(blocker / 'data')!r}: Not a directory; check "
        "PONDER_DATA_DIR, PONDER_DATABASE_URL and the folder's permissions"
    )


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://bob:pw@127.0.0.1/db", "postgresql://bob:***@127.0.0.1/db"),
        (
            "postgresql://bob@127.0.0.1/db?sslmode=off&password=pw",
            "postgresql://bob@127.0.0.1/db?password=***&sslmode=off",
        ),
        ("sqlite:////tmp/ponder.sqlite3", "sqlite:////tmp/ponder.sqlite3"),
    ],
)
def test_redact_url_hides_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_policy_not_json_one_line(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_POLICY", "not json")
    get_settings.cache_clear()

    result = CliRunner().invoke(app, ["strategies"])

    assert result.exit_code == 2
    assert result.stderr.startswith(
        'error: invalid settings: error parsing value for field "policy"'
    )
    assert "Traceback" not in result.output
