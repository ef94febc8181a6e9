"""Properties of rule results on generated cohorts (hypothesis)."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from cartreg.cdm import load_cdm
from cartreg.rules import load_rules
from cartreg.rules.checks import REGISTRY, CheckContext
from cartreg.rules.checks.base import Rows, per_site
from cartreg.rules.engine import RuleRun, _count_rows, prepare_tables, run_rules
from cartreg.rules.frames import example_tables

_CDM = load_cdm()
_RULES = load_rules(cdm=_CDM)
_RESPONSES = ["CR", "CRi", "NR", "PD", None]
_DAY = st.integers(min_value=-30, max_value=800)


@st.composite
def _patient(draw: st.DrawFn, n: int) -> dict[str, list[dict[str, Any]]]:
    site = draw(st.sampled_from(["SA", "SB"]))
    key = f"{site}-{n}"
    dead = draw(st.booleans())
    rows: dict[str, list[dict[str, Any]]] = {
        "patients": [
            {
                "patient_key": key,
                "sex": draw(st.sampled_from(["M", "F", None])),
                "birth_year": draw(st.sampled_from([1950, 1970, None])),
                "age_at_index_years": draw(st.sampled_from([15.0, 30.0, 51.0, None])),
                "diagnosis_day": draw(st.sampled_from([-400, 20, None])),
            }
        ],
        "car_t_infusions": [
            {
                "infusion_id": f"{key}-INF1",
                "patient_key": key,
                "infusion_number": 1,
                "is_index_infusion": draw(st.booleans()),
                "is_reinfusion": False,
                "product": draw(st.sampled_from(["tisagenlecleucel", "brexucabtagene_autoleucel"])),
                "infusion_day": draw(st.sampled_from([0, 0, 5])),
                "infusion_date": draw(st.sampled_from(["2021-03-10", "2021-03-12", None])),
                "pre_bm_blast_pct": draw(st.sampled_from([1.0, 40.0, None])),
                "disease_burden": draw(st.sampled_from(["LOW", "HIGH", None])),
            }
        ],
        "disease_assessments": [
            {
                "assessment_id": f"{key}-A{i}",
                "patient_key": key,
                "assessment_day": draw(_DAY),
                "specimen": "BONE_MARROW",
                "response": draw(st.sampled_from(_RESPONSES)),
                "bm_blast_pct": draw(st.sampled_from([0.5, 12.0, None])),
            }
            for i in range(1, draw(st.integers(0, 2)) + 1)
        ],
        "progression_events": [
            {
                "progression_id": f"{key}-P{i}",
                "patient_key": key,
                "event_seq": i,
                "event_type": draw(st.sampled_from(["RELAPSE_AFTER_CR", "REFRACTORY_NONRESPONSE"])),
                "progression_day": draw(_DAY),
                "remission_day": draw(st.sampled_from([28, None])),
                "antigen_phenotype": draw(st.sampled_from(["CD19_NEG", "CD19_POS", None])),
            }
            for i in range(1, draw(st.integers(0, 2)) + 1)
        ],
        "follow_up": [
            {
                "patient_key": key,
                "vital_status": "DEAD" if dead else "ALIVE",
                "death_day": draw(_DAY) if dead else None,
                "last_contact_day": draw(_DAY),
            }
        ],
    }
    rows["salvage_treatments"] = [
        {
            "salvage_id": f"{p['progression_id']}-S1",
            "patient_key": key,
            "progression_id": p["progression_id"],
            "line_number": 1,
            "agent": "blinatumomab",
            "category": "BLINATUMOMAB",
            "start_day": draw(_DAY),
        }
        for p in rows["progression_events"]
    ]
    return rows


@st.composite
def _cohort(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    n = draw(st.integers(min_value=1, max_value=5))
    tables: dict[str, list[dict[str, Any]]] = {}
    for i in range(n):
        for name, rows in draw(_patient(i + 1)).items():
            tables.setdefault(name, []).extend(rows)
    return tables


def _run(tables: dict[str, pl.DataFrame]) -> RuleRun:
    return run_rules(tables, rules=_RULES, cdm=_CDM)


def _summary(run: RuleRun) -> list[tuple[Any, ...]]:
    return run.results.select("rule_id", "status", "num_violated", "num_denominator").rows()


@settings(max_examples=10)
@given(_cohort(), st.integers(min_value=0, max_value=2**31))
def test_results_invariant_to_row_order(cohort: dict[str, list[dict[str, Any]]], seed: int) -> None:
    tables = example_tables(cohort, _CDM)
    shuffled = {
        name: frame.sample(fraction=1.0, shuffle=True, seed=seed) for name, frame in tables.items()
    }
    a, b = _run(tables), _run(shuffled)
    assert _summary(a) == _summary(b)
    assert a.findings.sort("finding_id").equals(b.findings.sort("finding_id"))
    assert "ERROR" not in a.results["status"].to_list()


@settings(max_examples=10)
@given(_cohort())
def test_violated_within_denominator(cohort: dict[str, list[dict[str, Any]]]) -> None:
    run = _run(example_tables(cohort, _CDM))
    for rule_id, violated, denominator in run.results.select(
        "rule_id", "num_violated", "num_denominator"
    ).iter_rows():
        assert 0 <= violated <= denominator, rule_id


_CLEAN = {
    "patients": [
        {
            "patient_key": "ZZ-1",
            "sex": "F",
            "age_at_index_years": 40.0,
            "diagnosis_day": -300,
            "ph_status": "BCR_ABL1_NEG",
            "prior_blinatumomab": "N",
        }
    ],
    "car_t_infusions": [
        {
            "infusion_id": "ZZ-1-INF1",
            "patient_key": "ZZ-1",
            "infusion_number": 1,
            "is_index_infusion": True,
            "is_reinfusion": False,
            "product": "brexucabtagene_autoleucel",
            "infusion_day": 0,
            "pre_bm_blast_pct": 2.0,
            "disease_burden": "LOW",
            "pre_emd_present": "N",
        }
    ],
    "disease_assessments": [
        {
            "assessment_id": "ZZ-1-A1",
            "patient_key": "ZZ-1",
            "assessment_day": 28,
            "specimen": "BONE_MARROW",
            "bm_blast_pct": 1.0,
            "response": "CR",
            "anc_per_ul": 1500.0,
            "mrd_status": "NEG",
            "mrd_value": 0.00001,
            "mrd_method": "FLOW",
        }
    ],
    "progression_events": [],
    "salvage_treatments": [],
    "follow_up": [{"patient_key": "ZZ-1", "vital_status": "ALIVE", "last_contact_day": 400}],
}


@settings(max_examples=10)
@given(_cohort())
def test_adding_valid_rows_adds_no_findings(cohort: dict[str, list[dict[str, Any]]]) -> None:
    before = _run(example_tables(cohort, _CDM))
    grown = {
        name: [*cohort.get(name, []), *_CLEAN.get(name, [])] for name in set(cohort) | set(_CLEAN)
    }
    after = _run(example_tables(grown, _CDM))
    assert set(after.findings["finding_id"].to_list()) <= set(
        before.findings["finding_id"].to_list()
    )


def test_clean_patient_has_no_findings() -> None:
    run = _run(example_tables(_CLEAN, _CDM))
    assert run.findings.height == 0, run.findings.select("rule_id", "message").rows()


@settings(max_examples=10)
@given(_cohort())
def test_denominators_counted_together_equal_one_grouping_per_rule(
    cohort: dict[str, list[dict[str, Any]]],
) -> None:
    """The engine counts every rule's Rows of a table in one pass; per rule, that must be what
    grouping the rule's own rows per site gives."""
    tables = prepare_tables(example_tables(cohort, _CDM), _CDM).frames
    ctx = CheckContext(tables)
    counted = {}
    for rule in _RULES:
        output = REGISTRY[rule.check_type].build(ctx, rule.params)
        if isinstance(output.denominator, Rows):
            counted[rule.id] = output.denominator
    assert len(counted) > len(_RULES) // 2  # most rules count rows of one table
    parts, done = _count_rows(counted, tables)
    assert done == set(counted)
    together = pl.concat(parts)
    for rule_id, rows in counted.items():
        alone = per_site(rows.frame(ctx)).collect().sort("site_id")
        mine = together.filter(pl.col("rule_id") == rule_id).drop("rule_id").sort("site_id")
        assert mine.equals(alone), rule_id
