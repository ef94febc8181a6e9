"""One derivation for every time-to-event endpoint: an ADaM ADTTE-style long table.

The engine reads the declarations of ``endpoints.py`` and the CDM tables and returns one row
per patient and endpoint::

    patient_key, site_id, paramcd, param, startdt, adt, start_day, end_day, aval_days,
    aval_months, cnsr, evntcd, competing, evntdesc, cnsdtdsc, srctable, srccol, srcrow, adtf,
    startdtf, data_cut_date

All arithmetic is in day offsets from the index infusion (``*_day``), so a site that sends
calendar dates and a de-identified site that sends only offsets give the same rows; calendar
dates (``startdt``, ``adt``) are reconstructed for display only when the index date is known.
``aval_days = end_day - start_day`` (no +1) and ``aval_months = aval_days / 30.4375``.
``cnsr`` is 0 for the event of interest and 1 otherwise; ``evntcd`` is 0 censored, 1 event,
2 competing event (the coding lifelines' Aalen-Johansen estimator expects).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from cartreg.analysis.endpoints import Endpoint, Source
from cartreg.analysis.impute import compute_event_day
from cartreg.errors import InputError
from cartreg.ingest.derive import burden_from_blasts

if TYPE_CHECKING:
    from cartreg.cdm import CDM

DAYS_PER_MONTH = 30.4375  # 365.25 / 12

_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
}

TTE_SCHEMA: dict[str, pl.DataType] = {
    "patient_key": pl.String(),
    "site_id": pl.String(),
    "paramcd": pl.String(),
    "param": pl.String(),
    "startdt": pl.Date(),
    "adt": pl.Date(),
    "start_day": pl.Int64(),
    "end_day": pl.Int64(),
    "aval_days": pl.Int64(),
    "aval_months": pl.Float64(),
    "cnsr": pl.Int8(),
    "evntcd": pl.Int8(),
    "competing": pl.Boolean(),
    "evntdesc": pl.String(),
    "cnsdtdsc": pl.String(),
    "srctable": pl.String(),
    "srccol": pl.String(),
    "srcrow": pl.Int64(),
    "adtf": pl.String(),
    "startdtf": pl.String(),
    "data_cut_date": pl.Date(),
}

_CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "patient_key": pl.String(),
    "day": pl.Int64(),
    "srctable": pl.String(),
    "srccol": pl.String(),
    "srcrow": pl.Int64(),
    "adtf": pl.String(),
}


def complete_tables(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame], cdm: CDM
) -> dict[str, pl.DataFrame]:
    """Every CDM table with every CDM column (missing ones as typed nulls), collected once."""
    out: dict[str, pl.DataFrame] = {}
    for name in cdm.tables:
        spec = cdm.table(name)
        given = tables.get(name)
        frame = given.collect() if isinstance(given, pl.LazyFrame) else given
        if frame is None:
            frame = pl.DataFrame(schema={c.name: _DTYPES[c.dtype] for c in spec.columns})
        missing = [
            pl.lit(None, dtype=_DTYPES[c.dtype]).alias(c.name)
            for c in spec.columns
            if c.name not in frame.columns
        ]
        if missing:
            frame = frame.with_columns(missing)
        # e.g. Int32 offsets or all-null columns read back as Null: align on the CDM types
        recast = [
            pl.col(c.name).cast(_DTYPES[c.dtype], strict=False)
            for c in spec.columns
            if frame.schema[c.name] != _DTYPES[c.dtype]
            and not (frame.schema[c.name] == pl.String() and c.dtype == "date")
        ]
        if recast:
            frame = frame.with_columns(recast)
        out[name] = frame
    return out


def _index_first(infusions: pl.DataFrame) -> pl.DataFrame:
    """Infusions ordered so that each patient's index infusion comes first."""
    return infusions.sort(
        [
            pl.col("patient_key"),
            pl.col("is_index_infusion").fill_null(False),
            "infusion_number",
            "source_file",
            "source_row",
        ],
        descending=[False, True, False, False, False],
        nulls_last=True,
    )


def derive_index(tables: Mapping[str, pl.DataFrame], data_cut: dt.date) -> pl.DataFrame:
    """One row per infused patient: index date (if known), data-cut day, death day."""
    inf = tables["car_t_infusions"]
    index = (
        inf.pipe(_index_first)
        .group_by("patient_key", maintain_order=True)
        .first()
        .select(
            "patient_key",
            "site_id",
            pl.col("infusion_date").alias("index_date"),
            pl.col("source_row").alias("index_srcrow"),
        )
        .with_columns(
            # a de-identified site has no calendar anchor: its own submission cut applies
            cut_day=(pl.lit(data_cut) - pl.col("index_date")).dt.total_days().cast(pl.Int64),
            data_cut_date=pl.lit(data_cut),
        )
    )
    fu = tables["follow_up"].join(
        index.select("patient_key", "index_date", "cut_day"), on="patient_key"
    )
    death_day, death_flag = _event_day(
        "death_date",
        lower_day=0,
        upper_day=pl.col("cut_day"),
    )
    # the CDM's last contact of a dead patient is the death date: use it when the death date is
    # missing (rule CP-003 reports the gap) rather than count the patient alive
    contact_day, contact_flag = _event_day(
        "last_contact_date",
        lower_day=0,
        upper_day=pl.col("cut_day"),
    )
    dead = pl.col("vital_status") == "DEAD"
    deaths = (
        fu.with_columns(
            day=pl.when(death_day.is_not_null()).then(death_day).when(dead).then(contact_day),
            adtf=pl.when(death_day.is_not_null()).then(death_flag).when(dead).then(contact_flag),
            srccol=pl.when(death_day.is_not_null())
            .then(pl.lit("death_date"))
            .otherwise(pl.lit("last_contact_date")),
        )
        .filter(
            pl.col("day").is_not_null()
            & (pl.col("vital_status").fill_null("UNKNOWN") != "ALIVE")
            & (pl.col("cut_day").is_null() | (pl.col("day") <= pl.col("cut_day")))
        )
        .sort(["patient_key", "day", "source_file", "source_row"], nulls_last=True)
        .group_by("patient_key", maintain_order=True)
        .first()
        .select(
            "patient_key",
            pl.col("day").alias("death_day_a"),
            pl.col("source_row").alias("death_srcrow"),
            pl.col("adtf").alias("death_adtf"),
            pl.col("srccol").alias("death_srccol"),
        )
    )
    return index.join(deaths, on="patient_key", how="left")


def _with_index(frame: pl.DataFrame, base: pl.DataFrame) -> pl.DataFrame:
    return frame.join(
        base.select("patient_key", "index_date", "cut_day", "death_day_a"), on="patient_key"
    )


def _upper_anchor() -> pl.Expr:
    return pl.min_horizontal(pl.col("cut_day"), pl.col("death_day_a"))


def _event_day(date: str, **options: Any) -> tuple[pl.Expr, pl.Expr]:
    """``compute_event_day`` for a CDM date column, using its ``_precision`` and ``_day``
    siblings (the CDM names them after the date column)."""
    day = date.removesuffix("_date") + "_day"
    return compute_event_day(date=date, precision=f"{date}_precision", day=day, **options)


def _candidates(frame: pl.DataFrame, table: str, column: str) -> pl.DataFrame:
    return frame.select(
        "patient_key",
        pl.col("day").cast(pl.Int64),
        pl.lit(table).alias("srctable"),
        pl.lit(column).alias("srccol"),
        pl.col("source_row").cast(pl.Int64).alias("srcrow"),
        pl.col("adtf").cast(pl.String),
    )


def _within_cut(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("cut_day").is_null() | (pl.col("day") <= pl.col("cut_day")))


def derive_progressions(
    tables: Mapping[str, pl.DataFrame], base: pl.DataFrame, endpoint: Endpoint
) -> pl.DataFrame:
    """All progression events within the data cut, with their analysis day (imputed if partial)."""
    pe = _with_index(tables["progression_events"], base)
    day, flag = _event_day(
        "progression_date",
        lower_day=1,
        upper_day=_upper_anchor(),
        day_rule=endpoint.param("impute_day"),
        month_rule=endpoint.param("impute_month"),
    )
    pe = pe.with_columns(day=day, adtf=flag)
    if not endpoint.param("include_mrd_relapse"):
        pe = pe.filter(pl.col("event_type").fill_null("") != "MRD_RELAPSE")
    if endpoint.param("nonresponse_event_date") == "INDEX":
        pe = pe.with_columns(
            day=pl.when(pl.col("event_type") == "REFRACTORY_NONRESPONSE").then(0).otherwise("day"),
            adtf=pl.when(pl.col("event_type") == "REFRACTORY_NONRESPONSE")
            .then(None)
            .otherwise("adtf"),
        )
    # a progression dated before the index infusion is not a progression after CAR T (rule
    # PT-002 reports it); counted in ``derivation_notes``
    after_index = pe.filter(pl.col("day").is_not_null() & (pl.col("day") >= 0))
    return _within_cut(after_index).sort(
        ["patient_key", "day", "event_seq", "source_file", "source_row"], nulls_last=True
    )


def _tiebreak(frame: pl.DataFrame) -> list[str]:
    """Lineage columns that make an ordering total, so results never depend on row order."""
    names = ("srctable", "srcrow", "source_file", "source_row")
    return [c for c in names if c in frame.columns]


def _first(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.sort(["patient_key", "day", *_tiebreak(frame)], nulls_last=True)
        .group_by("patient_key", maintain_order=True)
        .first()
    )


def _remission_codes(cdm: CDM, endpoint: Endpoint) -> list[str]:
    vocab = cdm.vocabularies["response"]
    codes = [c for c in vocab.codes if vocab.term(c).attributes.get("remission")]
    if not endpoint.param("count_crh_as_cr"):
        codes = [c for c in codes if c != "CRh"]
    return codes


def derive_first_remission(
    tables: Mapping[str, pl.DataFrame], base: pl.DataFrame, endpoint: Endpoint, cdm: CDM
) -> pl.DataFrame:
    """First CR/CRi after the index infusion and before the first progression."""
    first_prog = _first(derive_progressions(tables, base, endpoint)).select(
        "patient_key", pl.col("day").alias("prog_day")
    )
    da = _with_index(tables["disease_assessments"], base)
    day, flag = _event_day(
        "assessment_date",
        lower_day=1,
        upper_day=_upper_anchor(),
    )
    from_assessments = _candidates(
        da.with_columns(day=day, adtf=flag).filter(
            pl.col("response").is_in(_remission_codes(cdm, endpoint)) & (pl.col("day") > 0)
        ),
        "disease_assessments",
        "assessment_date",
    )
    pe = _with_index(tables["progression_events"], base)
    rday, rflag = _event_day(
        "remission_date",
        lower_day=1,
        upper_day=_upper_anchor(),
    )
    from_progressions = _candidates(
        pe.with_columns(day=rday, adtf=rflag).filter(pl.col("day") > 0),
        "progression_events",
        "remission_date",
    )
    both = pl.concat([from_assessments, from_progressions], how="vertical_relaxed").join(
        base.select("patient_key", "cut_day"), on="patient_key"
    )
    both = _within_cut(both).join(first_prog, on="patient_key", how="left")
    both = both.filter(pl.col("prog_day").is_null() | (pl.col("day") < pl.col("prog_day")))
    return _first(both.select(list(_CANDIDATE_SCHEMA)))


def _last_known_alive(tables: Mapping[str, pl.DataFrame], base: pl.DataFrame) -> pl.DataFrame:
    specs = [
        ("follow_up", "last_contact_date", "last_contact_date_precision", "last_contact_day"),
        ("disease_assessments", "assessment_date", "assessment_date_precision", "assessment_day"),
        ("salvage_treatments", "start_date", "start_date_precision", "start_day"),
        ("transplants", "hct_date", "hct_date_precision", "hct_day"),
        ("progression_events", "progression_date", "progression_date_precision", "progression_day"),
        ("follow_up", "disease_status_date", "disease_status_date_precision", "disease_status_day"),
    ]
    parts = []
    for table, date, precision, day in specs:
        # a partial date only proves the patient alive at the start of its period
        value, flag = compute_event_day(
            date=date, precision=precision, day=day, day_rule="FIRST", month_rule="FIRST"
        )
        frame = _with_index(tables[table], base).with_columns(day=value, adtf=flag)
        parts.append(_candidates(frame.filter(pl.col("day").is_not_null()), table, date))
    return _last_within_cut(pl.concat(parts, how="vertical_relaxed"), base)


def _last_disease_assessment(
    tables: Mapping[str, pl.DataFrame], base: pl.DataFrame
) -> pl.DataFrame:
    value, flag = _event_day(
        "assessment_date",
        day_rule="FIRST",
        month_rule="FIRST",
    )
    frame = _with_index(tables["disease_assessments"], base).with_columns(day=value, adtf=flag)
    cands = _candidates(
        frame.filter(pl.col("day").is_not_null()), "disease_assessments", "assessment_date"
    )
    return _last_within_cut(cands, base)


def _last_progression_free(tables: Mapping[str, pl.DataFrame], base: pl.DataFrame) -> pl.DataFrame:
    """The latest day the patient is known progression-free: the last disease assessment, or
    a follow-up whose documented disease status is PROGRESSION_FREE as of its date (a partial
    date counts from the start of its period), never after death or the data cut."""
    value, flag = _event_day("disease_status_date", day_rule="FIRST", month_rule="FIRST")
    status = (
        _with_index(tables["follow_up"], base)
        .filter(pl.col("disease_status") == "PROGRESSION_FREE")
        .with_columns(day=value, adtf=flag)
        .filter(pl.col("day").is_not_null())
        # a status cannot be known after death (rule checks report the contradiction)
        .with_columns(
            day=pl.when(
                pl.col("death_day_a").is_not_null() & (pl.col("day") > pl.col("death_day_a"))
            )
            .then(pl.col("death_day_a"))
            .otherwise(pl.col("day"))
        )
    )
    statuses = _candidates(status, "follow_up", "disease_status_date")
    assessments = _last_disease_assessment(tables, base)
    return _last_within_cut(pl.concat([assessments, statuses], how="vertical_relaxed"), base)


def _last_within_cut(cands: pl.DataFrame, base: pl.DataFrame) -> pl.DataFrame:
    """Per patient, the latest candidate day, capped at the data cut (cap keeps the cut row)."""
    joined = cands.join(base.select("patient_key", "cut_day"), on="patient_key")
    capped = joined.with_columns(
        beyond=pl.col("cut_day").is_not_null() & (pl.col("day") > pl.col("cut_day"))
    ).with_columns(
        day=pl.when("beyond").then("cut_day").otherwise("day"),
        srctable=pl.when("beyond").then(pl.lit("data_cut")).otherwise("srctable"),
        srccol=pl.when("beyond").then(pl.lit("data_cut_date")).otherwise("srccol"),
        srcrow=pl.when("beyond").then(None).otherwise("srcrow"),
        adtf=pl.when("beyond").then(None).otherwise("adtf"),
    )
    # srccol too: two dates of one row (last contact and disease status) can tie on a day
    return (
        capped.sort(["patient_key", "day", "srctable", "srcrow", "srccol"], nulls_last=False)
        .group_by("patient_key", maintain_order=True)
        .last()
        .select(list(_CANDIDATE_SCHEMA))
    )


_CENSORS = {
    "last_known_alive": _last_known_alive,
    "last_disease_assessment": _last_disease_assessment,
    "last_progression_free": _last_progression_free,
}


def _hct_censor(tables: Mapping[str, pl.DataFrame], base: pl.DataFrame) -> pl.DataFrame:
    frame = _with_index(tables["transplants"], base)
    value, flag = _event_day(
        "hct_date",
        lower_day=1,
        upper_day=_upper_anchor(),
    )
    frame = frame.with_columns(day=value, adtf=flag).filter(
        (pl.col("day") > 0) & (pl.col("intent").fill_null("") != "PRIOR_TO_INDEX")
    )
    return _first(_candidates(_within_cut(frame), "transplants", "hct_date"))


def _population_and_origin(
    endpoint: Endpoint, tables: Mapping[str, pl.DataFrame], base: pl.DataFrame, cdm: CDM
) -> pl.DataFrame:
    """patient_key plus origin columns (start_day, origin lineage) for the endpoint population."""
    progs = derive_progressions(tables, base, endpoint)
    if endpoint.origin == "index_infusion":
        origin = base.select(
            "patient_key",
            pl.lit(0, dtype=pl.Int64).alias("start_day"),
            pl.lit(None, dtype=pl.String).alias("startdtf"),
        )
    elif endpoint.origin == "first_remission":
        origin = derive_first_remission(tables, base, endpoint, cdm).select(
            "patient_key", pl.col("day").alias("start_day"), pl.col("adtf").alias("startdtf")
        )
    else:
        origin = _first(progs).select(
            "patient_key", pl.col("day").alias("start_day"), pl.col("adtf").alias("startdtf")
        )
    population = endpoint.population
    if population == "remission":
        origin = origin.join(
            derive_first_remission(tables, base, endpoint, cdm).select("patient_key"),
            on="patient_key",
            how="semi",
        )
    elif population in ("progressed", "salvaged"):
        origin = origin.join(progs.select("patient_key").unique(), on="patient_key", how="semi")
    return origin


def _source_candidates(
    name: str,
    endpoint: Endpoint,
    tables: Mapping[str, pl.DataFrame],
    base: pl.DataFrame,
    origin: pl.DataFrame,
) -> pl.DataFrame:
    if name == "death":
        return base.filter(pl.col("death_day_a").is_not_null()).select(
            "patient_key",
            pl.col("death_day_a").alias("day"),
            pl.lit("follow_up").alias("srctable"),
            pl.col("death_srccol").alias("srccol"),
            pl.col("death_srcrow").cast(pl.Int64).alias("srcrow"),
            pl.col("death_adtf").alias("adtf"),
        )
    progs = derive_progressions(tables, base, endpoint)
    if name == "relapse":
        # a relapse ends the remission it follows; refractory disease never had one
        progs = progs.filter(pl.col("event_type").fill_null("") != "REFRACTORY_NONRESPONSE")
        after = progs.join(origin, on="patient_key").filter(pl.col("day") > pl.col("start_day"))
        return _first(_candidates(after, "progression_events", "progression_date"))
    return _first(_candidates(progs, "progression_events", "progression_date"))


def _empty_candidates() -> pl.DataFrame:
    return pl.DataFrame(schema=_CANDIDATE_SCHEMA)


def derive_endpoint(
    endpoint: Endpoint, tables: Mapping[str, pl.DataFrame], base: pl.DataFrame, cdm: CDM
) -> pl.DataFrame:
    """ADTTE rows of one time-to-event endpoint."""
    origin = _population_and_origin(endpoint, tables, base, cdm)
    ranked: list[pl.DataFrame] = []
    competing = list(endpoint.competing)
    if endpoint.param("death_without_relapse") == "COMPETING" and any(
        s.source == "relapse" for s in endpoint.events
    ):
        competing.append(Source("death", "Death without relapse"))
    roles = [(s, 1) for s in endpoint.events] + [(s, 2) for s in competing]
    for source, code in roles:
        cands = _source_candidates(source.source, endpoint, tables, base, origin)
        ranked.append(
            cands.with_columns(evntcd=pl.lit(code, dtype=pl.Int8), desc=pl.lit(source.description))
        )
    if endpoint.param("censor_at_hct"):
        ranked.append(
            _hct_censor(tables, base).with_columns(
                evntcd=pl.lit(0, dtype=pl.Int8), desc=pl.lit("Censored at HCT")
            )
        )
    candidates = (
        pl.concat(ranked, how="vertical_relaxed")
        .join(origin.select("patient_key", "start_day"), on="patient_key")
        .filter(pl.col("day") >= pl.col("start_day"))
        .with_columns(
            # at equal days the event of interest wins, then the competing event, then HCT
            _rank=pl.when(pl.col("evntcd") == 1)
            .then(0)
            .when(pl.col("evntcd") == 2)
            .then(1)
            .otherwise(2)
        )
        .sort(["patient_key", "day", "_rank", "srctable", "srcrow"], nulls_last=True)
        .group_by("patient_key", maintain_order=True)
        .first()
        .drop("_rank", "start_day")
    )
    censor_parts = []
    for source in endpoint.censors:
        last = _CENSORS[source.source](tables, base)
        censor_parts.append(last.with_columns(desc=pl.lit(source.description)))
    censor = (
        pl.concat(censor_parts, how="vertical_relaxed")
        .sort(["patient_key", "day", "srctable", "srcrow"], nulls_last=True)
        .group_by("patient_key", maintain_order=True)
        .last()
        if censor_parts
        else _empty_candidates().with_columns(desc=pl.lit(None, dtype=pl.String))
    )
    censor = censor.select(pl.all().name.prefix("c_")).rename({"c_patient_key": "patient_key"})
    rows = (
        origin.join(candidates, on="patient_key", how="left")
        .join(censor, on="patient_key", how="left")
        .join(
            base.select("patient_key", "site_id", "index_date", "data_cut_date"), on="patient_key"
        )
    )
    has_event = pl.col("day").is_not_null()
    censor_ok = pl.col("c_day").is_not_null() & (pl.col("c_day") >= pl.col("start_day"))
    rows = rows.with_columns(
        end_day=pl.when(has_event).then("day").when(censor_ok).then("c_day").otherwise("start_day"),
        evntcd=pl.when(has_event).then("evntcd").otherwise(pl.lit(0, dtype=pl.Int8)),
        evntdesc=pl.when(has_event & (pl.col("evntcd") > 0)).then("desc"),
        cnsdtdsc=pl.when(has_event & (pl.col("evntcd") == 0))
        .then("desc")
        .when(~has_event & censor_ok)
        .then("c_desc")
        .when(~has_event)
        .then(pl.lit("No assessment after the origin")),
        srctable=pl.when(has_event).then("srctable").when(censor_ok).then("c_srctable"),
        srccol=pl.when(has_event).then("srccol").when(censor_ok).then("c_srccol"),
        srcrow=pl.when(has_event).then("srcrow").when(censor_ok).then("c_srcrow"),
        adtf=pl.when(has_event).then("adtf").when(censor_ok).then("c_adtf"),
    )
    rows = rows.with_columns(
        aval_days=pl.col("end_day") - pl.col("start_day"),
        cnsr=pl.when(pl.col("evntcd") == 1).then(0).otherwise(1).cast(pl.Int8),
        competing=pl.col("evntcd") == 2,
        startdt=pl.col("index_date") + pl.duration(days=pl.col("start_day")),
        adt=pl.col("index_date") + pl.duration(days=pl.col("end_day")),
        paramcd=pl.lit(endpoint.paramcd),
        param=pl.lit(endpoint.name),
    ).with_columns(aval_months=pl.col("aval_days") / DAYS_PER_MONTH)
    if endpoint.population == "progressed" and not endpoint.censors:
        rows = rows.filter(pl.col("evntcd") == 1)
    return rows.select([pl.col(name).cast(dtype) for name, dtype in TTE_SCHEMA.items()]).sort(
        "patient_key"
    )


def _prepared(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame], data_cut: dt.date, cdm: CDM | None
) -> tuple[CDM, dict[str, pl.DataFrame], pl.DataFrame]:
    """The CDM, the completed tables and the per-patient index every derivation starts from."""
    from cartreg.cdm import load_cdm

    if not isinstance(data_cut, dt.date):
        raise InputError("the data cut must be a date", hint="e.g. --data-cut 2024-06-30")
    cdm = cdm or load_cdm()
    full = complete_tables(tables, cdm)
    return cdm, full, derive_index(full, data_cut)


def derive_tte(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    endpoints: Mapping[str, Endpoint] | list[Endpoint],
    data_cut: dt.date,
    *,
    cdm: CDM | None = None,
) -> pl.DataFrame:
    """The long ADTTE table for every time-to-event endpoint given."""
    cdm, full, base = _prepared(tables, data_cut, cdm)
    chosen = list(endpoints.values()) if isinstance(endpoints, Mapping) else list(endpoints)
    parts = [derive_endpoint(ep, full, base, cdm) for ep in chosen if ep.kind == "time_to_event"]
    if not parts:
        return pl.DataFrame(schema=TTE_SCHEMA)
    return pl.concat(parts, how="vertical")


def _salvage_in_window(day: pl.Expr) -> pl.Expr:
    """A salvage line counts when it starts on or after the first progression and not after
    death: a line dated before its progression or after death is a contradiction (rules
    PT-008 and PT-003 report it), never post-progression salvage."""
    alive = pl.col("death_day_a").is_null() | (day <= pl.col("death_day_a"))
    return day.is_not_null() & (day >= pl.col("prog_day")) & alive


def derive_salvage_response(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    endpoint: Endpoint,
    data_cut: dt.date,
    *,
    cdm: CDM | None = None,
) -> pl.DataFrame:
    """One row per salvaged patient: the salvage line counted, its agent class, CR yes/no."""
    cdm, full, base = _prepared(tables, data_cut, cdm)
    first_prog = _first(derive_progressions(full, base, endpoint)).select(
        "patient_key", pl.col("day").alias("prog_day"), pl.col("progression_id").alias("first_pid")
    )
    categories = cdm.vocabularies["salvage_categories"]
    agents = cdm.vocabularies["salvage_agents"]
    cat_group = pl.DataFrame(
        {
            "category": list(categories.codes),
            "group": [
                str(categories.term(c).attributes.get("analysis_group", "OTHER"))
                for c in categories.codes
            ],
        }
    )
    agent_cat = pl.DataFrame(
        {
            "agent": list(agents.codes),
            "agent_category": [
                str(agents.term(c).attributes.get("category", "OTHER")) for c in agents.codes
            ],
        }
    )
    st = _with_index(full["salvage_treatments"], base)
    day, _ = _event_day(
        "start_date",
        lower_day=1,
        upper_day=pl.col("cut_day"),
    )
    remission = _remission_codes(cdm, endpoint)
    st = (
        st.with_columns(day=day)
        .join(first_prog, on="patient_key")
        .join(agent_cat, on="agent", how="left")
        .with_columns(category=pl.coalesce("category", "agent_category"))
        .join(cat_group, on="category", how="left")
        .filter(
            (pl.col("category").fill_null("") != "SUPPORTIVE_CARE_ONLY")
            & _salvage_in_window(pl.col("day"))
        )
    )
    st = _within_cut(st)
    priority = list(endpoint.param("group_priority"))
    rank_of = pl.DataFrame({"group": priority, "_prio": list(range(len(priority)))})
    lines = (
        st.join(rank_of, on="group", how="left")
        .with_columns(
            _prio=pl.col("_prio").fill_null(len(priority)),
            cr=pl.col("best_response").is_in(remission).fill_null(False),
            evaluable=pl.col("best_response").is_not_null()
            & ~pl.col("best_response").is_in(["NOT_EVALUATED", "UNKNOWN"]),
            line_key=pl.concat_str(
                [pl.col("progression_id").fill_null(""), pl.col("line_number").cast(pl.String)],
                separator="#",
            ),
        )
        .sort(["patient_key", "_prio", "source_file", "source_row"], nulls_last=True)
        .group_by("patient_key", "line_key", maintain_order=True)
        .agg(
            pl.col("site_id").first(),
            pl.col("day").min().alias("line_day"),
            pl.col("line_number").first(),
            pl.col("group").first().fill_null("OTHER"),
            pl.col("cr").any(),
            pl.col("evaluable").any(),
            pl.col("category").first(),
            pl.col("source_row").sort_by(["day", "source_row"]).first().alias("srcrow"),
        )
        .sort(["patient_key", "line_day", "line_number", "line_key"])
    )
    if endpoint.param("salvage_line") == "FIRST":
        per_patient = lines.group_by("patient_key", maintain_order=True).first()
    else:
        per_patient = lines.group_by("patient_key", maintain_order=True).agg(
            pl.col("site_id").first(),
            pl.col("line_day").first(),
            pl.col("line_number").first(),
            pl.col("group").first(),
            pl.col("cr").any(),
            pl.col("evaluable").any(),
            pl.col("category").first(),
            pl.col("srcrow").first(),
        )
    return per_patient.select(
        "patient_key",
        "site_id",
        pl.lit(endpoint.paramcd).alias("paramcd"),
        pl.col("line_number").cast(pl.Int64),
        pl.col("line_day").cast(pl.Int64).alias("start_day"),
        pl.col("category"),
        pl.col("group").alias("agent_class"),
        pl.col("cr").cast(pl.Int8).alias("aval"),
        pl.col("evaluable").cast(pl.Int8),
        pl.lit("salvage_treatments").alias("srctable"),
        pl.lit("best_response").alias("srccol"),
        pl.col("srcrow").cast(pl.Int64),
    ).sort("patient_key")


BASELINE_COLUMNS = (
    "patient_key",
    "site_id",
    "age",
    "sex",
    "ph_status",
    "kmt2a_rearranged",
    "cytogenetic_risk",
    "n_prior_lines",
    "prior_allohct",
    "prior_blinatumomab",
    "prior_inotuzumab",
    "product",
    "pre_bm_blast_pct",
    "pre_bm_blast_qualifier",
    "pre_emd_present",
    "burden",
    "burden_source",
)


def derive_burden(
    *, burden_threshold_pct: float = 5.0, emd_counts_high: bool = True
) -> tuple[pl.Expr, pl.Expr]:
    """Disease burden at infusion (HIGH/LOW/UNKNOWN) and where it came from, as expressions
    over an index infusion row.

    Derived from the pre-infusion marrow blasts *with their qualifier* and extramedullary
    disease whenever they decide it: HIGH when every value the blasts can take is >= the
    threshold (``78``, ``>= 5``), or EMD is present and counts as high; LOW when every value
    is below it (``<5`` is LOW, ``<10`` is not decided) and no EMD is reported. The burden the
    site states is used only when the data do not decide it (a stated burden that contradicts
    the data is rule CC-003's finding). ``burden_source`` is ``derived``, ``stated`` or null.
    """
    # The definition ingest derives disease_burden with (cartreg.ingest.derive), so the
    # registry's values and the analyses' agree at the same threshold.
    derived = burden_from_blasts(
        pl.col("pre_bm_blast_pct"),
        pl.col("pre_bm_blast_qualifier"),
        pl.col("pre_emd_present"),
        threshold_pct=burden_threshold_pct,
        emd_counts_high=emd_counts_high,
    )
    stated = pl.when(pl.col("disease_burden").is_in(["HIGH", "LOW"])).then(pl.col("disease_burden"))
    burden = pl.coalesce(derived, stated, pl.lit("UNKNOWN")).alias("burden")
    source = (
        pl.when(derived.is_not_null())
        .then(pl.lit("derived"))
        .when(stated.is_not_null())
        .then(pl.lit("stated"))
        .alias("burden_source")
    )
    return burden, source


def derive_baseline(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    data_cut: dt.date,
    *,
    burden_threshold_pct: float = 5.0,
    emd_counts_high: bool = True,
    cdm: CDM | None = None,
) -> pl.DataFrame:
    """One row per infused patient: baseline characteristics at the index infusion.

    ``burden`` and ``burden_source`` as ``derive_burden`` defines them.
    """
    cdm, full, base = _prepared(tables, data_cut, cdm)
    index_rows = (
        full["car_t_infusions"]
        .pipe(_index_first)
        .group_by("patient_key", maintain_order=True)
        .first()
    )
    burden, source = derive_burden(
        burden_threshold_pct=burden_threshold_pct, emd_counts_high=emd_counts_high
    )
    patients = (
        full["patients"]
        .sort("patient_key", "source_file", "source_row", nulls_last=True)
        .unique("patient_key", keep="first", maintain_order=True)
        .drop("site_id", "source_file", "source_row")
    )
    out = (
        base.select("patient_key", "site_id")
        .join(
            index_rows.select(
                "patient_key",
                "product",
                "infusion_year",
                "pre_bm_blast_pct",
                "pre_bm_blast_qualifier",
                "pre_emd_present",
                burden,
                source,
            ),
            on="patient_key",
            how="left",
        )
        .join(patients, on="patient_key", how="left")
        .with_columns(
            age=pl.coalesce(
                "age_at_index_years",
                (pl.col("infusion_year") - pl.col("birth_year")).cast(pl.Float64),
            )
        )
    )
    return out.select(*BASELINE_COLUMNS).sort("patient_key")


def derive_first_progression(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    endpoint: Endpoint,
    data_cut: dt.date,
    *,
    cdm: CDM | None = None,
) -> pl.DataFrame:
    """Each patient's first progression within the data cut: day, type, CD19 phenotype."""
    cdm, full, base = _prepared(tables, data_cut, cdm)
    return _first(derive_progressions(full, base, endpoint)).select(
        "patient_key", "day", "event_type", "antigen_phenotype", "site"
    )


def prepare_tables(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame], data_cut: dt.date, cdm: CDM | None = None
) -> tuple[CDM, dict[str, pl.DataFrame], pl.DataFrame]:
    """The CDM, every table completed to the CDM columns, and the per-patient index
    (``patient_key, site_id, index_date, cut_day, death_day_a, ...``)."""
    return _prepared(tables, data_cut, cdm)


def event_days(
    full: Mapping[str, pl.DataFrame], base: pl.DataFrame, table: str, date: str
) -> pl.DataFrame:
    """``patient_key, day`` (and the table's columns) for every dated row of ``table``, in days
    from the index infusion (a partial date at the start of its period), within the data cut."""
    value, _ = _event_day(date, day_rule="FIRST", month_rule="FIRST")
    frame = _with_index(full[table], base).with_columns(day=value)
    return _within_cut(frame.filter(pl.col("day").is_not_null()))


def first_hct_after_index(full: Mapping[str, pl.DataFrame], base: pl.DataFrame) -> pl.DataFrame:
    """``patient_key, day``: the first transplant after the index infusion that was not given
    before it (``PRIOR_TO_INDEX``); the day HCT censors in the censor-at-HCT sensitivity."""
    return _hct_censor(full, base).select("patient_key", "day")


def remission_codes(cdm: CDM, endpoint: Endpoint) -> list[str]:
    """Response codes that count as CR/CRi (CRh only with ``count_crh_as_cr``)."""
    return _remission_codes(cdm, endpoint)


def derivation_notes(
    full: Mapping[str, pl.DataFrame], base: pl.DataFrame, endpoint: Endpoint
) -> dict[str, int]:
    """Records the derivations leave out because they contradict the timeline (the rules
    report each as a finding; here they are counted so nothing is left out silently)."""
    pe = _with_index(full["progression_events"], base)
    # the same imputation as derive_progressions: a partial date in the infusion's month is
    # placed after the infusion, not counted here
    day, _ = _event_day("progression_date", lower_day=1, upper_day=_upper_anchor())
    before = pe.with_columns(day=day).filter(pl.col("day") < 0).height
    first_prog = _first(derive_progressions(full, base, endpoint)).select(
        "patient_key", pl.col("day").alias("prog_day")
    )
    st = event_days(full, base, "salvage_treatments", "start_date").join(
        first_prog, on="patient_key"
    )
    outside = st.filter(~_salvage_in_window(pl.col("day")))
    return {
        "progressions_before_index_infusion": before,
        "salvage_rows_before_progression": outside.filter(
            pl.col("day") < pl.col("prog_day")
        ).height,
        "salvage_rows_after_death": outside.filter(
            pl.col("death_day_a").is_not_null() & (pl.col("day") > pl.col("death_day_a"))
        ).height,
    }
