"""Partial-date imputation that never crosses anchors (admiral ``impute_dtc_dt`` style).

A MONTH-precision date is stored as the 1st of its month and a YEAR-precision date as
1 January (CDM convention), with ``*_precision`` saying which parts are real. Analysis needs
one day, so the missing parts are imputed:

* ``FIRST``: first day of the known period, ``MID``: the 15th / 1 July, ``LAST``: last day;
* the result is then clamped into ``[lower anchor, upper anchor]`` *within the known period*:
  an imputed progression date is never on or before the infusion (lower anchor = day 1) and
  never after death or the data cut (upper anchor). An anchor outside the period is ignored,
  because the known parts of the date win over the anchor (the data-quality rules report
  such contradictions).

Everything is done in day offsets from the index infusion, so sites with calendar dates and
sites that only send ``*_day`` offsets go through the same arithmetic. The ADaM-style flag
``ADTF`` is ``"D"`` when the day was imputed and ``"M"`` when month and day were.
"""

from __future__ import annotations

import polars as pl

RULES = ("FIRST", "MID", "LAST")


def _days_from(index_date: pl.Expr, date: pl.Expr) -> pl.Expr:
    return (date - index_date).dt.total_days().cast(pl.Int64)


def compute_event_day(
    *,
    date: str,
    precision: str,
    day: str,
    index_date: str = "index_date",
    lower_day: pl.Expr | int | None = None,
    upper_day: pl.Expr | int | None = None,
    day_rule: str = "MID",
    month_rule: str = "MID",
) -> tuple[pl.Expr, pl.Expr]:
    """Expressions for the analysis day of an event and its imputation flag (ADTF).

    ``date``/``precision``/``day`` name the CDM columns; ``index_date`` the patient's index
    infusion date (null for de-identified sites, whose ``day`` column is then used as given).
    """
    if day_rule not in RULES or month_rule not in RULES:
        raise ValueError(f"imputation rule must be one of {RULES}")
    d = pl.col(date)
    idx = pl.col(index_date)
    prec = pl.col(precision)
    is_month = prec == "MONTH"
    is_year = prec == "YEAR"
    partial = (is_month | is_year) & d.is_not_null() & idx.is_not_null()

    period_end = pl.when(is_month).then(d.dt.month_end()).otherwise(pl.date(d.dt.year(), 12, 31))
    month_pick = {"FIRST": d, "MID": d.dt.offset_by("14d"), "LAST": d.dt.month_end()}[day_rule]
    year_pick = {
        "FIRST": d,
        "MID": pl.date(d.dt.year(), 7, 1),
        "LAST": pl.date(d.dt.year(), 12, 31),
    }[month_rule]
    preferred = pl.when(is_month).then(month_pick).otherwise(year_pick)

    start_d = _days_from(idx, d)
    end_d = _days_from(idx, period_end)
    pref_d = _days_from(idx, preferred)

    lower = start_d
    if lower_day is not None:
        low = pl.lit(lower_day) if isinstance(lower_day, int) else lower_day
        # an anchor beyond the known period is ignored: the known month/year wins
        lower = (
            pl.when(low.is_not_null() & (low > start_d) & (low <= end_d))
            .then(low)
            .otherwise(start_d)
        )
    upper = end_d
    if upper_day is not None:
        up = pl.lit(upper_day) if isinstance(upper_day, int) else upper_day
        upper = pl.when(up.is_not_null() & (up < end_d) & (up >= lower)).then(up).otherwise(end_d)
    imputed = pl.max_horizontal(lower, pl.min_horizontal(pref_d, upper))

    exact = pl.coalesce(pl.col(day), _days_from(idx, d))
    value = pl.when(partial).then(imputed).otherwise(exact)
    flag = (
        pl.when(partial & is_month)
        .then(pl.lit("D"))
        .when(partial & is_year)
        .then(pl.lit("M"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return value, flag
