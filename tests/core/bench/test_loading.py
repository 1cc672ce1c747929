"""Tests for loading benchmark question files: both answer formats and bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.bench.loading import BenchmarkError, BenchQuestion, gold_from_answer, load_questions


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_plain_answers(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl",
        [
            json.dumps({"question": "What is 2 + 3?", "answer": "5"}),
            json.dumps({"question": " Capital of France? ", "answer": "Paris "}),
        ],
    )

    questions = load_questions(path)

    assert questions == [
        BenchQuestion(line=1, question="What is 2 + 3?", gold="5"),
        BenchQuestion(line=2, question="Capital of France?", gold="Paris"),
    ]


def test_load_gsm8k_answers(tmp_path: Path) -> None:
    solution = (
        "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    )
    path = _write(
        tmp_path / "gsm8k.jsonl",
        [
            json.dumps({"question": "How much does she make?", "answer": solution}),
            json.dumps({"question": "How much profit?", "answer": "Profit is big.\n#### 70,000"}),
        ],
    )

    questions = load_questions(path)

    assert questions[0].gold == "18"
    assert questions[1].gold == "70000"


def test_gold_uses_last_marker() -> None:
    assert gold_from_answer("a #### b\n#### 1,234,567") == "1234567"


def test_numeric_answer_becomes_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", ['{"question": "2 + 2?", "answer": 4}'])

    assert load_questions(path)[0].gold == "4"


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl",
        ['{"question": "a?", "answer": "1"}', "", "   ", '{"question": "b?", "answer": "2"}'],
    )

    questions = load_questions(path)

    assert [question.line for question in questions] == [1, 4]


def test_limit_keeps_first_questions(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl",
        [json.dumps({"question": f"{n} + 1?", "answer": str(n + 1)}) for n in range(5)],
    )

    questions = load_questions(path, limit=2)

    assert [question.gold for question in questions] == ["1", "2"]


def test_limit_still_checks_every_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", ['{"question": "a?", "answer": "1"}', "{not json"])

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path, limit=1)

    assert f"{path}, line 2: invalid JSON" in str(raised.value)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "q.jsonl",
        ['{"question": "a?", "answer": "1"}', "", '{"question": "b?", "answer": '],
    )

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value) == (
        f"{path}, line 3: invalid JSON (Expecting value at column 30); "
        'write one object per line, for example {"question": "2 + 3?", "answer": "5"}'
    )


def test_missing_answer_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", ['{"question": "a?", "answer": "1"}', '{"question": "b?"}'])

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value) == (
        f"{path}, line 2: missing or empty 'answer'; each line needs non-empty question and "
        "answer strings"
    )


def test_empty_question_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", ['{"question": "  ", "answer": "1"}'])

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value).startswith(f"{path}, line 1: missing or empty 'question'")


def test_non_object_line_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", ['["a?", "1"]'])

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value) == (
        f"{path}, line 1: expected a JSON object with question and answer, got ['a?', '1']"
    )


def test_gsm8k_marker_without_value(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", [json.dumps({"question": "a?", "answer": "work\n####"})])

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value) == (
        f"{path}, line 1: the answer 'work\\n####' has nothing after '####'; "
        "put the final answer after the marker"
    )


def test_missing_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value) == (
        f"question file {str(path)!r} does not exist; pass a JSONL file to --questions"
    )


def test_empty_file_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", [""])

    with pytest.raises(BenchmarkError) as raised:
        load_questions(path)

    assert str(raised.value) == f"question file {str(path)!r} contains no questions"


def test_easy_set_loads() -> None:
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "easy.jsonl"

    questions = load_questions(path)

    assert len(questions) == 52
    assert questions[0] == BenchQuestion(line=1, question="What is 2 + 3?", gold="5")
