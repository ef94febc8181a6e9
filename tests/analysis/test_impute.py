"""Partial-date imputation: stays inside the known period and never crosses the anchors."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from cartreg.analysis.impute import compute_event_day

dates = st.dates(min_value=dt.date(2015, 1, 1), max_value=dt.date(2030, 12, 31))


def _impute(
    index: dt.date, partial: dt.date, precision: str, upper: int | None, rule: str
) -> tuple[int, str | None]:
    frame = pl.DataFrame(
        {
            "index_date": [index],
            "ev_date": [partial],
            "ev_date_precision": [precision],
            "ev_day": pl.Series([None], dtype=pl.Int64),
            "upper": pl.Series([upper], dtype=pl.Int64),
        }
    )
    value, flag = compute_event_day(
        date="ev_date",
        precision="ev_date_precision",
        day="ev_day",
        lower_day=1,
        upper_day=pl.col("upper"),
        day_rule=rule,
        month_rule=rule,
    )
    row = frame.select(value.alias("day"), flag.alias("flag")).row(0)
    return row[0], row[1]


@given(
    index=dates,
    event=dates,
    precision=st.sampled_from(["MONTH", "YEAR"]),
    upper_offset=st.one_of(st.none(), st.integers(-30, 800)),
    rule=st.sampled_from(["FIRST", "MID", "LAST"]),
)
def test_imputed_day_respects_period_and_anchors(
    index: dt.date, event: dt.date, precision: str, upper_offset: int | None, rule: str
) -> None:
    start = event.replace(day=1) if precision == "MONTH" else event.replace(month=1, day=1)
    if precision == "MONTH":
        end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    else:
        end = start.replace(month=12, day=31)
    day, flag = _impute(index, start, precision, upper_offset, rule)
    imputed = index + dt.timedelta(days=day)
    assert start <= imputed <= end
    assert flag == ("D" if precision == "MONTH" else "M")
    lower = index + dt.timedelta(days=1)
    if start <= lower <= end:
        assert imputed >= lower
    if upper_offset is not None:
        upper = index + dt.timedelta(days=upper_offset)
        if start <= upper <= end and upper >= max(lower, start):
            assert imputed <= upper


def test_full_dates_and_offsets_are_not_imputed() -> None:
    day, flag = _impute(dt.date(2021, 3, 10), dt.date(2021, 4, 2), "DAY", None, "MID")
    assert (day, flag) == (23, None)


def test_mid_month_default_is_the_15th() -> None:
    assert _impute(dt.date(2021, 3, 10), dt.date(2021, 3, 1), "MONTH", None, "MID") == (5, "D")
    assert _impute(dt.date(2021, 3, 10), dt.date(2021, 1, 1), "YEAR", None, "MID") == (113, "M")
