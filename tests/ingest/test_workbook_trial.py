"""A new user's trial on the French workbook (sample_data/classeur_b, mapped with YAML only):
what a mistake in the mapping or one odd value looks like in the findings."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import ConfigError
from cartreg.ingest import IngestResult, ingest_submission
from cartreg.ingest.profile import profile_files
from cartreg.paths import repo_root

SITE = repo_root() / "sample_data" / "classeur_b"


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


def _site(tmp_path: Path, old: str = "", new: str = "") -> Path:
    site = tmp_path / "classeur_b"
    shutil.copytree(SITE, site)
    mapping = site / "mapping.yaml"
    text = mapping.read_text(encoding="utf-8")
    assert old in text
    mapping.write_text(text.replace(old, new, 1), encoding="utf-8")
    return site


def _ingest(site: Path, cdm: CDM) -> IngestResult:
    return ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)


def test_a_where_value_matching_nothing_names_its_key_and_the_values_present(
    tmp_path: Path, cdm: CDM
) -> None:
    site = _site(tmp_path, 'equals: "Évaluation"', 'equals: "Evaluation"')
    findings = _ingest(site, cdm).findings
    (warning,) = findings.filter(pl.col("rule_id") == "ING-WHERE-VALUE").to_dicts()
    assert warning["severity"] == "warning"
    assert warning["source_file"] == "registre_CAR-T.xlsx#Visites"
    assert "tables.disease_assessments[0].where[0].equals" in warning["message"]
    assert "'Evaluation'" in warning["message"] and "Évaluation" in warning["message"]


def test_a_where_value_is_checked_even_when_another_value_of_the_list_matches(
    tmp_path: Path, cdm: CDM
) -> None:
    site = _site(tmp_path, 'in: [Rechute, "Réfractaire"]', 'in: [Rechute, "Refractaire"]')
    findings = _ingest(site, cdm).findings.filter(pl.col("rule_id") == "ING-WHERE-VALUE")
    (message,) = findings["message"].to_list()
    assert "tables.progression_events[0].where[0].in" in message and "'Refractaire'" in message


def test_every_quarantined_row_is_in_the_findings_with_its_reason(tmp_path: Path, cdm: CDM) -> None:
    site = _site(tmp_path, 'equals: "Évaluation"', 'equals: "Evaluation"')
    result = _ingest(site, cdm)
    quarantined = pl.concat(
        [
            q.select("source_file", "source_row", "quarantine_reasons")
            for q in result.quarantine.values()
        ]
    )
    assert (
        quarantined.filter(pl.col("quarantine_reasons").str.starts_with("NOT-MAPPED")).height > 100
    )
    reported = result.findings.select("source_file", "source_row").unique()
    unreported = quarantined.join(reported, on=["source_file", "source_row"], how="anti")
    assert unreported.is_empty(), unreported.head().rows()
    not_mapped = result.findings.filter(pl.col("rule_id") == "ING-NOT-MAPPED")
    assert set(not_mapped["severity"]) == {"warning"}
    assert "no rule selects this row" in not_mapped["message"][0]


def test_the_date_finding_says_the_format_expected_the_value_and_the_key_to_change(
    tmp_path: Path, cdm: CDM
) -> None:
    findings = _ingest(_site(tmp_path), cdm).findings
    (date_finding,) = findings.filter(pl.col("rule_id") == "ING-DATE").to_dicts()
    message = date_finding["message"]
    assert "'09/25/2024'" in message
    assert "in DMY (DD/MM/YYYY)" in message
    assert "reads as MDY (MM/DD/YYYY)" in message
    assert "tables.disease_assessments[0].columns.assessment_date.formats" in message


def test_a_missing_column_of_a_workbook_names_the_sheet(tmp_path: Path, cdm: CDM) -> None:
    site = _site(tmp_path, "bm_blast_pct: Blastes (%)", 'bm_blast_pct: "Blastes %"')
    with pytest.raises(ConfigError, match=r"not found in registre_CAR-T\.xlsx#Visites"):
        _ingest(site, cdm)


def test_decimal_auto_reads_a_leading_zero_comma_as_a_decimal_comma(
    tmp_path: Path, cdm: CDM
) -> None:
    site = _site(tmp_path, '  decimal: ","\n', "")
    values = _ingest(site, cdm).tables["disease_assessments"]["mrd_value"].drop_nulls()
    # "0,111" % is 0.00111 as a fraction, never 1.11 (111 %)
    assert values.max() <= 1.0  # type: ignore[operator]


def test_profile_tells_the_decimal_comma_of_a_column(cdm: CDM) -> None:
    profile = profile_files([SITE / "registre_CAR-T.xlsx"], cdm)
    marks = {
        r["column"]: r["decimal"]
        for r in profile.filter(pl.col("source") == "registre_CAR-T.xlsx#Visites").to_dicts()
    }
    assert marks["MRD (%)"] == marks["Blastes (%)"] == ","
    assert marks["Type"] == ""
