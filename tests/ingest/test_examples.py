"""The worked examples of docs/mapping.md, one per reader, ingest as the documentation says."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from cartreg.cdm import load_cdm
from cartreg.ingest import IngestResult, ingest_submission
from cartreg.yamlio import load_yaml

FIXTURES = Path(__file__).parent / "fixtures"
SITES = (
    "csv_site",
    "redcap_site",
    "excel_site",
    "json_site",
    "ndjson_site",
    "parquet_site",
    "eav_site",
    "fhir_site",
)


def _ingest(site: str) -> IngestResult:
    return ingest_submission(
        FIXTURES / site, FIXTURES / site / "mapping.yaml", None, cdm=load_cdm()
    )


@pytest.mark.parametrize("site", SITES)
def test_example_rows_reconcile(site: str) -> None:
    result = _ingest(site)
    for source in result.manifest["sources"]:
        assert source["rows_read"] == source["rows_harmonized"] + source["rows_quarantined"]
        assert result.quarantine[source["source"]].height == source["rows_quarantined"]


def test_redcap_example_decodes_choices_checkboxes_and_instruments() -> None:
    tables = _ingest("redcap_site").tables
    assert tables["patients"].select("patient_key", "sex", "birth_year").rows() == [
        ("REDCAP_T-1", "F", 1971),
        ("REDCAP_T-2", "M", None),
    ]
    salvage = tables["salvage_treatments"]
    assert salvage.select("salvage_id", "agent", "source_file", "source_row").rows() == [
        ("REDCAP_T-1-S1", "blinatumomab", "records.csv#progression", 3),
        ("REDCAP_T-1-S2", "inotuzumab_ozogamicin", "records.csv#progression", 3),
        ("REDCAP_T-2-S1", "car_t_reinfusion", "records.csv#progression", 5),
    ]
    assert tables["progression_events"]["event_type"].to_list() == [
        "RELAPSE_AFTER_CR",
        "REFRACTORY_NONRESPONSE",
    ]
    assert tables["car_t_infusions"]["bridging_therapy"].to_list() == ["Y", "N"]


def test_excel_example_reads_date_cells_text_dates_serials_and_decimal_commas() -> None:
    result = _ingest("excel_site")
    inf = result.tables["car_t_infusions"]
    assert inf["infusion_date"].to_list() == [
        date(2021, 3, 5),
        date(2022, 7, 12),
        date(2022, 5, 19),
    ]
    assert inf["pre_bm_blast_pct"].to_list() == [5.0, 35.5, 80.0]
    assert inf["pre_mrd_value"].to_list() == [pytest.approx(1e-4), pytest.approx(0.01), None]
    prog = result.tables["progression_events"]
    assert prog.select("progression_date", "progression_date_precision", "source_row").rows() == [
        (date(2022, 3, 1), "MONTH", 2),
        (date(2023, 1, 1), "YEAR", 5),
    ]
    assert result.findings.filter(pl.col("severity") == "error").height == 0
    assert result.findings["rule_id"].to_list() == ["ING-SENTINEL"]


def test_json_example_explodes_event_arrays() -> None:
    tables = _ingest("json_site").tables
    assert tables["disease_assessments"].select(
        "assessment_id", "assessment_day", "mrd_value"
    ).rows() == [
        ("JSON_T-J1-A1", 28, pytest.approx(1e-4)),
    ]
    assert tables["progression_events"]["antigen_phenotype"].to_list() == ["CD19_NEG"]


def test_ndjson_example_maps_nested_arrays_of_a_de_identified_site() -> None:
    result = _ingest("ndjson_site")
    tables = result.tables
    assert tables["car_t_infusions"].select(
        "infusion_id", "infusion_number", "infusion_year", "dose_value"
    ).rows() == [
        ("NDJSON_T-N1-INF1", 1, 2022, 1.0),
        ("NDJSON_T-N2-INF1", 1, 2023, 410000000.0),
    ]
    assert tables["disease_assessments"].select("bm_blast_pct", "bm_blast_qualifier").rows() == [
        (5.0, "LT"),
        (1.5, None),
        (2.0, None),
    ]
    # Site line 3 is numbered across progressions; derived line_number counts per progression.
    assert tables["salvage_treatments"].select(
        "salvage_id", "agent", "line_number", "progression_id"
    ).rows() == [
        ("NDJSON_T-N1-S1", "inotuzumab_ozogamicin", 1, "NDJSON_T-N1-P1"),
        ("NDJSON_T-N1-S2", "mini_hcvd", 1, "NDJSON_T-N1-P1"),
    ]
    assert tables["follow_up"].select("data_cut_date", "last_contact_day").rows() == [
        (date(2025, 6, 30), 1104),
        (date(2025, 6, 30), 1915),
    ]
    assert tables["patients"].height == 2
    assert result.findings.height == 0


def test_ndjson_example_in_the_docs_is_the_fixture_mapping(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "mapping.md").read_text(encoding="utf-8")
    section = doc.split("### NDJSON: a de-identified site", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "doc.yaml").write_text(block, encoding="utf-8")
    assert load_yaml(tmp_path / "doc.yaml") == load_yaml(FIXTURES / "ndjson_site" / "mapping.yaml")


def test_parquet_example_keeps_day_offsets_without_dates() -> None:
    result = _ingest("parquet_site")
    inf = result.tables["car_t_infusions"]
    assert inf.select("infusion_id", "infusion_day", "infusion_date", "is_reinfusion").rows() == [
        ("DEID_T-D01-INF1", 0, None, False),
        ("DEID_T-D01-INF2", 95, None, True),
        ("DEID_T-D02-INF1", 0, None, False),
    ]
    assert result.tables["follow_up"]["death_day"].to_list() == [400, None]
    unmapped = result.findings.filter(pl.col("rule_id") == "ING-UNMAPPED")
    assert unmapped.select("column", "value").rows() == [("reinfusion_reason", "MRD relapse")]


def test_redcap_identifier_field_never_reaches_any_output(tmp_path: Path) -> None:
    site = FIXTURES / "redcap_site"
    result = ingest_submission(site, site / "mapping.yaml", tmp_path, cdm=load_cdm())
    flagged = result.findings.filter(pl.col("rule_id") == "ING-IDENTIFIER")["column"].to_list()
    assert flagged == ["mrn"]
    texts = [p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")]
    texts += [
        pl.read_parquet(p).select(pl.all().cast(pl.String)).write_csv()
        for p in tmp_path.rglob("*.parquet")
    ]
    for mrn in ("12345678", "87654321"):
        assert not any(mrn in text for text in texts)
