"""The progress throttle: coalescing, spacing, failures and closing."""

from __future__ import annotations

import asyncio
import itertools
import math

from bots.discord.progress import ProgressThrottle
from core.errors import DeliveryError

INTERVAL_SECONDS = 0.1


class RecordingEditor:
    """An edit function that records each text with the loop time it started at."""

    def __init__(self, *, delay_seconds: float = 0.0, failures: int = 0) -> None:
        self.edits: list[tuple[float, str]] = []
        self.delay_seconds = delay_seconds
        self.failures = failures

    async def __call__(self, text: str) -> None:
        self.edits.append((asyncio.get_running_loop().time(), text))
        await asyncio.sleep(self.delay_seconds)
        if self.failures:
            self.failures -= 1
            raise DeliveryError("injected failure")

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.edits]


def throttle_for(editor: RecordingEditor) -> ProgressThrottle:
    return ProgressThrottle(editor, interval_seconds=INTERVAL_SECONDS, label="question 1")


async def test_first_text_sent_at_once() -> None:
    editor = RecordingEditor()
    throttle = throttle_for(editor)

    throttle.submit("step 1")
    await asyncio.sleep(0.01)

    assert editor.texts == ["step 1"]


async def test_burst_coalesced_to_newest_text() -> None:
    editor = RecordingEditor()
    throttle = throttle_for(editor)

    throttle.submit("step 1")
    await asyncio.sleep(0.01)
    for step in range(2, 21):
        throttle.submit(f"step {step}")
    await asyncio.sleep(INTERVAL_SECONDS * 2)

    assert editor.texts == ["step 1", "step 20"]


async def test_edits_spaced_by_interval() -> None:
    editor = RecordingEditor()
    throttle = throttle_for(editor)
    loop = asyncio.get_running_loop()
    started = loop.time()

    for step in range(60):
        throttle.submit(f"step {step}")
        await asyncio.sleep(0.01)
    await asyncio.sleep(INTERVAL_SECONDS * 1.5)
    elapsed = loop.time() - started

    assert len(editor.edits) <= math.ceil(elapsed / INTERVAL_SECONDS) + 1
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(editor.edits)]
    assert min(gaps) >= INTERVAL_SECONDS * 0.95
    assert editor.texts[-1] == "step 59"


async def test_repeated_text_not_resent() -> None:
    editor = RecordingEditor()
    throttle = throttle_for(editor)

    throttle.submit("step 1")
    await asyncio.sleep(INTERVAL_SECONDS * 1.5)
    throttle.submit("step 1")
    await asyncio.sleep(INTERVAL_SECONDS * 1.5)

    assert editor.texts == ["step 1"]


async def test_failed_edit_counted_and_next_sent() -> None:
    editor = RecordingEditor(failures=1)
    throttle = throttle_for(editor)

    throttle.submit("step 1")
    await asyncio.sleep(0.01)
    throttle.submit("step 2")
    await asyncio.sleep(INTERVAL_SECONDS * 1.5)

    assert editor.texts == ["step 1", "step 2"]
    assert throttle.edits_failed == 1
    assert throttle.edits_sent == 1


async def test_close_waits_for_edit_in_flight() -> None:
    editor = RecordingEditor(delay_seconds=0.2)
    throttle = throttle_for(editor)
    throttle.submit("step 1")
    await asyncio.sleep(0.01)

    await throttle.close(timeout_seconds=5)

    assert throttle.edits_sent == 1


async def test_close_drops_pending_text() -> None:
    editor = RecordingEditor()
    throttle = throttle_for(editor)
    throttle.submit("step 1")
    await asyncio.sleep(0.01)
    throttle.submit("step 2")

    await throttle.close(timeout_seconds=5)
    throttle.submit("step 3")
    await asyncio.sleep(INTERVAL_SECONDS * 1.5)

    assert editor.texts == ["step 1"]


async def test_close_cancels_edit_past_timeout() -> None:
    editor = RecordingEditor(delay_seconds=5)
    throttle = throttle_for(editor)
    throttle.submit("step 1")
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await throttle.close(timeout_seconds=0.1)

    assert loop.time() - started < 1
    assert throttle.edits_sent == 0
