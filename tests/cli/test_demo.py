"""`cartreg demo` (the README's first command) runs every stage on sample_data/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    _assert_recovers_the_founding_study(results)
    secret = (out / "consortium.secret").read_text().strip()
    merged = (out / "merged" / "tables" / "patients.parquet").read_bytes()
    assert secret.encode() not in merged


def _inside(block: dict[str, Any], value: float) -> bool:
    return bool(block["ci_low"] <= value <= block["ci_high"])


def _assert_recovers_the_founding_study(results: dict[str, Any]) -> None:
    """From four heterogeneous site exports, ingested, merged and analysed, the estimates
    recover the values the simulator is calibrated to (Wudhikarn et al., Blood 2021) within
    their 95% confidence intervals, and high burden raises the hazard of progression."""
    endpoints = results["endpoints"]
    assert _inside(endpoints["TTP_DESC"], 5.5)  # median time to progression, progressors
    assert _inside(endpoints["PPS"], 7.5)  # median survival after progression
    salvage = {p["group"]: p for p in results["proportions"]["SALV_CR"]}
    assert _inside(salvage["OVERALL"], 13 / 30)
    assert _inside(salvage["ANTIBODY"], 7 / 12)  # blinatumomab and/or inotuzumab
    burden = results["models"]["burden_progression"]["coefficients"][0]
    assert burden["term"] == "high_burden" and burden["ci_low"] > 1


def test_a_stage_that_fails_stops_the_demo_with_its_exit_code(tmp_path: Path) -> None:
    import pytest

    from cartreg.cli.demo import DemoStopped, _run

    with pytest.raises(DemoStopped) as stopped:
        _run(["schema", "validate", str(tmp_path / "missing")])
    assert stopped.value.exit_code == 2
