"""Loading rule files: every problem is a one-line ConfigError naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartreg.cdm import CDM
from cartreg.errors import ConfigError
from cartreg.rules import load_rule, load_rules
from cartreg.rules.checks.sql import check_select

GOOD = """\
id: PT-900
name: temporal.test
category: plausibility
subcategory: temporal
severity: error
requires: {patients: [diagnosis_day]}
check: {type: range, table: patients, column: diagnosis_day, max: 0}
threshold_pct: 0
description: Diagnosis is on or before day 0 of the index infusion.
guidance: Check the diagnosis date.
examples:
  pass: [{tables: {patients: [{patient_key: S-1, diagnosis_day: -3}]}, violated: 0}]
  fail: [{tables: {patients: [{patient_key: S-1, diagnosis_day: 3}]}, violated: 1}]
"""


def _write(tmp_path: Path, text: str, name: str = "PT-900_test.yaml") -> Path:
    path = tmp_path / "plausibility" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rule_loads(tmp_path: Path, cdm: CDM) -> None:
    rule = load_rule(_write(tmp_path, GOOD), cdm)
    assert rule.id == "PT-900"
    assert rule.params == {"table": "patients", "column": "diagnosis_day", "max": 0}
    assert load_rules(tmp_path, cdm=cdm) == (rule,)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("category: plausibility", "category: plausability", "did you mean 'plausibility'"),
        ("subcategory: temporal", "subcategory: value", "subcategory 'value'"),
        ("severity: error", "severity: fatal", "unknown severity"),
        ("type: range", "type: rnage", "unknown check type 'rnage'"),
        ("max: 0}", "maxi: 0}", "unknown parameter 'maxi'"),
        ("[diagnosis_day]}", "[diagnosis_dya]}", "unknown column 'diagnosis_dya'"),
        ("violated: 1}]", "violated: 0}]", "a fail example must flag"),
        ("guidance: Check the diagnosis date.", "guidance: ''", "'guidance' must be"),
        ("threshold_pct: 0", "threshold_pct: 150", "threshold_pct"),
    ],
)
def test_bad_rule_is_one_line_config_error(
    tmp_path: Path, cdm: CDM, old: str, new: str, fragment: str
) -> None:
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_rule(path, cdm)
    message = err.value.one_line()
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message


def test_file_name_must_match_id(tmp_path: Path, cdm: CDM) -> None:
    with pytest.raises(ConfigError, match="must start with 'PT-900_'"):
        load_rule(_write(tmp_path, GOOD, name="PT-901_other.yaml"), cdm)


def test_duplicate_ids_rejected(tmp_path: Path, cdm: CDM) -> None:
    _write(tmp_path, GOOD)
    _write(tmp_path, GOOD, name="PT-900_again.yaml")
    with pytest.raises(ConfigError, match="also used by"):
        load_rules(tmp_path, cdm=cdm)


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM patients",
        "SELECT 1; DROP TABLE patients",
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY patients TO 'x.csv'",
        "ATTACH 'x.db'",
        "WITH x AS (SELECT 1) INSERT INTO patients SELECT * FROM x",
    ],
)
def test_sql_check_accepts_only_read_only_select(query: str) -> None:
    with pytest.raises(ConfigError):
        check_select(query, "rule.yaml")


def test_sql_check_allows_keywords_inside_strings() -> None:
    check_select("SELECT site_id, 'drop; delete' AS detail FROM patients -- set\n", "rule.yaml")
