"""The command line: fast start-up, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.paths import repo_root

EXAMPLE = repo_root() / "docs" / "examples" / "harmonized"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from cartreg.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('polars', 'pandera', 'lifelines', 'great_expectations', 'duckdb', "
        "'pandas', 'rich', 'fastapi', 'starlette', 'uvicorn', 'argon2', 'jinja2') "
        "if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in proc.stdout or proc.stdout.rstrip().endswith("HEAVY="), proc.stdout


def test_schema_validate_clean_example_exits_0() -> None:
    result = CliRunner().invoke(cli, ["schema", "validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "conforms" in result.output


def test_schema_validate_findings_exit_1_and_json(tmp_path: Path) -> None:
    text = (EXAMPLE / "patients.csv").read_text(encoding="utf-8")
    (tmp_path / "patients.csv").write_text(text.replace(",female,", ",femme?,"), encoding="utf-8")
    lines = text.splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("sex")] = "Q"
    (tmp_path / "patients.csv").write_text(
        "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n"
    )
    report = tmp_path / "findings.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["schema", "validate", str(tmp_path), "--json", str(report)])
    assert result.exit_code == 1, result.output
    records = json.loads(report.read_text())
    assert [(r["rule_id"], r["column"], r["source_row"]) for r in records] == [
        ("CDM-VOCAB", "sex", 2)
    ]
    never = runner.invoke(cli, ["schema", "validate", str(tmp_path), "--fail-on", "never"])
    assert never.exit_code == 0


def test_missing_input_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cartreg", "schema", "validate", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "folder not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_error_exits_2() -> None:
    result = CliRunner().invoke(cli, ["schema", "docs", "--format", "pdf"])
    assert result.exit_code == 2
