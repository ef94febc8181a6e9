"""``cartreg ingest``, ``profile`` and ``mapping init/check`` through click and a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.errors import ConfigError

FIXTURE = Path(__file__).parent / "fixtures" / "csv_site"


def test_ingest_exit_code_follows_fail_on(tmp_path: Path) -> None:
    args = ["ingest", str(FIXTURE), "--mapping", str(FIXTURE / "mapping.yaml"), "--out"]
    failing = CliRunner().invoke(cli, [*args, str(tmp_path / "a"), "--quiet"])
    assert failing.exit_code == 1, failing.output
    passing = CliRunner().invoke(cli, [*args, str(tmp_path / "b"), "--fail-on", "never"])
    assert passing.exit_code == 0, passing.output
    assert "patients.csv: 4 rows read, 2 harmonized, 2 quarantined" in passing.output
    assert (tmp_path / "b" / "tables" / "patients.parquet").is_file()


def test_ingest_broken_mapping_raises_config_error(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(FIXTURE, site)
    mapping = site / "mapping.yaml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8").replace("ph_status: ph\n", "ph_status: phh\n"),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["ingest", str(site), "--mapping", str(mapping), "--out", str(tmp_path / "o")]
    )
    assert isinstance(result.exception, ConfigError)


def test_real_process_exit_codes_and_one_line_errors(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cartreg", *args], capture_output=True, text=True, check=False
        )

    ok = run(
        "ingest",
        str(FIXTURE),
        "--mapping",
        str(FIXTURE / "mapping.yaml"),
        "--out",
        str(tmp_path / "o"),
        "--fail-on",
        "never",
        "--quiet",
    )
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text(encoding="utf-8"))
    assert [s["rows_read"] for s in manifest["sources"]] == [4, 4]
    missing = run(
        "ingest",
        str(tmp_path / "nowhere"),
        "--mapping",
        str(FIXTURE / "mapping.yaml"),
        "--out",
        str(tmp_path / "p"),
    )
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("site_id: [oops\n", encoding="utf-8")
    broken = run("ingest", str(FIXTURE), "--mapping", str(bad), "--out", str(tmp_path / "q"))
    assert broken.returncode == 2
    assert str(bad) in broken.stderr and "Traceback" not in broken.stderr


def test_profile_masks_identifier_values() -> None:
    result = CliRunner().invoke(cli, ["profile", str(FIXTURE / "patients.csv"), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["column"]: r for r in json.loads(result.output)}
    assert rows["sex"]["vocabulary"] == "sex"
    assert rows["dx_date"]["date_formats"] == "ISO, MY, Y"
    assert rows["patient_name"]["identifier"] is True
    assert "Alice" not in result.output
    assert rows["prior_lines"]["inferred_type"] == "text"
    assert rows["pre_blasts"]["null_rate"] == 0.0


def test_mapping_init_drafts_a_loadable_mapping_and_check_accepts_it(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    files = [str(FIXTURE / "patients.csv"), str(FIXTURE / "events.csv")]
    result = CliRunner().invoke(
        cli, ["mapping", "init", *files, "--out", str(draft), "--site-id", "NEW_SITE"]
    )
    assert result.exit_code == 0, result.output
    text = draft.read_text(encoding="utf-8")
    assert "REVIEW" in text and 'sex: {from: "sex"}' in text and "Alice" not in text
    checked = CliRunner().invoke(cli, ["mapping", "check", str(draft)])
    assert checked.exit_code == 0, checked.output
    fixture_check = CliRunner().invoke(
        cli, ["mapping", "check", str(FIXTURE / "mapping.yaml"), "--submission", str(FIXTURE)]
    )
    assert fixture_check.exit_code == 0 and "valid" in fixture_check.output


def test_profile_describes_json_arrays_and_text_dates() -> None:
    fixtures = Path(__file__).parent / "fixtures"
    result = CliRunner().invoke(
        cli,
        [
            "profile",
            str(fixtures / "json_site" / "patients.json"),
            str(fixtures / "excel_site" / "registry.xlsx"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {(r["source"], r["column"]): r for r in json.loads(result.output)}
    assert rows[("patients.json", "events")]["inferred_type"] == "array (explode: [events])"
    assert rows[("patients.json", "events.response")]["top_values"] == "CR (1)"
    assert rows[("patients.json", "demographics.sex")]["vocabulary"] == "sex"
    assert rows[("registry.xlsx#Verlauf", "Datum")]["date_formats"] == "ISO, DMY, MY, Y"
