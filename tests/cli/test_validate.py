"""`cartreg validate`, `cartreg rules` and `cartreg check` through click and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.paths import repo_root
from tests.reports.conftest import BIRTH_DATE, write_output

# The console script, as users run it (it passes the exit code to the shell).
CARTREG = str(Path(sys.executable).with_name("cartreg"))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_output(tmp_path_factory.mktemp("cli_out"))


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize(("fail_on", "code"), [("error", 1), ("warning", 1), ("never", 0)])
def test_exit_codes(out_dir: Path, fail_on: str, code: int) -> None:
    assert _run("validate", str(out_dir), "--fail-on", fail_on)[0] == code


def test_exit_zero_when_clean_at_level(out_dir: Path, tmp_path: Path) -> None:
    waivers = tmp_path / "waivers.yaml"
    report = json.loads(_run("validate", str(out_dir), "--format", "json", "--fail-on", "never")[1])
    pt003 = next(f["finding_id"] for f in report["findings"] if f["rule_id"] == "PT-003")
    waivers.write_text(
        f"waivers:\n  - finding_id: {pt003}\n    justification: confirmed with site\n"
        "    expires: 2999-01-01\n",
        encoding="utf-8",
    )
    code, output = _run("validate", str(out_dir), "--format", "json", "--waivers", str(waivers))
    doc = json.loads(output)
    assert pt003 not in [f["finding_id"] for f in doc["findings"]]
    assert doc["summary"]["waived_findings"] == 1
    assert code == 1  # the ingest errors remain


@pytest.mark.parametrize("fmt", ["json", "html", "csv", "xlsx", "text"])
def test_formats_write_report(out_dir: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"report.{fmt}"
    code, _ = _run(
        "validate", str(out_dir), "--format", fmt, "--report", str(target), "--fail-on", "never"
    )
    assert code == 0
    assert target.stat().st_size > 500
    if fmt != "xlsx":
        assert BIRTH_DATE not in target.read_text(encoding="utf-8")


def test_unusable_input_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CARTREG, "validate", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "output folder not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_subprocess_json_report(out_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    proc = subprocess.run(
        [CARTREG, "validate", str(out_dir), "--format", "json", "--report", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert (
        json.loads(target.read_text(encoding="utf-8"))["summary"]["findings_by_severity"]["error"]
        == 4
    )


def test_bad_waiver_file_exits_2(out_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("waivers:\n  - finding_id: abc\n", encoding="utf-8")
    proc = subprocess.run(
        [CARTREG, "validate", str(out_dir), "--waivers", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "justification" in proc.stderr


def test_rules_list_show_docs(tmp_path: Path) -> None:
    code, output = _run("rules", "list", "--format", "json")
    assert code == 0 and len(json.loads(output)) >= 45
    code, output = _run("rules", "show", "PA-004")
    assert code == 0 and "PA-004" in output and "What to do" in output
    target = tmp_path / "rules.md"
    assert _run("rules", "docs", "--out", str(target))[0] == 0
    assert target.read_text(encoding="utf-8") == (repo_root() / "docs" / "rules.md").read_text(
        encoding="utf-8"
    )


def test_rules_show_unknown_exits_2() -> None:
    proc = subprocess.run(
        [CARTREG, "rules", "show", "PT-999"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "did you mean" in proc.stderr


@pytest.mark.skipif(
    not (repo_root() / "sample_data" / "deid_d" / "mapping.yaml").is_file(),
    reason="sample_data/deid_d not present",
)
def test_check_ingests_and_validates(tmp_path: Path) -> None:
    site = repo_root() / "sample_data" / "deid_d"
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    code, _ = _run(
        "check",
        str(site),
        "--mapping",
        str(site / "mapping.yaml"),
        "--out",
        str(out),
        "--format",
        "json",
        "--report",
        str(report),
    )
    assert code == 1
    assert (out / "tables" / "patients.parquet").is_file()
    doc = json.loads(report.read_text(encoding="utf-8"))
    rows = {(f["source_file"], f["source_row"], f["rule_id"]) for f in doc["findings"]}
    assert ("cohort.ndjson", 15, "PT-008") in rows
    # OUT/findings.json holds every finding of the check (ingest, schema, rules), as the report
    written = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert sorted(f["finding_id"] for f in written) == sorted(
        f["finding_id"] for f in doc["findings"]
    )
    assert "PT-008" in {f["rule_id"] for f in written}
    # validating the check output again reports each finding once
    again = tmp_path / "again.json"
    _run("validate", str(out), "--format", "json", "--report", str(again))
    twice = json.loads(again.read_text(encoding="utf-8"))["findings"]
    assert sorted(f["finding_id"] for f in twice) == sorted(f["finding_id"] for f in written)
