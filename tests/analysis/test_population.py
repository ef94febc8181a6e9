"""The analysis population: exclusions for unresolved errors and unreviewed duplicates, and the
flow table (received -> excluded by reason and site -> analysed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cartreg.analysis.population import (
    PopulationPolicy,
    ReviewInputs,
    _read_duplicates,
    select_population,
)
from cartreg.errors import InputError
from tests.analysis.conftest import DATA_CUT, build_tables

NO_DUPLICATES = pl.DataFrame(
    schema={"key_a": pl.String, "key_b": pl.String, "decision": pl.String, "keep": pl.String}
)


def finding(
    rule: str, table: str, column: str, row: int | None, severity: str = "error", **extra: Any
) -> dict[str, Any]:
    return {
        "rule_id": rule,
        "severity": severity,
        "table": table,
        "column": column,
        "site_id": "FIXTURE",
        "source_file": "fixture.csv",
        "source_row": row,
        "value": extra.get("value"),
        "status": extra.get("status"),
    }


def review(
    findings: list[dict[str, Any]], duplicates: pl.DataFrame = NO_DUPLICATES
) -> ReviewInputs:
    frame = pl.DataFrame(
        findings,
        schema={
            "rule_id": pl.String,
            "severity": pl.String,
            "table": pl.String,
            "column": pl.String,
            "site_id": pl.String,
            "source_file": pl.String,
            "source_row": pl.Int64,
            "value": pl.String,
            "status": pl.String,
        },
    )
    return ReviewInputs(frame, duplicates, "test", "test")


def pairs(*rows: tuple[str, str, str | None, str | None]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["key_a", "key_b", "decision", "keep"], orient="row")


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return build_tables(dated=True)


def excluded(population: Any) -> dict[str, str]:
    first = population.exclusions.group_by("patient_key", maintain_order=True).first()
    return dict(zip(first["patient_key"], first["reason_code"], strict=True))


def test_endpoint_covariate_and_unused_fields(tables: dict[str, pl.DataFrame]) -> None:
    """Fixture rows (conftest): A's progression is row 203, F's salvage row 308, F's follow-up
    507, B's infusion row 3, C's patient row 4, D's patient row 5."""
    findings = [
        finding("PT-002", "progression_events", "progression_day", 203),  # A: endpoint
        finding("PT-003", "salvage_treatments", "start_day", 308),  # F: endpoint
        finding("CC-003", "car_t_infusions", "disease_burden", 3),  # B: covariate
        finding("PT-001", "patients", "diagnosis_day", 4),  # C: unused field
        finding("PA-002", "patients", "age_at_index_years", 5, severity="warning"),  # D: warning
        finding("CP-011", "follow_up", "last_contact_date", 506, status="waived"),  # E: resolved
        finding("CR-001", "car_t_infusions", "patient_key", None),  # no patient
    ]
    population = select_population(tables, review(findings))
    assert excluded(population) == {"FIXTURE-A": "error_finding", "FIXTURE-F": "error_finding"}
    assert population.analysed_keys == ["FIXTURE-B", "FIXTURE-C", "FIXTURE-D", "FIXTURE-E"]
    assert population.set_aside.select("patient_key", "covariate").rows() == [
        ("FIXTURE-B", "burden")
    ]
    assert all("FIXTURE-A" not in t["patient_key"].to_list() for t in population.tables.values())
    flow = population.flow
    assert flow["received"] == {"total": 6, "by_site": {"FIXTURE": 6}}
    assert [e["reason"] for e in flow["excluded"]] == [
        "error PT-002 on progression_events.progression_day",
        "error PT-003 on salvage_treatments.start_day",
    ]
    assert flow["analysed"]["total"] == 4
    assert flow["error_findings_on_unused_fields"] == 1
    assert flow["error_findings_without_patient"] == 1
    assert (
        flow["covariates_set_to_unknown"][0]["reason"]
        == "error CC-003 on car_t_infusions.disease_burden"
    )


def test_flow_counts_each_patient_once_and_reconciles(tables: dict[str, pl.DataFrame]) -> None:
    findings = [
        finding("PT-002", "progression_events", "progression_day", 203),
        finding("PT-003", "disease_assessments", "assessment_day", 104),  # A's second assessment
    ]
    flow = select_population(tables, review(findings)).flow
    assert sum(e["total"] for e in flow["excluded"]) == 1
    assert flow["received"]["total"] - 1 == flow["analysed"]["total"]


def test_analyse_all_keeps_patients_with_errors(tables: dict[str, pl.DataFrame]) -> None:
    findings = [finding("PT-002", "progression_events", "progression_day", 203)]
    population = select_population(
        tables, review(findings), PopulationPolicy(exclude_error_findings=False)
    )
    assert population.flow["analysed"]["total"] == 6
    assert population.flow["policy"]["error_findings"] == "analyse all"


def test_unreviewed_pair_analyses_the_fuller_record(tables: dict[str, pl.DataFrame]) -> None:
    """A has 5 clinical rows, D has 2: of the unreviewed pair (D, A), A is analysed."""
    population = select_population(
        tables, review([], pairs(("FIXTURE-D", "FIXTURE-A", None, None)))
    )
    assert excluded(population) == {"FIXTURE-D": "duplicate_unreviewed"}
    reason = population.exclusions["reason"][0]
    assert reason == "unreviewed candidate duplicate of FIXTURE-A (analysed)"


def test_a_chain_of_pairs_keeps_one_record(tables: dict[str, pl.DataFrame]) -> None:
    chain = pairs(("FIXTURE-B", "FIXTURE-C", "", None), ("FIXTURE-C", "FIXTURE-E", None, None))
    population = select_population(tables, review([], chain))
    kept = {"FIXTURE-B", "FIXTURE-C", "FIXTURE-E"} & set(population.analysed_keys)
    assert kept == {"FIXTURE-C"}  # C has the most clinical rows (4 assessments/transplants)


def test_duplicate_policies(tables: dict[str, pl.DataFrame]) -> None:
    pair = pairs(("FIXTURE-B", "FIXTURE-C", None, None))
    both = select_population(tables, review([], pair), PopulationPolicy(duplicates="keep-both"))
    assert both.flow["analysed"]["total"] == 6
    with pytest.raises(InputError, match="1 unreviewed candidate duplicate pair"):
        select_population(tables, review([], pair), PopulationPolicy(duplicates="stop"))
    reviewed = pairs(
        ("FIXTURE-B", "FIXTURE-C", "distinct", None),
        ("FIXTURE-D", "FIXTURE-E", "same", "FIXTURE-E"),
    )
    population = select_population(
        tables, review([], reviewed), PopulationPolicy(duplicates="stop")
    )
    assert excluded(population) == {"FIXTURE-D": "duplicate_same"}


def test_a_pair_with_an_excluded_record_needs_no_choice(tables: dict[str, pl.DataFrame]) -> None:
    findings = [finding("PT-002", "progression_events", "progression_day", 203)]
    population = select_population(
        tables,
        review(findings, pairs(("FIXTURE-A", "FIXTURE-D", None, None))),
        PopulationPolicy(duplicates="stop"),
    )
    assert excluded(population) == {"FIXTURE-A": "error_finding"}


def test_duplicates_file_tolerates_extra_columns_and_no_decision(tmp_path: Path) -> None:
    """A linkage that adds columns (a match probability, its own decision) is read by key_a,
    key_b and the review columns only; without a decision column every pair is unreviewed."""
    path = tmp_path / "duplicates.csv"
    path.write_text(
        "pair_id,key_a,key_b,match_probability,match_weight\nP1,K1,K2,0.97,7.1\n", encoding="utf-8"
    )
    frame = _read_duplicates(path)
    assert frame.rows() == [("K1", "K2", None, None)]
    path.write_text("key_b,score\nK2,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="no column 'key_a'"):
        _read_duplicates(path)


@pytest.fixture
def folder(tmp_path: Path, tables: dict[str, pl.DataFrame]) -> Path:
    root = tmp_path / "merged"
    (root / "tables").mkdir(parents=True)
    for name, frame in tables.items():
        frame.write_parquet(root / "tables" / f"{name}.parquet")
    (root / "findings.json").write_text(
        json.dumps([finding("PT-002", "progression_events", "progression_day", 203)]),
        encoding="utf-8",
    )
    (root / "duplicates.csv").write_text(
        "key_a,key_b,decision,keep,splink_probability\nFIXTURE-B,FIXTURE-C,,,0.91\n",
        encoding="utf-8",
    )
    # a merge output: its findings.json covers the rules (a check output's does not)
    (root / "manifest.json").write_text('{"manifest": "cartreg.registry.merge"}', encoding="utf-8")
    return root


def test_analyze_reads_findings_and_duplicates_and_writes_the_flow(
    folder: Path, tmp_path: Path
) -> None:
    from cartreg.analysis.run import analyze

    result = analyze(folder, DATA_CUT, tmp_path / "out", figures=False)
    flow = result.results["population"]
    assert (flow["findings_source"], flow["duplicates_source"]) == (
        "findings.json",
        "duplicates.csv",
    )
    assert [e["reason_code"] for e in flow["excluded"]] == ["error_finding", "duplicate_unreviewed"]
    assert result.results["n_patients"] == 4
    listed = pl.read_csv(tmp_path / "out" / "excluded_patients.csv")
    assert listed["patient_key"].to_list() == ["FIXTURE-A", "FIXTURE-B"]
    flow_table = (tmp_path / "out" / "tables" / "flow.md").read_text(encoding="utf-8")
    assert "Patients received | 6" in flow_table and "Patients analysed | 4" in flow_table


def test_cli_stops_on_unreviewed_duplicates_when_asked(folder: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "analyze",
            str(folder),
            "--data-cut",
            "2023-12-31",
            "--out",
            str(tmp_path / "out"),
            "--duplicates",
            "stop",
            "--no-figures",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreviewed candidate duplicate pair" in lines[0]
    assert "--duplicates one" in lines[0]


def test_a_check_output_adds_the_rules_to_its_ingest_findings(folder: Path, tmp_path: Path) -> None:
    """`cartreg check` writes only ingest findings to findings.json (the rules go to its
    report): without a merge manifest the analysis runs the CDM checks and rules as well."""
    from cartreg.analysis.run import analyze

    (folder / "manifest.json").unlink()
    result = analyze(folder, DATA_CUT, tmp_path / "out", figures=False)
    flow = result.results["population"]
    assert flow["findings_source"] == "findings.json + CDM checks and rules run on the tables"
    assert flow["excluded"][0]["reason"] == "error PT-002 on progression_events.progression_day"


def test_unreadable_findings_is_a_one_line_error(folder: Path, tmp_path: Path) -> None:
    from cartreg.analysis.run import analyze

    (folder / "findings.json").write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(InputError, match="not a list of finding records"):
        analyze(folder, DATA_CUT, tmp_path / "out", figures=False)
