"""Transforms: dates, numbers, sentinels, codes and reshaping, with hypothesis properties."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.cdm import load_cdm
from cartreg.ingest.transforms.codes import boolean_mapping, code_mapping, map_codes
from cartreg.ingest.transforms.dates import parse_dates
from cartreg.ingest.transforms.numbers import decimal_mark, parse_numbers
from cartreg.ingest.transforms.reshape import checkbox_to_rows, explode_path, unpivot_groups
from cartreg.ingest.transforms.sentinels import is_sentinel

dates = st.dates(min_value=date(1901, 1, 1), max_value=date(2099, 12, 31))


def _parse(values: list[str | None], formats: list[str]) -> pl.DataFrame:
    parsed = parse_dates(pl.col("v"), formats)
    return pl.DataFrame({"v": values}, schema={"v": pl.String}).select(
        parsed.value.alias("d"), parsed.precision.alias("p"), parsed.status.alias("s")
    )


RENDERINGS: list[tuple[str, Callable[[date], str], str]] = [
    ("ISO", lambda d: d.isoformat(), "DAY"),
    ("ISO", lambda d: d.strftime("%Y-%m"), "MONTH"),
    ("ISO", lambda d: str(d.year), "YEAR"),
    ("DMY", lambda d: d.strftime("%d/%m/%Y"), "DAY"),
    ("DMY", lambda d: d.strftime("%d.%m.%Y"), "DAY"),
    ("DMY", lambda d: f"{d.day}-{d.strftime('%b')}-{d.year}", "DAY"),
    ("MDY", lambda d: d.strftime("%m/%d/%Y"), "DAY"),
    ("MY", lambda d: d.strftime("%m.%Y"), "MONTH"),
    ("MY", lambda d: d.strftime("%m/%Y"), "MONTH"),
    ("Y", lambda d: str(d.year), "YEAR"),
    ("EXCEL", lambda d: str((d - date(1899, 12, 30)).days), "DAY"),
]


@given(day=dates, which=st.integers(0, len(RENDERINGS) - 1))
def test_any_date_in_any_format_parses_back_with_its_precision(day: date, which: int) -> None:
    fmt, render, precision = RENDERINGS[which]
    if fmt == "EXCEL" and day < date(1927, 5, 18):
        day = day + timedelta(days=10_000)  # serials below 10000 are not read as dates
    expected = {
        "DAY": day,
        "MONTH": day.replace(day=1),
        "YEAR": date(day.year, 1, 1),
    }[precision]
    row = _parse([render(day)], [fmt]).row(0)
    assert row == (expected, precision, "ok")


@given(day=dates)
def test_day_month_swap_is_ambiguous_only_when_both_orders_are_listed(day: date) -> None:
    text = day.strftime("%d/%m/%Y")
    both = _parse([text], ["DMY", "MDY"]).row(0)
    if day.day <= 12 and day.day != day.month:
        assert both == (None, None, "ambiguous")
    else:
        assert both[0] == day
    assert _parse([text], ["DMY"]).row(0)[0] == day


def test_invalid_and_unparseable_dates_are_reported_not_guessed() -> None:
    out = _parse(["31/02/2021", "early 2021", None, "2021-03-05 00:00:00"], ["DMY", "ISO"])
    assert out["s"].to_list() == ["invalid", "unparseable", "ok", "ok"]
    assert out["d"].to_list()[:3] == [None, None, None]
    assert out["d"][3] == date(2021, 3, 5)


@given(
    year=st.integers(0, 9999), formats=st.sampled_from([["DMY"], ["MDY"], ["ISO"], ["DMY", "ISO"]])
)
def test_no_date_outside_the_plausible_years_is_accepted(year: int, formats: list[str]) -> None:
    # Found by hypothesis: %Y takes any number of digits, so "1/1/99" parsed as the year 99.
    texts = [f"1/2/{year}", f"{year:04d}-01-02", f"{year}"]
    out = _parse(texts, formats)
    for value, precision, status in out.rows():
        if value is None:
            assert precision is None and status != "ok"
        else:
            assert 1800 <= value.year <= 2200 and status == "ok"


def test_two_digit_years_need_a_pattern_that_says_so() -> None:
    out = _parse(["01/03/99", "01.03.99"], ["DMY", "%d.%m.%y"])
    assert out.rows() == [(None, None, "year_range"), (date(1999, 3, 1), "DAY", "ok")]


def _numbers(values: list[str | None], **kwargs: object) -> pl.DataFrame:
    parsed = parse_numbers(pl.col("v"), **kwargs)  # type: ignore[arg-type]
    return pl.DataFrame({"v": values}, schema={"v": pl.String}).select(
        parsed.value.alias("x"), parsed.qualifier.alias("q"), parsed.ok.alias("ok")
    )


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_decimal_comma_round_trips(value: object) -> None:
    text = f"{value:f}".replace(".", ",")
    out = _numbers([text], decimal=",").row(0)
    assert out[0] == pytest.approx(float(str(value)))
    assert out[2]


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_scientific_and_plain_notation_agree(value: float) -> None:
    out = _numbers([f"{value:.6e}", f"{value:.6E}", repr(value)])
    assert out["x"].to_list()[2] == pytest.approx(value)
    assert out["x"].to_list()[0] == pytest.approx(value, rel=1e-5)
    assert out["x"].to_list()[1] == pytest.approx(value, rel=1e-5)


def test_qualifiers_percent_power_of_ten_and_failures() -> None:
    out = _numbers(
        ["<5%", ">90", "1 x 10^-4", "10-5", "0,03", "1,000", "abc", None, "≥ 3"],
        target_unit="fraction",
    )
    assert out["x"].to_list()[:6] == pytest.approx([0.05, 90.0, 1e-4, 1e-5, 0.03, 1000.0])
    assert out["q"].to_list()[:2] == ["LT", "GT"]
    assert out["q"][8] == "GE"
    assert out["ok"].to_list() == [True] * 6 + [False, True, True]


def test_auto_decimal_reads_a_comma_after_a_lone_zero_as_a_decimal_comma() -> None:
    # A thousands group never starts with a lone 0: "0,111" can only be a decimal comma.
    out = _numbers(["0,111", "-0,500", "0.111", "1,234", "12,345.5", "0,111,222"])
    assert out["x"].to_list()[:5] == pytest.approx([0.111, -0.5, 0.111, 1234.0, 12345.5])
    assert out["ok"].to_list() == [True] * 5 + [False]
    comma = _numbers(["0.111", "1.234", "1.234,5"], decimal=",")
    assert comma["x"].to_list() == pytest.approx([0.111, 1234.0, 1234.5])


def test_the_decimal_mark_of_a_column_is_told_from_its_values() -> None:
    def mark(*values: str | None) -> str | None:
        return decimal_mark(pl.Series(list(values), dtype=pl.String))

    assert mark("0,111", "20", None) == ","
    assert mark("<5", "2,5%", "3") == ","
    assert mark("0.25", "1,000") == "."
    assert mark("1,000", "2,500") is None  # thousands, or decimals with three places
    assert mark("1,5", "2.5") is None  # both: a mix the site has to explain
    assert mark("12", "abc", "2021-03-05") is None


def test_declared_percent_unit_is_scaled_to_a_fraction() -> None:
    out = _numbers(["0.01", "1%"], source_unit="percent", target_unit="fraction")
    assert out["x"].to_list() == pytest.approx([1e-4, 0.01])


def test_sentinels_ignore_case_and_blanks() -> None:
    frame = pl.DataFrame({"v": [" unk ", "999", "UNKNOWN", None]})
    flags = frame.select(is_sentinel(pl.col("v"), ["UNK", "999"]))["v"].to_list()
    assert flags == [True, True, False, False]


def test_codes_and_booleans_map_through_vocabularies_with_overrides() -> None:
    cdm = load_cdm()
    sex = cdm.vocabularies["sex"].with_overrides({"1": "F"}, source="test")
    values = pl.Series("v", ["Male", "1", "weird", None])
    mapped = pl.DataFrame({"v": values}).select(map_codes(pl.col("v"), code_mapping(values, sex)))
    assert mapped["v"].to_list() == ["M", "F", None, None]
    flags = boolean_mapping(
        pl.Series(["yes", "No", "true", "maybe"]), cdm.vocabularies["yes_no_unknown"]
    )
    assert flags == {"yes": True, "No": False, "true": True, "maybe": None}


@given(st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=8))
def test_checkbox_row_with_k_ticks_yields_k_rows(ticks: list[list[bool]]) -> None:
    frame = pl.DataFrame(
        {
            "source_file": ["x.csv"] * len(ticks),
            "source_row": list(range(2, len(ticks) + 2)),
            "record_id": [str(i) for i in range(len(ticks))],
            **{
                f"salv___{code}": ["1" if row[i] else "0" for row in ticks]
                for i, code in enumerate(["1", "2", "3", "_9"])
            },
        }
    )
    out = checkbox_to_rows(frame, "salv", into="agent", labels={"1": "blina", "_9": "never"})
    per_row = out.group_by("source_row").len()
    expected = {r + 2: sum(t) for r, t in enumerate(ticks) if sum(t)}
    assert dict(per_row.iter_rows()) == expected
    assert set(out["agent"].to_list()) <= {"blina", "2", "3", "-9"}
    assert "record_id" in out.columns


def test_unpivot_groups_skips_empty_groups_and_keeps_other_columns() -> None:
    frame = pl.DataFrame(
        {
            "source_file": ["f"] * 2,
            "source_row": [2, 3],
            "id": ["a", "b"],
            "salv1_agent": ["blina", "ino"],
            "salv1_start": ["2021-01-01", None],
            "salv2_agent": [None, "flag"],
            "salv2_start": [None, "2022-02-02"],
        }
    )
    out = unpivot_groups(frame, r"salv(?P<index>\d+)_(?P<field>.+)", index_name="line")
    assert out.select("source_row", "id", "line", "agent").rows() == [
        (2, "a", "1", "blina"),
        (3, "b", "1", "ino"),
        (3, "b", "2", "flag"),
    ]


def test_explode_path_gives_one_row_per_array_element() -> None:
    frame = pl.DataFrame(
        {
            "source_row": [1, 2, 3],
            "events": [
                [{"type": "relapse", "day": "120"}, {"type": "death", "day": "300"}],
                [],
                None,
            ],
        }
    )
    out = explode_path(frame, "events")
    assert out.select("source_row", "events.type").rows() == [(1, "relapse"), (1, "death")]
