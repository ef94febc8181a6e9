"""Acceptance: every statistic ``results.json`` reports on the merged sample registry equals
what R (survival 3.5, cmprsk 2.2) computes from the datasets ``cartreg analyze`` wrote.

One Rscript run (``r/analysis.R``) reads ``adsl.csv``, ``adtte.csv`` and ``adtte_tv.csv`` and a
plan naming each statistic; it prints JSON that is compared here to 1e-6 (absolute): Kaplan-
Meier medians, intervals and landmarks, log-rank, reverse-KM follow-up, cumulative incidence
and cmprsk variances, Gray's tests, Cox models (plain, stratified, per site, landmark) with
cox.zph, the time-dependent Cox model, Fine-Gray models and exact binomial intervals.

Not compared: TTP_DESC (a median and range of observed times, not an R estimator) and the
concordance index (descriptive; lifelines and survival count tied times differently).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.analysis.rscript import close, run_r

TOL = 1e-6


def _plan(results: dict[str, Any]) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []

    def add(key: str, kind: str, paramcd: str = "", **extra: Any) -> None:
        rows.append({"key": key, "type": kind, "paramcd": paramcd, **extra})

    for code, block in results["endpoints"].items():
        marks = " ".join(str(m["months"]) for m in block.get("landmarks", []))
        if block["estimator"] == "kaplan_meier":
            add(f"km:{code}", "km", code, landmarks=marks)
        elif block["estimator"] == "aalen_johansen":
            add(f"cif:{code}", "cif", code, landmarks=marks)
    for key, comp in results["comparisons"].items():
        add(f"cmp:{key}", "logrank" if "logrank" in comp else "gray", comp["endpoint"])
    add("fu:OS", "followup", "OS")
    add("fu:EFS", "followup", "EFS")
    for site in results["follow_up"]["by_site"]:
        add(f"fu:OS:{site}", "followup", "OS", site=site)
        add(f"fu:EFS:{site}", "followup", "EFS", site=site)
    models = dict(results["models"])
    for site_model in results["forest"]["burden_progression"]["sites"]:
        models[site_model["spec"]["key"]] = site_model
    for key, model in models.items():
        if model["status"] != "fitted":
            continue
        spec = model["spec"]
        kind = {"cox": "cox", "cox_time_varying": "ctv", "fine_gray": "fg"}[model["kind"]]
        add(
            f"model:{key}",
            kind,
            spec["paramcd"],
            covariates=" ".join(model["covariates"]),
            strata=spec["strata"],
            site=spec["site"],
            landmark_days=spec["landmark_days"],
        )
    for code, entries in results["proportions"].items():
        for entry in entries:
            if code != "SALV_CR" or entry["group"] in ("OVERALL", "ANTIBODY"):
                add(f"prop:{code}_{entry['group']}", "prop", f"{code}_{entry['group']}")
    schema = {
        "key": pl.String,
        "type": pl.String,
        "paramcd": pl.String,
        "covariates": pl.String,
        "strata": pl.String,
        "site": pl.String,
        "landmark_days": pl.Int64,
        "landmarks": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


@pytest.fixture(scope="module")
def reference(sample_analysis: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    _, out = sample_analysis
    results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    plan_path = Path(out) / "r_plan.csv"
    _plan(results).write_csv(plan_path)
    return results, run_r("analysis.R", out, plan_path)


def _check(label: str, got: Any, want: Any, tol: float = TOL) -> None:
    assert close(got, want, tol), f"{label}: cartreg {got!r} vs R {want!r}"


def _check_landmarks(label: str, ours: list[dict[str, Any]], theirs: Any) -> None:
    theirs = theirs if isinstance(theirs, list) else [theirs]
    assert len(ours) == len(theirs), label
    for mine, ref in zip(ours, theirs, strict=True):
        where = f"{label} at {mine['months']} months"
        _check(f"{where} estimate", mine["estimate"], ref["estimate"])
        if "variance" in ref:
            _check(f"{where} variance", mine.get("variance"), ref["variance"])
        _check(f"{where} lower", mine["ci_low"], ref["lower"])
        _check(f"{where} upper", mine["ci_high"], ref["upper"])


def _check_km(label: str, block: dict[str, Any], ref: dict[str, Any]) -> None:
    assert block["n"] == ref["n"], label
    _check(f"{label} median", block["median_months"], ref["median"])
    _check(f"{label} lower", block["ci_low"], ref["lcl"])
    _check(f"{label} upper", block["ci_high"], ref["ucl"])


def _check_cif(label: str, block: dict[str, Any], ref: dict[str, Any]) -> None:
    assert (block["n"], block["events"], block["competing_events"]) == (
        ref["n"],
        ref["events"],
        ref["competing"],
    ), label
    cause1 = ref["cause1"]
    _check(f"{label} time to 50%", block["median_months"], cause1["median"])
    _check(f"{label} its lower limit", block["ci_low"], cause1["ci_low"])
    _check(f"{label} its upper limit", block["ci_high"], cause1["ci_high"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_kaplan_meier_equals_survfit(reference: tuple[dict[str, Any], dict[str, Any]]) -> None:
    results, ref = reference
    km = [c for c, b in results["endpoints"].items() if b["estimator"] == "kaplan_meier"]
    assert {"OS", "EFS", "PPS", "REMDUR", "EFS_HCTC"} <= set(km)
    for code in km:
        block, r = results["endpoints"][code], ref[f"km:{code}"]
        _check_km(code, block, r)
        assert block["events"] == r["events"], code
        _check_landmarks(code, block["landmarks"], r["landmarks"])


def test_follow_up_equals_reverse_km(reference: tuple[dict[str, Any], dict[str, Any]]) -> None:
    results, ref = reference
    fu = results["follow_up"]
    _check_km("OS follow-up", fu["vital_status"], ref["fu:OS"])
    _check_km("EFS follow-up", fu["progression"], ref["fu:EFS"])
    for site, block in fu["by_site"].items():
        _check_km(f"{site} OS follow-up", block["vital_status"], ref[f"fu:OS:{site}"])
        _check_km(f"{site} EFS follow-up", block["progression"], ref[f"fu:EFS:{site}"])


def test_log_rank_equals_survdiff(reference: tuple[dict[str, Any], dict[str, Any]]) -> None:
    results, ref = reference
    for key in ("EFS_by_burden", "OS_by_burden"):
        comp, r = results["comparisons"][key], ref[f"cmp:{key}"]
        _check(f"{key} chi-square", comp["logrank"]["statistic"], r["chisq"])
        _check(f"{key} p", comp["logrank"]["p_value"], r["p"])
        for level in ("HIGH", "LOW"):
            _check_km(f"{key} {level}", comp["groups"][level], r["groups"][level])


def test_cumulative_incidence_equals_cuminc(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    results, ref = reference
    cif = [c for c, b in results["endpoints"].items() if b["estimator"] == "aalen_johansen"]
    assert {"TTP", "TTP_HCTC", "CIR", "CIR_CR"} <= set(cif)
    for code in cif:
        block, r = results["endpoints"][code], ref[f"cif:{code}"]
        _check_cif(code, block, r)
        _check_landmarks(f"{code} event", block["landmarks"], r["cause1"]["landmarks"])
        _check_landmarks(
            f"{code} competing", block["competing_landmarks"], r["cause2"]["landmarks"]
        )


def test_gray_equals_cuminc_tests(reference: tuple[dict[str, Any], dict[str, Any]]) -> None:
    results, ref = reference
    keys = [k for k in results["comparisons"] if k.endswith("_gray_by_burden")]
    assert len(keys) == 3
    for key in keys:
        comp, r = results["comparisons"][key], ref[f"cmp:{key}"]
        for cause, stat, p in zip(
            _as_list(r["causes"]), _as_list(r["stat"]), _as_list(r["p"]), strict=True
        ):
            mine = comp["gray"]["causes"][str(cause)]
            _check(f"{key} cause {cause} statistic", mine["statistic"], stat)
            _check(f"{key} cause {cause} p", mine["p_value"], p)
        for level in ("HIGH", "LOW"):
            _check_cif(f"{key} {level}", comp["groups"][level], r["groups"][level])


def _all_models(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models = dict(results["models"])
    for site_model in results["forest"]["burden_progression"]["sites"]:
        models[site_model["spec"]["key"]] = site_model
    return models


def _check_coefficients(key: str, model: dict[str, Any], r: dict[str, Any]) -> None:
    assert _as_list(r["terms"]) == model["covariates"], key
    columns = (
        ("coef", "coef"),
        ("se", "se"),
        ("hazard_ratio", "hr"),
        ("ci_low", "lower"),
        ("ci_high", "upper"),
        ("p_value", "p"),
    )
    for i, coef in enumerate(model["coefficients"]):
        for mine, theirs in columns:
            _check(f"{key} {coef['term']} {mine}", coef[mine], _as_list(r[theirs])[i])


def test_cox_models_equal_coxph_and_cox_zph(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    results, ref = reference
    cox = {
        k: m
        for k, m in _all_models(results).items()
        if m["kind"] == "cox" and m["status"] == "fitted"
    }
    assert {
        "burden_progression",
        "burden_progression_by_site",
        "pps_multivariable",
        "hct_landmark",
    } <= set(cox)
    assert sum(1 for k in cox if k.startswith("burden_progression_")) >= 3  # per-site models
    for key, model in cox.items():
        r = ref[f"model:{key}"]
        assert (model["n"], model["events"]) == (r["n"], r["events"]), key
        _check_coefficients(key, model, r)
        terms = _as_list(r["zph_terms"])
        assert terms == [*model["covariates"], "GLOBAL"], key
        for i, test in enumerate(model["ph_test"]):
            _check(f"{key} cox.zph {test['term']}", test["statistic"], _as_list(r["zph_chisq"])[i])
            _check(f"{key} cox.zph {test['term']} p", test["p_value"], _as_list(r["zph_p"])[i])
        _check(
            f"{key} cox.zph GLOBAL", model["ph_global"]["statistic"], _as_list(r["zph_chisq"])[-1]
        )
        _check(f"{key} cox.zph GLOBAL p", model["ph_global"]["p_value"], _as_list(r["zph_p"])[-1])


def test_time_dependent_hct_equals_coxph_counting_process(
    reference: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    results, ref = reference
    model = results["models"]["hct_time_dependent"]
    assert model["status"] == "fitted"
    r = ref["model:hct_time_dependent"]
    # R's n counts the (start, stop] rows; cartreg reports patients and rows
    assert (model["intervals"], model["events"]) == (r["n"], r["events"])
    assert model["n"] < model["intervals"]
    _check_coefficients("hct_time_dependent", model, r)


def test_fine_gray_equals_crr(reference: tuple[dict[str, Any], dict[str, Any]]) -> None:
    results, ref = reference
    for key in ("fine_gray_burden_progression", "fine_gray_burden_relapse"):
        model = results["models"][key]
        assert model["status"] == "fitted", key
        r = ref[f"model:{key}"]
        assert r["converged"] and r["n"] == model["n"], key
        _check_coefficients(key, model, {**r, "terms": model["covariates"]})


def test_proportions_equal_binom_test(reference: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Counts recounted by R from adsl, exact intervals by binom.test."""
    results, ref = reference
    checked = 0
    for code, entries in results["proportions"].items():
        for entry in entries:
            key = f"prop:{code}_{entry['group']}"
            if key not in ref:
                continue
            r = ref[key]
            assert (entry["numerator"], entry["denominator"]) == (
                r["numerator"],
                r["denominator"],
            ), key
            _check(f"{key} low", entry["ci_low"], r["low"])
            _check(f"{key} high", entry["ci_high"], r["high"])
            checked += 1
    assert checked == 8
