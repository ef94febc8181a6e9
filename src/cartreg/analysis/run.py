"""The whole analysis: CDM tables in; population, datasets, estimates, tables, figures and a
report out.

``analyze(data_dir, data_cut, out_dir)`` writes::

    OUT/adsl.parquet, .csv            one row per analysed patient, every model covariate
    OUT/adtte.parquet, .csv           time-to-event rows (one per patient and endpoint)
    OUT/adtte_tv.parquet, .csv        counting-process rows (HCT as a time-dependent covariate)
    OUT/adrsp_salvage.parquet         salvage response rows (one per salvaged patient)
    OUT/excluded_patients.csv         every exclusion, one row per patient and reason
    OUT/tables/<name>.csv and .md     flow, Table 1, endpoints, responses, follow-up, models
    OUT/figures/<name>.png and .svg   KM and cumulative-incidence plots, the per-site forest
    OUT/results.json                  every estimate (see docs/analysis.md for the layout)
    OUT/report.html                   a self-contained HTML report, opening with the flow
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
from cartreg.analysis.adsl import derive_adsl
from cartreg.analysis.derive import (
    DAYS_PER_MONTH,
    derivation_notes,
    derive_salvage_response,
    derive_tte,
    prepare_tables,
)
from cartreg.analysis.endpoints import Endpoint, load_endpoints
from cartreg.analysis.followup import follow_up_summary
from cartreg.analysis.models import derive_counting_process, fit_model, model_specs, site_models
from cartreg.analysis.population import (
    Population,
    PopulationPolicy,
    ReviewInputs,
    compute_duplicates,
    compute_findings,
    read_review_inputs,
    select_population,
)
from cartreg.analysis.response import response_rates
from cartreg.analysis.tables import (
    flow_table,
    follow_up_table,
    model_table,
    proportions_table,
    salvage_response,
    summary_table,
    table_one,
    to_markdown,
)
from cartreg.errors import InputError
from cartreg.spreadsheet import write_csv

if TYPE_CHECKING:
    from cartreg.cdm import CDM

RESULTS_SCHEMA_VERSION = "2.0"
KM_FIGURES = ("OS", "EFS", "PPS", "REMDUR")
DEFAULT_LANDMARK_DAYS = 90
GRAY_BY_BURDEN = ("TTP", "CIR", "CIR_CR")
LOGRANK_BY_BURDEN = ("EFS", "OS")


@dataclass
class AnalysisResult:
    """What ``analyze`` produced: the population, the derived frames, the estimates, the files."""

    tte: pl.DataFrame
    adsl: pl.DataFrame
    responses: pl.DataFrame
    population: Population
    results: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def baseline(self) -> pl.DataFrame:
        return self.adsl


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


def table_folder(data_dir: Path) -> Path:
    return data_dir / "tables" if (data_dir / "tables").is_dir() else data_dir


def read_tables(data_dir: Path, cdm: CDM) -> dict[str, pl.DataFrame]:
    """CDM tables from a folder of ``<table>.parquet`` (or ``.csv``), or one with ``tables/``."""
    folder = table_folder(data_dir)
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


def analyze(
    data_dir: Path | str,
    data_cut: dt.date,
    out_dir: Path | str,
    *,
    endpoints_dir: Path | str | None = None,
    cdm: CDM | None = None,
    figures: bool = True,
    policy: PopulationPolicy | None = None,
    landmark_days: int = DEFAULT_LANDMARK_DAYS,
) -> AnalysisResult:
    """Run every declared endpoint on a folder of CDM tables and write all outputs.

    The folder's ``findings.json`` and ``duplicates.csv`` (a registry merge or check output)
    decide the population with ``policy``; without them both are computed here."""
    from cartreg.cdm import load_cdm

    if not isinstance(data_cut, dt.date):
        raise InputError("the data cut must be a date", hint="e.g. --data-cut 2024-06-30")
    cdm = cdm or load_cdm()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    tables = read_tables(data_dir, cdm)
    review = read_review_inputs(data_dir, tables, cdm)
    return analyze_tables(
        tables,
        data_cut,
        out_dir,
        endpoints_dir=endpoints_dir,
        cdm=cdm,
        figures=figures,
        source=str(data_dir),
        review=review,
        policy=policy,
        landmark_days=landmark_days,
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
    review: ReviewInputs | None = None,
    policy: PopulationPolicy | None = None,
    landmark_days: int = DEFAULT_LANDMARK_DAYS,
) -> AnalysisResult:
    """``analyze`` on frames already in memory (used by tests and the demo)."""
    if landmark_days <= 0:
        raise InputError("the landmark must be a positive number of days", hint="e.g. 90")
    endpoints = load_endpoints(endpoints_dir)
    if review is None:
        review = ReviewInputs(
            compute_findings(tables, cdm),
            compute_duplicates(tables),
            "CDM checks and rules run on the tables",
            "computed (candidate search)",
        )
    population = select_population(tables, review, policy or PopulationPolicy())
    analysed = population.tables
    tte = derive_tte(analysed, endpoints, data_cut, cdm=cdm)
    ttp_ep = endpoints.get("TTP") or next(iter(endpoints.values()))
    salv_ep = endpoints.get("SALV_CR")
    adsl = derive_adsl(
        analysed,
        data_cut,
        progression_endpoint=ttp_ep,
        salvage_endpoint=salv_ep,
        tte=tte,
        set_aside=population.set_aside,
        landmark_days=landmark_days,
        cdm=cdm,
    )
    tv = derive_counting_process(tte, adsl, "EFS")
    responses = (
        derive_salvage_response(analysed, salv_ep, data_cut, cdm=cdm)
        if salv_ep is not None
        else pl.DataFrame(
            schema={"patient_key": pl.String(), "agent_class": pl.String(), "aval": pl.Int8()}
        )
    )
    _, full, base = prepare_tables(analysed, data_cut, cdm)

    results: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "cartreg_version": __version__,
        "cdm_version": cdm.version,
        "data_cut_date": data_cut.isoformat(),
        "source": source,
        "population": population.flow,
        "n_patients": adsl.height,
        "sites": sorted(adsl["site_id"].drop_nulls().unique().to_list()),
        "time_unit": "months (days / 30.4375)",
        "landmark_days": landmark_days,
        "follow_up": follow_up_summary(tte),
        "endpoints": {},
        "proportions": {},
        "comparisons": {},
        "models": {},
        "forest": {},
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
    imputed = tte.filter(pl.col("adtf").is_not_null()).group_by("paramcd").len().sort("paramcd")
    results["data_notes"] = {
        "imputed_end_dates": dict(zip(imputed["paramcd"], imputed["len"], strict=True)),
        "patients_without_calendar_index": int(
            tte.filter(pl.col("paramcd") == "OS", pl.col("startdt").is_null()).height
        ),
        "censored_at_data_cut": int(
            tte.filter(pl.col("paramcd") == "OS", pl.col("srctable") == "data_cut").height
        ),
        "records_left_out_by_derivation": derivation_notes(full, base, ttp_ep),
    }
    for paramcd, ep in endpoints.items():
        if ep.kind != "time_to_event":
            continue
        results["endpoints"][paramcd] = _endpoint_block(tte, ep)
    if salv_ep is not None:
        salvage_display, salvage_estimates = salvage_response(responses)
        results["proportions"]["SALV_CR"] = salvage_estimates
    else:
        salvage_display = pl.DataFrame()
    results["proportions"].update(response_rates(adsl))
    for paramcd in LOGRANK_BY_BURDEN:
        if paramcd in endpoints:
            results["comparisons"][f"{paramcd}_by_burden"] = _by_burden(tte, adsl, paramcd)
    for paramcd in GRAY_BY_BURDEN:
        if paramcd in endpoints:
            results["comparisons"][f"{paramcd}_gray_by_burden"] = _gray_by_burden(
                tte, adsl, paramcd
            )
    for spec in model_specs(landmark_days):
        if spec.paramcd in endpoints:
            results["models"][spec.key] = fit_model(spec, tte, adsl, tv)
    if "TTP" in endpoints:
        results["forest"]["burden_progression"] = {
            "title": "Hazard ratio of progression, high vs low disease burden, by site",
            "pooled": "burden_progression_by_site",
            "sites": [fit_model(s, tte, adsl, tv) for s in site_models(results["sites"])],
        }
    named_tables = {
        "flow": flow_table(population.flow),
        "table1": table_one(adsl),
        "endpoint_summary": summary_table(results),
        "response_rates": proportions_table(results["proportions"]),
        "salvage_response": salvage_display,
        "follow_up": follow_up_table(results["follow_up"]),
    }
    for key, model in results["models"].items():
        named_tables[f"model_{key}"] = model_table(model)
    return _write_outputs(
        out_dir,
        {"adsl": adsl, "adtte": tte, "adtte_tv": tv, "adrsp_salvage": responses},
        population,
        results,
        named_tables,
        endpoints,
        figures,
    )


def _is_competing(ep: Endpoint) -> bool:
    return bool(ep.competing) or (
        ep.param("death_without_relapse") == "COMPETING"
        and any(s.source == "relapse" for s in ep.events)
    )


def _rows(tte: pl.DataFrame, paramcd: str) -> pl.DataFrame:
    return tte.filter(pl.col("paramcd") == paramcd).sort("patient_key")


def _endpoint_block(tte: pl.DataFrame, ep: Endpoint) -> dict[str, Any]:
    rows = _rows(tte, ep.paramcd)
    head = {"paramcd": ep.paramcd, "name": ep.name}
    if ep.paramcd == "TTP_DESC":
        return {
            **head,
            "estimator": "observed_median_range",
            **stats.describe_times(rows["aval_months"].to_list()),
        }
    if _is_competing(ep):
        return {
            **head,
            "estimator": "aalen_johansen",
            "variance": "Gray (1988) delta method, as cmprsk::cuminc",
            "event_label": ep.events[0].description,
            "competing_label": ep.competing[0].description if ep.competing else "Death",
            "note": "median_months is the first time the cumulative incidence of the event"
            " reaches 50%; its interval the times the log(-log) limits reach it",
            **stats.competing_risks(
                rows["aval_months"].to_list(),
                rows["evntcd"].to_list(),
                landmarks=ep.landmarks_months,
            ),
        }
    return {
        **head,
        "estimator": "kaplan_meier",
        **stats.kaplan_meier(
            rows["aval_months"].to_list(),
            (rows["evntcd"] == 1).cast(pl.Int8).to_list(),
            landmarks=ep.landmarks_months,
        ),
    }


def _with_burden(tte: pl.DataFrame, adsl: pl.DataFrame, paramcd: str) -> pl.DataFrame:
    return (
        _rows(tte, paramcd)
        .join(adsl.select("patient_key", "burden"), on="patient_key", how="left")
        .filter(pl.col("burden").is_in(["HIGH", "LOW"]))
    )


def _by_burden(tte: pl.DataFrame, adsl: pl.DataFrame, paramcd: str) -> dict[str, Any]:
    rows = _with_burden(tte, adsl, paramcd)
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
    return {"endpoint": paramcd, "groups": groups, "logrank": test}


def _gray_by_burden(tte: pl.DataFrame, adsl: pl.DataFrame, paramcd: str) -> dict[str, Any]:
    rows = _with_burden(tte, adsl, paramcd)
    groups = {}
    for level in ("HIGH", "LOW"):
        sub = rows.filter(pl.col("burden") == level)
        groups[level] = stats.competing_risks(sub["aval_months"].to_list(), sub["evntcd"].to_list())
    return {
        "endpoint": paramcd,
        "groups": groups,
        "gray": stats.gray_test(
            rows["aval_months"].to_list(), rows["evntcd"].to_list(), rows["burden"].to_list()
        ),
    }


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
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return str(value)


def _write_outputs(
    out_dir: Path,
    datasets: Mapping[str, pl.DataFrame],
    population: Population,
    results: dict[str, Any],
    named_tables: dict[str, pl.DataFrame],
    endpoints: Mapping[str, Endpoint],
    figures: bool,
) -> AnalysisResult:
    from cartreg.analysis.report import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, frame in datasets.items():
        path = out_dir / f"{name}.parquet"
        frame.write_parquet(path)
        files.append(path)
        if name != "adrsp_salvage":
            # CSV for R, SAS or Stata users without a Parquet reader
            write_csv(frame, out_dir / f"{name}.csv")
            files.append(out_dir / f"{name}.csv")
    write_csv(population.exclusions, out_dir / "excluded_patients.csv")
    files.append(out_dir / "excluded_patients.csv")
    tables_dir = out_dir / "tables"
    tables_dir.mkdir(exist_ok=True)
    for name, frame in named_tables.items():
        if frame.width == 0:
            continue
        write_csv(frame, tables_dir / f"{name}.csv")
        (tables_dir / f"{name}.md").write_text(to_markdown(frame), encoding="utf-8")
        files += [tables_dir / f"{name}.csv", tables_dir / f"{name}.md"]
    figure_paths = (
        _write_figures(out_dir / "figures", datasets, results, endpoints) if figures else {}
    )
    for made in figure_paths.values():
        files += [made, made.with_suffix(".svg")]
    results["files"] = sorted(str(p.relative_to(out_dir)) for p in files)
    results_path = out_dir / "results.json"
    results_path.write_text(
        json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    files.append(results_path)
    report_path = out_dir / "report.html"
    report_path.write_text(
        render_report(_json_safe(results), named_tables, figure_paths), encoding="utf-8"
    )
    files.append(report_path)
    return AnalysisResult(
        tte=datasets["adtte"],
        adsl=datasets["adsl"],
        responses=datasets["adrsp_salvage"],
        population=population,
        results=results,
        files=files,
    )


def _write_figures(
    fig_dir: Path,
    datasets: Mapping[str, pl.DataFrame],
    results: dict[str, Any],
    endpoints: Mapping[str, Endpoint],
) -> dict[str, Path]:
    """Every figure; returns the PNG of each (an SVG is written beside it)."""
    from cartreg.analysis.plots import plot_cif, plot_forest, plot_km

    tte, adsl = datasets["adtte"], datasets["adsl"]
    made: dict[str, Path] = {}

    def curve(rows: pl.DataFrame) -> tuple[list[float], list[int]]:
        return rows["aval_months"].to_list(), (rows["evntcd"] == 1).cast(pl.Int8).to_list()

    for paramcd in KM_FIGURES:
        if paramcd in endpoints:
            made[f"km_{paramcd}"] = plot_km(
                {"All": curve(_rows(tte, paramcd))},
                title=endpoints[paramcd].name,
                ylabel="Probability",
                stem=fig_dir / f"km_{paramcd}",
            )[0]
    if "EFS" in endpoints:
        rows = _with_burden(tte, adsl, "EFS")
        made["km_EFS_by_burden"] = plot_km(
            {
                f"{level.title()} burden": curve(rows.filter(pl.col("burden") == level))
                for level in ("HIGH", "LOW")
            },
            title="Event-free survival by disease burden at infusion",
            ylabel="Probability",
            stem=fig_dir / "km_EFS_by_burden",
        )[0]
    if "TTP" in endpoints:
        rows = _rows(tte, "TTP")
        made["cif_TTP"] = plot_cif(
            {"": (rows["aval_months"].to_list(), rows["evntcd"].to_list())},
            title="Cumulative incidence of progression (death as competing event)",
            labels={1: "Progression", 2: "Death without progression"},
            stem=fig_dir / "cif_TTP",
        )[0]
    pair = {
        label: (_rows(tte, code)["aval_months"].to_list(), _rows(tte, code)["evntcd"].to_list())
        for code, label in (("CIR", "from infusion"), ("CIR_CR", "from first CR"))
        if code in endpoints
    }
    if pair:
        made["cif_CIR_NRM"] = plot_cif(
            pair,
            title="Relapse (CIR) and non-relapse mortality (NRM) among responders",
            labels={1: "CIR", 2: "NRM"},
            stem=fig_dir / "cif_CIR_NRM",
        )[0]
    forest = results["forest"].get("burden_progression")
    if forest:
        made["forest_burden_progression"] = plot_forest(
            forest["sites"],
            results["models"].get(forest["pooled"]),
            title=forest["title"],
            stem=fig_dir / "forest_burden_progression",
        )[0]
    return made


__all__ = ["DAYS_PER_MONTH", "AnalysisResult", "analyze", "analyze_tables", "read_tables"]
