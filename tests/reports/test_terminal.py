"""Text report: written whole (no folded cells) when standard output is a file or a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.validation import Report

GOLDEN = Path(__file__).with_name("golden") / "report.txt"


def _text_report(out_dir: Path) -> str:
    result = CliRunner().invoke(cli, ["validate", str(out_dir)], catch_exceptions=False)
    return result.stdout


def test_redirected_text_report_matches_its_golden_file(out_dir: Path) -> None:
    text = _text_report(out_dir)
    if os.environ.get("CARTREG_UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "text report changed: check it, then CARTREG_UPDATE_GOLDEN=1 pytest tests/reports"
    )


def test_redirected_text_report_folds_no_cell(out_dir: Path, report: Report) -> None:
    lines = _text_report(out_dir).splitlines()
    shown = report.findings.head(30).iter_rows(named=True)
    for finding in shown:
        # rich escapes nothing in plain text; each message and file name is on one line
        assert any(finding["message"] in line for line in lines), finding["message"]
        assert any(finding["source_file"] in line for line in lines if finding["source_file"])
    failed = report.results.filter(report.results["status"] == "FAILED")["name"].to_list()
    assert all(any(name in line for line in lines) for name in failed[:10])


def test_report_file_and_pipe_are_the_same_text(out_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    CliRunner().invoke(cli, ["validate", str(out_dir), "--report", str(target)])
    piped = subprocess.run(
        [sys.executable, "-m", "cartreg", "validate", str(out_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert piped.returncode in (0, 1), piped.stderr
    assert piped.stdout == target.read_text(encoding="utf-8")
