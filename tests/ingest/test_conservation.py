"""Property: whatever the rows look like, each one is harmonized or quarantined, never lost."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartreg.cdm import CDM, load_cdm
from cartreg.errors import InputError
from cartreg.ingest import ingest_submission
from cartreg.ingest.readers.excel import read_excel_text
from cartreg.ingest.readers.parquet import read_parquet_text

MAPPING = """
mapping_version: "1"
site_id: PROP_T
defaults: {date_formats: [ISO, DMY]}
sources:
  events: {file: events.csv, patient_id: pid}
tables:
  car_t_infusions:
    - source: events
      where: [{column: kind, equals: infusion}]
      columns: {infusion_date: date, product: detail}
  disease_assessments:
    - source: events
      where: [{column: kind, equals: assessment}]
      columns: {assessment_date: date, response: detail, bm_blast_pct: value}
"""

rows = st.lists(
    st.fixed_dictionaries(
        {
            "pid": st.sampled_from(["P1", "P2", "P3", "", " "]),
            "kind": st.sampled_from(["infusion", "assessment", "other"]),
            "date": st.sampled_from(["2021-03-05", "05/03/2021", "31/02/2021", "", "soon"]),
            "detail": st.sampled_from(["Kymriah", "CR", "??", ""]),
            "value": st.sampled_from(["3", "<5%", "4,5", "x", ""]),
        }
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return load_cdm()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=rows)
def test_rows_read_equal_harmonized_plus_quarantined(
    tmp_path: Path, cdm: CDM, records: list[dict[str, str]]
) -> None:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["pid", "kind", "date", "detail", "value"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(records)
    (site / "events.csv").write_text(buffer.getvalue(), encoding="utf-8")
    (site / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    (source,) = result.manifest["sources"]
    blank = [r for r in records if not any(v.strip() for v in r.values())]
    assert source["rows_read"] == len(records) - len(blank)
    assert source["rows_read"] == source["rows_harmonized"] + source["rows_quarantined"]
    no_id = sum(1 for r in records if not r["pid"].strip() and any(v.strip() for v in r.values()))
    unmapped = sum(1 for r in records if r["pid"].strip() and r["kind"] == "other")
    assert source["rows_quarantined"] >= no_id + unmapped
    harmonized_rows = sum(f.height for f in result.tables.values())
    assert harmonized_rows <= source["rows_harmonized"]
    lineage = pl.concat(
        [f.select("source_row") for f in result.tables.values() if f.height]
        or [pl.DataFrame({"source_row": []}, schema={"source_row": pl.Int64})]
    )
    quarantined = result.quarantine["events"]["source_row"]
    assert not set(lineage["source_row"].to_list()) & set(quarantined.to_list())


def test_corrupt_workbook_and_parquet_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match=r"not a readable \.xlsx"):
        read_excel_text(tmp_path / "bad.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(InputError, match="not a readable Parquet"):
        read_parquet_text(tmp_path / "bad.parquet")
