"""The whole analysis: CDM tables in, ADTTE + estimates + tables + figures + report out.

``analyze(data_dir, data_cut, out_dir)`` writes::

    OUT/adtte.parquet                 time-to-event rows (one per patient and endpoint)
    OUT/adrsp_salvage.parquet         salvage response rows (one per salvaged patient)
    OUT/tables/<name>.csv and .md     Table 1, endpoint summary, salvage response, models
    OUT/figures/<name>.png and .svg   KM and cumulative-incidence plots with numbers at risk
    OUT/results.json                  every estimate (see docs/analysis.md for the layout)
    OUT/report.html                   a self-contained HTML report
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg import __version__
from cartreg.analysis import stats
from cartreg.analysis.derive import (
    DAYS_PER_MONTH,
    derive_baseline,
    derive_first_progression,
    derive_salvage_response,
    derive_tte,
)
from cartreg.analysis.endpoints import Endpoint, load_endpoints
from cartreg.analysis.tables import salvage_response, table_one, to_markdown
from cartreg.errors import InputError
from cartreg.spreadsheet import write_csv

if TYPE_CHECKING:
    from cartreg.cdm import CDM

RESULTS_SCHEMA_VERSION = "1.0"
KM_ENDPOINTS = ("OS", "EFS", "PPS", "REMDUR")
PPS_COVARIATES = (
    "remission_months",
    "high_burden",
    "cd19_loss",
    "age_per_10y",
    "salvage_antibody",
    "salvage_car_t",
)
COVARIATE_LABELS = {
    "remission_months": "Remission duration from CAR T (per month)",
    "high_burden": "High disease burden at infusion",
    "cd19_loss": "CD19-negative/dim or lineage-switch progression",
    "age_per_10y": "Age at infusion (per 10 years)",
    "salvage_antibody": "First salvage: blinatumomab and/or inotuzumab",
    "salvage_car_t": "First salvage: CAR T",
}


@dataclass
class AnalysisResult:
    """What ``analyze`` produced: the derived frames, the estimates and the files written."""

    tte: pl.DataFrame
    responses: pl.DataFrame
    baseline: pl.DataFrame
    results: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def _typed_from_text(frame: pl.DataFrame, cdm: CDM, table: str) -> pl.DataFrame:
    """A CSV table read as text, converted to the CDM types (unparseable values become null)."""
    exprs = []
    for col in cdm.table(table).columns:
        if col.name not in frame.columns:
            continue
        text = pl.col(col.name).str.strip_chars()
        text = pl.when(text == "").then(None).otherwise(text)
        if col.dtype == "date":
            exprs.append(text.str.to_date("%Y-%m-%d", strict=False).alias(col.name))
        elif col.dtype == "boolean":
            low = text.str.to_lowercase()
            exprs.append(
                pl.when(low.is_in(["true", "1", "yes", "y"]))
                .then(True)
                .when(low.is_in(["false", "0", "no", "n"]))
                .then(False)
                .alias(col.name)
            )
        elif col.dtype == "integer":
            exprs.append(
                text.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).alias(col.name)
            )
        elif col.dtype == "float":
            exprs.append(text.cast(pl.Float64, strict=False).alias(col.name))
    return frame.with_columns(exprs)


def read_tables(data_dir: Path, cdm: CDM) -> dict[str, pl.DataFrame]:
    """CDM tables from a folder of ``<table>.parquet`` (or ``.csv``), or one with ``tables/``."""
    folder = data_dir / "tables" if (data_dir / "tables").is_dir() else data_dir
    if not folder.is_dir():
        raise InputError(
            "folder not found",
            where=str(data_dir),
            hint="give a folder of <table>.parquet files or an ingest output folder",
        )
    tables: dict[str, pl.DataFrame] = {}
    for name in cdm.tables:
        parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        try:
            if parquet.is_file():
                tables[name] = pl.read_parquet(parquet)
            elif csv.is_file():
                text = pl.read_csv(csv, infer_schema=False, encoding="utf8-lossy")
                tables[name] = _typed_from_text(text, cdm, name)
        except (OSError, pl.exceptions.PolarsError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot read table: {first}", where=str(folder / name)) from None
    for required in ("car_t_infusions", "follow_up"):
        if required not in tables:
            raise InputError(
                f"no {required}.parquet",
                where=str(folder),
                hint="the analysis needs car_t_infusions and follow_up (run cartreg ingest)",
            )
    return tables


def _km_block(tte: pl.DataFrame, endpoint: Endpoint) -> dict[str, Any]:
    rows = tte.filter(pl.col("paramcd") == endpoint.paramcd)
    block = stats.kaplan_meier(
        rows["aval_months"].to_list(),
        (rows["evntcd"] == 1).cast(pl.Int8).to_list(),
        landmarks=endpoint.landmarks_months,
    )
    return {
        "paramcd": endpoint.paramcd,
        "name": endpoint.name,
        "estimator": "kaplan_meier",
        **block,
    }


def _cif_block(tte: pl.DataFrame, endpoint: Endpoint) -> dict[str, Any]:
    rows = tte.filter(pl.col("paramcd") == endpoint.paramcd)
    block = stats.cumulative_incidence(
        rows["aval_months"].to_list(), rows["evntcd"].to_list(), landmarks=endpoint.landmarks_months
    )
    return {
        "paramcd": endpoint.paramcd,
        "name": endpoint.name,
        "estimator": "aalen_johansen",
        "note": "median_months is the time the cumulative incidence of progression reaches 50%"
        " with death without progression as a competing event",
        **block,
    }


def _by_group(tte: pl.DataFrame, baseline: pl.DataFrame, paramcd: str) -> dict[str, Any]:
    rows = (
        tte.filter(pl.col("paramcd") == paramcd)
        .join(baseline.select("patient_key", "burden"), on="patient_key", how="left")
        .filter(pl.col("burden").is_in(["HIGH", "LOW"]))
    )
    groups = {}
    for level in ("HIGH", "LOW"):
        sub = rows.filter(pl.col("burden") == level)
        groups[level] = stats.kaplan_meier(
            sub["aval_months"].to_list(), (sub["evntcd"] == 1).cast(pl.Int8).to_list()
        )
    test = stats.logrank(
        rows["aval_months"].to_list(),
        (rows["evntcd"] == 1).cast(pl.Int8).to_list(),
        rows["burden"].to_list(),
    )
    return {"groups": groups, "logrank": test}


def _model_frames(
    tte: pl.DataFrame, baseline: pl.DataFrame, responses: pl.DataFrame, first_prog: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    covs = baseline.select(
        "patient_key",
        pl.when(pl.col("burden") == "HIGH")
        .then(1)
        .when(pl.col("burden") == "LOW")
        .then(0)
        .alias("high_burden"),
        (pl.col("age") / 10).alias("age_per_10y"),
    )
    ttp = (
        tte.filter(pl.col("paramcd") == "TTP")
        .select("patient_key", "aval_months", (pl.col("evntcd") == 1).cast(pl.Int8).alias("event"))
        .join(covs, on="patient_key", how="left")
    )
    remdur = tte.filter(pl.col("paramcd") == "REMDUR").select(
        "patient_key", pl.col("start_day").alias("cr_day")
    )
    pps = (
        tte.filter(pl.col("paramcd") == "PPS")
        .select(
            "patient_key",
            "start_day",
            "aval_months",
            (pl.col("evntcd") == 1).cast(pl.Int8).alias("event"),
        )
        .join(remdur, on="patient_key", how="left")
        .join(covs, on="patient_key", how="left")
        .join(first_prog.select("patient_key", "antigen_phenotype"), on="patient_key", how="left")
        .join(responses.select("patient_key", "agent_class"), on="patient_key", how="left")
        .with_columns(
            # refractory patients never had a remission: duration 0
            remission_months=(pl.col("start_day") - pl.col("cr_day")).fill_null(0) / DAYS_PER_MONTH,
            cd19_loss=pl.when(pl.col("antigen_phenotype") == "CD19_POS")
            .then(0)
            .when(
                pl.col("antigen_phenotype").is_in(
                    ["CD19_NEG", "CD19_DIM_PARTIAL", "LINEAGE_SWITCH"]
                )
            )
            .then(1),
            salvage_antibody=(pl.col("agent_class") == "ANTIBODY").fill_null(False).cast(pl.Int8),
            salvage_car_t=(pl.col("agent_class") == "CAR_T").fill_null(False).cast(pl.Int8),
        )
    )
    return ttp, pps


def analyze(
    data_dir: Path | str,
    data_cut: dt.date,
    out_dir: Path | str,
    *,
    endpoints_dir: Path | str | None = None,
    cdm: CDM | None = None,
    figures: bool = True,
) -> AnalysisResult:
    """Run every declared endpoint on a folder of CDM tables and write all outputs."""
    from cartreg.cdm import load_cdm

    if not isinstance(data_cut, dt.date):
        raise InputError("the data cut must be a date", hint="e.g. --data-cut 2024-06-30")
    cdm = cdm or load_cdm()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    tables = read_tables(data_dir, cdm)
    return analyze_tables(
        tables,
        data_cut,
        out_dir,
        endpoints_dir=endpoints_dir,
        cdm=cdm,
        figures=figures,
        source=str(data_dir),
    )


def analyze_tables(
    tables: Mapping[str, pl.DataFrame],
    data_cut: dt.date,
    out_dir: Path,
    *,
    endpoints_dir: Path | str | None = None,
    cdm: CDM,
    figures: bool = True,
    source: str = "",
) -> AnalysisResult:
    """``analyze`` on frames already in memory (used by tests and the demo)."""
    endpoints = load_endpoints(endpoints_dir)
    tte = derive_tte(tables, endpoints, data_cut, cdm=cdm)
    ttp_ep = endpoints.get("TTP") or next(iter(endpoints.values()))
    baseline = derive_baseline(
        tables,
        data_cut,
        burden_threshold_pct=float(ttp_ep.param("burden_threshold_pct")),
        emd_counts_high=bool(ttp_ep.param("emd_counts_high")),
        cdm=cdm,
    )
    salv_ep = endpoints.get("SALV_CR")
    responses = (
        derive_salvage_response(tables, salv_ep, data_cut, cdm=cdm)
        if salv_ep is not None
        else pl.DataFrame(
            schema={"patient_key": pl.String(), "agent_class": pl.String(), "aval": pl.Int8()}
        )
    )
    first_prog = derive_first_progression(tables, ttp_ep, data_cut, cdm=cdm)

    results: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "cartreg_version": __version__,
        "cdm_version": cdm.version,
        "data_cut_date": data_cut.isoformat(),
        "source": source,
        "n_patients": baseline.height,
        "sites": sorted(baseline["site_id"].drop_nulls().unique().to_list()),
        "time_unit": "months (days / 30.4375)",
        "endpoints": {},
        "proportions": {},
        "models": {},
        "comparisons": {},
        "endpoint_definitions": {
            ep.paramcd: {
                "name": ep.name,
                "population": ep.population,
                "origin": ep.origin,
                "events": [s.source for s in ep.events],
                "censors": [s.source for s in ep.censors],
                "competing": [s.source for s in ep.competing],
                "parameters": dict(ep.parameters),
                "description": ep.description,
            }
            for ep in endpoints.values()
        },
    }
    imputed = tte.filter(pl.col("adtf").is_not_null()).group_by("paramcd").len()
    results["data_notes"] = {
        "imputed_end_dates": dict(zip(imputed["paramcd"], imputed["len"], strict=True)),
        "patients_without_calendar_index": int(
            tte.filter(pl.col("paramcd") == "OS", pl.col("startdt").is_null()).height
        ),
        "censored_at_data_cut": int(
            tte.filter(pl.col("paramcd") == "OS", pl.col("srctable") == "data_cut").height
        ),
    }
    for paramcd, ep in endpoints.items():
        if ep.kind != "time_to_event":
            continue
        if paramcd == "TTP_DESC":
            rows = tte.filter(pl.col("paramcd") == paramcd)
            block = stats.describe_times(rows["aval_months"].to_list())
            results["endpoints"][paramcd] = {
                "paramcd": paramcd,
                "name": ep.name,
                "estimator": "observed_median_range",
                **block,
            }
        elif ep.competing:
            results["endpoints"][paramcd] = _cif_block(tte, ep)
        else:
            results["endpoints"][paramcd] = _km_block(tte, ep)
    if salv_ep is not None:
        salvage_display, salvage_estimates = salvage_response(responses)
        results["proportions"]["SALV_CR"] = salvage_estimates
    else:
        salvage_display = pl.DataFrame()
    for paramcd in ("EFS", "OS"):
        if paramcd in endpoints:
            results["comparisons"][f"{paramcd}_by_burden"] = _by_group(tte, baseline, paramcd)

    ttp_frame, pps_frame = _model_frames(tte, baseline, responses, first_prog)
    results["models"]["burden_progression"] = {
        **stats.cox_model(
            ttp_frame,
            duration="aval_months",
            event="event",
            covariates=["high_burden"],
            name="Cause-specific Cox model of progression (death without progression censored)",
        ),
        "endpoint": "TTP",
    }
    results["models"]["pps_multivariable"] = {
        **stats.cox_model(
            pps_frame,
            duration="aval_months",
            event="event",
            covariates=list(PPS_COVARIATES),
            name="Multivariable Cox model of survival after progression",
        ),
        "endpoint": "PPS",
    }
    for model in results["models"].values():
        for coef in model["coefficients"]:
            coef["label"] = COVARIATE_LABELS.get(coef["term"], coef["term"])

    return _write_outputs(
        out_dir, tte, responses, baseline, results, salvage_display, endpoints, figures
    )


def _json_safe(value: Any) -> Any:
    """Plain JSON: NaN/inf become null (\"not estimable\"), paths and dates become strings."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _summary_table(results: dict[str, Any]) -> pl.DataFrame:
    def fmt(v: Any) -> str:
        return "NR" if v is None else f"{v:.1f}"

    rows = []
    for paramcd, block in results["endpoints"].items():
        if block["estimator"] == "observed_median_range":
            ci = (
                f"{fmt(block['ci_low'])}-{fmt(block['ci_high'])}"
                f" (range {fmt(block['min_months'])}-{fmt(block['max_months'])})"
            )
        else:
            ci = f"{fmt(block['ci_low'])}-{fmt(block['ci_high'])}"
        rows.append(
            {
                "endpoint": paramcd,
                "name": block["name"],
                "estimator": block["estimator"],
                "n": str(block["n"]),
                "events": str(block["events"]),
                "median (months)": fmt(block["median_months"]),
                "95% CI": ci,
            }
        )
    return pl.DataFrame(rows)


def _model_table(model: dict[str, Any]) -> pl.DataFrame:
    if model["status"] != "fitted":
        return pl.DataFrame({"model": [model["model"]], "status": [model["message"]]})
    ph = {p["term"]: p["p_value"] for p in model["ph_test"]}
    return pl.DataFrame(
        [
            {
                "covariate": c["label"],
                "HR": f"{c['hazard_ratio']:.2f}",
                "95% CI": f"{c['ci_low']:.2f}-{c['ci_high']:.2f}",
                "p": f"{c['p_value']:.3g}",
                "PH test p": "-" if ph.get(c["term"]) is None else f"{ph[c['term']]:.3g}",
            }
            for c in model["coefficients"]
        ]
    )


def _write_outputs(
    out_dir: Path,
    tte: pl.DataFrame,
    responses: pl.DataFrame,
    baseline: pl.DataFrame,
    results: dict[str, Any],
    salvage_display: pl.DataFrame,
    endpoints: Mapping[str, Endpoint],
    figures: bool,
) -> AnalysisResult:
    from cartreg.analysis.report import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, frame in (("adtte", tte), ("adrsp_salvage", responses)):
        path = out_dir / f"{name}.parquet"
        frame.write_parquet(path)
        files.append(path)
    named_tables: dict[str, pl.DataFrame] = {
        "table1": table_one(baseline),
        "endpoint_summary": _summary_table(results),
        "salvage_response": salvage_display,
    }
    for key, model in results["models"].items():
        named_tables[f"model_{key}"] = _model_table(model)
    tables_dir = out_dir / "tables"
    tables_dir.mkdir(exist_ok=True)
    for name, frame in named_tables.items():
        if frame.width == 0:
            continue
        write_csv(frame, tables_dir / f"{name}.csv")
        (tables_dir / f"{name}.md").write_text(to_markdown(frame), encoding="utf-8")
        files += [tables_dir / f"{name}.csv", tables_dir / f"{name}.md"]

    figure_paths: dict[str, Path] = {}
    if figures:
        from cartreg.analysis.plots import plot_cif, plot_km

        fig_dir = out_dir / "figures"
        for paramcd in KM_ENDPOINTS:
            if paramcd not in endpoints:
                continue
            rows = tte.filter(pl.col("paramcd") == paramcd)
            curve = (rows["aval_months"].to_list(), (rows["evntcd"] == 1).cast(pl.Int8).to_list())
            made = plot_km(
                {"All": curve},
                title=endpoints[paramcd].name,
                ylabel="Probability",
                stem=fig_dir / f"km_{paramcd}",
            )
            files += made
            figure_paths[f"km_{paramcd}"] = made[0]
        if "EFS" in endpoints:
            rows = tte.filter(pl.col("paramcd") == "EFS").join(
                baseline.select("patient_key", "burden"), on="patient_key", how="left"
            )
            curves = {}
            for level in ("HIGH", "LOW"):
                sub = rows.filter(pl.col("burden") == level)
                curves[f"{level.title()} burden"] = (
                    sub["aval_months"].to_list(),
                    (sub["evntcd"] == 1).cast(pl.Int8).to_list(),
                )
            made = plot_km(
                curves,
                title="Event-free survival by disease burden at infusion",
                ylabel="Probability",
                stem=fig_dir / "km_EFS_by_burden",
            )
            files += made
            figure_paths["km_EFS_by_burden"] = made[0]
        if "TTP" in endpoints:
            rows = tte.filter(pl.col("paramcd") == "TTP")
            made = plot_cif(
                rows["aval_months"].to_list(),
                rows["evntcd"].to_list(),
                title="Cumulative incidence of progression (death as competing event)",
                labels={1: "Progression", 2: "Death without progression"},
                stem=fig_dir / "cif_TTP",
            )
            files += made
            figure_paths["cif_TTP"] = made[0]

    results["files"] = sorted(str(p.relative_to(out_dir)) for p in files)
    results_path = out_dir / "results.json"
    results_path.write_text(
        json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    files.append(results_path)
    report_path = out_dir / "report.html"
    report_path.write_text(render_report(results, named_tables, figure_paths), encoding="utf-8")
    files.append(report_path)
    return AnalysisResult(
        tte=tte, responses=responses, baseline=baseline, results=results, files=files
    )
