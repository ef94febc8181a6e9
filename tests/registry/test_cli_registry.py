"""The registry commands end to end on real CSV submissions (real ingest and rules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from cartreg.cli.main import cli

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "consortium-secret-for-tests-0123456789"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SITE_A v1 and v2 (two corrections, P003 removed, P004 added), SITE_B v1, and an
    identical resubmission of SITE_A v2."""
    path = tmp_path_factory.mktemp("reg") / "registry.duckdb"
    assert run("registry", "init", str(path)).exit_code == 0
    site_a = ("--site", "SITE_A", "--mapping", str(FIXTURES / "site_a" / "mapping.yaml"))
    reg = ("--registry", str(path), "--who", "site-a-dm")
    first = run("registry", "submit", str(FIXTURES / "site_a" / "v1"), *site_a, *reg)
    assert first.exit_code == 0, first.output
    assert "stored version 1 as accepted" in first.output
    b = run(
        "registry",
        "submit",
        str(FIXTURES / "site_b"),
        "--site",
        "SITE_B",
        "--mapping",
        str(FIXTURES / "site_b" / "mapping.yaml"),
        "--registry",
        str(path),
    )
    assert b.exit_code == 0, b.output
    # v2 drops P003: not accepted without a reason (REG-PATIENTS-LOST)
    lost = ("--accept-reason", "P003 withdrew consent")
    second = run("registry", "submit", str(FIXTURES / "site_a" / "v2"), *site_a, *reg, *lost)
    assert "stored version 2 as accepted" in second.output
    assert "1 patient(s) of accepted version 1 are missing" in second.output
    again = run("registry", "submit", str(FIXTURES / "site_a" / "v2"), *site_a, *reg)
    assert again.exit_code == 0 and "recorded as a no-op" in again.output
    return path


def test_status_shows_two_versions_of_site_a(registry: Path) -> None:
    result = run("registry", "status", "--registry", str(registry), "--json")
    rows = json.loads(result.output)
    versions = [(r["site_id"], r["version"], r["status"]) for r in rows]
    assert versions == [
        ("SITE_A", 1, "accepted"),
        ("SITE_A", 2, "accepted"),
        ("SITE_B", 1, "accepted"),
    ]
    assert [r["patients"] for r in rows] == [3, 3, 2]
    assert rows[1]["noop_resubmissions"] == 1
    table = run("registry", "status", "--registry", str(registry))
    assert "SITE_A" in table.output and "accepted" in table.output


def test_diff_names_exactly_the_changes(registry: Path, tmp_path: Path) -> None:
    html = tmp_path / "diff.html"
    result = run(
        "registry",
        "diff",
        "--site",
        "SITE_A",
        "--registry",
        str(registry),
        "--json",
        "-",
        "--html",
        str(html),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["patients_added"] == ["SITE_A-P004"]
    assert data["patients_removed"] == ["SITE_A-P003"]
    events = {
        (r["table"], r["record_key"], r["change"])
        for r in data["records"]
        if r["table"] != "patients"
    }
    assert events == {
        (t, f"SITE_A-P00{n}{suffix}", change)
        for n, change in ((3, "removed"), (4, "added"))
        for t, suffix in (
            ("car_t_infusions", "-INF1"),
            ("disease_assessments", "-A1"),
            ("follow_up", ""),
        )
    }
    changed = {
        (c["table"], c["record_key"], c["column"], c["old"], c["new"]) for c in data["changes"]
    }
    assert changed == {
        ("patients", "SITE_A-P002", "birth_year", "1961", "1962"),
        # the age bounds derived from the birth year move with it
        ("patients", "SITE_A-P002", "age_at_index_min_years", "59.45", "58.45"),
        ("patients", "SITE_A-P002", "age_at_index_max_years", "60.46", "59.46"),
        ("disease_assessments", "SITE_A-P002-A1", "bm_blast_pct", "0.0", "4.0"),
        ("follow_up", "SITE_A-P001", "last_contact_date", "2024-01-10", "2024-06-10"),
        ("follow_up", "SITE_A-P001", "last_contact_day", "680", "832"),
    }
    lost = {f["table"] for f in data["findings"]}
    assert lost == {"patients", "car_t_infusions", "disease_assessments", "follow_up"}
    assert all(f["rule_id"] == "REG-RECORD-LOST" for f in data["findings"])
    assert "SITE_A-P004" in html.read_text(encoding="utf-8")
    terminal = run(
        "registry", "diff", "--site", "SITE_A", "--registry", str(registry), "--fail-on", "warning"
    )
    assert terminal.exit_code == 1  # records lost are warnings
    assert "patients removed (1): SITE_A-P003" in terminal.output


def _merge(registry: Path, out: Path) -> Result:
    return run(
        "registry",
        "merge",
        "--out",
        str(out),
        "--registry",
        str(registry),
        env={"CARTREG_SECRET": SECRET},
    )


def test_merge_reconciles_with_site_manifests_and_lists_the_planted_duplicate(
    registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    result = _merge(registry, out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["site_id"], s["version"]) for s in manifest["sites"]] == [
        ("SITE_A", 2),
        ("SITE_B", 1),
    ]
    assert manifest["patient_keys"]["pseudonymized"] is True
    from cartreg.registry import open_registry

    with open_registry(registry) as reg:
        site_manifests = [
            json.loads(m)
            for (m,) in reg.conn.execute(
                "SELECT manifest_json FROM submissions WHERE submission_id IN (2, 3)"
            ).fetchall()
        ]
    for entry in manifest["tables"]:
        expected = sum(m["tables"][entry["table"]] for m in site_manifests)
        assert pl.read_parquet(out / entry["file"]).height == entry["rows"] == expected
    dups = pl.read_csv(out / "duplicates.csv")
    assert dups.height == 1 and dups["site_a"][0] == "SITE_A" and dups["site_b"][0] == "SITE_B"
    assert "UNREVIEWED" in result.output
    text = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"P001" not in text and b"B17" not in text and SECRET.encode() not in text


def test_accept_and_reject_change_what_is_merged(registry: Path, tmp_path: Path) -> None:
    rejected = run(
        "registry",
        "reject",
        "--site",
        "SITE_A",
        "--version",
        "2",
        "--reason",
        "P003 removal unexplained",
        "--registry",
        str(registry),
    )
    assert rejected.exit_code == 0, rejected.output
    result = run(
        "registry",
        "merge",
        "--out",
        str(tmp_path / "m"),
        "--registry",
        str(registry),
        "--no-pseudonyms",
    )
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert [(s["site_id"], s["version"]) for s in manifest["sites"]] == [
        ("SITE_A", 1),
        ("SITE_B", 1),
    ]
    assert "site-prefixed local ids" in result.output
    accepted = run(
        "registry",
        "accept",
        "--site",
        "SITE_A",
        "--version",
        "2",
        "--reason",
        "site confirmed P003 withdrew consent",
        "--registry",
        str(registry),
    )
    assert accepted.exit_code == 0


def test_merge_needs_a_secret_unless_told_to_publish_local_keys(
    registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    base = ("registry", "merge", "--out", str(out), "--registry", str(registry))
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET, encoding="utf-8")
    # no secret at all; a secret file together with --no-pseudonyms ($CARTREG_SECRET alone is
    # ignored under --no-pseudonyms: the flag is the explicit choice)
    for args, env in [((), {}), (("--no-pseudonyms", "--secret-file", str(secret_file)), {})]:
        proc = subprocess.run(
            [sys.executable, "-m", "cartreg", *base, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "CARTREG_SECRET"} | env,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "secret" in proc.stderr and "--no-pseudonyms" in proc.stderr
        assert not out.exists()


def test_unusable_input_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "registry",
            "status",
            "--registry",
            str(tmp_path / "none.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "registry not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_merge_prints_the_first_duplicate_pairs_and_counts_the_rest(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cartreg.cli import registry as registry_cli

    # One planted pair here; with none shown, the terminal points at the CSV instead.
    monkeypatch.setattr(registry_cli, "SHOWN_PAIRS", 0)
    out = tmp_path / "merged"
    result = _merge(registry, out)
    assert result.exit_code == 0, result.output
    assert "UNREVIEWED" not in result.output
    assert f"… and 1 more pair(s) in {out / 'duplicates.csv'}" in result.output.replace("\n", "")
    assert pl.read_csv(out / "duplicates.csv").height == 1


def test_review_explains_a_pair_and_link_records_a_decision_for_later_merges(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.delenv("CARTREG_SECRET", raising=False)

    reg = tmp_path / "registry.duckdb"
    shutil.copy(registry, reg)  # decisions are written: keep the shared registry as it was
    out = tmp_path / "m1"
    assert _merge(reg, out).exit_code == 0
    pair_id = pl.read_csv(out / "duplicates.csv")["pair_id"][0]

    shown = run("registry", "review", pair_id, "--merged", str(out))
    assert shown.exit_code == 0, shown.output
    assert "infusion" in shown.output and "match probability" in shown.output
    explained = json.loads(
        run("registry", "review", pair_id, "--merged", str(out), "--json").output
    )
    steps = explained["steps"]
    assert steps[0]["comparison"] == "prior"
    assert steps[-1]["cumulative"] == pytest.approx(explained["match_weight"])
    # the explanation names comparisons and levels, never a value of either record
    text = json.dumps(steps)
    for value in ("1970", "2022", "03-01", "03-02", "tisagenlecleucel", "Kymriah", "P001", "B17"):
        assert value not in text

    from cartreg.errors import InputError

    with pytest.raises(InputError, match="is not listed"):  # exit 2, one line, in `cartreg`
        run("registry", "review", "DUP-000000000000", "--merged", str(out))
    # an id cut short when copied is answered with the id it begins, not with its form
    with pytest.raises(InputError, match=f"did you mean {pair_id}"):
        run("registry", "review", pair_id[:-3], "--merged", str(out))
    with pytest.raises(InputError, match="pair ids start with DUP-"):
        run("registry", "review", pair_id[4:], "--merged", str(out))

    keep = explained["key_a"]
    args = ("--merged", str(out), "--registry", str(reg), "--reason", "same MRN on both letters")
    with pytest.raises(InputError, match="pseudonyms"):
        run("registry", "link", pair_id, "--decision", "same", "--keep", keep, *args)
    with pytest.raises(InputError, match="--keep must name one of the pair's two records: "):
        run("registry", "link", pair_id, "--decision", "same", "--keep", "PSN-typo", *args)
    linked = run(
        "registry",
        "link",
        pair_id,
        "--decision",
        "same",
        "--keep",
        keep,
        *args,
        env={"CARTREG_SECRET": SECRET},
    )
    assert linked.exit_code == 0, linked.output
    second = _merge(reg, tmp_path / "m2")
    assert second.exit_code == 0, second.output
    dups = pl.read_csv(tmp_path / "m2" / "duplicates.csv")
    assert dups.select("decision", "keep").row(0) == ("same", keep)
    manifest = json.loads((tmp_path / "m2" / "manifest.json").read_text())
    assert manifest["reconciliation"]["patients"]["dropped_as_duplicates"] == 1


def test_a_header_only_export_is_refused_and_nothing_is_stored(
    registry: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site_b_empty"
    site.mkdir()
    for name in ("patients.csv", "events.csv"):
        header = (FIXTURES / "site_b" / name).read_text(encoding="utf-8").splitlines()[0]
        (site / name).write_text(header + "\n", encoding="utf-8")
    before = registry.read_bytes()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "registry",
            "submit",
            str(site),
            "--site",
            "SITE_B",
            "--mapping",
            str(FIXTURES / "site_b" / "mapping.yaml"),
            "--registry",
            str(registry),
            "--fail-on",
            "never",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "no patients" in proc.stderr or "no data rows" in proc.stderr
    assert registry.read_bytes() == before
