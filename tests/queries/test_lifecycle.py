"""Query states across submissions: the transitions the scenario does not walk through."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from cartreg.cdm import CDM
from cartreg.cli.main import cli
from cartreg.errors import InputError
from cartreg.findings import findings_frame
from cartreg.queries.lifecycle import close_queries, history, reopen_queries
from cartreg.registry import open_registry, submit_output
from cartreg.registry.store import MIGRATIONS, STORE_SCHEMA_VERSION, migrate
from cartreg.rules.waivers import Waiver
from tests.queries.helpers import SITE, Site, blasts
from tests.registry.helpers import combine, patient, write_output

UTC = dt.UTC


ONE = patient(SITE, "1", assessments=2)
TWO = combine(ONE, patient(SITE, "2"))


def test_a_waiver_hides_its_finding_until_it_expires(site: Site) -> None:
    first = site.submit("2025-01-10T09:00:00Z", ONE, [blasts(3, "40.0")])
    assert (first.status, first.query_changes["opened"]) == ("rejected", 1)
    site.close(
        "SITE_A-Q00001",
        "2025-01-11T09:00:00+00:00",
        resolution="waived",
        reason="blast count confirmed by the lab",
        expires=dt.date(2025, 2, 1),
    )
    hidden = site.submit("2025-01-20T09:00:00Z", TWO, [blasts(3, "40.0")])
    assert (hidden.status, hidden.n_errors, hidden.query_changes["suppressed"]) == (
        "accepted",
        0,
        1,
    )
    assert site.queries() == {"SITE_A-Q00001": ("closed", "waived")}
    again = site.submit("2025-03-01T09:00:00Z", ONE, [blasts(3, "40.0")])
    assert (again.status, again.n_errors) == ("rejected", 1)
    assert site.queries() == {"SITE_A-Q00001": ("open", None)}
    assert site.reasons("SITE_A-Q00001")[-1] == ("reopen", "waiver expired on 2025-02-01")
    with open_registry(site.registry) as reg:
        flags = reg.conn.execute(
            "SELECT submission_id, suppressed FROM finding_fingerprints ORDER BY 1"
        ).fetchall()
    assert flags == [(1, False), (2, True), (3, False)]


def test_a_waived_value_that_changes_reopens_its_query(site: Site) -> None:
    site.submit("2025-01-10T09:00:00Z", ONE, [blasts(3, "40.0")])
    site.close("SITE_A-Q00001", "2025-01-11T09:00:00+00:00", resolution="waived", reason="ok")
    changed = site.submit("2025-01-20T09:00:00Z", TWO, [blasts(3, "55.0")])
    assert changed.query_changes["reopened"] == 1 and changed.n_errors == 1
    assert site.reasons("SITE_A-Q00001")[-1] == (
        "reopen",
        "value changed from 40.0 to 55.0 since the query was closed as waived",
    )


def test_resolution_names_a_patient_who_left_and_a_closed_query_that_returns(site: Site) -> None:
    # Assessment rows: SITE_A-1 at rows 2-3, SITE_A-2 at row 4.
    site.submit("2025-01-10T09:00:00Z", TWO, [blasts(2, "40.0"), blasts(4, "30.0")])
    assert site.queries() == {"SITE_A-Q00001": ("open", None), "SITE_A-Q00002": ("open", None)}
    site.close("SITE_A-Q00002", "2025-01-11T09:00:00+00:00", resolution="unobtainable", reason="-")
    site.submit("2025-02-01T09:00:00Z", patient(SITE, "2"), [])
    assert site.reasons("SITE_A-Q00001")[-1] == ("resolve", "patient SITE_A-1 is not in version 2")
    assert site.reasons("SITE_A-Q00002")[-1] == (
        "resolve",
        "no longer found in version 2 (was unobtainable)",
    )
    # SITE_A-2's assessment is now the first row of the file: same event, same query.
    three = combine(patient(SITE, "2"), patient(SITE, "3"))
    site.submit("2025-03-01T09:00:00Z", three, [blasts(2, "30.0")])
    assert site.queries()["SITE_A-Q00002"] == ("open", None)
    assert site.reasons("SITE_A-Q00002")[-1] == ("reopen", "finding returned in version 3")


def test_info_findings_open_queries_only_when_configured(site: Site) -> None:
    info = blasts(2, "1.0", severity="info")
    assert site.submit("2025-01-10T09:00:00Z", ONE, [info]).query_changes["opened"] == 0
    result = CliRunner().invoke(
        cli,
        ["queries", "configure", "--registry", str(site.registry), "--min-severity", "info"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert site.submit("2025-01-20T09:00:00Z", TWO, [info]).query_changes["opened"] == 1


def test_a_waivers_file_at_submit_closes_the_queries_it_names(site: Site) -> None:
    finding = blasts(3, "40.0")
    finding_id = findings_frame(pl.DataFrame([finding]))["finding_id"][0]
    waiver = Waiver(finding_id, "lab confirmed", dt.date(2026, 1, 1), "PA-004", "dr-lab")
    result = site.submit("2025-01-10T09:00:00Z", ONE, [finding], waivers=[waiver])
    assert (result.status, result.n_errors) == ("accepted", 0)
    assert result.query_changes == {
        "opened": 1,
        "resolved": 0,
        "reopened": 0,
        "waived": 1,
        "still_present": 0,
        "suppressed": 1,
    }
    with open_registry(site.registry) as reg:
        events = history(reg).select("action", "actor", "reason", "expires").rows()
    assert events == [
        ("open", "dm", "found in version 1", None),
        ("waive", "dr-lab", "lab confirmed", dt.date(2026, 1, 1)),
    ]


def test_import_waivers_closes_the_queries_of_stored_findings(site: Site, tmp_path: Path) -> None:
    site.submit("2025-01-10T09:00:00Z", TWO, [blasts(2, "40.0"), blasts(4, "30.0")])
    with open_registry(site.registry) as reg:
        ids = [
            r[0]
            for r in reg.conn.execute(
                "SELECT finding_id FROM submission_findings ORDER BY source_row"
            ).fetchall()
        ]
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n"
        f"  - {{finding_id: {ids[0]}, justification: lab confirmed, expires: 2030-01-01}}\n"
        "  - {finding_id: ffffffffffffffff, justification: stale, expires: 2030-01-01}\n"
        f"  - {{finding_id: {ids[1]}, justification: too old, expires: 2020-01-01}}\n",
        encoding="utf-8",
    )
    args = ["queries", "import-waivers", str(waivers), "--registry", str(site.registry)]
    result = CliRunner().invoke(
        cli, [*args, "--site", SITE], env={"CARTREG_TEST_NOW": "2025-01-12T00:00:00Z"}
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 queries waived, 0 already waived, 1 waivers expired, 1 matched no query" in text
    assert "no query for finding ffffffffffffffff" in text
    assert site.queries() == {
        "SITE_A-Q00001": ("closed", "waived"),
        "SITE_A-Q00002": ("open", None),
    }


def test_a_noop_resubmission_leaves_queries_alone(site: Site) -> None:
    site.submit("2025-01-10T09:00:00Z", ONE, [blasts(2, "40.0")])
    noop = site.submit("2025-01-20T09:00:00Z", ONE, [])
    assert noop.is_noop
    assert site.queries() == {"SITE_A-Q00001": ("open", None)}
    assert len(site.reasons("SITE_A-Q00001")) == 1


def test_an_older_store_gains_the_query_tables_at_the_next_submit(
    tmp_path: Path, mapping_file: Path, cdm: CDM, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(path))
    migrate(conn, migrations=MIGRATIONS[:1])
    conn.close()
    old = Site(path, mapping_file, tmp_path, cdm, monkeypatch)
    old.submit("2025-01-10T09:00:00Z", ONE, [blasts(2, "40.0")])
    with open_registry(path) as reg:
        assert reg.schema_version == STORE_SCHEMA_VERSION
    assert old.queries() == {"SITE_A-Q00001": ("open", None)}


def test_closing_and_reopening_refuse_the_wrong_state(site: Site) -> None:
    site.submit("2025-01-10T09:00:00Z", ONE, [blasts(2, "40.0")])
    when = dt.datetime(2025, 1, 11, tzinfo=UTC)
    with open_registry(site.registry, write=True) as reg:
        with pytest.raises(InputError, match="is not closed"):
            reopen_queries(reg, ["SITE_A-Q00001"], reason="x", actor="c", when=when)
        with pytest.raises(InputError, match="needs a reason"):
            close_queries(
                reg, ["SITE_A-Q00001"], resolution="waived", reason=" ", actor="c", when=when
            )
        with pytest.raises(InputError, match="only a waiver has an expiry"):
            close_queries(
                reg,
                ["SITE_A-Q00001"],
                resolution="unobtainable",
                reason="x",
                actor="c",
                when=when,
                expires=dt.date(2026, 1, 1),
            )
        with pytest.raises(InputError, match="no query SITE_A-Q09999"):
            close_queries(
                reg, ["SITE_A-Q09999"], resolution="waived", reason="x", actor="c", when=when
            )
        close_queries(
            reg, ["SITE_A-Q00001"], resolution="waived", reason="ok", actor="c", when=when
        )
        with pytest.raises(InputError, match="already closed"):
            close_queries(
                reg, ["SITE_A-Q00001"], resolution="waived", reason="x", actor="c", when=when
            )
        reopen_queries(reg, ["SITE_A-Q00001"], reason="waived in error", actor="c", when=when)
    assert site.queries() == {"SITE_A-Q00001": ("open", None)}


def test_table_level_findings_without_a_site_are_each_sites_own(
    site: Site, cdm: CDM, tmp_path: Path
) -> None:
    """A missing column is reported without site or row; two sites missing it have two
    queries (one fingerprint each), not one shared, nor a crash on the unique key."""
    missing = {
        "rule_id": "CDM-COLUMN-MISSING",
        "severity": "warning",
        "category": "conformance",
        "message": "column ph_status is missing",
        "site_id": None,
        "table": "patients",
        "column": "ph_status",
    }
    site.submit("2025-01-10T09:00:00Z", ONE, [missing])
    other = write_output(cdm, tmp_path / "site_b", "SITE_B", patient("SITE_B", "1"), [missing])
    result = submit_output(site.registry, other, site="SITE_B", mapping_path=site.mapping, cdm=cdm)
    assert result.query_changes["opened"] == 1
    with open_registry(site.registry) as reg:
        rows = reg.conn.execute(
            "SELECT query_id, site_id, anchor FROM queries ORDER BY query_id"
        ).fetchall()
    assert rows == [("SITE_A-Q00001", "SITE_A", "table"), ("SITE_B-Q00001", "SITE_B", "table")]
