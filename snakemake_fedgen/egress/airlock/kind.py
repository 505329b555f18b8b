"""What a file kind is (:class:`Kind`), and the line reader the text kinds share."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from snakemake_fedgen.egress.airlock.policy import AirlockPolicy
from snakemake_fedgen.egress.airlock.sniff import Sniff

__all__ = ["MAX_LINE", "Kind", "LineTooLong", "Violations", "text_lines"]


@dataclass(frozen=True)
class Kind:
    """A kind of file the airlock may publish.

    Attributes
    ----------
    name : str
        Kind name as recorded in decisions and audit logs.
    detect : callable
        ``detect(sniff) -> bool``: does this file claim to be of this kind (name and content)?
    validate : callable
        ``validate(stream, sniff, policy) -> (ok, reason)`` with ``stream`` the decompressed
        binary content positioned at its start. Must stream: never hold the whole file.
    """

    name: str
    detect: Callable[[Sniff], bool]
    validate: Callable[[BinaryIO, Sniff, AirlockPolicy], tuple[bool, str]]


#: Longest line a text kind may have; bounds memory whatever the file holds.
MAX_LINE = 64 * 1024


class LineTooLong(Exception):
    """A line longer than :data:`MAX_LINE` (the gate refuses the file, naming the line)."""

    def __init__(self, lineno: int) -> None:
        super().__init__(lineno)
        self.lineno = lineno


def text_lines(stream: BinaryIO) -> Iterator[str]:
    """Yield decoded lines without their newline.

    Raises UnicodeDecodeError on bytes that are not UTF-8 and LineTooLong past ``MAX_LINE``.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="\n")
    readline = text.readline
    lineno = 0
    while line := readline(MAX_LINE + 1):
        lineno += 1
        if line[-1] == "\n":
            yield line[:-1]
        elif len(line) > MAX_LINE:
            raise LineTooLong(lineno)
        else:
            yield line


class Violations:
    """Counts violating rows and remembers the first violation for the reason."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.rows = 0
        self.by_rule: dict[str, int] = {}

    def row(self, rule: str, message: str) -> None:
        self.rows += 1
        self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
        if self.first is None:
            self.first = message

    def summary(self, total: int) -> str:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_rule.items()))
        return f"{self.first}; {self.rows} of {total} data rows violate the policy ({parts})"
