"""Cross-site duplicate patients: the same person reported by a second centre, with the
discrepancies two centres' records of one patient really have.

A share ``rate`` of the simulated patients gets a second record at another site (its next local
id there), copied across every table and then made to disagree the way referring and treating
centres disagree:

==========================  ===========  ===================================================
discrepancy                 probability  what changes in the copy
==========================  ===========  ===================================================
infusion date off by days   0.2          every event date moves 1-10 days (day offsets from
                                         the index infusion stay; the diagnosis offset moves)
birth year off by one       0.05         birth year ±1, age at index ∓1
diagnosis date differs      0.1          the diagnosis date moves 1-45 days
product recorded as generic 0.2 of the   an investigational construct (19-28z, huCART19)
                            trial cases  becomes "other CD19 CAR T"
Ph status missing           0.1          ph_status left blank
prior lines counted apart   0.15         n_prior_lines ±1 (sites count lines differently)
prior therapy differs       0.05         prior inotuzumab Y/N the other way
==========================  ===========  ===================================================

The copy also follows its new site's habits: an EHR site knows some diagnosis dates to the
month only, a de-identified site gives years and day offsets, and every layout spells products
its own way (``KYMRIAH (tisagenlecleucel) IV susp``, ``tisa-cel``, a REDCap code). The truth
is a frame of ``patient_key_a`` (the original) and ``patient_key_b`` (the copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cartreg.errors import InputError
from cartreg.exprs import format_text

PAIR_COLUMNS = ("patient_key_a", "patient_key_b")
# Constructs a referring centre may only know as "a CD19 CAR T in a trial".
INVESTIGATIONAL = ("msk_19_28z", "hucart19")
GENERIC_PRODUCT = "other_cd19_car_t"
_NOT_SHIFTED = ("data_cut_date", "birth_date", "diagnosis_date")


@dataclass(frozen=True)
class DiscrepancyRates:
    """How often each discrepancy is planted in a copy (see the module docstring)."""

    infusion_shift: float = 0.2
    birth_year: float = 0.05
    diagnosis_shift: float = 0.1
    generic_product: float = 0.2
    ph_missing: float = 0.1
    prior_lines: float = 0.15
    prior_therapy: float = 0.05
    ehr_month_only: float = 0.3  # as the EHR layout's own patients


def empty_pairs() -> pl.DataFrame:
    return pl.DataFrame(schema=dict.fromkeys(PAIR_COLUMNS, pl.String))


def _local_ids(layout: pl.Expr, number: pl.Expr) -> pl.Expr:
    """Local ids in each layout's style (must agree with ``cohort._local_ids``)."""
    num = number.cast(pl.String)
    return (
        pl.when(layout == "redcap")
        .then(num)
        .when(layout == "excel")
        .then(pl.concat_str(pl.lit("P"), num.str.zfill(3)))
        .when(layout == "ehr")
        .then(pl.concat_str(pl.lit("CT"), num.str.zfill(5)))
        .otherwise(pl.concat_str(pl.lit("D"), num.str.zfill(4)))
    )


def plan_duplicates(
    patients: pl.DataFrame,
    site_ids: list[str],
    layouts: list[str],
    next_number: dict[str, int],
    rate: float,
    rng: np.random.Generator,
    rates: DiscrepancyRates | None = None,
) -> pl.DataFrame:
    """Which patients get a second record, where, under which key, with which discrepancies.

    ``next_number`` is each site's first unused local number. One row per copy: ``src_key``,
    ``new_key``, ``new_site``, ``new_layout`` and the discrepancy draws.
    """
    r = rates or DiscrepancyRates()
    n = round(rate * patients.height)
    if n == 0:
        return pl.DataFrame()
    if len(site_ids) < 2:
        raise InputError(
            "cross-site duplicates need at least two sites",
            hint="raise --sites or drop --duplicate-rate",
        )
    chosen = np.sort(rng.choice(patients.height, size=n, replace=False))
    src_site = patients["site_id"].gather(chosen).to_numpy()
    site_pos = {s: i for i, s in enumerate(site_ids)}
    src_idx = np.asarray([site_pos[s] for s in src_site])  # one lookup per copy, not per row
    other = rng.integers(0, len(site_ids) - 1, size=n)
    dst_idx = other + (other >= src_idx)  # uniform over the other sites
    shift = rng.integers(1, 11, size=n) * rng.choice([-1, 1], size=n)
    dx_shift = rng.integers(1, 46, size=n) * rng.choice([-1, 1], size=n)
    plan = pl.DataFrame(
        {
            "src_key": patients["patient_key"].gather(chosen),
            "new_site": np.asarray(site_ids, dtype=object)[dst_idx].tolist(),
            "new_layout": np.asarray(layouts, dtype=object)[dst_idx].tolist(),
            "inf_shift": np.where(rng.random(n) < r.infusion_shift, shift, 0),
            "birth_delta": np.where(rng.random(n) < r.birth_year, rng.choice([-1, 1], size=n), 0),
            "dx_shift": np.where(rng.random(n) < r.diagnosis_shift, dx_shift, 0),
            "generic_product": rng.random(n) < r.generic_product,
            "ph_missing": rng.random(n) < r.ph_missing,
            "lines_delta": np.where(rng.random(n) < r.prior_lines, rng.choice([-1, 1], size=n), 0),
            "flip_ino": rng.random(n) < r.prior_therapy,
            "month_only": rng.random(n) < r.ehr_month_only,
        },
        schema_overrides={"new_site": pl.String, "new_layout": pl.String},
    )
    start = pl.col("new_site").replace_strict(next_number, return_dtype=pl.Int64)
    number = start + pl.int_range(pl.len()).over("new_site")
    return plan.with_columns(
        pl.concat_str(
            pl.col("new_site"), pl.lit("-"), _local_ids(pl.col("new_layout"), number)
        ).alias("new_key")
    )


def _within_data_cut(tables: dict[str, pl.DataFrame], plan: pl.DataFrame) -> pl.DataFrame:
    """Flip a forward shift backwards where it would move a date past the data cut."""
    fu = tables["follow_up"].select(
        pl.col("patient_key").alias("src_key"),
        pl.max_horizontal("last_contact_date", "death_date").alias("__last"),
        pl.col("data_cut_date").alias("__cut"),
    )
    plan = plan.join(fu, on="src_key", how="left", maintain_order="left")
    past_cut = (
        pl.col("__last") + pl.duration(days=pl.col("inf_shift")) > pl.col("__cut")
    ).fill_null(False)
    return plan.with_columns(
        pl.when(past_cut).then(-pl.col("inf_shift")).otherwise(pl.col("inf_shift"))
    ).drop("__last", "__cut")


def _copy_rows(name: str, frame: pl.DataFrame, plan: pl.DataFrame) -> pl.DataFrame:
    """The rows of the planned patients, re-keyed for their new site, with the discrepancies."""
    rows = frame.join(
        plan.rename({"src_key": "patient_key"}),
        on="patient_key",
        how="inner",
        maintain_order="left",
    )
    if rows.height == 0:
        return frame.clear()
    key_len = pl.col("patient_key").str.len_chars()
    ids = [
        c
        for c, d in frame.schema.items()
        if d == pl.String and c.endswith("_id") and c not in ("site_id", "trial_id")
    ]
    changes: list[pl.Expr] = [
        pl.concat_str(pl.col("new_key"), pl.col(c).str.slice(key_len)).alias(c) for c in ids
    ]
    shift = pl.duration(days=pl.col("inf_shift"))
    changes += [
        (pl.col(c) + shift).alias(c)
        for c, d in frame.schema.items()
        if d == pl.Date and c not in _NOT_SHIFTED
    ]
    if name == "car_t_infusions":
        changes.append(
            pl.when(pl.col("generic_product") & pl.col("product").is_in(INVESTIGATIONAL))
            .then(pl.lit(GENERIC_PRODUCT))
            .otherwise(pl.col("product"))
            .alias("product")
        )
    if name == "patients":
        index = pl.col("diagnosis_date") - pl.duration(days=pl.col("diagnosis_day")) + shift
        rows = rows.with_columns(index.alias("__index"))
        changes += _patient_changes()
    out = rows.with_columns(changes).with_columns(
        pl.col("new_key").alias("patient_key"), pl.col("new_site").alias("site_id")
    )
    if name == "car_t_infusions":
        out = out.with_columns(
            pl.coalesce(pl.col("infusion_date").dt.year(), pl.col("infusion_year"))
            .cast(frame.schema["infusion_year"])
            .alias("infusion_year")
        )
    if name == "patients":
        # the offset of the diagnosis from the (possibly moved) index infusion
        out = out.with_columns(
            (pl.col("diagnosis_date") - pl.col("__index")).dt.total_days().alias("diagnosis_day")
        )
    return out.select(frame.columns).cast(frame.schema)


def _patient_changes() -> list[pl.Expr]:
    dx = pl.col("diagnosis_date") + pl.duration(days=pl.col("dx_shift"))
    month_only = pl.col("month_only") & (pl.col("new_layout") == "ehr")
    return [
        (pl.col("birth_year") + pl.col("birth_delta")).alias("birth_year"),
        pl.col("birth_date").dt.offset_by(format_text("{}y", pl.col("birth_delta"))),
        (pl.col("age_at_index_years") - pl.col("birth_delta")).alias("age_at_index_years"),
        pl.when(month_only).then(dx.dt.truncate("1mo")).otherwise(dx).alias("diagnosis_date"),
        pl.when(month_only)
        .then(pl.lit("MONTH"))
        .otherwise(pl.col("diagnosis_date_precision"))
        .alias("diagnosis_date_precision"),
        pl.when(pl.col("ph_missing")).then(None).otherwise(pl.col("ph_status")).alias("ph_status"),
        (pl.col("n_prior_lines") + pl.col("lines_delta"))
        .clip(lower_bound=1)
        .alias("n_prior_lines"),
        pl.when(pl.col("flip_ino"))
        .then(pl.col("prior_inotuzumab").replace({"Y": "N", "N": "Y"}))
        .otherwise(pl.col("prior_inotuzumab"))
        .alias("prior_inotuzumab"),
    ]


def plant_duplicates(
    tables: dict[str, pl.DataFrame],
    site_ids: list[str],
    layouts: list[str],
    next_number: dict[str, int],
    rate: float,
    rng: np.random.Generator,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Append a second-site record for ``rate`` of the patients to every table.

    Returns the tables (copies appended, ``source_row`` continued) and the truth pairs.
    """
    plan = plan_duplicates(tables["patients"], site_ids, layouts, next_number, rate, rng)
    if plan.height == 0:
        return tables, empty_pairs()
    plan = _within_data_cut(tables, plan)
    out: dict[str, pl.DataFrame] = {}
    for name, frame in tables.items():
        copies = _copy_rows(name, frame, plan)
        if "source_row" in frame.columns and copies.height:
            last = frame["source_row"].max()
            first = int(last) + 1 if last is not None else 1  # type: ignore[arg-type]
            copies = copies.with_columns(
                (pl.int_range(pl.len(), dtype=pl.Int64) + first)
                .cast(frame.schema["source_row"])
                .alias("source_row")
            )
        out[name] = pl.concat([frame, copies]) if copies.height else frame
    pairs = plan.select(
        pl.col("src_key").alias("patient_key_a"), pl.col("new_key").alias("patient_key_b")
    )
    return out, pairs
