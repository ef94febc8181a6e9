"""Compare reported findings with the answer key of planted defects (``defects.csv``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartreg.errors import InputError

Location = tuple[str, str, int, str]  # site_id, source_file, source_row, rule_id
KEY_COLUMNS = ("site_id", "source_file", "source_row", "defect", "rule_id")


@dataclass(frozen=True)
class AnswerKeyComparison:
    """Which planted defects were missed, and which errors fall outside the key."""

    expected: frozenset[Location]
    missed: tuple[Location, ...]
    unexpected_errors: tuple[Location, ...]

    @property
    def passed(self) -> bool:
        return not self.missed and not self.unexpected_errors


def read_answer_key(path: Path) -> frozenset[Location]:
    """The (site, file, row, rule) of every planted defect."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != KEY_COLUMNS:
                raise InputError(
                    f"answer key must have the columns {','.join(KEY_COLUMNS)}", where=str(path)
                )
            return frozenset(
                (r["site_id"], r["source_file"], int(r["source_row"]), r["rule_id"]) for r in reader
            )
    except FileNotFoundError:
        raise InputError("answer key not found", where=str(path)) from None


def compare_with_answer_key(findings: pl.DataFrame, key_path: Path) -> AnswerKeyComparison:
    """A defect counts as reported when a finding has its site, file, row and rule; an error
    is unexpected when its (site, file, row, rule) is not in the key."""
    expected = read_answer_key(key_path)
    located = findings.select("site_id", "source_file", "source_row", "rule_id", "severity")
    reported = {row[:4] for row in located.rows()}
    errors = {row[:4] for row in located.filter(pl.col("severity") == "error").rows()}
    return AnswerKeyComparison(
        expected=expected,
        missed=tuple(sorted(expected - reported)),
        unexpected_errors=tuple(sorted(errors - expected, key=str)),
    )
