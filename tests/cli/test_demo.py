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
    assert "32 of 32 planted defects reported by their rule; 0 errors outside the key" in text
    for path in (
        "data-dictionary.html",
        "reports/all-sites.html",
        "reports/all-sites.json",
        "registry.duckdb",
        "merged/manifest.json",
        "merged/tables/patients.parquet",
        "analysis/results.json",
        "analysis/report.html",
        "queries/EHR_C-queries.xlsx",
        "queries/scorecard.html",
        "queries/scorecard.json",
    ):
        assert (out / path).is_file(), path
    unwrapped = text.replace(" ", "")  # rich breaks long paths across lines
    assert "queries/scorecard.html(sitescorecard)" in unwrapped
    assert "queries/EHR_C-queries.xlsx(aqueryworkbookassenttoasite)" in unwrapped
    _assert_the_query_round_trip(out)
    results = json.loads((out / "analysis" / "results.json").read_text())
    assert results["data_cut_date"] == "2025-06-30"
    # the planted defects and unreviewed duplicates are not analysed, and the flow says so
    flow = results["population"]
    excluded = sum(row["total"] for row in flow["excluded"])
    assert excluded >= 10 and flow["analysed"]["total"] == flow["received"]["total"] - excluded
    _assert_recovers_the_founding_study(results)
    html = (out / "analysis" / "report.html").read_text(encoding="utf-8")
    # the report opens with the flow table and shows the CIR/NRM figure and the forest plot
    assert html.index("Analysis population") < html.index("<h2>Endpoints</h2>")
    for figure in ("cif_CIR_NRM", "forest_burden_progression"):
        assert f'alt="{figure}" src="data:image/png;base64,' in " ".join(html.split())
    secret = (out / "consortium.secret").read_text().strip()
    merged = (out / "merged" / "tables" / "patients.parquet").read_bytes()
    assert secret.encode() not in merged


def _assert_the_query_round_trip(out: Path) -> None:
    """EHR_C's corrected cut resolved the two queries its site answered 'corrected', and the
    finding the site confirmed (waived) is no longer in the new version's report."""
    card = json.loads((out / "queries" / "scorecard.json").read_text())
    ehr = next(s for s in card["sites"] if s["site_id"] == "EHR_C")
    assert ehr["latest_version"] == 2
    assert (ehr["queries"]["resolved"], ehr["queries"]["waived"]) == (2, 1)
    report = json.loads((out / "reports" / "ehr_c-v2.json").read_text())
    assert "PT-022" not in {f["rule_id"] for f in report["findings"]}
    assert [w["rule_id"] for w in report["waived"]] == ["PT-022"]


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
