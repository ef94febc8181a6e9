"""Post-mapping derivations, applied to the harmonized tables of one site.

Each function takes frames and returns frames, named by what it adds. Conventions (fixed for
the project): the index infusion is day 0; ``*_day`` counts days from it; row ids are
``<patient_key>-<ABBR><k>`` with k 1-based per patient ordered by the event's day offset, then
source order; for progressions k is ``event_seq``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from cartreg.cdm.model import CDM, TableSpec
from cartreg.ingest.harmonize import ORDER

ROW_IDS: dict[str, tuple[str, str, str]] = {
    # table: (id column, abbreviation, day column ordering the rows)
    "car_t_infusions": ("infusion_id", "INF", "infusion_day"),
    "disease_assessments": ("assessment_id", "A", "assessment_day"),
    "progression_events": ("progression_id", "P", "progression_day"),
    "salvage_treatments": ("salvage_id", "S", "start_day"),
    "transplants": ("hct_id", "H", "hct_day"),
}
INDEX_DATE = "__index_date"


def event_order(table: TableSpec) -> list[str]:
    """Columns ordering a patient's rows of ``table`` before source order, as the derivations
    sort them: the event date then its day offset (the day is the date minus the index date)."""
    if table.name not in ROW_IDS:
        return []
    day = ROW_IDS[table.name][2]
    dates = [c.sibling_of for c in table.columns if c.name == day and c.sibling_of]
    return [*dates, day]


_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
}


def polars_dtype(dtype: str) -> pl.DataType:
    return _DTYPES[dtype]


def ensure_columns(frame: pl.DataFrame, table: TableSpec) -> pl.DataFrame:
    """Add every CDM column the frame lacks, as typed nulls (helper columns are kept)."""
    if frame.width == 0:
        schema = {c.name: polars_dtype(c.dtype) for c in table.columns}
        return pl.DataFrame(schema={**schema, ORDER: pl.Int64()})
    missing = [
        pl.lit(None, dtype=polars_dtype(c.dtype)).alias(c.name)
        for c in table.columns
        if c.name not in frame.columns
    ]
    # Lazily: the eager call rechunks every column of the concatenated rule outputs first.
    frame = frame.lazy().with_columns(missing).collect()
    if ORDER not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias(ORDER))
    return frame


def sort_rows(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``frame.sort(by, nulls_last=True, maintain_order=True)``, free when already in order.

    Rules emit their rows in this order (see ``harmonize_rule``'s ``order_by``), so they
    usually arrive sorted: one comparison of each row with the next proves it, far cheaper than
    sorting the keys, and only an unsorted frame has its values moved.
    """
    if frame.select(in_order(by)).item():
        return frame
    order = frame.select(pl.arg_sort_by(by, nulls_last=True, maintain_order=True)).to_series()
    return frame.select(pl.all().gather(order))


def in_order(by: list[str]) -> pl.Expr:
    """True when every row's ``by`` values are at most the next row's (nulls last)."""
    ordered: pl.Expr = pl.lit(True)
    # Built from the last key to the first: a row is in order when its first key is smaller
    # than the next row's, or equal and the remaining keys are in order.
    for column in reversed(by):
        this, after = pl.col(column), pl.col(column).shift(-1)
        smaller = (this < after).fill_null(False) | (this.is_not_null() & after.is_null())
        ordered = smaller | (this.eq_missing(after) & ordered)
    return ordered.head(pl.len() - 1).all()


def _position_in_patient() -> pl.Expr:
    """1-based position of a row among its patient's rows, for a frame sorted by patient.

    Sorted rows of a patient are contiguous, so the position is the distance to the start of
    the run: no grouping (hashing) of the patient keys is needed.
    """
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    key = pl.col("patient_key")
    starts = key.ne_missing(key.shift(1)) | (row == 0)
    start = pl.when(starts).then(row).otherwise(None).forward_fill()
    return row - start + 1


def derive_index_infusion(infusions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Infusion number, index and reinfusion flags and year where the site did not give them.

    The index infusion is the patient's first (by date, else by day offset, then source order)
    unless the mapping flags it. Returns the infusions and ``patient_key -> index date``.
    """
    order = ["infusion_date", "infusion_day", ORDER]
    ranked = sort_rows(infusions, ["patient_key", *order]).with_columns(
        _position_in_patient().alias("__k")
    )
    # Most sites flag no infusion: then the first is the index, one per patient in patient
    # order, and neither a window over the patients nor a grouping is needed.
    flags_given = ranked.get_column("is_index_infusion").null_count() < ranked.height
    first = pl.col("__k") == 1
    is_index = (
        pl.when(pl.col("is_index_infusion").any().over("patient_key"))
        .then(pl.col("is_index_infusion").fill_null(False))
        .otherwise(first)
        if flags_given
        else first
    )
    ranked = ranked.with_columns(
        pl.coalesce(pl.col("infusion_number"), pl.col("__k")).alias("infusion_number"),
        is_index.alias("is_index_infusion"),
    ).with_columns(
        pl.coalesce(pl.col("is_reinfusion"), ~pl.col("is_index_infusion")).alias("is_reinfusion"),
        pl.coalesce(
            pl.col("infusion_year"), pl.col("infusion_date").dt.year().cast(pl.Int64)
        ).alias("infusion_year"),
    )
    index = ranked.filter(pl.col("is_index_infusion")).select(
        "patient_key", pl.col("infusion_date").alias(INDEX_DATE)
    )
    if flags_given:  # a site may flag two infusions of one patient (CR-007 reports it)
        index = index.group_by("patient_key", maintain_order=True).agg(pl.col(INDEX_DATE).first())
    return ranked.drop("__k"), index


def derive_day_offsets(frame: pl.DataFrame, table: TableSpec, index: pl.DataFrame) -> pl.DataFrame:
    """``x_day`` from ``x_date`` and the index date, where the site gave a date and no offset."""
    pairs = [
        (c.sibling_of, c.name) for c in table.columns if c.role == "day_offset" and c.sibling_of
    ]
    if not pairs or INDEX_DATE in frame.columns:
        return frame
    # Only the key column goes through the join: joining the whole frame would copy every
    # column into the join's row order.
    index_date = (
        frame.select("patient_key")
        .join(index, on="patient_key", how="left", maintain_order="left")
        .get_column(INDEX_DATE)
    )
    return frame.with_columns(
        [
            pl.coalesce(
                pl.col(day), (pl.col(date) - index_date).dt.total_days().cast(pl.Int64)
            ).alias(day)
            for date, day in pairs
        ]
    )


def derive_row_ids(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Row ids per the fixed convention; progressions also get ``event_seq`` when missing."""
    if table not in ROW_IDS:
        return frame
    id_col, abbr, day_col = ROW_IDS[table]
    # Without an index infusion the day is empty: the date still orders the rows (so rows
    # combined by key get the same ids whatever the order of the source rows).
    dates = [d for d in (day_col.removesuffix("_day") + "_date",) if d in frame.columns]
    frame = sort_rows(frame, ["patient_key", day_col, *dates, ORDER]).with_columns(
        _position_in_patient().alias("__k")
    )
    if table == "progression_events":
        frame = frame.with_columns(
            pl.coalesce(pl.col("event_seq"), pl.col("__k")).alias("event_seq")
        )
        k = pl.col("event_seq")
    else:
        k = pl.col("__k")
    return frame.with_columns(
        pl.coalesce(
            pl.col(id_col),
            pl.concat_str(pl.col("patient_key"), pl.lit(f"-{abbr}"), k.cast(pl.String)),
        ).alias(id_col)
    ).drop("__k")


def derive_salvage_links(
    salvage: pl.DataFrame, progressions: pl.DataFrame, cdm: CDM
) -> pl.DataFrame:
    """Category from the agent vocabulary, progression link and line number where missing.

    A line treats the patient's latest progression on or before its start day (or the first
    progression when the start is unknown); line numbers count distinct start days per progression.
    """
    agents = cdm.vocabularies["salvage_agents"]
    categories = {
        t.code: str(t.attributes.get("category"))
        for t in agents.terms
        if t.attributes.get("category")
    }
    salvage = salvage.with_columns(
        pl.coalesce(
            pl.col("category"),
            pl.col("agent").replace_strict(categories, default=None, return_dtype=pl.String),
        ).alias("category")
    )
    unlinked = salvage.get_column("progression_id").null_count() > 0
    if unlinked and progressions.height:
        prog = (
            progressions.select(
                "patient_key",
                pl.col("progression_day").alias("__pday"),
                pl.col("progression_id").alias("__pid_link"),
            )
            .filter(pl.col("__pday").is_not_null())
            .sort("__pday")
        )
        first = (
            progressions.sort(["patient_key", "event_seq"])
            .group_by("patient_key", maintain_order=True)
            .agg(pl.col("progression_id").first().alias("__first_pid"))
        )
        with_day = salvage.with_row_index("__row").with_columns(pl.col("start_day").alias("__sday"))
        linked = (
            with_day.filter(pl.col("__sday").is_not_null())
            .sort("__sday")
            .join_asof(
                prog,
                left_on="__sday",
                right_on="__pday",
                by="patient_key",
                strategy="backward",
                check_sortedness=False,
            )
            .select("__row", "__pid_link")
        )
        salvage = (
            with_day.join(linked, on="__row", how="left", maintain_order="left")
            .join(first, on="patient_key", how="left", maintain_order="left")
            .with_columns(
                pl.coalesce(
                    pl.col("progression_id"), pl.col("__pid_link"), pl.col("__first_pid")
                ).alias("progression_id")
            )
            .drop("__row", "__sday", "__pid_link", "__first_pid")
        )
    # Agents whose start is unknown form one line after the dated lines of their progression
    # (a line number is required; CP-015 reports the missing start).
    if salvage.get_column("line_number").null_count() == 0:
        return salvage
    group = ["patient_key", "progression_id"]
    start = pl.col("start_day")
    known = start.rank("dense").over(group)
    last = known.max().over(group).fill_null(0)
    line = pl.when(start.is_null()).then(last + 1).otherwise(known).cast(pl.Int64)
    return salvage.with_columns(pl.coalesce(pl.col("line_number"), line).alias("line_number"))


def finalize(frame: pl.DataFrame, table: TableSpec) -> pl.DataFrame:
    """Exactly the CDM columns, typed and in order, rows by patient then event order."""
    frame = ensure_columns(frame, table)
    if table.name not in ROW_IDS:
        # Event tables are already in patient, day, source order from derive_row_ids.
        frame = sort_rows(frame, ["patient_key", ORDER])
    return frame.select([pl.col(c.name).cast(polars_dtype(c.dtype)) for c in table.columns])


def remission_codes(cdm: CDM) -> list[str]:
    """Response codes that count as the remission a relapse ends (CRh by configuration)."""
    vocab = cdm.vocabularies["response"]
    codes = [c for c in vocab.codes if vocab.term(c).attributes.get("remission")]
    if not cdm.derivation_param("remission", "count_crh_as_cr"):
        codes = [c for c in codes if c != "CRh"]
    return codes


def _provenance(column: str, method: str, source: pl.Expr, derived: pl.Expr) -> list[pl.Expr]:
    """``<column>_derivation`` and ``<column>_derived_from`` where ``derived`` holds."""
    return [
        pl.when(derived).then(pl.lit(method)).alias(f"{column}_derivation"),
        pl.when(derived).then(source).alias(f"{column}_derived_from"),
    ]


def derive_remissions(
    progressions: pl.DataFrame, assessments: pl.DataFrame, cdm: CDM
) -> pl.DataFrame:
    """The remission a relapse ends, where the site gave neither its date nor its day.

    It is the patient's first CR/CRi assessment (CRh when ``count_crh_as_cr``) after the index
    infusion and after any earlier progression, and before the relapse; ties on a day go to the
    first assessment in source order. Only events whose type ends a remission
    (``progression_type`` attribute ``ends_remission``) get one.
    """
    if progressions.is_empty():
        return progressions
    types = cdm.vocabularies["progression_type"]
    ending = [c for c in types.codes if types.term(c).attributes.get("ends_remission")]
    day = pl.col("progression_day")
    lacking = (
        pl.col("event_type").is_in(ending)
        & pl.col("remission_date").is_null()
        & pl.col("remission_day").is_null()
        & day.is_not_null()
    )
    # Checked first: the window below costs more than the rest when every remission is given.
    if not progressions.select(lacking.any()).item():
        return progressions
    previous = day.shift(1).over("patient_key", order_by=[day, ORDER])
    frame = progressions.with_row_index("__row").with_columns(
        pl.coalesce(previous, pl.lit(0, dtype=pl.Int64)).alias("__after")
    )
    needs = frame.filter(lacking)
    # only the assessments of patients with a relapse to date
    candidates = (
        assessments.filter(
            pl.col("response").is_in(remission_codes(cdm))
            & (pl.col("assessment_day") > 0)
            & pl.col("patient_key").is_in(needs.get_column("patient_key").implode())
        )
        .select(
            "patient_key",
            pl.col("assessment_day").alias("__rday"),
            pl.col("assessment_date").alias("__rdate"),
            pl.col("assessment_date_precision").alias("__rprec"),
            pl.col("assessment_id").alias("__rid"),
            pl.col(ORDER).alias("__rorder"),
        )
        .sort(["patient_key", "__rday", "__rorder"], nulls_last=True)
        .unique(["patient_key", "__rday"], keep="first", maintain_order=True)
        .drop("__rorder")
        .sort("__rday")
    )
    if candidates.is_empty():
        return frame.drop("__row", "__after")
    found = (
        needs.select("__row", "patient_key", "__after", "progression_day")
        .sort("__after")
        .join_asof(
            candidates,
            left_on="__after",
            right_on="__rday",
            by="patient_key",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .filter(pl.col("__rday") < pl.col("progression_day"))
        .select("__row", "__rday", "__rdate", "__rprec", "__rid")
    )
    derived = pl.col("__rid").is_not_null()
    return (
        frame.join(found, on="__row", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("remission_date", "__rdate").alias("remission_date"),
            pl.coalesce("remission_date_precision", "__rprec").alias("remission_date_precision"),
            pl.coalesce("remission_day", "__rday").alias("remission_day"),
            *_provenance("remission_date", "FIRST_REMISSION_ASSESSMENT", pl.col("__rid"), derived),
        )
        .drop("__row", "__after", "__rday", "__rdate", "__rprec", "__rid")
    )


def with_exact_age(frame: pl.DataFrame, birth: pl.Expr, on: pl.Expr, alias: str) -> pl.DataFrame:
    """``frame`` with column ``alias``: the age in years on date ``on`` of a person born on
    ``birth``, completed years plus the fraction of the current year of life (exact at every
    birthday; a 29 February birthday falls on 28 February in common years).

    Computed in stages on integer columns: every polars date operation costs a pass through
    the calendar, and one nested expression repeats them (0.9 s for 100 k patients).
    """
    by, bm, bd, oy, full, last, following = (
        f"__age_{p}" for p in ("by", "bm", "bd", "oy", "full", "last", "next")
    )
    staged = frame.with_columns(
        birth.dt.year().cast(pl.Int32).alias(by),
        birth.dt.month().cast(pl.Int32).alias(bm),
        birth.dt.day().cast(pl.Int32).alias(bd),
        on.dt.year().cast(pl.Int32).alias(oy),
        (on.dt.month().cast(pl.Int32) * 100 + on.dt.day().cast(pl.Int32)).alias(full),
    )
    before = pl.col(full) < pl.col(bm) * 100 + pl.col(bd)
    staged = staged.with_columns((pl.col(oy) - pl.col(by) - before.cast(pl.Int32)).alias(full))

    def anniversary(years: pl.Expr) -> pl.Expr:
        year = pl.col(by) + years
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        feb29 = (pl.col(bm) == 2) & (pl.col(bd) == 29)
        return pl.date(year, pl.col(bm), pl.when(feb29 & ~leap).then(28).otherwise(pl.col(bd)))

    staged = staged.with_columns(
        anniversary(pl.col(full)).alias(last), anniversary(pl.col(full) + 1).alias(following)
    )
    days = (on - pl.col(last)).dt.total_days() / (pl.col(following) - pl.col(last)).dt.total_days()
    return staged.with_columns((pl.col(full).cast(pl.Float64) + days).alias(alias)).drop(
        by, bm, bd, oy, full, last, following
    )


def year_bound_ages(year: pl.Expr, on: pl.Expr, low: str, high: str) -> list[pl.Expr]:
    """The exact ages on date ``on`` of people born on 31 December (``low``) and on 1 January
    (``high``) of ``year``: a birth year's bounds.

    From 1 January the age is the completed years plus the days since New Year over the
    year's length; from 31 December one year less plus one day more: the same values as
    :func:`with_exact_age`, from the date's day of the year alone.
    """
    on_year = on.dt.year().cast(pl.Int64)
    length = pl.lit(365) + on.dt.is_leap_year().cast(pl.Int64)
    day = on.dt.ordinal_day().cast(pl.Int64)
    years = on_year - year.cast(pl.Int64)
    return [
        ((years - 1).cast(pl.Float64) + day / length).alias(low),
        (years.cast(pl.Float64) + (day - 1) / length).alias(high),
    ]


def derive_ages(patients: pl.DataFrame, infusions: pl.DataFrame) -> pl.DataFrame:
    """Age at the index infusion where the site did not give it.

    From ``birth_date`` and the index infusion date: the exact age. From ``birth_year``, whether
    or not the age is known: the bounds ``age_at_index_min_years``/``max_years`` (born on
    31 December or 1 January of that year; with only the infusion year, one more year each
    way), which age rules decide from when the age is unknown and CC-002 compares a reported
    age with. Bounds are rounded outwards to 0.01 year, the age to the nearest 0.01.
    """
    index = (
        infusions.filter(pl.col("is_index_infusion").fill_null(False))
        .sort(["patient_key", "infusion_number"], nulls_last=True)
        .unique("patient_key", keep="first", maintain_order=True)
        .select(
            "patient_key",
            pl.col("infusion_id").alias("__iid"),
            pl.col("infusion_date").alias("__idate"),
            pl.col("infusion_year").alias("__iyear"),
        )
    )
    frame = patients.with_row_index("__row").join(
        index, on="patient_key", how="left", maintain_order="left"
    )
    idate, year = pl.col("__idate"), pl.col("birth_year")
    if frame.get_column("birth_date").null_count() < frame.height:
        frame = with_exact_age(frame, pl.col("birth_date"), idate, "__exact")
    else:  # most sites give no birth date: spare the calendar arithmetic
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("__exact"))
    frame = frame.with_columns(year_bound_ages(year, idate, "__dated_low", "__dated_high"))
    from_date = pl.col("__exact").round(2)
    exact = pl.col("age_at_index_years").is_null() & from_date.is_not_null()
    frame = frame.with_columns(
        pl.when(exact).then(from_date).otherwise("age_at_index_years").alias("age_at_index_years"),
        *_provenance("age_at_index_years", "BIRTH_DATE", pl.col("__iid"), exact),
    )
    low = pl.coalesce("__dated_low", (pl.col("__iyear") - year - 1).cast(pl.Float64))
    high = pl.coalesce("__dated_high", (pl.col("__iyear") - year + 1).cast(pl.Float64))
    bounded = (
        pl.col("age_at_index_min_years").is_null()
        & pl.col("age_at_index_max_years").is_null()
        & low.is_not_null()
        & high.is_not_null()
    )
    return frame.with_columns(
        # rounded outwards, then to 2 decimals so 24.08 is not stored as 24.080000000000002
        pl.when(bounded)
        .then(((low * 100).floor() / 100).round(2).clip(lower_bound=0.0))
        .otherwise("age_at_index_min_years")
        .alias("age_at_index_min_years"),
        pl.when(bounded)
        .then(((high * 100).ceil() / 100).round(2).clip(lower_bound=0.0))
        .otherwise("age_at_index_max_years")
        .alias("age_at_index_max_years"),
        *_provenance("age_at_index_min_years", "BIRTH_YEAR", pl.col("__iid"), bounded),
        *_provenance("age_at_index_max_years", "BIRTH_YEAR", pl.col("__iid"), bounded),
    ).drop("__row", "__iid", "__idate", "__iyear", "__exact", "__dated_low", "__dated_high")


def burden_from_blasts(
    blasts: pl.Expr,
    qualifier: pl.Expr,
    emd: pl.Expr,
    *,
    threshold_pct: float,
    emd_counts_high: bool,
) -> pl.Expr:
    """HIGH or LOW disease burden when marrow blasts (with their qualifier) and EMD decide it,
    else null. The one definition ingest and the analyses share.

    HIGH when every value the blasts can take is at or above the threshold (``78``, ``>= 5``)
    or EMD is present and counts as high; LOW when every value is below it (``"<5"``, i.e. 5
    with qualifier LT, is below 5%) and no EMD counts against it. ``"<10"`` or ``">4"`` decide
    nothing.
    """
    q = qualifier.fill_null("EQ")
    at_least = blasts.is_not_null() & q.is_in(["EQ", "GE", "GT"]) & (blasts >= threshold_pct)
    below = blasts.is_not_null() & (
        (q.is_in(["EQ", "LE"]) & (blasts < threshold_pct))
        | ((q == "LT") & (blasts <= threshold_pct))
    )
    has_emd = (emd == "Y").fill_null(False)
    return (
        pl.when(at_least | (has_emd & pl.lit(emd_counts_high)))
        .then(pl.lit("HIGH"))
        .when(below & (~has_emd | pl.lit(not emd_counts_high)))
        .then(pl.lit("LOW"))
    )


def derive_disease_burden(infusions: pl.DataFrame, cdm: CDM) -> pl.DataFrame:
    """``disease_burden`` of each infusion where the site did not state it, from its own
    pre-infusion blasts and EMD (nothing is derived when neither blasts nor EMD are known)."""
    burden = burden_from_blasts(
        pl.col("pre_bm_blast_pct"),
        pl.col("pre_bm_blast_qualifier"),
        pl.col("pre_emd_present"),
        threshold_pct=float(cdm.derivation_param("disease_burden", "blast_threshold_pct")),
        emd_counts_high=bool(cdm.derivation_param("disease_burden", "emd_counts_high")),
    )
    known = pl.col("pre_bm_blast_pct").is_not_null() | (pl.col("pre_emd_present") == "Y")
    derived = pl.col("disease_burden").is_null() & known.fill_null(False)
    # data that do not decide it ("<10" without EMD) give UNKNOWN, not an empty burden
    decided = pl.coalesce(burden, pl.lit("UNKNOWN"))
    return infusions.with_columns(
        pl.when(derived).then(decided).otherwise("disease_burden").alias("disease_burden"),
        *_provenance("disease_burden", "PRE_INFUSION_BLASTS", pl.col("infusion_id"), derived),
    )


def derive_tables(
    tables: dict[str, pl.DataFrame],
    cdm: CDM,
    on_table: Callable[[str, pl.DataFrame], None] | None = None,
) -> dict[str, pl.DataFrame]:
    """Run every derivation in dependency order and return finalized CDM tables.

    ``on_table(name, table)`` is called (on a worker thread) as soon as a table is final, so a
    caller can write it while the others are still being derived.
    """
    work = {
        name: ensure_columns(tables.get(name, pl.DataFrame()), spec)
        for name, spec in cdm.tables.items()
    }
    infusions, index = derive_index_infusion(work["car_t_infusions"])
    work["car_t_infusions"] = infusions

    def offsets_and_ids(name: str) -> pl.DataFrame:
        frame = derive_day_offsets(work[name], cdm.tables[name], index)
        return derive_row_ids(frame, name)

    def done(name: str, frame: pl.DataFrame) -> pl.DataFrame:
        final = finalize(frame, cdm.tables[name])
        if on_table is not None:
            on_table(name, final)
        return final

    def derive_alone(name: str) -> pl.DataFrame:
        return done(name, offsets_and_ids(name))

    # Once the index dates are known the tables are independent but for three derivations:
    # ages need the index infusion's id, remissions the assessments' days, salvage links the
    # progression ids. polars releases the GIL, so two tasks run at a time; a task only waits
    # for tasks submitted before it, so the pool cannot deadlock.
    linked = {"patients", "car_t_infusions", "disease_assessments", "progression_events"}
    linked |= {"salvage_treatments"}
    alone = sorted((n for n in cdm.tables if n not in linked), key=lambda n: -work[n].height)
    with ThreadPoolExecutor(max_workers=2) as pool:
        infused = pool.submit(
            lambda: derive_disease_burden(offsets_and_ids("car_t_infusions"), cdm)
        )
        assessed = pool.submit(offsets_and_ids, "disease_assessments")

        def salvage_and_progressions() -> dict[str, pl.DataFrame]:
            progressions = derive_remissions(
                offsets_and_ids("progression_events"), assessed.result(), cdm
            )
            salvage = derive_salvage_links(offsets_and_ids("salvage_treatments"), progressions, cdm)
            return {
                "progression_events": done("progression_events", progressions),
                "salvage_treatments": done("salvage_treatments", salvage),
            }

        # The longest chain (assessments, remissions, salvage links) first; the other tables
        # fill the worker it leaves free.
        pair = pool.submit(salvage_and_progressions)
        pending = {
            "patients": pool.submit(
                lambda: done("patients", derive_ages(offsets_and_ids("patients"), infused.result()))
            )
        }
        pending |= {n: pool.submit(derive_alone, n) for n in alone}
        pending["car_t_infusions"] = pool.submit(lambda: done("car_t_infusions", infused.result()))
        pending["disease_assessments"] = pool.submit(
            lambda: done("disease_assessments", assessed.result())
        )
        final = {n: f.result() for n, f in pending.items()} | pair.result()
    return {name: final[name] for name in cdm.tables}
