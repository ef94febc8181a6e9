from __future__ import annotations

from pathlib import Path

import pytest

from cartreg.errors import InputError
from cartreg.registry import decide, init_registry, open_registry, registry_status, submit_output
from cartreg.registry.status import noop_log
from tests.registry.helpers import MakeOutput, combine, patient, snapshot

SITE = "SITE_A"
ERROR = {
    "rule_id": "CV-001",
    "severity": "error",
    "category": "conformance",
    "message": "bad sex",
    "site_id": SITE,
    "source_file": "patients.csv",
    "source_row": 2,
}


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.duckdb"
    init_registry(path)
    return path


def test_submit_stores_a_version_and_status_counts_it(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    out = make_output(SITE, combine(patient(SITE, "1", assessments=2), patient(SITE, "2")))
    result = submit_output(registry, out, site=SITE, mapping_path=mapping_file, who="tester")
    assert (result.version, result.status) == (1, "accepted")
    assert result.rows["patients"] == 2 and result.rows["disease_assessments"] == 3
    with open_registry(registry) as reg:
        status = registry_status(reg)
        files = reg.scalar("SELECT count(*) FROM submission_files")
    row = status.row(0, named=True)
    assert (row["site_id"], row["version"], row["status"]) == (SITE, 1, "accepted")
    assert (row["patients"], row["events"], row["submitted_by"]) == (2, 5, "tester")
    assert files == 7


def test_identical_resubmission_is_a_noop(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    rows = patient(SITE, "1")
    submit_output(registry, make_output(SITE, rows), site=SITE, mapping_path=mapping_file)
    before = snapshot(registry)
    again = submit_output(registry, make_output(SITE, rows), site=SITE, mapping_path=mapping_file)
    assert again.is_noop and again.noop_of_version == 1 and again.version is None
    after = snapshot(registry)
    assert after["patients"] == before["patients"]
    with open_registry(registry) as reg:
        assert registry_status(reg)["noop_resubmissions"].to_list() == [1]
        assert noop_log(reg)["same_as_version"].to_list() == [1]


def test_changed_mapping_is_a_new_version(
    registry: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    rows = patient(SITE, "1")
    submit_output(registry, make_output(SITE, rows), site=SITE, mapping_path=mapping_file)
    other = tmp_path / "mapping2.yaml"
    other.write_text("site_id: SITE_A\nmapping_version: '2'\n", encoding="utf-8")
    result = submit_output(registry, make_output(SITE, rows), site=SITE, mapping_path=other)
    assert result.version == 2


def test_errors_reject_unless_accepted_with_a_reason(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    out = make_output(SITE, patient(SITE, "1"), findings=[ERROR])
    rejected = submit_output(registry, out, site=SITE, mapping_path=mapping_file)
    assert (rejected.status, rejected.n_errors) == ("rejected", 1)
    out2 = make_output(SITE, patient(SITE, "2"), findings=[ERROR])
    accepted = submit_output(
        registry, out2, site=SITE, mapping_path=mapping_file, accept_reason="known, fixed in Q3"
    )
    assert (accepted.version, accepted.status) == (2, "accepted")
    relaxed = submit_output(
        registry,
        make_output(SITE, combine(patient(SITE, "2"), patient(SITE, "3")), findings=[ERROR]),
        site=SITE,
        mapping_path=mapping_file,
        fail_on="never",
    )
    assert relaxed.status == "accepted"
    with open_registry(registry) as reg:
        assert reg.scalar("SELECT count(*) FROM submission_findings WHERE submission_id = 1") == 1
        log = reg.conn.execute("SELECT submission_id, status, reason FROM decisions").fetchall()
    assert log == [(2, "accepted", "known, fixed in Q3")]


def test_decide_changes_status_and_logs(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    submit_output(
        registry,
        make_output(SITE, patient(SITE, "1"), findings=[ERROR]),
        site=SITE,
        mapping_path=mapping_file,
    )
    decide(registry, site=SITE, version=1, status="accepted", reason="reviewed", who="coord")
    with open_registry(registry) as reg:
        assert registry_status(reg)["status"].to_list() == ["accepted"]
    with pytest.raises(InputError, match="no version 7"):
        decide(registry, site=SITE, version=7, status="rejected", reason="x")
    with pytest.raises(InputError, match="needs a reason"):
        decide(registry, site=SITE, version=1, status="rejected", reason=" ")


def test_other_site_rows_are_refused(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    out = make_output("SITE_B", patient("SITE_B", "1"))
    with pytest.raises(InputError, match=r"manifest\.json is for site SITE_B"):
        submit_output(registry, out, site=SITE, mapping_path=mapping_file)


def test_another_sites_mapping_is_refused_as_provenance(
    registry: Path, make_output: MakeOutput, tmp_path: Path
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("site_id: SITE_B\nmapping_version: '1'\n", encoding="utf-8")
    out = make_output(SITE, patient(SITE, "1"))
    with pytest.raises(InputError, match="the mapping is for site SITE_B, not SITE_A"):
        submit_output(registry, out, site=SITE, mapping_path=other, accept_reason="known")
    with open_registry(registry) as reg:
        assert registry_status(reg).height == 0  # nothing stored


def test_exception_inside_the_transaction_leaves_registry_unchanged(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    import polars as pl

    submit_output(
        registry, make_output(SITE, patient(SITE, "1")), site=SITE, mapping_path=mapping_file
    )
    before = snapshot(registry)
    out = make_output(SITE, combine(patient(SITE, "1"), patient(SITE, "2")))
    # A follow-up table whose date column is text that cannot be cast: the insert of the last
    # table fails after the submission row, findings and other tables were written.
    follow = pl.read_parquet(out / "tables" / "follow_up.parquet").with_columns(
        pl.lit("not a date").alias("data_cut_date")
    )
    follow.write_parquet(out / "tables" / "follow_up.parquet")
    with pytest.raises(Exception, match=r"(?i)conversion|cast|date"):
        submit_output(registry, out, site=SITE, mapping_path=mapping_file)
    assert snapshot(registry) == before


def test_an_export_without_patients_is_never_stored(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    """A header-only or empty export (tables with no rows) would replace the site's data."""
    submit_output(
        registry, make_output(SITE, patient(SITE, "1")), site=SITE, mapping_path=mapping_file
    )
    before = snapshot(registry)
    for fail_on, reason in (("error", None), ("never", "site says so")):
        with pytest.raises(InputError, match="no patients"):
            submit_output(
                registry,
                make_output(SITE, {}),
                site=SITE,
                mapping_path=mapping_file,
                fail_on=fail_on,
                accept_reason=reason,
            )
    assert snapshot(registry) == before


def test_a_resubmission_losing_patients_needs_a_reason(
    registry: Path, make_output: MakeOutput, mapping_file: Path
) -> None:
    three = combine(*(patient(SITE, k) for k in "123"))
    submit_output(registry, make_output(SITE, three), site=SITE, mapping_path=mapping_file)
    two = make_output(SITE, combine(patient(SITE, "1"), patient(SITE, "3")))
    # --fail-on never does not let it through: losing patients is not a matter of severity.
    lost = submit_output(registry, two, site=SITE, mapping_path=mapping_file, fail_on="never")
    assert (lost.version, lost.status, lost.patients_lost) == (2, "rejected", 1)
    assert lost.lost_from_version == 1
    with open_registry(registry) as reg:
        found = reg.frame(
            "SELECT rule_id, severity, value, source_file, source_row FROM submission_findings "
            "WHERE submission_id = 2"
        )
    assert found.rows() == [("REG-PATIENTS-LOST", "error", "SITE_A-2", "patients.csv", 3)]
    # Against the latest *accepted* version (1, not the rejected 2); accepted with a reason.
    still = make_output(SITE, combine(*(patient(SITE, k) for k in "134")))
    accepted = submit_output(
        registry, still, site=SITE, mapping_path=mapping_file, accept_reason="SITE_A-2 withdrew"
    )
    assert (accepted.version, accepted.status, accepted.patients_lost) == (3, "accepted", 1)
    with open_registry(registry) as reg:
        log = reg.conn.execute("SELECT submission_id, status, reason FROM decisions").fetchall()
    assert log == [(3, "accepted", "SITE_A-2 withdrew")]
    # The next version is compared with version 3: nothing lost, accepted as usual.
    more = make_output(SITE, combine(*(patient(SITE, k) for k in "1345")))
    assert submit_output(registry, more, site=SITE, mapping_path=mapping_file).status == "accepted"
