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
    has_flag = pl.col("is_index_infusion").any().over("patient_key")
    ranked = ranked.with_columns(
        pl.coalesce(pl.col("infusion_number"), pl.col("__k")).alias("infusion_number"),
        pl.when(has_flag)
        .then(pl.col("is_index_infusion").fill_null(False))
        .otherwise(pl.col("__k") == 1)
        .alias("is_index_infusion"),
    ).with_columns(
        pl.coalesce(pl.col("is_reinfusion"), ~pl.col("is_index_infusion")).alias("is_reinfusion"),
        pl.coalesce(
            pl.col("infusion_year"), pl.col("infusion_date").dt.year().cast(pl.Int64)
        ).alias("infusion_year"),
    )
    index = (
        ranked.filter(pl.col("is_index_infusion"))
        .group_by("patient_key", maintain_order=True)
        .agg(pl.col("infusion_date").first().alias(INDEX_DATE))
    )
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
    frame = sort_rows(frame, ["patient_key", day_col, ORDER]).with_columns(
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
    if salvage.height and progressions.height:
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
            with_day.join(linked, on="__row", how="left")
            .join(first, on="patient_key", how="left")
            .with_columns(
                pl.coalesce(
                    pl.col("progression_id"), pl.col("__pid_link"), pl.col("__first_pid")
                ).alias("progression_id")
            )
            .sort("__row")
            .drop("__row", "__sday", "__pid_link", "__first_pid")
        )
    line = pl.col("start_day").rank("dense").over(["patient_key", "progression_id"]).cast(pl.Int64)
    return salvage.with_columns(pl.coalesce(pl.col("line_number"), line).alias("line_number"))


def finalize(frame: pl.DataFrame, table: TableSpec) -> pl.DataFrame:
    """Exactly the CDM columns, typed and in order, rows by patient then event order."""
    frame = ensure_columns(frame, table)
    if table.name not in ROW_IDS:
        # Event tables are already in patient, day, source order from derive_row_ids.
        frame = sort_rows(frame, ["patient_key", ORDER])
    return frame.select([pl.col(c.name).cast(polars_dtype(c.dtype)) for c in table.columns])


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

    def salvage_and_progressions() -> dict[str, pl.DataFrame]:
        # Salvage links need the progression ids, so the two are derived together.
        progressions = offsets_and_ids("progression_events")
        salvage = derive_salvage_links(offsets_and_ids("salvage_treatments"), progressions, cdm)
        return {
            "progression_events": done("progression_events", progressions),
            "salvage_treatments": done("salvage_treatments", salvage),
        }

    linked = {"progression_events", "salvage_treatments"}
    # Once the index dates are known the tables are independent; polars releases the GIL, so
    # two tables are derived (and handed over) at a time, the largest first.
    alone = sorted((n for n in cdm.tables if n not in linked), key=lambda n: -work[n].height)
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = {n: pool.submit(derive_alone, n) for n in alone}
        pair = pool.submit(salvage_and_progressions)
        final = {n: f.result() for n, f in pending.items()} | pair.result()
    return {name: final[name] for name in cdm.tables}
