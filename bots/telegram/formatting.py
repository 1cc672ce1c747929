"""Telegram message formatting: unchanged text plus message entities with UTF-16 offsets.

Ponder never sends parse_mode Markdown or HTML, because model output is full of characters that
those modes treat as markup (`_ * [ ] ( ) ~ > # + - = | { } . !` and backticks), and one
unbalanced character makes the Bot API reject the whole message. The text goes out exactly as
the model wrote it, and the formatting travels beside it as entities: `pre` for fenced code
blocks, `code` for inline code spans and `italic` for the footnote.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from telegram import MessageEntity

from core.chunking import utf16_length

logger = logging.getLogger(__name__)

MAX_MESSAGE_UTF16_UNITS = 4_096
# NOTE: the Bot API does not document a per-message entity limit; 100 is a conservative cap,
# and a rejected message is sent again without entities anyway.
MAX_ENTITIES_PER_MESSAGE = 100
# The same fence rule as core.chunking: a line that starts with a marker opens a block, and a
# line that is exactly the opening marker closes it.
FENCE_MARKERS = ("```", "~~~")
INLINE_CODE_PATTERN = re.compile(r"(?<!`)(`+)(?!`)([^\n`][^\n]*?)(?<!`)\1(?!`)")

SpanKind = Literal["pre", "code", "italic"]


@dataclass(frozen=True, slots=True)
class Span:
    """A formatted stretch of text, as Python string indexes [start, end)."""

    start: int
    end: int
    kind: SpanKind
    language: str | None = None

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class FormattedText:
    """A message ready for sendMessage: the text and the entities that format it."""

    text: str
    entities: tuple[MessageEntity, ...]


def _fence_language(opening_line: str, marker: str) -> str | None:
    info = opening_line.strip()[len(marker) :].strip(marker[0] + " ")
    return info.split()[0] if info else None


def find_fenced_blocks(text: str) -> list[Span]:
    """Return the contents of fenced code blocks; an unclosed block runs to the end of text."""
    spans: list[Span] = []
    opener: tuple[str, int, str | None] | None = None
    position = 0
    for line in text.split("\n"):
        line_end = position + len(line)
        stripped = line.strip()
        if opener is None:
            marker = next((m for m in FENCE_MARKERS if stripped.startswith(m)), None)
            if marker is not None:
                opener = (marker, line_end + 1, _fence_language(line, marker))
        elif stripped == opener[0]:
            marker, content_start, language = opener
            spans.append(Span(content_start, max(content_start, position - 1), "pre", language))
            opener = None
        position = line_end + 1
    if opener is not None:
        spans.append(Span(opener[1], len(text.rstrip()), "pre", opener[2]))
    return [span for span in spans if text[span.start : span.end].strip()]


def find_inline_code(text: str, *, outside: list[Span]) -> list[Span]:
    """Return the contents of `code` spans on one line that do not overlap `outside`."""
    spans: list[Span] = []
    for match in INLINE_CODE_PATTERN.finditer(text):
        span = Span(match.start(2), match.end(2), "code")
        if text[span.start : span.end].strip() and not any(span.overlaps(o) for o in outside):
            spans.append(span)
    return spans


def _to_entity(text: str, span: Span) -> MessageEntity:
    offset = utf16_length(text[: span.start])
    length = utf16_length(text[span.start : span.end])
    if span.kind == "pre":
        return MessageEntity(MessageEntity.PRE, offset, length, language=span.language)
    kind = MessageEntity.CODE if span.kind == "code" else MessageEntity.ITALIC
    return MessageEntity(kind, offset, length)


def format_part(text: str, *, footnote: str = "") -> FormattedText:
    """Compute the entities of one message part; a trailing `footnote` becomes italic."""
    body_end = len(text)
    spans: list[Span] = []
    if footnote and text.endswith(footnote):
        body_end = len(text) - len(footnote)
        spans.append(Span(body_end, len(text), "italic"))
    body = text[:body_end]
    blocks = find_fenced_blocks(body)
    spans.extend(blocks)
    spans.extend(find_inline_code(body, outside=blocks))
    spans.sort(key=lambda span: span.start)
    if len(spans) > MAX_ENTITIES_PER_MESSAGE:
        logger.debug("dropping %d entities past the cap", len(spans) - MAX_ENTITIES_PER_MESSAGE)
        spans = spans[:MAX_ENTITIES_PER_MESSAGE]
    return FormattedText(text, tuple(_to_entity(text, span) for span in spans))
