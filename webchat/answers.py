"""Optional answers, pooled into counts per day and never tied to a chat. Pure.

The page sends the survivor's answers to the optional questions (not the preferred language,
which goes with the chat) on their own, outside the chat's socket. Here they only ever become
counts: ``{"day", "submissions", "counts": {question: {answer: n}}}``. A day's counts leave the
gateway when at least ``minimum`` submissions are pooled, or once the day is over (then
whatever is pooled), so that no batch can be matched to one chat by its timing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from webchat.i18n import PREFER_NOT, Question

MAX_BODY_BYTES = 4096


class BadAnswers(ValueError):
    pass


@dataclass
class DayCounts:
    submissions: int = 0
    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, answers: dict[str, str]) -> None:
        self.submissions += 1
        for question, answer in answers.items():
            self.counts.setdefault(question, Counter())[answer] += 1

    def merge(self, other: DayCounts) -> None:
        self.submissions += other.submissions
        for question, answers in other.counts.items():
            self.counts.setdefault(question, Counter()).update(answers)


def batch_content(day: date, counts: DayCounts) -> dict[str, Any]:
    return {
        "day": day.isoformat(),
        "submissions": counts.submissions,
        "counts": {q: dict(sorted(a.items())) for q, a in sorted(counts.counts.items())},
    }


class AnswerPool:
    def __init__(self, questions: list[Question], minimum: int) -> None:
        # The language question is never pooled: its answer goes with the chat, to the advocate.
        self._allowed = {q.id: set(q.answers) | {PREFER_NOT} for q in questions if not q.language}
        self._minimum = minimum
        self._days: dict[date, DayCounts] = {}

    @property
    def pooled(self) -> int:
        return sum(d.submissions for d in self._days.values())

    def check(self, data: Any) -> dict[str, str]:
        """The answers of one submission, or BadAnswers saying what is wrong."""
        if not isinstance(data, dict) or set(data) != {"answers"} or not isinstance(data["answers"], dict):
            raise BadAnswers('expected {"answers": {question: answer}}')
        answers = data["answers"]
        if not answers:
            raise BadAnswers("no answers: a skipped question is left out, and all skipped means nothing to send")
        for question, answer in answers.items():
            if question not in self._allowed:
                raise BadAnswers(f"unknown question {question!r}"[:100])
            if not isinstance(answer, str) or answer not in self._allowed[question]:
                raise BadAnswers(f"not an answer of {question!r}")
        return dict(answers)

    def add(self, day: date, answers: dict[str, str]) -> None:
        self._days.setdefault(day, DayCounts()).add(answers)

    def take_due(self, today: date) -> list[tuple[date, DayCounts]]:
        """Batches ready to leave: every earlier day, and today once it has enough submissions."""
        due = []
        for day in sorted(self._days):
            counts = self._days[day]
            if day < today or counts.submissions >= self._minimum:
                due.append((day, self._days.pop(day)))
        return due

    def put_back(self, day: date, counts: DayCounts) -> None:
        """A batch that could not be sent waits for the next try."""
        self._days.setdefault(day, DayCounts()).merge(counts)
