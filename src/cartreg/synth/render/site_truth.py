"""What a site's export lets ingest recover: the truth restricted to the columns a layout
exports, plus the values ingest derives (ids, day offsets, infusion numbering, salvage links).

The four original layouts export nearly everything, so their truth is the cohort itself. The
registry-style layouts leave things out (an age, a remission date, the burden, most marrows):
each declares the CDM columns it exports, and :func:`restrict` empties the others, with their
``_raw``/``_precision``/``_day`` siblings, so that a clean ingest can be compared field by field.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from cartreg.cdm import load_cdm

Tables = dict[str, pl.DataFrame]

# Columns every clean ingest fills whatever the layout exports (ingest derives them).
ALWAYS = frozenset(
    {
        "patient_key",
        "infusion_id",
        "assessment_id",
        "progression_id",
        "salvage_id",
        "hct_id",
        "infusion_number",
        "is_index_infusion",
        "is_reinfusion",
        "infusion_year",
        "event_seq",
        "line_number",
        "category",
    }
)


def restrict(t: Tables, exported: Mapping[str, set[str]]) -> Tables:
    """``t`` with every declared CDM column the layout does not export set to null.

    Siblings follow their column: ``x_raw`` and ``x_precision`` are emptied with ``x``; a day
    offset is kept while its date or the offset itself is exported (ingest computes one from
    the other).
    """
    cdm = load_cdm()
    out: Tables = {}
    for name, frame in t.items():
        spec = cdm.tables[name]
        keep = exported.get(name, set()) | ALWAYS
        emptied: list[pl.Expr] = []
        for col in spec.columns:
            if col.role == "lineage":
                continue
            owner = col.sibling_of if col.role in ("raw", "precision") else col.name
            if col.role == "day_offset":
                kept = col.name in keep or col.sibling_of in keep
            else:
                kept = owner in keep or col.role in ("derivation", "derived_from")
            if not kept:
                emptied.append(pl.lit(None, dtype=frame.schema[col.name]).alias(col.name))
        out[name] = frame.with_columns(emptied)
    return out


def renumber(frame: pl.DataFrame, id_col: str, abbr: str, day_col: str) -> pl.DataFrame:
    """Row ids ``<patient_key>-<ABBR><k>`` again after rows were left out (k by day)."""
    return frame.sort(["patient_key", day_col], maintain_order=True).with_columns(
        pl.concat_str(
            pl.col("patient_key"),
            pl.lit(f"-{abbr}"),
            (pl.int_range(pl.len()).over("patient_key") + 1).cast(pl.String),
        ).alias(id_col)
    )


def disease_status(t: Tables) -> Tables:
    """The follow-up status a registry form records: progressed or not, as of the last contact
    (the death date for the dead)."""
    progressed = t["progression_events"]["patient_key"].implode()
    follow = t["follow_up"].with_columns(
        pl.when(pl.col("patient_key").is_in(progressed))
        .then(pl.lit("PROGRESSED"))
        .otherwise(pl.lit("PROGRESSION_FREE"))
        .alias("disease_status"),
        pl.col("last_contact_date").alias("disease_status_date"),
        pl.col("last_contact_date_precision").alias("disease_status_date_precision"),
        pl.col("last_contact_day").alias("disease_status_day"),
    )
    return {**t, "follow_up": follow}
