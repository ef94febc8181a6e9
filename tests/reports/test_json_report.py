"""JSON report: valid against docs/report-schema.json, stable, and matches its golden file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from cartreg.reports.json_report import load_schema, render_json
from cartreg.validation import Report, validate_output

GOLDEN = Path(__file__).with_name("golden") / "report_stable_fields.json"


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    """Fields that must not change unless the rules or the fixture change (no versions/times)."""
    return {
        "summary": doc["summary"],
        "rules": [
            [r["rule_id"], r["status"], r["num_violated"], r["num_denominator"]]
            for r in doc["rules"]
        ],
        "findings": [
            [
                f["finding_id"],
                f["rule_id"],
                f["severity"],
                f["table"],
                f["column"],
                f["source_file"],
                f["source_row"],
            ]
            for f in doc["findings"]
        ],
    }


def test_report_validates_against_schema(report: Report) -> None:
    doc = json.loads(render_json(report))
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert list(doc)[:1] == ["report_version"]
    assert doc["summary"]["findings_by_severity"] == {"error": 4, "warning": 2, "info": 1}


def test_schema_rejects_a_broken_report(report: Report) -> None:
    doc = json.loads(render_json(report))
    doc["rules"][0]["status"] = "MAYBE"
    errors = list(jsonschema.Draft202012Validator(load_schema()).iter_errors(doc))
    assert errors


def test_report_is_deterministic(out_dir: Path, report: Report) -> None:
    assert render_json(validate_output(out_dir)) == render_json(report)


def test_golden_stable_fields(report: Report) -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert _stable(json.loads(render_json(report))) == expected


def test_rule_findings_located_in_source(report: Report) -> None:
    doc = report.to_dict()
    pt003 = [f for f in doc["findings"] if f["rule_id"] == "PT-003"]
    assert [(f["site_id"], f["source_file"], f["source_row"]) for f in pt003] == [
        ("DEMO", "salvage_treatments.csv", 4)
    ]
    assert doc["source"]["mapping_version"] == "1"
    assert doc["source"]["site_ids"] == ["DEMO"]


def test_waived_and_site_results_in_report(out_dir: Path, report: Report) -> None:
    import datetime as dt

    from cartreg.rules.waivers import Waiver

    target = next(f for f in report.to_dict()["findings"] if f["rule_id"] == "PT-003")
    waiver = Waiver(target["finding_id"], "checked with the site", dt.date(2030, 1, 1))
    doc = json.loads(
        render_json(validate_output(out_dir, waivers=[waiver], as_of=dt.date(2029, 1, 1)))
    )
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert [w["finding_id"] for w in doc["waived"]] == [target["finding_id"]]
    assert doc["waived"][0]["justification"] == "checked with the site"
    pt003 = [s for s in doc["site_results"] if s["rule_id"] == "PT-003"]
    assert pt003 == [
        {
            "rule_id": "PT-003",
            "site_id": "DEMO",
            "status": "PASSED",
            "num_violated": 0,
            "num_waived": 1,
            "num_denominator": 11,
            "pct_violated": 0.0,
            "threshold_pct": 0.0,
        }
    ]


def test_a_waiver_hides_an_ingest_finding_too(out_dir: Path, report: Report) -> None:
    """Waivers hide findings of every stage (ingest and schema as well as rules)."""
    import datetime as dt

    from cartreg.rules.waivers import Waiver

    target = next(f for f in report.to_dict()["findings"] if f["rule_id"] == "ING-NUMBER")
    expired = Waiver(target["finding_id"], "old", dt.date(2020, 1, 1))
    active = Waiver(target["finding_id"], "unit checked", dt.date(2030, 1, 1))
    for waivers, hidden in (([expired], False), ([active], True)):
        doc = json.loads(
            render_json(validate_output(out_dir, waivers=waivers, as_of=dt.date(2029, 1, 1)))
        )
        jsonschema.Draft202012Validator(load_schema()).validate(doc)
        ids = {f["finding_id"] for f in doc["findings"]}
        assert (target["finding_id"] not in ids) is hidden
        assert [w["justification"] for w in doc["waived"]] == (["unit checked"] if hidden else [])
