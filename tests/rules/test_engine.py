"""Engine statuses: PASSED / FAILED / NOT_APPLICABLE / ERROR, per-site overrides, waivers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cartreg.cdm import CDM
from cartreg.rules import Rule, find_rule
from cartreg.rules.engine import run_rules
from cartreg.rules.frames import example_tables
from cartreg.rules.model import parse_rule
from cartreg.rules.overrides import Override, parse_overrides
from cartreg.rules.waivers import Waiver, parse_waivers


def _follow_up(cdm: CDM) -> dict[str, pl.DataFrame]:
    """Two sites, each with one dead patient lacking a death date and one complete."""
    rows: list[dict[str, Any]] = [
        {"patient_key": "SA-1", "vital_status": "DEAD"},
        {"patient_key": "SA-2", "vital_status": "DEAD", "death_day": 100},
        {"patient_key": "SB-1", "vital_status": "DEAD"},
        {"patient_key": "SB-2", "vital_status": "DEAD", "death_day": 50},
    ]
    return example_tables({"follow_up": rows}, cdm)


def test_failed_with_counts_and_located_findings(catalog: tuple[Rule, ...], cdm: CDM) -> None:
    rule = find_rule(catalog, "CP-003")
    run = run_rules(_follow_up(cdm), rules=[rule], cdm=cdm)
    res = run.results.row(0, named=True)
    assert (res["status"], res["num_violated"], res["num_denominator"]) == ("FAILED", 2, 4)
    assert res["pct_violated"] == pytest.approx(50.0)
    assert sorted(run.findings["site_id"].to_list()) == ["SA", "SB"]
    assert run.findings["source_row"].to_list() == [2, 4]
    assert run.site_results.height == 2


def test_not_applicable_reasons(catalog: tuple[Rule, ...], cdm: CDM) -> None:
    rule = find_rule(catalog, "PT-003")
    absent = run_rules({}, rules=[rule], cdm=cdm).results.row(0, named=True)
    assert absent["status"] == "NOT_APPLICABLE"
    assert "not provided" in absent["not_applicable_reason"]
    empty = {
        "follow_up": example_tables({"follow_up": []}, cdm)["follow_up"],
        "salvage_treatments": example_tables({"salvage_treatments": []}, cdm)["salvage_treatments"],
    }
    res = run_rules(empty, rules=[rule], cdm=cdm).results.row(0, named=True)
    assert res["status"] == "NOT_APPLICABLE" and "no rows" in res["not_applicable_reason"]
    tables = _follow_up(cdm)
    tables["follow_up"] = tables["follow_up"].drop("death_day")
    tables["salvage_treatments"] = example_tables(
        {
            "salvage_treatments": [
                {
                    "salvage_id": "SA-1-S1",
                    "patient_key": "SA-1",
                    "line_number": 1,
                    "agent": "blinatumomab",
                    "start_day": 3,
                }
            ]
        },
        cdm,
    )["salvage_treatments"]
    res = run_rules(tables, rules=[rule], cdm=cdm).results.row(0, named=True)
    assert res["status"] == "NOT_APPLICABLE"
    assert res["not_applicable_reason"] == "column follow_up.death_day was not provided"


def test_broken_rule_is_error_not_crash(
    tmp_path: Path, catalog: tuple[Rule, ...], cdm: CDM
) -> None:
    raw = {
        "id": "PT-901",
        "name": "broken",
        "category": "plausibility",
        "subcategory": "temporal",
        "severity": "error",
        "requires": {"follow_up": ["patient_key"]},
        "check": {
            "type": "sql",
            "table": "follow_up",
            "query": "SELECT no_such_column FROM follow_up",
        },
        "description": "A rule whose SQL refers to a missing column.",
        "guidance": "Fix the rule file.",
        "examples": {
            "pass": [{"tables": {}, "violated": 0}],
            "fail": [{"tables": {}, "violated": 1}],
        },
    }
    broken = parse_rule(raw, tmp_path / "PT-901_broken.yaml")
    good = find_rule(catalog, "CP-003")
    run = run_rules(_follow_up(cdm), rules=[broken, good], cdm=cdm)
    statuses = dict(zip(run.results["rule_id"], run.results["status"], strict=True))
    assert statuses == {"PT-901": "ERROR", "CP-003": "FAILED"}
    assert run.results.filter(pl.col("rule_id") == "PT-901")["error"].item()


def test_site_threshold_override(catalog: tuple[Rule, ...], cdm: CDM) -> None:
    rule = find_rule(catalog, "CP-003")
    overrides = parse_overrides(
        {
            "overrides": [
                {"site_id": "SA", "rule_id": "CP-003", "threshold_pct": 60, "reason": "legacy"}
            ]
        },
        "overrides.yaml",
    )
    run = run_rules(_follow_up(cdm), rules=[rule], cdm=cdm, overrides=overrides)
    per_site = dict(zip(run.site_results["site_id"], run.site_results["status"], strict=True))
    assert per_site == {"SA": "PASSED", "SB": "FAILED"}
    assert run.findings["site_id"].to_list() == ["SB"]
    assert run.results["status"].item() == "FAILED"
    all_sites = [Override("SA", "CP-003", 60.0), Override("SB", "CP-003", 60.0)]
    run = run_rules(_follow_up(cdm), rules=[rule], cdm=cdm, overrides=all_sites)
    assert run.results["status"].item() == "PASSED"
    assert run.findings.height == 0


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [
                {"site_id": "SA", "rule_id": "CP-003", "threshold_pct": 60},
                {"site_id": "SA", "rule_id": "CP-003", "threshold_pct": 10},
            ],
            r"overrides\[1\]: a second override of CP-003 for site SA \(the first is "
            r"overrides\[0\]\)",
        ),
        (
            [{"site_id": "SA", "rule_id": "CP-003", "threshold_pct": 60, "reason": ["a"]}],
            r"overrides\[0\]\.reason: 'reason' must be text",
        ),
    ],
)
def test_overrides_that_would_be_read_wrongly_are_configuration_errors(
    entries: list[dict[str, Any]], message: str
) -> None:
    # adversarial audit: one of two thresholds won without a word; a list became its text
    from cartreg.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_overrides({"overrides": entries}, "overrides.yaml")


def test_an_override_of_a_misspelt_rule_is_an_error_not_a_silent_default(
    catalog: tuple[Rule, ...], cdm: CDM
) -> None:
    from cartreg.errors import ConfigError

    overrides = parse_overrides(
        {"overrides": [{"site_id": "SA", "rule_id": "CP-03", "threshold_pct": 60}]},
        "overrides.yaml",
    )
    rule = find_rule(catalog, "CP-003")
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.rule_id: override of unknown rule"):
        run_rules(_follow_up(cdm), rules=[rule], cdm=cdm, overrides=overrides)


def test_waivers_hide_findings_until_they_expire(catalog: tuple[Rule, ...], cdm: CDM) -> None:
    rule = find_rule(catalog, "CP-003")
    first = run_rules(_follow_up(cdm), rules=[rule], cdm=cdm)
    target = first.findings.filter(pl.col("site_id") == "SA")["finding_id"].item()
    waivers = parse_waivers(
        {
            "waivers": [
                {
                    "finding_id": target,
                    "justification": "death date requested from registry",
                    "expires": "2026-12-31",
                }
            ]
        },
        "waivers.yaml",
    )
    before = run_rules(
        _follow_up(cdm), rules=[rule], cdm=cdm, waivers=waivers, as_of=dt.date(2026, 6, 1)
    )
    assert target not in before.findings["finding_id"].to_list()
    assert before.waived["finding_id"].to_list() == [target]
    assert before.waived["justification"].item() == "death date requested from registry"
    assert before.site_results.filter(pl.col("site_id") == "SA")["status"].item() == "PASSED"
    assert before.results["num_waived"].item() == 1
    after = run_rules(
        _follow_up(cdm), rules=[rule], cdm=cdm, waivers=waivers, as_of=dt.date(2027, 1, 1)
    )
    assert target in after.findings["finding_id"].to_list()
    assert after.expired_waivers == (
        Waiver(target, "death date requested from registry", dt.date(2026, 12, 31)),
    )


def test_finding_ids_are_stable_across_runs(catalog: tuple[Rule, ...], cdm: CDM) -> None:
    rule = find_rule(catalog, "CP-003")
    a = run_rules(_follow_up(cdm), rules=[rule], cdm=cdm).findings["finding_id"].to_list()
    b = run_rules(_follow_up(cdm), rules=[rule], cdm=cdm).findings["finding_id"].to_list()
    assert a == b and len(set(a)) == 2


def test_birth_date_never_shown(cdm: CDM, tmp_path: Path) -> None:
    raw = {
        "id": "PA-901",
        "name": "atemporal.birth_date_test",
        "category": "plausibility",
        "subcategory": "atemporal",
        "severity": "error",
        "requires": {"patients": ["birth_date"]},
        "check": {
            "type": "conditional",
            "table": "patients",
            "then": {"column": "birth_date", "gt": "1990-01-01"},
        },
        "description": "Birth date test rule used to prove masking.",
        "guidance": "Nothing to do.",
        "examples": {
            "pass": [{"tables": {}, "violated": 0}],
            "fail": [{"tables": {}, "violated": 1}],
        },
    }
    rule = parse_rule(raw, tmp_path / "PA-901_birth.yaml")
    tables = example_tables({"patients": [{"patient_key": "S-1", "birth_date": "1975-04-13"}]}, cdm)
    run = run_rules(tables, rules=[rule], cdm=cdm)
    assert run.findings.height == 1
    assert run.findings["value"].item() == "***"
    text = run.findings.write_csv() + run.results.write_csv()
    assert "1975" not in text


def _messages(catalog: tuple[Rule, ...], cdm: CDM, rule_id: str, tables: Any) -> list[str]:
    run = run_rules(example_tables(tables, cdm), rules=[find_rule(catalog, rule_id)], cdm=cdm)
    return run.findings["message"].to_list()


def test_messages_give_the_date_the_site_typed_beside_the_day(
    catalog: tuple[Rule, ...], cdm: CDM
) -> None:
    relapse = {
        "progression_id": "S-1-P1",
        "patient_key": "S-1",
        "event_seq": 1,
        "event_type": "RELAPSE_AFTER_CR",
        "progression_day": -124,
    }
    dated = {**relapse, "progression_date": "2023-09-01", "progression_date_precision": "DAY"}
    month = {**dated, "progression_date_precision": "MONTH"}
    # a conditional rule (PT-002) and an sql rule (PT-006): the date as typed, to its precision
    (pt002,) = _messages(catalog, cdm, "PT-002", {"progression_events": [dated]})
    assert "progression_day=-124 (2023-09-01)" in pt002
    (by_month,) = _messages(catalog, cdm, "PT-002", {"progression_events": [month]})
    assert "progression_day=-124 (2023-09)" in by_month
    (pt006,) = _messages(catalog, cdm, "PT-006", {"progression_events": [dated]})
    assert "relapse on day -124 (2023-09-01)" in pt006
    # a de-identified site has day offsets only: the message says just the day
    (bare,) = _messages(catalog, cdm, "PT-002", {"progression_events": [relapse]})
    assert bare.endswith("progression_day=-124")
    free = {
        "patient_key": "S-1",
        "vital_status": "ALIVE",
        "disease_status": "PROGRESSION_FREE",
        "disease_status_day": 400,
        "disease_status_date": "2025-02-10",
    }
    later = {**dated, "progression_day": 200, "progression_date": "2024-07-20"}
    (pt027,) = _messages(
        catalog, cdm, "PT-027", {"follow_up": [free], "progression_events": [later]}
    )
    assert "as of day 400 (2025-02-10)" in pt027 and "on day 200 (2024-07-20)" in pt027


def test_a_rule_breaking_the_shared_count_is_error_alone(
    tmp_path: Path, catalog: tuple[Rule, ...], cdm: CDM
) -> None:
    """Denominators of one table are counted in one pass: a rule whose scope cannot be computed
    must not take the other rules of that table down with it."""
    raw = {
        "id": "CP-901",
        "name": "broken_scope",
        "category": "completeness",
        "subcategory": "none",
        "severity": "error",
        "requires": {"follow_up": ["patient_key"]},
        # Comparing a text column with a number fails only when the plan runs.
        "check": {
            "type": "not_null",
            "table": "follow_up",
            "column": "death_day",
            "where": {"column": "vital_status", "gte": 3},
        },
        "description": "A rule whose where compares text with a number.",
        "guidance": "Fix the rule file.",
        "examples": {
            "pass": [{"tables": {}, "violated": 0}],
            "fail": [{"tables": {}, "violated": 1}],
        },
    }
    broken = parse_rule(raw, tmp_path / "CP-901_broken_scope.yaml")
    good = find_rule(catalog, "CP-003")
    run = run_rules(_follow_up(cdm), rules=[broken, good], cdm=cdm)
    statuses = dict(zip(run.results["rule_id"], run.results["status"], strict=True))
    assert statuses == {"CP-901": "ERROR", "CP-003": "FAILED"}
    assert run.results.filter(pl.col("rule_id") == "CP-003")["num_denominator"].item() == 4
