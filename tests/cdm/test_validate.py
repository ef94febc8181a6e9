"""validate_table / validate_tables: one finding per defect, located by lineage; never raises."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import load_cdm, validate_table, validate_tables
from cartreg.findings import FINDING_FIELDS
from cartreg.paths import repo_root

EXAMPLE = repo_root() / "docs" / "examples" / "harmonized"
CDM = load_cdm()


def _example(table: str) -> pl.DataFrame:
    return pl.read_csv(EXAMPLE / f"{table}.csv", infer_schema=False)


def test_shipped_harmonized_example_conforms() -> None:
    findings = validate_tables(EXAMPLE, cdm=CDM)
    assert findings.height == 0, findings.to_dicts()


def _set(frame: pl.DataFrame, row: int, column: str, value: str | None) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )


def test_one_finding_per_defect_with_full_lineage(tmp_path: Path) -> None:
    infusions = _example("car_t_infusions")
    infusions = _set(infusions, 0, "dose_value", "1e6 cells")  # wrong dtype
    infusions = _set(infusions, 1, "product", None)  # null in a required column
    infusions = _set(infusions, 2, "setting", "HOSPITAL")  # value outside its vocabulary
    assessments = _example("disease_assessments")
    assessments = _set(assessments, 1, "bm_blast_pct", "140")  # out-of-range number
    assessments = _set(assessments, 3, "assessment_id", "DEMO-001-A1")  # duplicate key
    for name in ("car_t_infusions", "disease_assessments"):
        frame = infusions if name == "car_t_infusions" else assessments
        frame.write_csv(tmp_path / f"{name}.csv")

    findings = validate_tables(tmp_path, cdm=CDM)
    got = {
        (r["rule_id"], r["table"], r["column"], r["site_id"], r["source_file"], r["source_row"])
        for r in findings.iter_rows(named=True)
    }
    assert got == {
        ("CDM-DTYPE", "car_t_infusions", "dose_value", "DEMO", "infusions.csv", 2),
        ("CDM-REQUIRED", "car_t_infusions", "product", "DEMO", "infusions.csv", 3),
        ("CDM-VOCAB", "car_t_infusions", "setting", "DEMO", "infusions.csv", 4),
        ("CDM-RANGE", "disease_assessments", "bm_blast_pct", "DEMO", "assessments.csv", 3),
        ("CDM-UNIQUE", "disease_assessments", "assessment_id", "DEMO", "assessments.csv", 5),
    }
    assert findings.height == 5
    assert findings.columns == list(FINDING_FIELDS)
    assert findings["finding_id"].n_unique() == 5
    assert set(findings["severity"]) == {"error"}
    by_rule = {r["rule_id"]: r for r in findings.iter_rows(named=True)}
    assert by_rule["CDM-VOCAB"]["value"] == "HOSPITAL"
    assert "treatment_setting" in by_rule["CDM-VOCAB"]["message"]
    assert by_rule["CDM-RANGE"]["value"] == "140.0"


def test_lazyframe_data_checks_really_run() -> None:
    """pandera checks only the schema of a LazyFrame by default; ours must check the data."""
    patients = _set(_example("patients"), 0, "sex", "Z").lazy()
    findings = validate_table("patients", patients, cdm=CDM)
    assert findings.select("rule_id", "column", "source_row").rows() == [("CDM-VOCAB", "sex", 2)]


def test_typed_frames_are_validated_without_conversion() -> None:
    patients = validate_table("patients", _example("patients"), cdm=CDM)
    assert patients.height == 0
    typed = pl.read_csv(EXAMPLE / "patients.csv", try_parse_dates=True)
    typed = typed.with_columns(pl.col("birth_year").cast(pl.Int64) + 300)  # out of range, typed
    findings = validate_table("patients", typed, cdm=CDM)
    assert set(findings["rule_id"]) == {"CDM-RANGE"}
    assert findings.height == 3


def test_identifier_values_are_masked() -> None:
    patients = _set(_example("patients"), 0, "birth_date", "1975-13-45")
    findings = validate_table("patients", patients, cdm=CDM)
    assert findings["rule_id"].to_list() == ["CDM-DTYPE"]
    assert findings["value"].to_list() == ["***"]
    assert "1975-13-45" not in findings["message"][0]


def test_missing_and_unknown_columns_are_reported_once() -> None:
    patients = _example("patients").drop("patient_key").with_columns(pl.lit("x").alias("mrn"))
    findings = validate_table("patients", patients, cdm=CDM)
    assert sorted(
        zip(findings["rule_id"], findings["column"], findings["severity"], strict=True)
    ) == [
        ("CDM-COLUMN-MISSING", "patient_key", "error"),
        ("CDM-COLUMN-UNKNOWN", "mrn", "warning"),
    ]
    assert "x" not in " ".join(findings["message"])


def test_unknown_table_and_missing_folder_are_config_errors(tmp_path: Path) -> None:
    from cartreg.errors import CartregError

    with pytest.raises(CartregError, match=r"unknown CDM table 'patient'.*did you mean 'patients'"):
        validate_table("patient", _example("patients"), cdm=CDM)
    with pytest.raises(CartregError, match="no CDM table files found"):
        validate_tables(tmp_path, cdm=CDM)
