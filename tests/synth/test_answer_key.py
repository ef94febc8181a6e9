"""Comparing findings with an answer key: misses and unexpected errors are both reported."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartreg.errors import InputError
from cartreg.synth.answer_key import compare_with_answer_key


def _findings(rows: list[tuple[str, str, int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema=["site_id", "source_file", "source_row", "rule_id", "severity"],
        orient="row",
    )


def test_missed_defects_and_unexpected_errors(tmp_path: Path) -> None:
    key = tmp_path / "defects.csv"
    key.write_text(
        "site_id,source_file,source_row,defect,rule_id\n"
        "A,p.csv,2,event after death,PT-003\n"
        "A,p.csv,5,child,PA-001\n",
        encoding="utf-8",
    )
    found = _findings(
        [
            ("A", "p.csv", 2, "PT-003", "error"),
            ("A", "p.csv", 9, "PT-002", "error"),  # not in the key
            ("A", "p.csv", 7, "CP-006", "warning"),  # warnings outside the key are fine
        ]
    )
    comparison = compare_with_answer_key(found, key)
    assert comparison.missed == (("A", "p.csv", 5, "PA-001"),)
    assert comparison.unexpected_errors == (("A", "p.csv", 9, "PT-002"),)
    assert not comparison.passed
    good = _findings([("A", "p.csv", 2, "PT-003", "error"), ("A", "p.csv", 5, "PA-001", "error")])
    assert compare_with_answer_key(good, key).passed


def test_bad_answer_key_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "defects.csv"
    bad.write_text("site,row\n", encoding="utf-8")
    with pytest.raises(InputError, match="answer key must have the columns"):
        compare_with_answer_key(_findings([]), bad)
    with pytest.raises(InputError, match="answer key not found"):
        compare_with_answer_key(_findings([]), tmp_path / "none.csv")
