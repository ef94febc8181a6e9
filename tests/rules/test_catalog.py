"""The rule catalog: every rule is documented, has examples, and its examples hold."""

from __future__ import annotations

import pytest

from cartreg.cdm import CDM, load_cdm
from cartreg.rules import Example, Rule, load_rules
from cartreg.rules.checks import REGISTRY
from cartreg.rules.engine import run_rules
from cartreg.rules.frames import example_tables
from cartreg.rules.model import CATEGORIES

_CDM = load_cdm()
_RULES = load_rules(cdm=_CDM)
_CASES = [
    pytest.param(rule, kind, example, id=f"{rule.id}-{kind}{i}")
    for rule in _RULES
    for kind, examples in (("pass", rule.pass_examples), ("fail", rule.fail_examples))
    for i, example in enumerate(examples)
]


@pytest.mark.parametrize(("rule", "kind", "example"), _CASES)
def test_rule_example(rule: Rule, kind: str, example: Example, cdm: CDM) -> None:
    run = run_rules(example_tables(example.tables, cdm), rules=[rule], cdm=cdm)
    result = run.results.row(0, named=True)
    assert result["status"] != "ERROR", result["error"]
    assert result["num_violated"] == example.violated, example.description
    assert 0 <= result["num_violated"] <= result["num_denominator"]
    if kind == "fail":
        assert result["status"] == "FAILED"
        assert run.findings.height == example.violated
        located = run.findings.select("site_id", "source_file", "source_row", "table")
        assert located.null_count().row(0) == (0, 0, 0, 0), "every finding is located"
    else:
        assert result["status"] in ("PASSED", "NOT_APPLICABLE")
        assert run.findings.height == 0


def test_catalog_size_and_coverage(catalog: tuple[Rule, ...]) -> None:
    assert len(catalog) >= 45
    seen = {(r.category, r.subcategory) for r in catalog}
    expected = {(c, s) for c, subs in CATEGORIES.items() for s in subs}
    assert seen == expected
    assert {r.severity for r in catalog} >= {"error", "warning"}


@pytest.mark.parametrize("rule", _RULES, ids=[r.id for r in _RULES])
def test_rule_is_documented(rule: Rule) -> None:
    assert len(rule.description) >= 30
    assert len(rule.guidance) >= 20
    assert rule.pass_examples and rule.fail_examples
    assert rule.path is not None and rule.path.parent.name == rule.category
    assert rule.path.name.startswith(f"{rule.id}_")
    assert rule.primary_table in rule.requires


def test_check_types_are_documented() -> None:
    for name, spec in REGISTRY.items():
        assert spec.description, name


def test_rule_ids_are_unique_and_sorted(catalog: tuple[Rule, ...]) -> None:
    ids = [r.id for r in catalog]
    assert ids == sorted(set(ids))


def test_founding_study_rules_present(catalog: tuple[Rule, ...]) -> None:
    ids = {r.id for r in catalog}
    # referential integrity, one index infusion, no event after death, progression after
    # infusion, salvage after its progression, CR with blasts, MRD consistency, CD19 salvage,
    # product approval, adult cohort, intervals, cross-site duplicates, key covariates
    for rid in (
        "CR-001",
        "CR-007",
        "PT-003",
        "PT-002",
        "PT-008",
        "PA-004",
        "CC-005",
        "PA-006",
        "PT-013",
        "PA-001",
        "PT-016",
        "PU-001",
        "CP-004",
    ):
        assert rid in ids


def _referenced_columns(rule: Rule) -> set[str]:
    """Columns a single-table rule's parameters name (joined ``alias.col`` names excluded)."""
    from cartreg.rules.conditions import condition_columns

    p = rule.params
    cols: set[str] = set()
    for key in ("column", "number", "order"):
        if key in p:
            cols.add(str(p[key]))
    for key in ("columns", "key"):
        cols |= {str(c) for c in p.get(key, [])}
    for key in ("where", "when", "then"):
        cols |= condition_columns(p.get(key))
    return {c for c in cols if "." not in c}


@pytest.mark.parametrize("rule", _RULES, ids=[r.id for r in _RULES])
def test_rule_names_only_cdm_columns(rule: Rule, cdm: CDM) -> None:
    if rule.check_type in ("sql", "day_order"):
        return  # their columns are checked by running the examples
    known = set(cdm.table(rule.primary_table).column_names)
    assert _referenced_columns(rule) <= known, _referenced_columns(rule) - known
