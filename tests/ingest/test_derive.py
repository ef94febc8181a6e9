"""Derivations at ingest and their provenance: remission of each relapse, age at index (exact
or as an interval from the year of birth), disease burden from blasts with their qualifier."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cartreg.cdm import CDM, load_cdm
from cartreg.ingest.derive import burden_from_blasts, derive_tables, with_exact_age, year_bound_ages
from cartreg.rules import find_rule, load_rules
from cartreg.rules.engine import run_rules

CDM_ = load_cdm()
RULES = load_rules(cdm=CDM_)
INDEX = dt.date(2021, 3, 10)


def _frame(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows as the mapping step hands them over: declared CDM columns, typed, plus lineage."""
    spec = CDM_.tables[table]
    dtypes = {
        "string": pl.String,
        "integer": pl.Int64,
        "float": pl.Float64,
        "boolean": pl.Boolean,
        "date": pl.Date,
    }
    names = {k for r in rows for k in r} | {"site_id", "source_file", "source_row"}
    schema = {c.name: dtypes[c.dtype] for c in spec.columns if c.name in names}
    full = [
        {"site_id": "S", "source_file": f"{table}.csv", "source_row": i + 2, **r}
        for i, r in enumerate(rows)
    ]
    return pl.DataFrame(full, schema=schema)


def _derive(cdm: CDM = CDM_, **tables: list[dict[str, Any]]) -> dict[str, pl.DataFrame]:
    return derive_tables({name: _frame(name, rows) for name, rows in tables.items()}, cdm)


def _patient(key: str = "S-1", **extra: Any) -> dict[str, Any]:
    return {"patient_key": key, **extra}


def _infusion(key: str = "S-1", date: dt.date | None = INDEX, **extra: Any) -> dict[str, Any]:
    return {"patient_key": key, "infusion_date": date, "product": "tisagenlecleucel"} | extra


def _assessment(day: int, response: str, key: str = "S-1") -> dict[str, Any]:
    return {
        "patient_key": key,
        "assessment_date": INDEX + dt.timedelta(days=day),
        "response": response,
    }


def _relapse(day: int, key: str = "S-1", **extra: Any) -> dict[str, Any]:
    return {
        "patient_key": key,
        "progression_date": INDEX + dt.timedelta(days=day),
        "event_type": "RELAPSE_AFTER_CR",
        **extra,
    }


# ---- the index infusion ----------------------------------------------------------------------


def test_the_first_infusion_is_the_index_unless_the_site_flags_one() -> None:
    later = INDEX + dt.timedelta(days=90)
    out = _derive(
        patients=[_patient("S-1"), _patient("S-2"), _patient("S-3")],
        car_t_infusions=[
            _infusion("S-1", later),
            _infusion("S-1", INDEX),  # unflagged site rows: the earlier date is the index
            _infusion("S-2", INDEX, is_index_infusion=False),
            _infusion("S-2", later, is_index_infusion=True),  # the site's own choice wins
            _infusion("S-3", later, is_index_infusion=True),
            _infusion("S-3", INDEX, is_index_infusion=True),  # two flagged: CR-007's finding
        ],
        disease_assessments=[_assessment(28, "CR", key) for key in ("S-1", "S-2", "S-3")],
    )
    infusions = out["car_t_infusions"]
    index = infusions.filter("is_index_infusion")
    assert index.select("patient_key", "infusion_date").rows() == [
        ("S-1", INDEX),
        ("S-2", later),
        ("S-3", INDEX),
        ("S-3", later),
    ]
    assert infusions.filter(pl.col("patient_key") == "S-1").get_column(
        "is_reinfusion"
    ).to_list() == [
        False,
        True,
    ]
    # day offsets count from the index; of two flagged, the earlier one (as ranked) is day 0
    days = dict(out["disease_assessments"].select("patient_key", "assessment_day").rows())
    assert days == {"S-1": 28, "S-2": 28 - 90, "S-3": 28}


def test_without_any_flag_every_patient_has_one_index_infusion() -> None:
    out = _derive(
        patients=[_patient("S-1"), _patient("S-2")],
        car_t_infusions=[
            _infusion("S-2", INDEX + dt.timedelta(days=7)),
            _infusion("S-1", INDEX),
            _infusion("S-2", INDEX),
            _infusion("S-1", None),
        ],
        disease_assessments=[_assessment(28, "CR", "S-2")],
    )
    infusions = out["car_t_infusions"]
    assert infusions.select("patient_key", "infusion_number", "is_index_infusion").rows() == [
        ("S-1", 1, True),
        ("S-1", 2, False),
        ("S-2", 1, True),
        ("S-2", 2, False),
    ]
    assert out["disease_assessments"].get_column("assessment_day").to_list() == [28]


# ---- remission of each relapse ----------------------------------------------------------------


def test_remission_is_the_first_cr_before_the_relapse_with_its_provenance() -> None:
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        disease_assessments=[
            _assessment(28, "CRi"),
            _assessment(91, "CR"),
            _assessment(168, "RELAPSE"),
        ],
        progression_events=[_relapse(168)],
    )["progression_events"]
    row = out.row(0, named=True)
    assert row["remission_day"] == 28
    assert row["remission_date"] == INDEX + dt.timedelta(days=28)
    assert row["remission_date_precision"] is None  # the assessment gave none in this fixture
    assert row["remission_date_derivation"] == "FIRST_REMISSION_ASSESSMENT"
    assert row["remission_date_derived_from"] == "S-1-A1"


def test_a_remission_the_site_gives_is_kept_and_not_marked_derived() -> None:
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        disease_assessments=[_assessment(28, "CR")],
        progression_events=[_relapse(168, remission_date=INDEX + dt.timedelta(days=35))],
    )["progression_events"]
    row = out.row(0, named=True)
    assert row["remission_day"] == 35
    assert row["remission_date_derivation"] is None
    assert row["remission_date_derived_from"] is None


def test_no_remission_before_the_relapse_leaves_it_empty_and_pt006_says_why() -> None:
    tables = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        # a CR on day 0 is not after the infusion; the CR after the relapse is not before it
        disease_assessments=[
            _assessment(0, "CR"),
            _assessment(28, "NR"),
            _assessment(200, "CR"),
        ],
        progression_events=[_relapse(120)],
    )
    row = tables["progression_events"].row(0, named=True)
    assert row["remission_day"] is None and row["remission_date_derivation"] is None
    run = run_rules(tables, rules=[find_rule(RULES, "PT-006")], cdm=CDM_)
    message = run.findings["message"].item()
    assert "no CR/CRi assessment after the index infusion and before it" in message


def test_second_relapse_ends_the_remission_after_the_first_progression() -> None:
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        disease_assessments=[
            _assessment(28, "CR"),
            _assessment(150, "RELAPSE"),
            _assessment(240, "CR"),
            _assessment(330, "CR"),
        ],
        progression_events=[_relapse(150), _relapse(400)],
    )["progression_events"].sort("event_seq")
    assert out["remission_day"].to_list() == [28, 240]
    assert out["remission_date_derived_from"].to_list() == ["S-1-A1", "S-1-A3"]


def test_refractory_disease_gets_no_remission() -> None:
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        disease_assessments=[_assessment(14, "CR")],
        progression_events=[_relapse(28, event_type="REFRACTORY_NONRESPONSE")],
    )["progression_events"]
    assert out["remission_day"].to_list() == [None]


def test_crh_counts_only_when_the_cdm_says_so() -> None:
    rows = {
        "patients": [_patient()],
        "car_t_infusions": [_infusion()],
        "disease_assessments": [_assessment(28, "CRh"), _assessment(60, "CR")],
        "progression_events": [_relapse(168)],
    }
    assert _derive(**rows)["progression_events"]["remission_day"].item() == 60
    counting = dataclasses.replace(CDM_, derivations={"remission": {"count_crh_as_cr": True}})
    assert _derive(counting, **rows)["progression_events"]["remission_day"].item() == 28


def test_day_offsets_only_site_derives_the_remission_day() -> None:
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion(date=None, infusion_day=0, infusion_year=2021)],
        disease_assessments=[
            {"patient_key": "S-1", "assessment_day": 30, "response": "CR"},
            {"patient_key": "S-1", "assessment_day": 30, "response": "CRi"},
        ],
        progression_events=[
            {"patient_key": "S-1", "progression_day": 250, "event_type": "MRD_RELAPSE"}
        ],
    )["progression_events"]
    row = out.row(0, named=True)
    assert (row["remission_day"], row["remission_date"]) == (30, None)
    # two remission marrows on one day: the first in source order
    assert row["remission_date_derived_from"] == "S-1-A1"


_RESPONSES = st.sampled_from(["CR", "CRi", "CRh", "NR", "PR", "RELAPSE", "NOT_EVALUATED"])


@given(
    assessments=st.lists(st.tuples(st.integers(-30, 900), _RESPONSES), max_size=12),
    relapses=st.lists(st.integers(1, 900), min_size=1, max_size=3, unique=True),
)
def test_a_derived_remission_lies_after_the_index_infusion_and_before_its_relapse(
    assessments: list[tuple[int, str]], relapses: list[int]
) -> None:
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        disease_assessments=[_assessment(d, r) for d, r in assessments],
        progression_events=[_relapse(d) for d in relapses],
    )["progression_events"].sort("progression_day")
    remissions = sorted({d for d, r in assessments if r in ("CR", "CRi") and d > 0})
    previous = 0
    for row in out.iter_rows(named=True):
        day = row["remission_day"]
        window = [d for d in remissions if previous < d < row["progression_day"]]
        if day is None:
            assert not window and row["remission_date_derivation"] is None
        else:
            assert 0 < day < row["progression_day"]
            assert day == window[0]  # the first remission of the window
            assert row["remission_date_derivation"] == "FIRST_REMISSION_ASSESSMENT"
        previous = row["progression_day"]


# ---- age at the index infusion -----------------------------------------------------------------


def _python_age(birth: dt.date, on: dt.date) -> float:
    full = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))

    def birthday(years: int) -> dt.date:
        try:
            return birth.replace(year=birth.year + years)
        except ValueError:  # 29 February in a common year
            return dt.date(birth.year + years, 2, 28)

    last, following = birthday(full), birthday(full + 1)
    return full + (on - last).days / (following - last).days


@given(
    birth=st.dates(dt.date(1930, 1, 1), dt.date(2008, 12, 31)),
    on=st.dates(dt.date(2016, 1, 1), dt.date(2025, 6, 30)),
)
@example(birth=dt.date(1992, 2, 29), on=dt.date(2021, 2, 28))
@example(birth=dt.date(1992, 2, 29), on=dt.date(2021, 3, 1))
@example(birth=dt.date(1992, 2, 29), on=dt.date(2020, 2, 29))
@example(birth=dt.date(1999, 12, 31), on=dt.date(2020, 12, 31))
def test_exact_age_matches_a_calendar_computation(birth: dt.date, on: dt.date) -> None:
    frame = pl.DataFrame({"b": [birth], "d": [on]})
    age = with_exact_age(frame, pl.col("b"), pl.col("d"), "age")["age"].item()
    assert age == pytest.approx(_python_age(birth, on), abs=1e-9)


@given(
    year=st.integers(1930, 2008),
    on=st.dates(dt.date(2016, 1, 1), dt.date(2025, 12, 31)),
)
@example(year=1990, on=dt.date(2020, 12, 31))
@example(year=1990, on=dt.date(2021, 1, 1))
@example(year=1990, on=dt.date(2024, 2, 29))
def test_birth_year_bounds_equal_the_exact_ages_of_31_december_and_1_january(
    year: int, on: dt.date
) -> None:
    frame = pl.DataFrame({"y": [year], "d": [on]})
    bounds = frame.select(year_bound_ages(pl.col("y"), pl.col("d"), "low", "high"))
    assert bounds["low"].item() == _python_age(dt.date(year, 12, 31), on)
    assert bounds["high"].item() == _python_age(dt.date(year, 1, 1), on)


def test_age_from_the_birth_date_is_exact_and_marked() -> None:
    birth = dt.date(1990, 7, 1)
    out = _derive(
        patients=[_patient(birth_date=birth, birth_year=1990)],
        car_t_infusions=[_infusion()],
    )["patients"]
    row = out.row(0, named=True)
    assert row["age_at_index_years"] == round(_python_age(birth, INDEX), 2)
    assert row["age_at_index_years_derivation"] == "BIRTH_DATE"
    assert row["age_at_index_years_derived_from"] == "S-1-INF1"


@given(
    birth=st.dates(dt.date(1935, 1, 1), dt.date(2010, 12, 31)),
    index=st.dates(dt.date(2016, 1, 1), dt.date(2025, 6, 30)),
    dated=st.booleans(),
)
def test_the_age_interval_from_the_birth_year_contains_the_true_age(
    birth: dt.date, index: dt.date, dated: bool
) -> None:
    infusion = (
        _infusion(date=index)
        if dated
        else _infusion(date=None, infusion_day=0, infusion_year=index.year)
    )
    row = _derive(patients=[_patient(birth_year=birth.year)], car_t_infusions=[infusion])[
        "patients"
    ].row(0, named=True)
    true_age = _python_age(birth, index)
    assert row["age_at_index_min_years"] <= true_age <= row["age_at_index_max_years"]
    for bound in (row["age_at_index_min_years"], row["age_at_index_max_years"]):
        assert repr(bound) == repr(round(bound, 2))  # shown as 24.08, never 24.080000000000002
    assert row["age_at_index_max_years"] - row["age_at_index_min_years"] <= (1.02 if dated else 2)
    assert row["age_at_index_years"] is None
    assert row["age_at_index_min_years_derivation"] == "BIRTH_YEAR"
    assert row["age_at_index_max_years_derived_from"] == "S-1-INF1"


def _age_findings(
    birth_year: int, product: str = "brexucabtagene_autoleucel", **patient: Any
) -> pl.DataFrame:
    tables = _derive(
        patients=[_patient(birth_year=birth_year, **patient)],
        car_t_infusions=[_infusion(setting="COMMERCIAL", product=product)],
    )
    rules = [find_rule(RULES, r) for r in ("PA-001", "PA-002", "PA-013", "CC-002")]
    return run_rules(tables, rules=rules, cdm=CDM_).findings


def test_age_rules_decide_from_the_birth_year_or_warn_when_they_cannot() -> None:
    # infused 2021-03-10: born 2004 is 16-17, born 2003 is 17-18, born 1990 is 30-31
    minor = _age_findings(2004)
    assert minor.select("rule_id", "severity").rows() == [("PA-001", "error")]
    straddle = _age_findings(2003)
    assert straddle.select("rule_id", "severity").rows() == [("PA-001", "warning")]
    assert "cannot decide from the year of birth" in straddle["message"].item()
    # tisagenlecleucel is labelled up to 25: born 1996 is 24-25 years old
    tisa = _age_findings(1996, product="tisagenlecleucel")
    assert tisa.select("rule_id", "severity").rows() == [("PA-002", "warning")]
    assert "cannot decide from the year of birth" in tisa["message"].item()
    assert _age_findings(1990, product="tisagenlecleucel")["rule_id"].to_list() == ["PA-002"]
    assert _age_findings(1990).height == 0
    # a reported age is checked against the year of birth (CC-002) and decides PA-001 alone
    reported = _age_findings(1990, age_at_index_years=17.2)
    assert sorted(reported.select("rule_id", "severity").rows()) == [
        ("CC-002", "warning"),
        ("PA-001", "error"),
    ]
    assert _age_findings(1915).select("rule_id", "severity").rows() == [("PA-013", "error")]


def test_no_age_rule_is_silently_not_applicable_with_a_birth_year_only() -> None:
    tables = _derive(patients=[_patient(birth_year=1980)], car_t_infusions=[_infusion()])
    run = run_rules(tables, rules=[find_rule(RULES, "PA-001")], cdm=CDM_)
    assert run.results.select("status", "num_denominator").row(0) == ("PASSED", 1)


# ---- disease burden --------------------------------------------------------------------------

_QUALIFIERS = st.sampled_from([None, "EQ", "LT", "LE", "GT", "GE"])


def _compatible(value: float, qualifier: str | None) -> tuple[float, float, bool, bool]:
    """(low, high, low_open, high_open) of the true values a qualified number allows."""
    q = qualifier or "EQ"
    return {
        "EQ": (value, value, False, False),
        "LT": (0.0, value, False, True),
        "LE": (0.0, value, False, False),
        "GT": (value, 100.0, True, False),
        "GE": (value, 100.0, False, False),
    }[q]


@given(
    value=st.sampled_from([0.0, 1.0, 2.5, 4.9, 5.0, 5.1, 10.0, 40.0, 100.0]),
    qualifier=_QUALIFIERS,
    emd=st.sampled_from([None, "Y", "N", "UNKNOWN"]),
    threshold=st.sampled_from([5.0, 10.0, 25.0]),
)
def test_the_burden_honours_the_blast_qualifier(
    value: float, qualifier: str | None, emd: str | None, threshold: float
) -> None:
    frame = pl.DataFrame(
        {"v": [value], "q": [qualifier], "e": [emd]},
        schema={"v": pl.Float64, "q": pl.String, "e": pl.String},
    )
    burden = frame.select(
        burden_from_blasts(
            pl.col("v"), pl.col("q"), pl.col("e"), threshold_pct=threshold, emd_counts_high=True
        )
    ).item()
    low, high, _, high_open = _compatible(value, qualifier)
    surely_high = low >= threshold  # every compatible value (even > low when open) is >= T
    surely_low = high < threshold or (high == threshold and high_open)
    if emd == "Y" or surely_high:
        assert burden == "HIGH"
    elif surely_low:
        assert burden == "LOW"
    else:
        assert burden is None  # undecided: ingest stores UNKNOWN, the analyses may use a stated one


def test_burden_is_derived_only_when_not_stated_with_provenance() -> None:
    out = _derive(
        patients=[_patient(), _patient("S-2"), _patient("S-3"), _patient("S-4")],
        car_t_infusions=[
            _infusion(pre_bm_blast_pct=5.0, pre_bm_blast_qualifier="LT", pre_emd_present="N"),
            _infusion(
                "S-2", pre_bm_blast_pct=5.0, pre_bm_blast_qualifier="LT", disease_burden="HIGH"
            ),
            _infusion("S-3", pre_emd_present="Y"),
            _infusion("S-4"),
        ],
    )["car_t_infusions"].sort("patient_key")
    assert out["disease_burden"].to_list() == ["LOW", "HIGH", "HIGH", None]
    assert out["disease_burden_derivation"].to_list() == [
        "PRE_INFUSION_BLASTS",
        None,
        "PRE_INFUSION_BLASTS",
        None,
    ]
    assert out["disease_burden_derived_from"].to_list() == ["S-1-INF1", None, "S-3-INF1", None]
    # the stated HIGH contradicts "<5": CC-003 keeps reporting it
    run = run_rules({"car_t_infusions": out}, rules=[find_rule(RULES, "CC-003")], cdm=CDM_)
    assert run.findings["source_row"].to_list() == [3]


def test_burden_threshold_is_a_cdm_parameter() -> None:
    ten = dataclasses.replace(CDM_, derivations={"disease_burden": {"blast_threshold_pct": 10}})
    rows = {"patients": [_patient()], "car_t_infusions": [_infusion(pre_bm_blast_pct=7.0)]}
    assert _derive(**rows)["car_t_infusions"]["disease_burden"].item() == "HIGH"
    assert _derive(ten, **rows)["car_t_infusions"]["disease_burden"].item() == "LOW"


def test_salvage_agents_with_unknown_start_form_one_line_after_the_dated_ones() -> None:
    relapse = _relapse(100)
    out = _derive(
        patients=[_patient()],
        car_t_infusions=[_infusion()],
        progression_events=[relapse],
        salvage_treatments=[
            {
                "patient_key": "S-1",
                "agent": "blinatumomab",
                "start_date": INDEX + dt.timedelta(110),
            },
            {"patient_key": "S-1", "agent": "inotuzumab_ozogamicin"},
            {"patient_key": "S-1", "agent": "mini_hcvd"},
        ],
    )["salvage_treatments"].sort("agent")
    assert out.select("agent", "line_number").rows() == [
        ("blinatumomab", 1),
        ("inotuzumab_ozogamicin", 2),
        ("mini_hcvd", 2),
    ]
