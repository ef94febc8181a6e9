"""Acceptance on the sample sites: resubmission diff, status, and the consortium merge.

These run the real ingest, CDM validation and rules on ``sample_data/<site>/`` for every site
that has a ``mapping.yaml``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from cartreg.paths import repo_root
from cartreg.registry import (
    diff_versions,
    init_registry,
    merge_registry,
    open_registry,
    registry_status,
)
from cartreg.registry.submit import submit_submission
from cartreg.yamlio import load_yaml

SAMPLE = repo_root() / "sample_data"
REASON = "sample data: defects are planted on purpose"
SITES = sorted(p.parent for p in SAMPLE.glob("*/mapping.yaml"))

pytestmark = pytest.mark.skipif(
    not (SAMPLE / "redcap_a" / "mapping.yaml").is_file(), reason="sample REDCAP_A not built yet"
)


def site_id(folder: Path) -> str:
    mapping = load_yaml(folder / "mapping.yaml")
    return str(mapping["site_id"]).upper()


def second_cut_redcap_a(target: Path) -> None:
    """REDCAP_A corrected: record 2 removed, record 9001 added (a copy of 3), two fixes on
    baseline rows (birth year of 4, prior lines of 5)."""
    shutil.copytree(SAMPLE / "redcap_a", target)
    records = pl.read_csv(target / "records.csv", infer_schema=False)
    base = pl.col("redcap_repeat_instrument").is_null()
    added = records.filter(pl.col("record_id") == "3").with_columns(
        pl.lit("9001").alias("record_id")
    )
    fixed = records.filter(pl.col("record_id") != "2").with_columns(
        pl.when(base & (pl.col("record_id") == "4"))
        .then((pl.col("yob").cast(pl.Int64) + 1).cast(pl.String))
        .otherwise(pl.col("yob"))
        .alias("yob"),
        pl.when(base & (pl.col("record_id") == "5"))
        .then((pl.col("prior_lines").cast(pl.Int64) + 1).cast(pl.String))
        .otherwise(pl.col("prior_lines"))
        .alias("prior_lines"),
    )
    pl.concat([fixed, added]).write_csv(target / "records.csv")


@pytest.fixture(scope="module")
def sample_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    path = root / "registry.duckdb"
    init_registry(path)
    for folder in SITES:
        result = submit_submission(
            path,
            folder,
            site=site_id(folder),
            mapping_path=folder / "mapping.yaml",
            accept_reason=REASON,
            keep_output=root / "out" / folder.name,
        )
        assert result.status == "accepted"
    second = root / "redcap_a_v2"
    second_cut_redcap_a(second)
    result = submit_submission(
        path, second, site="REDCAP_A", mapping_path=second / "mapping.yaml", accept_reason=REASON
    )
    assert result.version == 2
    again = submit_submission(
        path, second, site="REDCAP_A", mapping_path=second / "mapping.yaml", accept_reason=REASON
    )
    assert again.is_noop
    # The other sites resend the same files with a touched mapping: a new version, no changes.
    for folder in SITES:
        if site_id(folder) == "REDCAP_A":
            continue
        copy = root / f"{folder.name}_v2"
        shutil.copytree(folder, copy)
        with (copy / "mapping.yaml").open("a", encoding="utf-8") as handle:
            handle.write("# reviewed with the coordinator, no change\n")
        result = submit_submission(
            path,
            copy,
            site=site_id(folder),
            mapping_path=copy / "mapping.yaml",
            accept_reason=REASON,
        )
        assert result.version == 2
    return path


def test_status_shows_the_versions(sample_registry: Path) -> None:
    with open_registry(sample_registry) as reg:
        status = registry_status(reg)
    redcap = status.filter(pl.col("site_id") == "REDCAP_A")
    assert redcap["version"].to_list() == [1, 2]
    assert redcap["noop_resubmissions"].to_list() == [0, 1]
    assert redcap["patients"][1] == redcap["patients"][0]  # one removed, one added
    assert set(status["site_id"]) == {site_id(f) for f in SITES}
    assert status.group_by("site_id").len()["len"].to_list() == [2] * len(SITES)


def test_same_data_under_a_new_mapping_version_shows_no_change(sample_registry: Path) -> None:
    with open_registry(sample_registry) as reg:
        for folder in SITES:
            if site_id(folder) != "REDCAP_A":
                report = diff_versions(reg, site_id(folder))
                assert report.is_empty, (folder.name, report.summary())


def test_resubmission_diff_names_exactly_the_changes(sample_registry: Path) -> None:
    with open_registry(sample_registry) as reg:
        report = diff_versions(reg, "REDCAP_A")
    assert report.patients("added") == ["REDCAP_A-9001"]
    assert report.patients("removed") == ["REDCAP_A-2"]
    events = report.records.filter(pl.col("table") != "patients")
    assert set(events.filter(pl.col("change") == "added")["patient_key"]) == {"REDCAP_A-9001"}
    assert set(events.filter(pl.col("change") == "removed")["patient_key"]) == {"REDCAP_A-2"}
    changed = {
        (r["table"], r["record_key"], r["column"]) for r in report.changes.iter_rows(named=True)
    }
    assert changed == {
        ("patients", "REDCAP_A-4", "birth_year"),
        # the age bounds derived from the birth year move with it
        ("patients", "REDCAP_A-4", "age_at_index_min_years"),
        ("patients", "REDCAP_A-4", "age_at_index_max_years"),
        ("patients", "REDCAP_A-5", "n_prior_lines"),
    }
    lost = report.findings
    assert lost.height == report.records.filter(pl.col("change") == "removed").height
    assert set(lost["severity"]) == {"warning"}


def test_merge_reconciles_and_lists_the_planted_duplicate(
    sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    result = merge_registry(sample_registry, out, no_pseudonyms=True)
    manifest = json.loads((out / "manifest.json").read_text())
    versions = {s["site_id"]: s["version"] for s in manifest["sites"]}
    assert versions["REDCAP_A"] == 2
    with open_registry(sample_registry) as reg:
        ids = [s["submission_id"] for s in manifest["sites"]]
        stored = [
            json.loads(m)
            for (m,) in reg.conn.execute(
                "SELECT manifest_json FROM submissions WHERE submission_id IN "
                f"({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
        ]
    for entry in manifest["tables"]:
        expected = sum(m["tables"][entry["table"]] for m in stored)
        assert pl.read_parquet(out / entry["file"]).height == entry["rows"] == expected
    if not {"EXCEL_B", "REDCAP_A"} <= set(versions):
        pytest.skip("planted duplicate needs EXCEL_B and REDCAP_A mappings")
    # Locate the planted pair in the sites' first ingest (row numbers of their own export).
    planted = pl.read_csv(SAMPLE / "defects.csv").filter(pl.col("rule_id") == "PU-001")
    first = {site_id(f): sample_registry.parent / "out" / f.name for f in SITES}
    keys = set()
    for site, row in planted.select("site_id", "source_row").iter_rows():
        patients = pl.read_parquet(first[site] / "tables" / "patients.parquet")
        hit = patients.filter(pl.col("source_row") == row)
        assert hit.height == 1, (site, row)
        keys.add(hit["patient_key"][0])
    listed = [{r["key_a"], r["key_b"]} for r in result.duplicates.iter_rows(named=True)]
    assert keys in listed


# identifiers and the compared fields, as the sites wrote them and as harmonized
IDENTIFYING = (
    "birth_year",
    "birth_date",
    "diagnosis_date",
    "infusion_date",
    "age_at_index_years",
    "sex_raw",
    "product",
    "product_raw",
    "ph_status",
    "ph_status_raw",
)


def test_the_planted_pair_is_explained_without_a_value_of_its_records(
    sample_registry: Path, tmp_path: Path
) -> None:
    from cartreg.registry.duplicates import pair_explanation

    out = tmp_path / "merged"
    result = merge_registry(sample_registry, out)
    patients = pl.read_parquet(out / "tables" / "patients.parquet")
    infusions = pl.read_parquet(out / "tables" / "car_t_infusions.parquet")
    for row in result.duplicates.iter_rows(named=True):
        keys = [row["key_a"], row["key_b"]]
        values: set[str] = set()
        for frame in (patients, infusions):
            records = frame.filter(pl.col("patient_key").is_in(keys))
            for column in IDENTIFYING:
                if column in records.columns:
                    values |= {str(v) for v in records[column].drop_nulls().to_list()}
        values = {v for v in values if len(v) > 1}  # "F", "m": too short to mean anything
        explained = pair_explanation({**row, "decision": None})
        steps = json.dumps(explained["steps"])
        finding = result.findings.filter(pl.col("value") == row["pair_id"])["message"][0]
        shown = finding.replace(row["key_a"], "").replace(row["key_b"], "")
        for value in values:
            assert value not in steps, value
            assert value not in shown, value
        # the weights add up to the match weight
        assert explained["steps"][-1]["cumulative"] == pytest.approx(row["match_weight"])
