from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from cartreg.errors import InputError
from cartreg.registry import init_registry, merge_registry, submit_output
from cartreg.registry.pseudonym import pseudonym
from tests.registry.helpers import MakeOutput, combine, patient

SECRET = b"correct horse battery staple 42"
ERROR = {"rule_id": "CV-001", "severity": "error", "category": "conformance", "message": "m"}


@pytest.fixture
def registry(tmp_path: Path, make_output: MakeOutput, mapping_file: Path) -> Path:
    """SITE_A v1 (2 patients); SITE_B v1 accepted (2 patients, one a duplicate of SITE_A-1)
    and v2 rejected (must not be merged)."""
    path = tmp_path / "registry.duckdb"
    init_registry(path)
    a = combine(patient("SITE_A", "1", assessments=2), patient("SITE_A", "2", sex="M"))
    b = combine(
        patient("SITE_B", "1", infusion="2022-03-02"),
        patient("SITE_B", "2", sex="M", birth_year=1955, infusion="2021-01-10"),
    )
    submit_output(path, make_output("SITE_A", a), site="SITE_A", mapping_path=mapping_file)
    submit_output(path, make_output("SITE_B", b), site="SITE_B", mapping_path=mapping_file)
    bad = combine(b, patient("SITE_B", "3"))
    rejected = submit_output(
        path, make_output("SITE_B", bad, findings=[ERROR]), site="SITE_B", mapping_path=mapping_file
    )
    assert rejected.status == "rejected"
    return path


def all_text(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_merge_unions_latest_accepted_versions_and_reconciles(
    registry: Path, tmp_path: Path
) -> None:
    result = merge_registry(registry, tmp_path / "merged", no_pseudonyms=True)
    out = tmp_path / "merged"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["site_id"], s["version"]) for s in manifest["sites"]] == [
        ("SITE_A", 1),
        ("SITE_B", 1),
    ]
    patients = pl.read_parquet(out / "tables" / "patients.parquet")
    assert sorted(patients["patient_key"]) == ["SITE_A-1", "SITE_A-2", "SITE_B-1", "SITE_B-2"]
    for entry in manifest["tables"]:
        frame = pl.read_parquet(out / entry["file"])
        rec = manifest["reconciliation"][entry["table"]]
        per_site = sum(
            s["tables"].get(entry["table"], {}).get("rows", 0) for s in manifest["sites"]
        )
        assert frame.height == entry["rows"] == rec["rows_out"] == rec["rows_in"] == per_site
    assert manifest["reconciliation"]["disease_assessments"]["rows_out"] == 5
    assert manifest["patient_keys"]["pseudonymized"] is False
    assert "site-prefixed local ids" in manifest["patient_keys"]["note"]
    # The planted duplicate is listed for review, and reported, but nothing is dropped.
    dups = pl.read_csv(out / "duplicates.csv")
    assert dups.select("key_a", "key_b").rows() == [("SITE_A-1", "SITE_B-1")]
    assert dups["decision"].to_list() == [None]
    pu = result.findings.filter(pl.col("rule_id") == "PU-001")
    assert pu["severity"].to_list() == ["warning"]
    assert manifest["duplicates"]["unreviewed"] == 1


def test_file_checksums_in_manifest_match(registry: Path, tmp_path: Path) -> None:
    import hashlib

    merge_registry(registry, tmp_path / "m", no_pseudonyms=True)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    for entry in [*manifest["tables"], *manifest["files"]]:
        data = (tmp_path / "m" / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_pseudonymous_keys_hide_local_ids_and_never_store_the_secret(
    registry: Path, tmp_path: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    out = tmp_path / "m1"
    merge_registry(registry, out, secret=SECRET)
    patients = pl.read_parquet(out / "tables" / "patients.parquet")
    expected = pseudonym(SECRET, "SITE_A-1")
    assert expected in patients["patient_key"].to_list()
    assessments = pl.read_parquet(out / "tables" / "disease_assessments.parquet")
    assert f"{expected}-A2" in assessments["assessment_id"].to_list()
    text = all_text(out)
    assert b"SITE_A-1" not in text and b"SITE_B-2" not in text
    assert SECRET not in text and SECRET not in registry.read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["patient_keys"]["pseudonymized"] is True
    # A resubmission of site A keeps the key of the same local id.
    submit_output(
        registry,
        make_output("SITE_A", combine(*(patient("SITE_A", k) for k in "125"))),
        site="SITE_A",
        mapping_path=mapping_file,
    )
    merge_registry(registry, tmp_path / "m2", secret=SECRET)
    again = pl.read_parquet(tmp_path / "m2" / "tables" / "patients.parquet")
    assert expected in again["patient_key"].to_list()


@pytest.mark.parametrize("by_pseudonym", [False, True])
def test_link_file_decides_which_record_is_kept(
    registry: Path, tmp_path: Path, by_pseudonym: bool
) -> None:
    secret = SECRET if by_pseudonym else None
    key = (lambda k: pseudonym(SECRET, k)) if by_pseudonym else (lambda k: k)
    links = tmp_path / "links.csv"
    pl.DataFrame(
        {
            "key_a": [key("SITE_B-1")],
            "key_b": [key("SITE_A-1")],
            "decision": ["same"],
            "keep": [key("SITE_A-1")],
            "reason": ["same DOB and MRN at both sites"],
        }
    ).write_csv(links)
    result = merge_registry(
        registry, tmp_path / "m", secret=secret, links_path=links, no_pseudonyms=not by_pseudonym
    )
    patients = pl.read_parquet(tmp_path / "m" / "tables" / "patients.parquet")
    assert key("SITE_B-1") not in patients["patient_key"].to_list()
    assert key("SITE_A-1") in patients["patient_key"].to_list()
    rec = result.manifest["reconciliation"]
    assert rec["patients"] == {"rows_in": 4, "dropped_as_duplicates": 1, "rows_out": 3}
    assert rec["disease_assessments"]["dropped_as_duplicates"] == 1
    pu = result.findings.filter(pl.col("rule_id") == "PU-001")
    assert pu["severity"].to_list() == ["info"]


def test_merge_refuses_a_non_empty_output_and_an_empty_registry(
    registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        merge_registry(registry, out, secret=SECRET)
    with pytest.raises(InputError, match="not a previous merge output"):
        merge_registry(registry, out, overwrite=True, secret=SECRET)
    assert (out / "x").read_text() == "keep me"
    merge_registry(registry, tmp_path / "m", secret=SECRET)
    again = merge_registry(registry, tmp_path / "m", overwrite=True, secret=SECRET)
    assert (tmp_path / "m" / "manifest.json").is_file() and again.manifest["sites"]
    empty = tmp_path / "empty.duckdb"
    init_registry(empty)
    with pytest.raises(InputError, match="no accepted submission"):
        merge_registry(empty, tmp_path / "o", secret=SECRET)


def test_a_link_decision_survives_a_resubmission(
    registry: Path, tmp_path: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    from cartreg.registry import open_registry
    from cartreg.registry.linkage_store import decide_pair

    first = merge_registry(registry, tmp_path / "m1", secret=SECRET)
    row = first.duplicates.row(0, named=True)
    assert {row["key_a"], row["key_b"]} == {
        pseudonym(SECRET, "SITE_A-1"),
        pseudonym(SECRET, "SITE_B-1"),
    }
    with open_registry(registry, write=True) as reg:
        decide_pair(
            reg,
            key_a=row["key_a"],
            key_b=row["key_b"],
            decision="same",
            keep=pseudonym(SECRET, "SITE_A-1"),
            reason="one patient, referred by SITE_B",
            reviewer="coordinator",
            secret=SECRET,
        )
    # SITE_B sends its next cut: the same patients and a new one
    b2 = combine(
        patient("SITE_B", "1", infusion="2022-03-02"),
        patient("SITE_B", "2", sex="M", birth_year=1955, infusion="2021-01-10"),
        patient("SITE_B", "9", sex="M", birth_year=1990, infusion="2024-04-04"),
    )
    submit_output(registry, make_output("SITE_B", b2), site="SITE_B", mapping_path=mapping_file)
    second = merge_registry(
        registry, tmp_path / "m2", no_pseudonyms=True
    )  # no link file, no secret
    pair = second.duplicates.filter(pl.col("key_b") == "SITE_B-1").row(0, named=True)
    assert (pair["decision"], pair["keep"]) == ("same", "SITE_A-1")
    patients = pl.read_parquet(tmp_path / "m2" / "tables" / "patients.parquet")
    assert "SITE_B-1" not in patients["patient_key"].to_list()
    assert second.linkage is not None and second.linkage.mode == "incremental"
    assert second.linkage.new_records == 1  # only SITE_B-9 was scored
    assert pair["cluster_id"] == first.duplicates["cluster_id"][0]


def test_a_record_of_a_later_submission_joins_the_existing_cluster(
    registry: Path, tmp_path: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    first = merge_registry(registry, tmp_path / "m1", no_pseudonyms=True)
    cluster = first.duplicates["cluster_id"][0]
    assert cluster is not None
    c = combine(patient("SITE_C", "3", infusion="2022-03-01"))  # the same patient, a third site
    submit_output(registry, make_output("SITE_C", c), site="SITE_C", mapping_path=mapping_file)
    second = merge_registry(registry, tmp_path / "m2", no_pseudonyms=True)
    assert second.linkage is not None
    assert (second.linkage.mode, second.linkage.new_records) == ("incremental", 1)
    members = second.linkage.clusters.filter(pl.col("cluster_id") == cluster)
    assert sorted(members["unique_id"]) == ["SITE_A-1", "SITE_B-1", "SITE_C-3"]
    dups = pl.read_csv(tmp_path / "m2" / "duplicates.csv")
    assert set(dups["cluster_id"]) == {cluster}
    # every comparison's weight is in the review list and adds up to the match weight
    weights = dups.select(pl.sum_horizontal(pl.col("^mw_.*$")))
    assert weights.to_series().round(6).to_list() == dups["match_weight"].round(6).to_list()


def test_html_findings_explain_each_pair(registry: Path, tmp_path: Path) -> None:
    html = tmp_path / "merge.html"
    result = merge_registry(registry, tmp_path / "m", html_path=html, no_pseudonyms=True)
    page = html.read_text(encoding="utf-8")
    pair = result.duplicates.row(0, named=True)
    assert pair["pair_id"] in page and "PU-001" in page
    assert "match probability" in page and "infusion within 3 days (+" in page
    as_json = json.loads((tmp_path / "m" / "findings.json").read_text())
    message = next(f["message"] for f in as_json if f["value"] == pair["pair_id"])
    assert "infusion within 3 days (+" in message and "prior -" in message
