"""The pipeline on a small CSV site: conservation, quarantine, derivations, no identifiers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import load_cdm, validate_tables
from cartreg.ingest import IngestResult, ingest_submission

FIXTURE = Path(__file__).parent / "fixtures" / "csv_site"
NAMES = ("Alice Smith", "Bob Jones", "No Id", "Carol White", "1970-05-04", "1965-11-20")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[IngestResult, Path]:
    out = tmp_path_factory.mktemp("out")
    return ingest_submission(FIXTURE, FIXTURE / "mapping.yaml", out), out


def test_every_source_row_is_harmonized_or_quarantined(result: tuple[IngestResult, Path]) -> None:
    _, out = result
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["site_id"] == "CSV_T" and manifest["cdm_version"] == load_cdm().version
    for source in manifest["sources"]:
        assert source["rows_read"] == source["rows_harmonized"] + source["rows_quarantined"]
        assert len(source["sha256"]) == 64
        quarantined = pl.read_parquet(out / "quarantine" / f"{source['source']}.parquet")
        assert quarantined.height == source["rows_quarantined"]
    baseline = next(s for s in manifest["sources"] if s["source"] == "baseline")
    assert (baseline["rows_read"], baseline["rows_quarantined"]) == (4, 2)
    reasons = pl.read_parquet(out / "quarantine" / "baseline.parquet")
    assert reasons.select("source_row", "quarantine_reasons").rows() == [
        (4, "ING-MISSING-KEY(study_id)"),
        (5, "ING-REQUIRED(product)"),
    ]


def test_output_tables_are_complete_typed_and_conform_to_the_cdm(
    result: tuple[IngestResult, Path],
) -> None:
    _, out = result
    cdm = load_cdm()
    for name, spec in cdm.tables.items():
        frame = pl.read_parquet(out / "tables" / f"{name}.parquet")
        assert frame.columns == list(spec.column_names)
    findings = validate_tables(out / "tables", cdm=cdm)
    assert findings.filter(pl.col("severity") == "error").height == 0, findings.rows()


def test_derivations_follow_the_fixed_conventions(result: tuple[IngestResult, Path]) -> None:
    tables = result[0].tables
    inf = tables["car_t_infusions"]
    assert inf.select(
        "infusion_id", "is_index_infusion", "infusion_day", "infusion_year"
    ).rows() == [
        ("CSV_T-P001-INF1", True, 0, 2021),
        ("CSV_T-P002-INF1", True, 0, 2021),
    ]
    assert inf["pre_bm_blast_qualifier"].to_list() == ["LT", None]
    assert inf["pre_mrd_value"].to_list() == [pytest.approx(1e-4), None]
    pat = tables["patients"]
    assert pat.select("patient_key", "diagnosis_date", "diagnosis_date_precision").rows()[:2] == [
        ("CSV_T-P001", date(2019, 3, 1), "MONTH"),
        ("CSV_T-P002", date(2018, 1, 1), "YEAR"),
    ]
    sal = tables["salvage_treatments"]
    assert sal.select("salvage_id", "progression_id", "category", "start_day").rows() == [
        ("CSV_T-P001-S1", "CSV_T-P001-P1", "BLINATUMOMAB", 222),
        ("CSV_T-P001-S2", "CSV_T-P001-P1", "INOTUZUMAB", 273),
    ]
    assert tables["disease_assessments"]["assessment_day"].to_list() == [31, 28]


def test_unparseable_optional_values_are_findings_with_lineage(
    result: tuple[IngestResult, Path],
) -> None:
    findings = result[0].findings
    number = findings.filter(pl.col("rule_id") == "ING-NUMBER")
    assert number.select("table", "column", "source_file", "source_row", "value").rows() == [
        ("car_t_infusions", "pre_mrd_value", "patients.csv", 3, "UNK"),
        ("patients", "n_prior_lines", "patients.csv", 5, "x"),
    ]
    assert findings["finding_id"].n_unique() == findings.height


def test_identifier_values_never_reach_outputs(result: tuple[IngestResult, Path]) -> None:
    _, out = result
    # Parquet compresses strings, so search decoded values, not bytes.
    texts = [p.read_text(encoding="utf-8") for p in out.glob("*.json")]
    for path in out.rglob("*.parquet"):
        frame = pl.read_parquet(path)
        texts.append(frame.select(pl.all().cast(pl.String)).write_csv())
    assert any("P001" in t for t in texts)
    for name in NAMES:
        assert not any(name in text for text in texts), name
    ids = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    flagged = {f["column"] for f in ids if f["rule_id"] == "ING-IDENTIFIER"}
    assert flagged == {"patient_name", "dob"}
