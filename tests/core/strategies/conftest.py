"""Fixtures for the strategy tests: one embedded llama.cpp client per test module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.llm.embedded import EmbeddedClient


@pytest.fixture(scope="module")
def embedded_client() -> Iterator[EmbeddedClient]:
    client = EmbeddedClient(context_tokens=2048)
    yield client
    asyncio.run(client.close())
