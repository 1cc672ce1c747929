"""`ponder bot discord`: refusing bad tokens, and starting up against the fake REST server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.bots.discord.conftest import BOT_TOKEN
from tests.conftest import ponder_executable
from tests.fakes.discord_server import FakeDiscordServer

STARTUP_TIMEOUT_SECONDS = 60


def run_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ponder_executable(), "bot", "discord"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_token_refused(ponder_env: dict[str, str]) -> None:
    finished = run_cli({**os.environ})

    assert finished.returncode == 1
    assert finished.stderr.startswith("error: PONDER_DISCORD_TOKEN is not set;")
    assert "Traceback" not in finished.stderr


def test_malformed_token_refused_without_echo(ponder_env: dict[str, str]) -> None:
    secret = "not-a-token-but-a-secret-value"

    finished = run_cli({**os.environ, "PONDER_DISCORD_TOKEN": secret})

    assert finished.returncode == 1
    assert finished.stderr.startswith("error: PONDER_DISCORD_TOKEN is malformed")
    assert secret not in finished.stderr


@pytest.mark.slow
def test_bot_logs_in_and_syncs_commands(
    ponder_env: dict[str, str], discord_server: FakeDiscordServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PONDER_DISCORD_TOKEN": BOT_TOKEN,
        "PONDER_DISCORD_API_BASE_URL": discord_server.base_url,
        # The fake answers the websocket handshake with 404, so the bot keeps retrying.
        "PONDER_DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{discord_server.port}/gateway",
    }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [ponder_executable(), "bot", "discord"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not discord_server.commands and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.2)
        time.sleep(1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    log_text = log_path.read_text()

    assert sorted(command["name"] for command in discord_server.commands) == [
        "ask",
        "budget",
        "ponder",
    ]
    assert discord_server.requests_to("GET", "^/users/@me$")[0].authorization == f"Bot {BOT_TOKEN}"
    assert "synced 3 slash commands with Discord" in log_text
    assert discord_server.requests_to("GET", "^/gateway$") != []
    assert BOT_TOKEN not in log_text
    assert BOT_TOKEN.split(".")[-1] not in log_text
