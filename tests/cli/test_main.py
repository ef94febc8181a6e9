"""The command line: fast start-up, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cartreg.cli.main import cli
from cartreg.errors import MESSAGE_LIMIT
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


# --- the exit-code contract (issue 12) --------------------------------------------------

CSV_SITE = repo_root() / "tests" / "ingest" / "fixtures" / "csv_site"
_PANICKY = '''
import click
import polars as pl


@click.command()
def panicky() -> None:
    """Trigger a Rust panic inside polars (2.1: pl.format over a chunk layout it mishandles)."""
    parts = [pl.DataFrame({"a": ["A"]}), pl.DataFrame({"a": ["U", "U", "B", "B"]})]
    frame = pl.concat(parts, rechunk=False).lazy().filter(pl.col("a") == "U")
    frame.select(pl.format("x={}", pl.col("a"))).collect()
    # A polars that no longer panics here still lets the test check the contract.
    raise pl.exceptions.PanicException("assertion failed: i < self.len()")
'''


def _panicky_cli(tmp_path: Path, debug: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "panicky.py").write_text(_PANICKY, encoding="utf-8")
    code = (
        "import sys; from cartreg.cli import main\n"
        "main.COMMANDS['panicky'] = ('panicky', 'test')\n"
        "sys.exit(main.main(['panicky']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RUST_BACKTRACE": "0"}
    env.pop("CARTREG_DEBUG", None)
    if debug:
        env["CARTREG_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )


def test_a_rust_panic_is_an_internal_error_exit_3_without_traceback(tmp_path: Path) -> None:
    proc = _panicky_cli(tmp_path, debug=False)
    assert proc.returncode == 3, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("internal error")]
    assert len(ours) == 1 and "PanicException" in ours[0] and "CARTREG_DEBUG=1" in ours[0]
    assert "Traceback" not in proc.stderr
    debug = _panicky_cli(tmp_path, debug=True)
    assert debug.returncode == 3 and "Traceback" in debug.stderr


def test_run_maps_every_outcome_to_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from polars.exceptions import PanicException

    from cartreg.cli.main import run
    from cartreg.ingest import pipeline

    args = ["ingest", str(CSV_SITE), "--mapping", str(CSV_SITE / "mapping.yaml"), "--quiet"]
    assert run([*args, "--out", str(tmp_path / "a")]) == 1  # findings at --fail-on error
    assert run([*args, "--out", str(tmp_path / "b"), "--fail-on", "never"]) == 0
    capsys.readouterr()
    assert run(["ingest", str(CSV_SITE)]) == 2  # a usage error: one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Missing option" in err and "ingest --help" in err

    def panic(*_: object, **__: object) -> None:
        raise PanicException("assertion failed: i < self.len()")

    monkeypatch.setattr(pipeline, "read_source", panic)
    assert run([*args, "--out", str(tmp_path / "c")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("internal error: PanicException")


def test_errors_are_one_line_of_at_most_400_characters(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 20))
    deep.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "cartreg", "ingest", str(deep / "site"), "--mapping",
         str(CSV_SITE / "mapping.yaml"), "--out", str(deep / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and len(line) <= MESSAGE_LIMIT + len("error: ")
    assert line.endswith("submission folder not found") and "…/" in line
