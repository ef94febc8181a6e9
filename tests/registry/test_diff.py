from __future__ import annotations

import json
from pathlib import Path

import pytest

from cartreg.errors import InputError
from cartreg.registry import decide, diff_versions, init_registry, open_registry, submit_output
from cartreg.registry.diff import RECORD_LOST
from cartreg.registry.render import diff_html
from tests.registry.helpers import MakeOutput, Rows, combine, patient

SITE = "SITE_A"


def second_cut() -> tuple[Rows, Rows]:
    first = combine(patient(SITE, "1"), patient(SITE, "2"), patient(SITE, "3"))
    corrected = patient(SITE, "1")
    corrected["patients"][0]["birth_year"] = 1971
    corrected["disease_assessments"][0]["bm_blast_pct"] = 40.0
    corrected["patients"][0]["source_row"] = 9  # moved in the export: not a change
    second = combine(corrected, patient(SITE, "2"), patient(SITE, "4"))
    return first, second


@pytest.fixture
def registry(tmp_path: Path, make_output: MakeOutput, mapping_file: Path) -> Path:
    path = tmp_path / "registry.duckdb"
    init_registry(path)
    first, second = second_cut()
    for rows in (first, second):
        submit_output(path, make_output(SITE, rows), site=SITE, mapping_path=mapping_file)
    return path


def test_diff_names_exactly_the_changes(registry: Path) -> None:
    with open_registry(registry) as reg:
        report = diff_versions(reg, SITE)
    assert (report.base and report.base.version, report.target.version) == (1, 2)
    assert report.patients("added") == ["SITE_A-4"]
    assert report.patients("removed") == ["SITE_A-3"]
    changes = {
        (r["table"], r["record_key"], r["column"], r["old"], r["new"])
        for r in report.changes.iter_rows(named=True)
    }
    assert changes == {
        ("patients", "SITE_A-1", "birth_year", "1970", "1971"),
        ("disease_assessments", "SITE_A-1-A1", "bm_blast_pct", "1.0", "40.0"),
    }
    summary = {
        r["table"]: (r["added"], r["removed"], r["changed"])
        for r in report.summary().iter_rows(named=True)
    }
    assert summary["patients"] == (1, 1, 1)
    assert summary["car_t_infusions"] == (1, 1, 0)
    lost = report.findings
    assert set(lost["rule_id"]) == {RECORD_LOST}
    assert set(lost["severity"]) == {"warning"}
    assert sorted(lost["table"]) == sorted(
        ["patients", "car_t_infusions", "disease_assessments", "follow_up"]
    )
    assert set(lost["source_file"]) == {
        "patients.csv",
        "car_t_infusions.csv",
        "disease_assessments.csv",
        "follow_up.csv",
    }


def test_removed_records_of_a_rejected_base_are_not_lost(registry: Path) -> None:
    decide(registry, site=SITE, version=1, status="rejected", reason="test")
    with open_registry(registry) as reg:
        report = diff_versions(reg, SITE, from_version=1, to_version=2)
    assert report.patients("removed") == ["SITE_A-3"]
    assert report.findings.height == 0


def test_diff_against_nothing_and_unknown_versions(registry: Path) -> None:
    with open_registry(registry) as reg:
        first = diff_versions(reg, SITE, to_version=1)
        assert first.base is None and first.patients("added") == [
            "SITE_A-1",
            "SITE_A-2",
            "SITE_A-3",
        ]
        with pytest.raises(InputError, match="no version 5"):
            diff_versions(reg, SITE, to_version=5)
        with pytest.raises(InputError, match="SITE_Z has no stored version"):
            diff_versions(reg, "SITE_Z")


def test_identifier_values_are_masked(
    tmp_path: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    import datetime as dt

    path = tmp_path / "r.duckdb"
    init_registry(path)
    for day in (1, 2):
        rows = patient(SITE, "1")
        rows["patients"][0]["birth_date"] = dt.date(1970, 5, day)
        submit_output(path, make_output(SITE, rows), site=SITE, mapping_path=mapping_file)
    with open_registry(path) as reg:
        report = diff_versions(reg, SITE)
    row = report.changes.row(0, named=True)
    assert (row["column"], row["old"], row["new"]) == ("birth_date", "***", "***")
    assert "1970-05" not in json.dumps(report.to_dict(), default=str)


def test_json_and_html_renderings(registry: Path) -> None:
    with open_registry(registry) as reg:
        report = diff_versions(reg, SITE)
    data = json.loads(json.dumps(report.to_dict(), default=str))
    assert data["patients_added"] == ["SITE_A-4"] and data["from"]["version"] == 1
    html = diff_html(report)
    assert "SITE_A-4" in html and "birth_year" in html and "record lost" in html
