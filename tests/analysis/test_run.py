"""The analysis run: results.json layout, tables, figures and a self-contained HTML report."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from cartreg.analysis.run import analyze
from cartreg.cli.main import cli

DATA_CUT = dt.date(2023, 12, 31)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory, tables_for: Any) -> Path:
    root = tmp_path_factory.mktemp("ingest_out")
    (root / "tables").mkdir()
    for name, frame in tables_for(dated=True).items():
        frame.write_parquet(root / "tables" / f"{name}.parquet")
    return root


@pytest.fixture(scope="module")
def run_dir(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("analysis")
    analyze(fixture_dir, DATA_CUT, out)
    return out


def test_results_json_has_every_estimate(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["data_cut_date"] == "2023-12-31"
    assert results["n_patients"] == 6
    for code in ("OS", "EFS", "TTP", "TTP_DESC", "REMDUR", "PPS"):
        block = results["endpoints"][code]
        assert {"n", "events", "median_months", "ci_low", "ci_high"} <= set(block), code
    assert results["endpoints"]["OS"]["n"] == 6
    assert results["endpoints"]["OS"]["events"] == 3
    assert results["endpoints"]["TTP"]["estimator"] == "aalen_johansen"
    assert results["endpoints"]["TTP"]["competing_events"] == 1
    # TTP_DESC: progressors at 168, 28, 5 and 266 days -> median of 28 and 168 days
    assert results["endpoints"]["TTP_DESC"]["median_months"] == pytest.approx(98 / 30.4375)
    overall = results["proportions"]["SALV_CR"][0]
    # F's salvage line starts after death: not post-progression salvage, and counted as such
    assert (overall["group"], overall["numerator"], overall["denominator"]) == ("OVERALL", 1, 2)
    assert {"ci_low", "ci_high"} <= set(overall)
    assert results["data_notes"]["records_left_out_by_derivation"]["salvage_rows_after_death"] == 1
    # the fixture has no day offsets for the rules to compare: nobody is excluded
    flow = results["population"]
    assert flow["received"]["total"] == flow["analysed"]["total"] == 6
    assert flow["findings_source"] == "CDM checks and rules run on the tables"
    for model in results["models"].values():
        assert model["status"] == "not_fitted"
        assert model["message"].startswith(("too few events", "no covariate can be estimated"))


def test_outputs_are_written(run_dir: Path) -> None:
    tte = pl.read_parquet(run_dir / "adtte.parquet")
    assert {"patient_key", "paramcd", "aval_days", "aval_months", "cnsr", "srcrow", "adtf"} <= set(
        tte.columns
    )
    for name in ("table1", "endpoint_summary", "salvage_response"):
        assert (run_dir / "tables" / f"{name}.csv").is_file()
        assert (run_dir / "tables" / f"{name}.md").read_text(encoding="utf-8").startswith("| ")
    for name in ("adsl", "adtte_tv"):
        assert (run_dir / f"{name}.parquet").is_file() and (run_dir / f"{name}.csv").is_file()
    assert (run_dir / "excluded_patients.csv").is_file()
    for stem in ("km_OS", "km_PPS", "cif_TTP", "km_EFS_by_burden", "cif_CIR_NRM"):
        assert (run_dir / "figures" / f"{stem}.png").stat().st_size > 1000
        assert "<svg" in (run_dir / "figures" / f"{stem}.svg").read_text(encoding="utf-8")


def test_html_report_is_self_contained(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "data cut" in html.lower() and "2023-12-31" in html
    # nothing is fetched: no external URLs, scripts, stylesheets or image files
    assert not re.search(r"(src|href)=\"(?!data:)", html)
    assert "http://" not in html and "https://" not in html
    assert html.count('src="data:image/png;base64,') >= 5
    assert "Model not fitted: too few events" in html
    assert html.index("Analysis population") < html.index("Endpoints")


def test_figures_are_deterministic(fixture_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    analyze(fixture_dir, DATA_CUT, tmp_path)
    for rel in (
        "figures/km_OS.svg",
        "figures/cif_TTP.svg",
        "figures/cif_CIR_NRM.svg",
        "figures/forest_burden_progression.svg",
        "figures/km_OS.png",
        "adtte.parquet",
        "adsl.parquet",
        "results.json",
    ):
        assert (tmp_path / rel).read_bytes() == (run_dir / rel).read_bytes(), rel


def test_cli_analyze(fixture_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "analyze",
            str(fixture_dir),
            "--data-cut",
            "2023-12-31",
            "--out",
            str(tmp_path),
            "--no-figures",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "OS" in result.output and "6 patients" in result.output
    assert (tmp_path / "results.json").is_file()


def test_cli_requires_a_valid_data_cut(fixture_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["analyze", str(fixture_dir), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "--data-cut" in missing.output
    bad = runner.invoke(
        cli, ["analyze", str(fixture_dir), "--data-cut", "31/12/2023", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output


def test_cli_subprocess_on_a_missing_folder_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartreg",
            "analyze",
            str(tmp_path / "nope"),
            "--data-cut",
            "2024-01-01",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_csv_tables_give_the_same_adtte(fixture_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for path in (fixture_dir / "tables").glob("*.parquet"):
        pl.read_parquet(path).write_csv(csv_dir / f"{path.stem}.csv")
    result = analyze(csv_dir, DATA_CUT, tmp_path / "out", figures=False)
    assert result.tte.equals(pl.read_parquet(run_dir / "adtte.parquet"))
