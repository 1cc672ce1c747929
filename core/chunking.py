"""Split a long answer into chat messages without breaking code fences.

Chat platforms cap message length (Discord at 2,000 characters, Telegram at 4,096 UTF-16 code
units). Parts break at paragraph boundaries where possible, then at line ends, then at spaces.
A part that ends inside a fenced code block closes the fence, and the next part reopens it with
the same opening line (language tag included), so every part renders on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FENCE_MARKERS = ("```", "~~~")
FOOTNOTE_SEPARATOR = "\n\n"
MIN_MAX_LENGTH = 64

LengthFunction = Callable[[str], int]


def utf16_length(text: str) -> int:
    """Return the length in UTF-16 code units, the unit Telegram counts."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    # The opening line of the code fence that is open after this line, or None outside fences.
    fence_after: str | None


def _scan_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    opener: str | None = None
    for raw in text.split("\n"):
        stripped = raw.strip()
        marker = next((m for m in FENCE_MARKERS if stripped.startswith(m)), None)
        if marker is not None:
            if opener is None:
                opener = stripped
            elif opener.startswith(marker) and stripped == marker:
                opener = None
        lines.append(_Line(raw, opener))
    return lines


def _closing(opener: str | None) -> str:
    return opener[:3] if opener else ""


@dataclass
class _Packer:
    max_length: int
    length: LengthFunction
    parts: list[str] = field(default_factory=list)
    current: list[_Line] = field(default_factory=list)
    used: int = 0

    def _fits(self, line: _Line) -> bool:
        separator = 1 if self.current else 0
        closing = _closing(line.fence_after)
        closing_cost = self.length("\n" + closing) if closing else 0
        return self.used + separator + self.length(line.text) + closing_cost <= self.max_length

    def _append(self, line: _Line) -> None:
        self.used += (1 if self.current else 0) + self.length(line.text)
        self.current.append(line)

    def _reset(self, lines: list[_Line]) -> None:
        self.current = []
        self.used = 0
        for line in lines:
            self._append(line)

    def _is_reopened_fence_only(self) -> bool:
        return len(self.current) == 1 and self.current[0].text == self.current[0].fence_after

    def add(self, line: _Line) -> None:
        while self.current and not self._fits(line) and not self._is_reopened_fence_only():
            self._break_part()
        if self._fits(line):
            self._append(line)
        else:
            self._add_long_line(line)

    def _paragraph_break(self) -> int | None:
        """Index of the last blank line outside a fence that leaves text on both sides."""
        for index in range(len(self.current) - 2, 0, -1):
            line = self.current[index]
            if not line.text.strip() and line.fence_after is None:
                return index
        return None

    def _break_part(self) -> None:
        cut = self._paragraph_break()
        if cut is not None:
            carried = self.current[cut + 1 :]
            self._flush(self.current[:cut])
            self._reset(carried)
            return
        opener = self.current[-1].fence_after
        self._flush(self.current)
        self._reset([_Line(opener, opener)] if opener else [])

    def _flush(self, lines: list[_Line]) -> None:
        if not lines:
            return
        text = "\n".join(line.text for line in lines)
        closing = _closing(lines[-1].fence_after)
        if closing:
            text += "\n" + closing
        if text.strip():
            self.parts.append(text.strip("\n"))

    def _add_long_line(self, line: _Line) -> None:
        """Split one line longer than the room left, preferring spaces as break points."""
        rest = line.text
        while rest:
            separator = 1 if self.current else 0
            closing = _closing(line.fence_after)
            room = (
                self.max_length
                - self.used
                - separator
                - (self.length("\n" + closing) if closing else 0)
            )
            piece = _prefix_that_fits(rest, room, self.length)
            if not piece:
                self._break_part()
                continue
            self._append(_Line(piece, line.fence_after))
            rest = rest[len(piece) :].lstrip(" ")
            if rest:
                self._break_part()

    def finish(self) -> list[str]:
        self._flush(self.current)
        self._reset([])
        return self.parts


def _prefix_that_fits(text: str, room: int, length: LengthFunction) -> str:
    """Return the longest prefix of `text` within `room` units, cut at a space when one is near."""
    if room <= 0:
        return ""
    used = 0
    end = 0
    for index, char in enumerate(text):
        used += length(char)
        if used > room:
            break
        end = index + 1
    if end == len(text):
        return text
    space = text.rfind(" ", 0, end)
    return text[:space] if space > end // 2 else text[:end]


def split_message(
    text: str, *, max_length: int, footnote: str = "", length: LengthFunction = len
) -> list[str]:
    """Split `text` into parts of at most `max_length` units; the footnote ends the last part.

    `length` measures a string in the platform's unit, for example `utf16_length` for Telegram.
    When the footnote does not fit beside the last part, it becomes a part of its own.
    """
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be at least {MIN_MAX_LENGTH}, got {max_length!r}")
    packer = _Packer(max_length=max_length, length=length)
    for line in _scan_lines(text.strip("\n")):
        packer.add(line)
    parts = packer.finish()
    if not footnote:
        return parts
    if parts and length(parts[-1] + FOOTNOTE_SEPARATOR + footnote) <= max_length:
        parts[-1] += FOOTNOTE_SEPARATOR + footnote
        return parts
    return parts + split_message(footnote, max_length=max_length, length=length)
