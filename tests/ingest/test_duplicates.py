"""A repeated key in a source: the first row is kept, the other records are quarantined with
ING-DUPLICATE and counted in the manifest; tables never hold both."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.ingest import ingest_submission
from cartreg.validation import validate_output

MAPPING = """
mapping_version: "1"
site_id: DUP
sources:
  p: {file: patients.csv, patient_id: pid}
  e: {file: events.csv, patient_id: pid}
tables:
  patients:
    - source: p
      columns: {sex: sex}
  car_t_infusions:
    - source: p
      columns: {product: product, infusion_date: inf}
  follow_up:
    - source: e
      where: [{column: event, equals: death}]
      columns: {vital_status: {value: DEAD}, death_date: date, last_contact_date: date}
    - source: e
      where: [{column: event, equals: contact}]
      columns: {vital_status: {value: ALIVE}, last_contact_date: date}
"""


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "patients.csv").write_text(
        "pid,sex,product,inf\n"
        "1,F,Kymriah,2021-01-05\n"
        "2,M,Kymriah,2021-02-05\n"
        "1,F,Kymriah,2021-01-05\n"  # the subject listed twice
        "3,M,Tecartus,2022-01-01\n",
        encoding="utf-8",
    )
    (folder / "events.csv").write_text(
        "pid,event,date\n1,contact,2023-01-01\n2,death,2022-05-05\n2,contact,2022-05-01\n",
        encoding="utf-8",
    )
    (folder / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    return folder


@pytest.mark.parametrize("partition_mb", [None, 1e-6])
def test_first_row_kept_the_repeat_quarantined_and_counted(
    site: Path, cdm: CDM, partition_mb: float | None
) -> None:
    result = ingest_submission(
        site, site / "mapping.yaml", None, cdm=cdm, partition_mb=partition_mb
    )
    tables = result.tables
    assert tables["patients"]["patient_key"].to_list() == ["DUP-1", "DUP-2", "DUP-3"]
    # the repeated patient line does not become a second (re)infusion either
    assert tables["car_t_infusions"]["source_row"].to_list() == [2, 3, 5]
    assert tables["follow_up"].select("patient_key", "vital_status").rows() == [
        ("DUP-1", "ALIVE"),
        ("DUP-2", "DEAD"),  # the death row comes first in the mapping: it is kept
    ]
    counts = {s["source"]: s for s in result.manifest["sources"]}
    assert (counts["p"]["rows_harmonized"], counts["p"]["rows_quarantined"]) == (3, 1)
    assert (counts["e"]["rows_harmonized"], counts["e"]["rows_quarantined"]) == (2, 1)
    assert result.quarantine["p"].select("source_row", "quarantine_reasons").rows() == [
        (4, "ING-DUPLICATE(patient_key)")
    ]
    duplicates = result.findings.filter(pl.col("rule_id") == "ING-DUPLICATE").sort("table")
    assert duplicates.select("severity", "table", "source_file", "source_row").rows() == [
        ("error", "follow_up", "events.csv", 4),
        ("error", "patients", "patients.csv", 4),
    ]
    assert "repeats the record of patients.csv row 2, which is kept" in duplicates["message"][1]


def test_validation_sees_no_repeated_key(site: Path, cdm: CDM, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ingest_submission(site, site / "mapping.yaml", out, cdm=cdm)
    report = validate_output(out)
    rules = set(report.findings["rule_id"].to_list())
    assert "ING-DUPLICATE" in rules and "CDM-UNIQUE" not in rules


def test_a_quarantined_row_that_also_repeats_a_key_keeps_both_reasons(site: Path, cdm: CDM) -> None:
    (site / "patients.csv").write_text(
        "pid,sex,product,inf\n1,F,Kymriah,2021-01-05\n1,F,,2021-01-05\n", encoding="utf-8"
    )
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    reasons = result.quarantine["p"]["quarantine_reasons"].to_list()
    assert reasons == ["ING-REQUIRED(product); ING-DUPLICATE(patient_key)"]
    source = next(s for s in result.manifest["sources"] if s["source"] == "p")
    assert (source["rows_read"], source["rows_quarantined"]) == (2, 1)
