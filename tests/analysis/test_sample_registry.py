"""On the merged sample registry (four heterogeneous site exports with planted defects and
unreviewed duplicates), with the default exclusions applied, the estimates still recover the
founding study's figures (Wudhikarn et al., Blood 2021) within their 95% intervals."""

from __future__ import annotations

from typing import Any


def _inside(block: dict[str, Any], value: float) -> bool:
    return bool(block["ci_low"] <= value <= block["ci_high"])


def test_planted_defects_and_duplicates_are_excluded(sample_analysis: Any) -> None:
    run, _ = sample_analysis
    flow = run.results["population"]
    reasons = {row["reason_code"] for row in flow["excluded"]}
    assert {"error_finding", "duplicate_unreviewed"} <= reasons
    rules = {
        row["reason"].split()[1]
        for row in flow["excluded"]
        if row["reason_code"] == "error_finding"
    }
    # the progression before the infusion, salvage after death and before its progression
    assert {"PT-002", "PT-003", "PT-008"} <= rules
    excluded = sum(row["total"] for row in flow["excluded"])
    assert flow["analysed"]["total"] == flow["received"]["total"] - excluded == run.adsl.height
    notes = run.results["data_notes"]["records_left_out_by_derivation"]
    assert notes == dict.fromkeys(notes, 0)  # nothing contradictory is left to set aside


def test_founding_study_figures_fall_inside_the_intervals(sample_analysis: Any) -> None:
    run, _ = sample_analysis
    results = run.results
    assert _inside(results["endpoints"]["TTP_DESC"], 5.5)  # median TTP among progressors
    assert _inside(results["endpoints"]["PPS"], 7.5)  # median survival after progression
    salvage = {p["group"]: p for p in results["proportions"]["SALV_CR"]}
    assert _inside(salvage["OVERALL"], 13 / 30)
    assert _inside(salvage["ANTIBODY"], 7 / 12)  # blinatumomab and/or inotuzumab
    burden = results["models"]["burden_progression"]["coefficients"][0]
    assert burden["term"] == "high_burden" and burden["ci_low"] > 1


def test_no_site_is_warned_for_short_progression_follow_up(sample_analysis: Any) -> None:
    """The sample sites export their disease assessments in full: progression follow-up is at
    least half the vital-status follow-up everywhere."""
    run, _ = sample_analysis
    assert run.results["follow_up"]["warnings"] == []
