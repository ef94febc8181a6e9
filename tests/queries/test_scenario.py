"""Acceptance: three submissions of one site through the real CLI, the site's workbook answered
as a site would (openpyxl) and imported, and the exact query history.

QSITE v1 has four planted defects (every patient an adult on the 19-28z construct, so no
label-age warning adds a query): P02's marrow blasts 150 % (CDM-RANGE), P03's impossible
assessment date 2022-02-30 (ING-DATE), P05 without a day-28 assessment (CP-006) and P06 without
a Ph status (CP-014). The site answers: two corrected, one confirmed correct (the coordinator
waives it), one cannot be obtained (the coordinator closes it so). Version 2 fixes the two,
reorders every row and adds an unrelated patient; version 3 brings P03's bad date back.
The scenario itself is the ``scenario`` fixture (conftest.py).
"""

from __future__ import annotations

from typing import Any

from tests.queries.conftest import (
    T_CLOSE,
    T_IMPORT,
    T_V1,
    T_V2,
    T_V3,
    UNOBTAINABLE_REASON,
    WAIVE_REASON,
)

# One line per history event: query, action, from -> to (resolution), version, time, actor,
# [response] "comment", and the reason after the colon.
GOLDEN_HISTORY = f"""
QSITE-Q00001 open    - -> open                       v1 {T_V1}     dm-q        : found in version 1
QSITE-Q00002 open    - -> open                       v1 {T_V1}     dm-q        : found in version 1
QSITE-Q00003 open    - -> open                       v1 {T_V1}     dm-q        : found in version 1
QSITE-Q00004 open    - -> open                       v1 {T_V1}     dm-q        : found in version 1
QSITE-Q00001 answer  open -> answered                -  {T_IMPORT} site-q [corrected] "typo: 15 %" : site response (QSITE-queries.xlsx)
QSITE-Q00002 answer  open -> answered                -  {T_IMPORT} site-q [corrected] : site response (QSITE-queries.xlsx)
QSITE-Q00003 answer  open -> answered                -  {T_IMPORT} site-q [confirmed] "no marrow at day 28, patient refused" : site response (QSITE-queries.xlsx)
QSITE-Q00004 answer  open -> answered                -  {T_IMPORT} site-q [unobtainable] "not tested before referral" : site response (QSITE-queries.xlsx)
QSITE-Q00003 waive   answered -> closed (waived)      -  {T_CLOSE}  coordinator : {WAIVE_REASON}
QSITE-Q00004 close   answered -> closed (unobtainable) - {T_CLOSE}  coordinator : {UNOBTAINABLE_REASON}
QSITE-Q00001 resolve answered -> closed (resolved)   v2 {T_V2}     dm-q        : not found in version 2
QSITE-Q00002 resolve answered -> closed (resolved)   v2 {T_V2}     dm-q        : not found in version 2
QSITE-Q00002 reopen  closed -> open                  v3 {T_V3}     dm-q        : finding returned in version 3
"""


def _line(event: dict[str, Any]) -> str:
    move = f"{event['from_state'] or '-'} -> {event['to_state']}"
    if event["resolution"]:
        move += f" ({event['resolution']})"
    parts = [
        event["query_id"],
        event["action"],
        move,
        f"v{event['version']}" if event["version"] else "-",
        event["event_at"],
        event["actor"],
    ]
    if event["response"]:
        parts.append(f"[{event['response']}]")
    if event["comment"]:
        parts.append(f'"{event["comment"]}"')
    return " ".join(" ".join([*parts, ":", event["reason"]]).split())


def test_golden_state_history(scenario: dict[str, Any]) -> None:
    expected = [" ".join(line.split()) for line in GOLDEN_HISTORY.strip().splitlines()]
    assert [_line(event) for event in scenario["history"]] == expected
    assert [e["event_id"] for e in scenario["history"]] == list(range(1, 14))
    assert {e["expires"] for e in scenario["history"]} == {None}


def test_v1_opens_one_query_per_planted_defect(scenario: dict[str, Any]) -> None:
    assert "queries: 4 opened" in " ".join(scenario["v1"].split())
    exported = {(r["query_id"], r["patient"], r["rule"], r["field"]) for r in scenario["exported"]}
    assert exported == {
        ("QSITE-Q00001", "P02", "CDM-RANGE", "bm_blast_pct"),
        ("QSITE-Q00002", "P03", "ING-DATE", "assessment_date"),
        ("QSITE-Q00003", "P05", "CP-006", "patient_key"),
        ("QSITE-Q00004", "P06", "CP-014", "ph_status"),
    }
    v1_rules = {f["rule_id"] for f in scenario["v1_report"]["findings"]}
    assert v1_rules == {"CDM-RANGE", "ING-DATE", "CP-006", "CP-014"}


def test_importing_the_same_workbook_twice_changes_nothing(scenario: dict[str, Any]) -> None:
    assert "4 answered" in scenario["import"]
    assert "0 answered, 0 comments, 0 answers to queries closed meanwhile, 4 unchanged" in (
        " ".join(scenario["import_again"].split())
    )


def test_waived_query_is_gone_from_the_v2_and_v3_reports(scenario: dict[str, Any]) -> None:
    for version in ("v2", "v3"):
        report = scenario[f"{version}_report"]
        assert "CP-006" not in {f["rule_id"] for f in report["findings"]}, version
        waived = [w for w in report["waived"] if w["rule_id"] == "CP-006"]
        assert len(waived) == 1, version
        assert waived[0]["justification"] == f"query QSITE-Q00003 closed as waived: {WAIVE_REASON}"
        assert waived[0]["expires"] == "9999-12-31"
        # The unobtainable query's finding is still reported (the data are still missing).
        assert "CP-014" in {f["rule_id"] for f in report["findings"]}, version
    assert scenario["v3_report"]["summary"]["waived_findings"] == 1
    # v2 has no error left (the waived warning does not count): accepted.
    assert "stored version 2 as accepted (0 errors, 1 warnings" in " ".join(scenario["v2"].split())


def test_final_states(scenario: dict[str, Any]) -> None:
    states = {q["query_id"]: (q["state"], q["resolution"]) for q in scenario["list"]}
    assert states == {
        "QSITE-Q00001": ("closed", "resolved"),
        "QSITE-Q00002": ("open", None),
        "QSITE-Q00003": ("closed", "waived"),
        "QSITE-Q00004": ("closed", "unobtainable"),
    }
    reopened = next(q for q in scenario["list"] if q["query_id"] == "QSITE-Q00002")
    assert reopened["value"] == "2022-02-30"
    assert reopened["response"] is None  # a reopened query asks the site again
