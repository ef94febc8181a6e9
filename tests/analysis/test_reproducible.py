"""The analysis is reproducible: the same numbers whatever the order of the input rows, and
every model refitted from the written datasets alone gives the reported estimates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifelines import CoxPHFitter, CoxTimeVaryingFitter

from cartreg.analysis.estimators import FineGrayFitter
from cartreg.analysis.run import analyze
from tests.analysis.conftest import SAMPLE_DATA_CUT


def _results(out: Path) -> dict[str, Any]:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results.pop("source")
    return results


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_results_do_not_depend_on_row_order(
    sample_merged: Path, sample_analysis: Any, tmp_path: Path, seed: int
) -> None:
    """The merged tables' rows shuffled (findings.json, duplicates.csv and the manifest as
    merged): results.json is identical, every number to the last bit."""
    _, reference_out = sample_analysis
    shuffled = tmp_path / f"shuffled_{seed}"
    if shuffled.exists():
        shutil.rmtree(shuffled)
    (shuffled / "tables").mkdir(parents=True)
    for i, path in enumerate(sorted((sample_merged / "tables").glob("*.parquet"))):
        frame = pl.read_parquet(path)
        frame.sample(fraction=1.0, shuffle=True, seed=(seed + i) % 2**32).write_parquet(
            shuffled / "tables" / path.name
        )
    for name in ("findings.json", "duplicates.csv", "manifest.json"):
        shutil.copy(sample_merged / name, shuffled / name)
    out = tmp_path / f"out_{seed}"
    analyze(shuffled, SAMPLE_DATA_CUT, out, figures=False)
    assert _results(out) == _results(Path(reference_out))
    for name in ("adsl.parquet", "adtte.parquet", "adtte_tv.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(Path(reference_out) / name))


def _frame(spec: dict[str, Any], out: Path) -> pl.DataFrame:
    """The model's rows built from the written files, following the spec in results.json."""
    if spec["dataset"] == "adtte_tv":
        return pl.read_parquet(out / "adtte_tv.parquet").filter(
            pl.col("paramcd") == spec["paramcd"]
        )
    adsl = pl.read_parquet(out / "adsl.parquet")
    rows = (
        pl.read_parquet(out / "adtte.parquet")
        .filter(pl.col("paramcd") == spec["paramcd"])
        .join(adsl, on=["patient_key", "site_id"])
    )
    if spec["site"] is not None:
        rows = rows.filter(pl.col("site_id") == spec["site"])
    if spec["landmark_days"] is not None:
        rows = rows.filter(pl.col("aval_days") > spec["landmark_days"]).with_columns(
            aval_months=(pl.col("aval_days") - spec["landmark_days"]) / 30.4375
        )
    return rows


def test_every_model_refits_from_the_written_datasets(sample_analysis: Any) -> None:
    _, out = sample_analysis
    out = Path(out)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    models = list(results["models"].values()) + results["forest"]["burden_progression"]["sites"]
    fitted = [m for m in models if m["status"] == "fitted"]
    assert len(fitted) >= 12
    options = {"precision": 1e-12, "r_precision": 1e-14, "max_steps": 200}
    for model in fitted:
        spec, covariates = model["spec"], model["covariates"]
        frame = _frame(spec, out)
        if model["kind"] == "fine_gray":
            data = frame.drop_nulls(covariates)
            fit = FineGrayFitter().fit(
                data["aval_months"].to_numpy(),
                data["evntcd"].to_numpy(),
                data.select(covariates).to_numpy(),
            )
            coefs = list(fit.params_)
        elif model["kind"] == "cox_time_varying":
            data = frame.select("patient_key", "tstart", "tstop", "event", *covariates).to_pandas()
            ctv = CoxTimeVaryingFitter().fit(
                data,
                id_col="patient_key",
                event_col="event",
                start_col="tstart",
                stop_col="tstop",
                fit_options=options,
            )
            coefs = [ctv.params_[c] for c in covariates]
        else:
            strata = [spec["strata"]] if spec["strata"] else []
            data = (
                frame.with_columns(event=(pl.col("evntcd") == 1).cast(pl.Int8))
                .select("aval_months", "event", *covariates, *strata)
                .drop_nulls()
                .with_columns(pl.col(c).cast(pl.Float64) for c in covariates)
                .to_pandas()
            )
            cph = CoxPHFitter(strata=strata or None).fit(
                data, duration_col="aval_months", event_col="event", fit_options=options
            )
            coefs = [cph.params_[c] for c in covariates]
        reported = [c["coef"] for c in model["coefficients"]]
        assert np.allclose(coefs, reported, atol=1e-8, rtol=0), model["model"]


def test_adsl_has_every_model_covariate_under_its_name(sample_analysis: Any) -> None:
    run, _ = sample_analysis
    for model in run.results["models"].values():
        for term in model["spec"]["covariates"]:
            source = run.adsl if model["spec"]["dataset"] == "adtte" else None
            if source is not None:
                assert term in source.columns, (model["model"], term)
