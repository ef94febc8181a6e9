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


# --- issue 12: confinement, the independent count, findings for what is not harmonized --


def _copy(tmp_path: Path) -> Path:
    import shutil

    site = tmp_path / "site"
    shutil.copytree(FIXTURE, site)
    return site


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("file", ["/etc/passwd", "../../../../etc/passwd", "../site2/events.csv"])
def test_mapping_paths_stay_inside_the_submission_folder(tmp_path: Path, file: str) -> None:
    from cartreg.errors import ConfigError

    site = _copy(tmp_path)
    _replace(site / "mapping.yaml", "file: events.csv", f"file: {file}\n    reader: csv")
    with pytest.raises(ConfigError, match=r"sources\.events\.file: .* is outside the submission"):
        ingest_submission(site, site / "mapping.yaml", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_name_no_system_can_open_is_a_mapping_error(tmp_path: Path) -> None:
    # found by the fuzz run (mapping seed 5187): a 500-byte name was an OSError, exit 3
    from cartreg.errors import ConfigError

    site = _copy(tmp_path)
    _replace(site / "mapping.yaml", "file: events.csv", f"file: {'x' * 500}.csv")
    with pytest.raises(ConfigError, match=r"sources\.events\.file: .* not a file name"):
        ingest_submission(site, site / "mapping.yaml", tmp_path / "out")


def test_a_link_out_of_the_folder_is_refused_and_a_link_inside_is_followed(
    tmp_path: Path,
) -> None:
    from cartreg.errors import InputError

    site = _copy(tmp_path)
    (site / "events.csv").rename(site / "real_events.csv")
    (site / "events.csv").symlink_to(site / "real_events.csv")
    ingest_submission(site, site / "mapping.yaml", None)
    (site / "events.csv").unlink()
    (site / "events.csv").symlink_to("/etc/passwd")
    with pytest.raises(InputError, match="a link to a file outside the submission folder"):
        ingest_submission(site, site / "mapping.yaml", None)


def test_a_folder_without_any_mapped_file_names_the_mapping_site(tmp_path: Path) -> None:
    # new-user trial: another site's mapping on a folder said only "input file not found"
    from cartreg.errors import InputError

    site = _copy(tmp_path)
    (site / "events.csv").unlink()
    # One file of two missing: that file is named.
    with pytest.raises(InputError, match=r"events\.csv: input file not found"):
        ingest_submission(site, site / "mapping.yaml", None)
    (site / "patients.csv").unlink()
    with pytest.raises(InputError, match=r"none of the files the mapping of site \w+ reads"):
        ingest_submission(site, site / "mapping.yaml", None)


def test_rejected_rows_are_quarantined_without_cells_and_counted(tmp_path: Path) -> None:
    site = _copy(tmp_path)
    with (site / "patients.csv").open("a", encoding="utf-8") as handle:
        handle.write("P009,Smith, Dana,F,1980-01-01,2020,neg,1,Kymriah,01/07/2021,10,,\n")
        handle.write("# end of export\n")
    result = ingest_submission(site, site / "mapping.yaml", tmp_path / "out")
    baseline = next(s for s in result.manifest["sources"] if s["source"] == "baseline")
    assert baseline["rows_read"] == baseline["records_counted"] == 6
    assert baseline["rows_quarantined"] == 4
    records = result.quarantine["baseline"]
    shifted = records.filter(pl.col("source_row").is_in([6, 7]))
    assert shifted.select("source_row", "quarantine_reasons").rows() == [
        (6, "ING-RAGGED(row)"),
        (7, "ING-COMMENT(row)"),
    ]
    cells = [c for c in records.columns if c not in ("source_file", "source_row")]
    assert shifted.select(cells[:-1]).null_count().row(0) == (2,) * (len(cells) - 1)
    text = " ".join(str(v) for row in result.findings.rows() for v in row)
    assert "Dana" not in text and "Smith" not in text


def test_a_count_that_does_not_reconcile_is_an_error_finding(tmp_path: Path) -> None:
    site = _copy(tmp_path)
    # One stray quote: the line-and-quote count joins lines, the parser reads 4 rows.
    _replace(site / "patients.csv", "P002,Bob Jones", 'P002,Bob "Bobby Jones')
    result = ingest_submission(site, site / "mapping.yaml", None)
    baseline = next(s for s in result.manifest["sources"] if s["source"] == "baseline")
    assert baseline["records_counted"] < baseline["rows_read"] == 4
    counted = result.findings.filter(pl.col("rule_id") == "ING-COUNT")
    assert counted.select("severity", "source_file").rows() == [("error", "patients.csv")]


def test_empty_sources_and_rules_that_select_nothing_are_findings(tmp_path: Path) -> None:
    site = _copy(tmp_path)
    (site / "patients.csv").write_text(
        (FIXTURE / "patients.csv").read_text(encoding="utf-8").splitlines()[0] + "\n", "utf-8"
    )
    _replace(site / "mapping.yaml", "equals: death", "equals: Death")
    result = ingest_submission(site, site / "mapping.yaml", None)
    found = result.findings.select("rule_id", "severity", "source_file", "table").rows()
    assert ("ING-NO-ROWS", "error", "patients.csv", None) in found
    assert ("ING-RULE-EMPTY", "warning", "events.csv", "follow_up") in found
    # An empty source's own rules are not reported again as selecting nothing.
    assert not [f for f in found if f[0] == "ING-RULE-EMPTY" and f[2] == "patients.csv"]


def test_a_file_with_none_of_the_mapped_columns_is_blamed_on_the_file(tmp_path: Path) -> None:
    from cartreg.errors import InputError

    site = _copy(tmp_path)
    (site / "patients.csv").write_text("Registry export\nfoo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"patients\.csv: none of the \d+ columns the mapping"):
        ingest_submission(site, site / "mapping.yaml", None)


def test_a_json_file_without_the_mapped_fields_is_told_in_json_words(tmp_path: Path) -> None:
    # adversarial audit: an empty record array was told to put "column names on line 1"
    import shutil

    from cartreg.errors import InputError

    site = tmp_path / "json_c"
    shutil.copytree(Path(__file__).parents[2] / "sample_data" / "json_c", site)
    export = site / "export_cart_registry.json"
    document = json.loads(export.read_text(encoding="utf-8"))
    document["subjects"] = []
    export.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InputError, match="the file has no records") as caught:
        ingest_submission(site, site / "mapping.yaml", None)
    assert "records are read under 'subjects'" in str(caught.value)
    assert "line" not in str(caught.value)
    document["subjects"] = [{"x": "1"}, {"x": "2"}]
    export.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InputError, match=r"none of the \d+ fields the mapping reads .* records"):
        ingest_submission(site, site / "mapping.yaml", None)
