"""Great Expectations and cartreg agree on the checks both can express."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.interop.gx import (
    NotExpressible,
    build_suites,
    row_condition,
    rule_expectation,
    write_suites,
)
from cartreg.rules import Rule, load_rules
from cartreg.rules.frames import example_tables
from cartreg.validation import build_report
from cartreg.yamlio import load_yaml

pytest.importorskip("great_expectations", reason="the gx extra is not installed")

COHORT = Path(__file__).resolve().parents[1] / "data" / "validation_cohort.yaml"
_CDM = load_cdm()
_RULES = load_rules(cdm=_CDM)


def _expressible(rules: tuple[Rule, ...]) -> set[str]:
    ids = {"CDM-REQUIRED", "CDM-VOCAB", "CDM-RANGE", "CDM-PATTERN", "CDM-UNIQUE"}
    for rule in rules:
        try:
            rule_expectation(rule)
            ids.add(rule.id)
        except NotExpressible:
            pass
    return ids


EXPRESSIBLE = _expressible(_RULES)


def _rows() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = load_yaml(COHORT)
    return data


def _gx_failures(table: str, frame: pl.DataFrame, cdm: CDM) -> set[str]:
    from cartreg.interop.gx import run_suites

    suites = build_suites(cdm, _RULES)
    results = run_suites({table: frame}, suites)
    assert results.height == len(suites[table]["expectations"])
    return set(results.filter(~pl.col("success"))["rule_id"].to_list())


def _cartreg_failures(tables: dict[str, pl.DataFrame], table: str, cdm: CDM) -> set[str]:
    report = build_report(tables, rules=_RULES, cdm=cdm)
    found = report.findings.filter(pl.col("table") == table)["rule_id"].to_list()
    return {r for r in found if r in EXPRESSIBLE}


def test_suites_cover_schema_and_rules(tmp_path: Path) -> None:
    suites = build_suites(_CDM, _RULES)
    assert set(suites) == set(_CDM.tables)
    paths = write_suites(suites, tmp_path)
    doc = json.loads(paths[0].read_text(encoding="utf-8"))
    assert doc["expectations"] and doc["meta"]["cartreg"]["cdm_version"] == _CDM.version
    rule_ids = {e["meta"]["rule_id"] for s in suites.values() for e in s["expectations"]}
    assert len(rule_ids & {r.id for r in _RULES}) >= 20
    skipped = {
        s["rule_id"] for suite in suites.values() for s in suite["meta"]["cartreg"]["skipped_rules"]
    }
    assert {"PT-003", "CR-001", "PU-001"} <= skipped


def test_row_condition_translation() -> None:
    cond = {
        "all": [
            {"column": "response", "in": ["CR", "CRi"]},
            {"column": "bm_blast_pct", "not_null": True},
        ]
    }
    assert row_condition(cond) == '(`response`.isin(["CR", "CRi"])) & (`bm_blast_pct`.notnull())'
    with pytest.raises(NotExpressible):
        row_condition({"not": {"column": "x", "equals": 1}})


def test_engines_agree_on_clean_data() -> None:
    tables = example_tables(_rows(), _CDM)
    for table, frame in tables.items():
        assert _gx_failures(table, frame, _CDM) == set(), table
        assert _cartreg_failures(tables, table, _CDM) == set(), table


def _set(
    rows: dict[str, list[dict[str, Any]]], table: str, key: str, key_value: str, **changes: Any
) -> None:
    for row in rows[table]:
        if row.get(key) == key_value:
            row.update(changes)


CASES = [
    (
        "disease_assessments",
        "assessment_id",
        "DEMO-A-A1",
        {"bm_blast_pct": 12.0},
        {"PA-004", "PA-005"},
    ),
    ("disease_assessments", "assessment_id", "DEMO-B-A1", {"bm_blast_pct": 150.0}, {"CDM-RANGE"}),
    # (PA-001 decides from an age interval in SQL since CDM 0.2.0: not a GX expectation)
    ("patients", "patient_key", "DEMO-B", {"diagnosis_day": 30}, {"PT-001"}),
    ("patients", "patient_key", "DEMO-C", {"sex": "X"}, {"CDM-VOCAB"}),
    ("car_t_infusions", "infusion_id", "DEMO-C-INF1", {"trial_id": "NCT123"}, {"CDM-PATTERN"}),
    ("car_t_infusions", "infusion_id", "DEMO-F-INF1", {"infusion_day": 14}, {"CC-010"}),
    ("follow_up", "patient_key", "DEMO-D", {"cause_of_death": None}, {"CP-010"}),
    (
        "progression_events",
        "progression_id",
        "DEMO-B-P1",
        {"event_type": "RELAPSE_AFTER_CR", "progression_day": 3, "remission_day": 1},
        {"PT-016"},
    ),
]


@pytest.mark.parametrize(
    ("table", "key", "key_value", "changes", "expected"),
    CASES,
    ids=[f"{c[0]}-{sorted(c[4])[0]}" for c in CASES],
)
def test_engines_agree_on_injected_defect(
    table: str, key: str, key_value: str, changes: dict[str, Any], expected: set[str]
) -> None:
    rows = _rows()
    _set(rows, table, key, key_value, **changes)
    tables = example_tables(rows, _CDM)
    gx_failed = _gx_failures(table, tables[table], _CDM)
    ours = _cartreg_failures(tables, table, _CDM)
    assert gx_failed == ours == expected


_SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
_SITES = ("redcap_a", "excel_b", "ehr_c", "deid_d")


@pytest.mark.skipif(
    not all((_SAMPLES / s / "mapping.yaml").is_file() for s in _SITES),
    reason="sample_data submissions not present",
)
def test_engines_agree_on_sample_outputs(tmp_path: Path) -> None:
    """On each harmonized sample submission, GX fails exactly the (table, check) pairs for
    which cartreg reports findings, among the checks both can express."""
    from cartreg.ingest import ingest_submission
    from cartreg.interop.gx import run_suites
    from cartreg.validation import load_output_tables, validate_output

    suites = build_suites(_CDM, _RULES)
    agreed: set[tuple[str, str]] = set()
    for site in _SITES:
        out = tmp_path / site
        ingest_submission(_SAMPLES / site, _SAMPLES / site / "mapping.yaml", out)
        report = validate_output(out, rules=_RULES, cdm=_CDM)
        results = run_suites(load_output_tables(out, _CDM), suites)
        gx_failed = {
            (r["table"], r["rule_id"])
            for r in results.filter(~pl.col("success")).iter_rows(named=True)
        }
        ours = {
            (r["table"], r["rule_id"])
            for r in report.findings.iter_rows(named=True)
            if r["rule_id"] in EXPRESSIBLE
        }
        assert gx_failed == ours, site
        agreed |= ours
    assert {("patients", "PT-001"), ("disease_assessments", "PA-004")} <= agreed
