"""`cartreg demo` (the README's first command) runs every stage on sample_data/."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cartreg.cli.main import cli


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "20 of 20 planted defects reported by their rule; 0 errors outside the key" in text
    for path in (
        "data-dictionary.html",
        "reports/all-sites.html",
        "reports/all-sites.json",
        "registry.duckdb",
        "merged/manifest.json",
        "merged/tables/patients.parquet",
        "analysis/results.json",
        "analysis/report.html",
    ):
        assert (out / path).is_file(), path
    results = json.loads((out / "analysis" / "results.json").read_text())
    assert results["data_cut_date"] == "2025-06-30"
    secret = (out / "consortium.secret").read_text().strip()
    merged = (out / "merged" / "tables" / "patients.parquet").read_bytes()
    assert secret.encode() not in merged
