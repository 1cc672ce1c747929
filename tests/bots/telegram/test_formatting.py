"""Entities computed for Telegram messages: code blocks, inline code and the footnote."""

from __future__ import annotations

from telegram import MessageEntity

from bots.telegram.formatting import (
    MAX_ENTITIES_PER_MESSAGE,
    Span,
    find_fenced_blocks,
    find_inline_code,
    format_part,
)


def entity_texts(text: str, entities: tuple[MessageEntity, ...]) -> list[tuple[str, str]]:
    encoded = text.encode("utf-16-le")
    return [
        (
            entity.type,
            encoded[2 * entity.offset : 2 * (entity.offset + entity.length)].decode("utf-16-le"),
        )
        for entity in entities
    ]


def test_fenced_block_language_and_content() -> None:
    text = "Intro\n```python\nprint('hi')\nx = 1\n```\nOutro"

    (block,) = find_fenced_blocks(text)

    assert text[block.start : block.end] == "print('hi')\nx = 1"
    assert block.language == "python"


def test_tilde_fence_without_language() -> None:
    text = "~~~\nraw ``` inside\n~~~"

    (block,) = find_fenced_blocks(text)

    assert text[block.start : block.end] == "raw ``` inside"
    assert block.language is None


def test_unclosed_fence_runs_to_end() -> None:
    text = "Look:\n```js\nlet a = 1;\n\n"

    (block,) = find_fenced_blocks(text)

    assert text[block.start : block.end] == "let a = 1;"


def test_empty_fence_has_no_block() -> None:
    assert find_fenced_blocks("```\n```") == []


def test_inline_code_single_and_double_backticks() -> None:
    text = "Call `f(x)` or ``a ` b`` but not ` ` or `unclosed"

    spans = find_inline_code(text, outside=[])

    assert [text[span.start : span.end] for span in spans] == ["f(x)", "a ` b"]


def test_inline_code_inside_block_skipped() -> None:
    text = "```\n`x`\n```"
    blocks = find_fenced_blocks(text)

    assert find_inline_code(text, outside=blocks) == []


def test_offsets_count_utf16_units() -> None:
    text = "😀😀 `code` 漢字 end\n\n— footnote"

    formatted = format_part(text, footnote="— footnote")

    assert formatted.text == text
    assert [(entity.offset, entity.length) for entity in formatted.entities] == [(6, 4), (20, 10)]
    assert entity_texts(text, formatted.entities) == [
        ("code", "code"),
        ("italic", "— footnote"),
    ]


def test_footnote_only_when_text_ends_with_it() -> None:
    formatted = format_part("no footnote here", footnote="— footnote")

    assert formatted.entities == ()


def test_entities_capped() -> None:
    text = " ".join("`x`" for _ in range(MAX_ENTITIES_PER_MESSAGE + 20))

    formatted = format_part(text)

    assert len(formatted.entities) == MAX_ENTITIES_PER_MESSAGE


def test_span_overlap() -> None:
    assert Span(0, 5, "pre").overlaps(Span(4, 6, "code"))
    assert not Span(0, 5, "pre").overlaps(Span(5, 6, "code"))
