"""Load benchmark questions from JSONL: `question` and `answer` per line, GSM8K's form too."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from core.errors import PonderError

logger = logging.getLogger(__name__)

# GSM8K's answers are a worked solution whose last line is "#### <final answer>".
GSM8K_ANSWER_MARKER = "####"


class BenchmarkError(PonderError):
    """A benchmark input file or output folder is missing, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class BenchQuestion:
    """One benchmark question with its gold answer; `line` is its 1-based line in the file."""

    line: int
    question: str
    gold: str


def gold_from_answer(answer: str) -> str:
    """Return the gold answer: the text after GSM8K's `####` without commas, else the answer.

    >>> gold_from_answer("She makes 9 * 2 = 18 dollars.\\n#### 1,018")
    '1018'
    >>> gold_from_answer("Paris")
    'Paris'
    """
    if GSM8K_ANSWER_MARKER in answer:
        return answer.rsplit(GSM8K_ANSWER_MARKER, 1)[1].strip().replace(",", "")
    return answer.strip()


def parse_question_line(text: str, *, line: int, source: str) -> BenchQuestion:
    """Parse one JSONL line into a question, raising BenchmarkError that names the line."""
    where = f"{source}, line {line}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); "
            'write one object per line, for example {"question": "2 + 3?", "answer": "5"}'
        ) from exc
    if not isinstance(record, dict):
        raise BenchmarkError(
            f"{where}: expected a JSON object with question and answer, got {record!r}"
        )
    fields: dict[str, str] = {}
    for name in ("question", "answer"):
        value = record.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise BenchmarkError(
                f"{where}: missing or empty {name!r}; each line needs non-empty question and "
                "answer strings"
            )
        fields[name] = value
    gold = gold_from_answer(fields["answer"])
    if not gold:
        raise BenchmarkError(
            f"{where}: the answer {fields['answer'][-40:]!r} has nothing after "
            f"{GSM8K_ANSWER_MARKER!r}; put the final answer after the marker"
        )
    return BenchQuestion(line=line, question=fields["question"].strip(), gold=gold)


def load_questions(path: Path, *, limit: int | None = None) -> list[BenchQuestion]:
    """Read and check every line of a JSONL file, skipping blank lines; `limit` keeps the first K.

    The whole file is checked even with a limit, so that a bad line is found before a long run.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BenchmarkError(
            f"question file {str(path)!r} does not exist; pass a JSONL file to --questions"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"could not read question file {str(path)!r}: {exc}") from exc

    questions: list[BenchQuestion] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        questions.append(parse_question_line(raw, line=number, source=str(path)))
    if not questions:
        raise BenchmarkError(f"question file {str(path)!r} contains no questions")
    if limit is not None:
        questions = questions[:limit]
    logger.info("loaded %d questions from %s", len(questions), path)
    return questions
