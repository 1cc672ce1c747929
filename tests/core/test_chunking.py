"""Tests for splitting answers into chat messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.chunking import split_message, utf16_length


def _fences_balanced(part: str) -> bool:
    """Tell whether every fence opened in `part` is closed, reading fences as CommonMark does."""
    is_open = False
    for line in part.split("\n"):
        stripped = line.strip()
        if not is_open and stripped.startswith("```"):
            is_open = True
        elif is_open and stripped == "```":
            is_open = False
    return not is_open


def _words(text: str) -> list[str]:
    return [word for word in text.split() if not word.startswith("```")]


def test_short_text_is_one_part() -> None:
    assert split_message("Hello.", max_length=100) == ["Hello."]


def test_footnote_on_last_part_only() -> None:
    text = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(6))

    parts = split_message(text, max_length=400, footnote="— direct · 1 call")

    assert len(parts) > 1
    assert parts[-1].endswith("— direct · 1 call")
    assert all("— direct" not in part for part in parts[:-1])
    assert all(len(part) <= 400 for part in parts)


def test_breaks_at_paragraph_boundary() -> None:
    first = "a " * 40
    second = "b " * 40

    parts = split_message(f"{first.strip()}\n\n{second.strip()}", max_length=100)

    assert parts == [first.strip(), second.strip()]


def test_long_fence_closed_and_reopened() -> None:
    code = "\n".join(f"print({i})" for i in range(100))
    text = f"Here is code:\n\n```python\n{code}\n```\n\nDone."

    parts = split_message(text, max_length=200)

    assert len(parts) > 3
    assert all(len(part) <= 200 for part in parts)
    assert all(_fences_balanced(part) for part in parts)
    assert all(part.startswith("```python") for part in parts[2:-1])
    assert _words("\n".join(parts)) == _words(text)


def test_long_line_split_at_spaces() -> None:
    text = " ".join(f"word{i}" for i in range(200))

    parts = split_message(text, max_length=100)

    assert all(len(part) <= 100 for part in parts)
    assert " ".join(parts).split() == text.split()


def test_utf16_length_counts_surrogates() -> None:
    assert utf16_length("a😀") == 3
    assert utf16_length("日本") == 2


def test_utf16_parts_fit_telegram_limit() -> None:
    text = "😀 日本語 " * 2000

    parts = split_message(text, max_length=4096, length=utf16_length, footnote="— footnote")

    assert all(utf16_length(part) <= 4096 for part in parts)
    assert parts[-1].endswith("— footnote")
    assert "".join(parts).count("😀") == 2000


def test_oversized_footnote_own_part() -> None:
    text = "x " * 49

    parts = split_message(text.strip(), max_length=100, footnote="f" * 60)

    assert parts == [text.strip(), "f" * 60]


def test_rejects_tiny_max_length() -> None:
    with pytest.raises(ValueError, match="max_length must be at least 64, got 10"):
        split_message("hi", max_length=10)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=300),
            st.just("```"),
            st.just("```js"),
            st.just(""),
        ),
        max_size=60,
    ),
    st.integers(min_value=64, max_value=500),
)
def test_split_properties(lines: list[str], max_length: int) -> None:
    text = "\n".join(lines)

    parts = split_message(text, max_length=max_length)

    assert all(len(part) <= max_length for part in parts)
    assert all(_fences_balanced(part) for part in parts)
    assert _words("\n".join(parts)) == _words(text)
