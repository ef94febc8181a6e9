"""Date parsing with declared formats, recorded precision and no silent day/month guessing.

A mapping lists the formats a column may use (``ISO``, ``DMY``, ``MDY``, ``MY``, ``Y``,
``EXCEL``, ``EXCEL1904`` or a strptime pattern). Each format is tried as a polars expression and
the results are coalesced. When both ``DMY`` and ``MDY`` are listed and a value reads as two
different dates (``03/04/2021``), the value is *ambiguous*: it stays null and gets a finding,
because choosing either reading would be a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

DATE_FORMATS: tuple[str, ...] = ("ISO", "DMY", "MDY", "MY", "Y", "EXCEL", "EXCEL1904")
DEFAULT_DATE_FORMATS: tuple[str, ...] = ("ISO",)

# Excel's 1900 date system counts from 1899-12-30 (it pretends 1900 was a leap year).
_EXCEL_EPOCH = date(1899, 12, 30)
_EXCEL_1904_EPOCH = date(1904, 1, 1)
_MIN_YEAR, _MAX_YEAR = 1800, 2200

STATUS_OK = "ok"
STATUS_AMBIGUOUS = "ambiguous"
STATUS_INVALID = "invalid"
STATUS_UNPARSEABLE = "unparseable"
STATUS_YEAR_RANGE = "year_range"


@dataclass(frozen=True)
class DateParse:
    """Expressions for one parsed column: the date, its precision and a problem status."""

    value: pl.Expr
    precision: pl.Expr
    status: pl.Expr


def _iso_day_shape(raw: pl.Expr) -> pl.Expr:
    return raw.str.strip_chars().str.contains(r"^\d{4}-\d{1,2}-\d{1,2}([T ]|$)").fill_null(False)


# strptime directives polars (chrono) reads, with an optional padding flag (-, _ or 0).
STRPTIME_PATTERN = (
    r"^(?:[^%]|%[-_0]?[YCymbBhdeaAwujDxFvHkIlPpMSZz%ntRTXrcs+]|%[-_0]?\.?[369]?f|%:{1,3}z|%#z)+$"
)
_DIRECTIVE = re.compile(r"%[-_0]?(\.?[369]?f|:{1,3}z|#z|.)")
_DIRECTIVE_OR_END = re.compile(r"%[-_0]?(?:\.?[369]?f|:{1,3}z|#z|.|$)")
# What each directive contributes to a date (composites spelled out).
_DATE_PARTS = {
    "Y": {"year"},
    "C": set(),
    "y": {"year"},
    "m": {"month"},
    "b": {"month"},
    "B": {"month"},
    "h": {"month"},
    "d": {"day"},
    "e": {"day"},
    "j": {"month", "day"},
    "D": {"year", "month", "day"},
    "x": {"year", "month", "day"},
    "F": {"year", "month", "day"},
    "v": {"year", "month", "day"},
    "c": {"year", "month", "day"},
    "+": {"year", "month", "day"},
    "s": {"year", "month", "day"},
}


def strptime_problem(fmt: str) -> str | None:
    """Why ``fmt`` is not a strptime pattern that reads a whole date (None: it is one).

    polars accepts any text as a pattern and just reads nothing with a broken one, so the
    mapping loader checks patterns itself: known directives only, and a year, month and day.
    """
    if not re.fullmatch(STRPTIME_PATTERN, fmt):
        unknown = [
            m.group(0)
            for m in _DIRECTIVE_OR_END.finditer(fmt)
            if not re.fullmatch(STRPTIME_PATTERN, m.group(0))
        ]
        return f"'{unknown[0] if unknown else fmt}' is not a strptime directive"
    parts: set[str] = set()
    for directive in _DIRECTIVE.findall(fmt):
        parts |= _DATE_PARTS.get(directive, set())
    missing = [p for p in ("year", "month", "day") if p not in parts]
    if missing:
        return f"the pattern has no {' or '.join(missing)} (e.g. %d/%m/%Y)"
    return None


def _normalized(raw: pl.Expr) -> pl.Expr:
    text = raw.str.strip_chars()
    # Excel date cells arrive as "2021-03-05 00:00:00"; ISO and FHIR datetimes as
    # "2021-03-05T10:30:00+02:00": the date is the day as written (the clinical day).
    text = text.str.replace(
        r"^(\d{4}-\d{1,2}-\d{1,2})[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$",
        "${1}",
    )
    return text.str.replace_all(r"[./\s]+", "-")


def _day(expr: pl.Expr, fmt: str) -> pl.Expr:
    return expr.str.to_date(fmt, strict=False)


def _year_only(norm: pl.Expr) -> pl.Expr:
    year = norm.str.extract(r"^(\d{4})$", 1).cast(pl.Int32, strict=False)
    ok = year.is_between(_MIN_YEAR, _MAX_YEAR)
    return pl.when(ok).then(pl.date(year, 1, 1)).otherwise(None)


def _serial(norm: pl.Expr, epoch: date) -> pl.Expr:
    # A serial is a whole number of days (a time-of-day fraction is dropped); 5 digits keeps
    # four-digit years and small integers from being read as dates.
    days = norm.str.extract(r"^(\d{5})(?:-0+)?$", 1).cast(pl.Int64, strict=False)
    return pl.lit(epoch, dtype=pl.Date) + pl.duration(days=days)


def _with_named_month(norm: pl.Expr, order: str) -> pl.Expr:
    """Dates with a month name ("05 Mar 2021", "Mar 05 2021") are never ambiguous."""
    if order == "DMY":
        return pl.coalesce(_day(norm, "%d-%b-%Y"), _day(norm, "%d-%B-%Y"))
    return pl.coalesce(_day(norm, "%b-%d-%Y"), _day(norm, "%B-%d-%Y"))


def normalized_date_text(raw: pl.Expr) -> pl.Expr:
    """The text ``parse_dates`` reads, for callers that compute it once as a column."""
    return _normalized(raw)


def parse_dates(
    raw: pl.Expr, formats: Sequence[str], *, normalized: pl.Expr | None = None
) -> DateParse:
    """Parse text dates in the listed formats; see the module docstring for the rules.

    ``normalized`` is ``normalized_date_text(raw)`` already computed as a column: every
    candidate format reads the normalized text, and as one expression tree polars would run
    its regex replacements once per use.
    """
    norm = _normalized(raw) if normalized is None else normalized
    # A full ISO date (what a real Excel date cell becomes) cannot be misread, so it is always
    # accepted whatever formats the site lists.
    day_candidates: list[pl.Expr] = [
        pl.when(norm.str.contains(r"^\d{4}-\d{1,2}-\d{1,2}$"))
        .then(_day(norm, "%Y-%m-%d"))
        .otherwise(None)
    ]
    month_candidates: list[pl.Expr] = []
    year_candidates: list[pl.Expr] = []
    dmy: pl.Expr | None = None
    mdy: pl.Expr | None = None
    for fmt in formats:
        if fmt == "ISO":
            day_candidates.append(
                pl.when(norm.str.contains(r"^\d{8}$")).then(_day(norm, "%Y%m%d")).otherwise(None)
            )
            month_candidates.append(
                pl.when(norm.str.contains(r"^\d{4}-\d{1,2}$"))
                .then(_day(norm + "-01", "%Y-%m-%d"))
                .otherwise(None)
            )
            year_candidates.append(_year_only(norm))
        elif fmt == "DMY":
            dmy = pl.coalesce(_day(norm, "%d-%m-%Y"), _with_named_month(norm, "DMY"))
        elif fmt == "MDY":
            mdy = pl.coalesce(_day(norm, "%m-%d-%Y"), _with_named_month(norm, "MDY"))
        elif fmt == "MY":
            with_day = "01-" + norm
            month_candidates.append(
                pl.when(norm.str.contains(r"^(\d{1,2}|[A-Za-z]{3,})-\d{4}$"))
                .then(
                    pl.coalesce(
                        _day(with_day, "%d-%m-%Y"),
                        _day(with_day, "%d-%b-%Y"),
                        _day(with_day, "%d-%B-%Y"),
                    )
                )
                .otherwise(None)
            )
        elif fmt == "Y":
            year_candidates.append(_year_only(norm))
        elif fmt in ("EXCEL", "EXCEL1904"):
            epoch = _EXCEL_EPOCH if fmt == "EXCEL" else _EXCEL_1904_EPOCH
            day_candidates.append(_serial(norm, epoch))
        else:
            # A strptime pattern given by the site, applied to the stripped (not normalized) text.
            day_candidates.append(_day(raw.str.strip_chars(), fmt))

    ambiguous = pl.lit(False)
    if dmy is not None and mdy is not None:
        ambiguous = dmy.is_not_null() & mdy.is_not_null() & (dmy != mdy)
        day_candidates.append(pl.when(ambiguous).then(None).otherwise(pl.coalesce(dmy, mdy)))
    elif dmy is not None:
        day_candidates.append(dmy)
    elif mdy is not None:
        day_candidates.append(mdy)

    day = pl.coalesce(day_candidates) if day_candidates else pl.lit(None, dtype=pl.Date)
    month = pl.coalesce(month_candidates) if month_candidates else pl.lit(None, dtype=pl.Date)
    year = pl.coalesce(year_candidates) if year_candidates else pl.lit(None, dtype=pl.Date)
    candidate = pl.coalesce(day, month, year).cast(pl.Date)
    # strptime's %Y takes any number of digits: "1/1/99" would be the year 99. Years outside
    # the plausible range are rejected rather than guessed (a pattern with %y reads two digits).
    in_range = candidate.dt.year().is_between(_MIN_YEAR, _MAX_YEAR)
    value = pl.when(in_range).then(candidate)
    precision = (
        pl.when(~in_range.fill_null(False))
        .then(pl.lit(None, dtype=pl.String))
        .when(day.is_not_null())
        .then(pl.lit("DAY"))
        .when(month.is_not_null())
        .then(pl.lit("MONTH"))
        .when(year.is_not_null())
        .then(pl.lit("YEAR"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    date_shaped = norm.str.contains(r"^\d{1,4}-\d{1,2}-\d{1,4}$")
    status = (
        pl.when(raw.is_null() | value.is_not_null())
        .then(pl.lit(STATUS_OK))
        .when(ambiguous.fill_null(False))
        .then(pl.lit(STATUS_AMBIGUOUS))
        .when(candidate.is_not_null())
        .then(pl.lit(STATUS_YEAR_RANGE))
        .when(date_shaped)
        .then(pl.lit(STATUS_INVALID))
        .otherwise(pl.lit(STATUS_UNPARSEABLE))
    )
    return DateParse(value=value, precision=precision, status=status)


_SHAPES = {
    "ISO": "YYYY-MM-DD",
    "DMY": "DD/MM/YYYY",
    "MDY": "MM/DD/YYYY",
    "MY": "MM/YYYY",
    "Y": "YYYY",
    "EXCEL": "an Excel day number",
    "EXCEL1904": "an Excel 1904 day number",
}


def format_description(fmt: str) -> str:
    """``DMY (DD/MM/YYYY)``; a strptime pattern as itself, quoted."""
    return f"{fmt} ({_SHAPES[fmt]})" if fmt in _SHAPES else f"'{fmt}'"


def other_reading(raw: pl.Expr, formats: Sequence[str]) -> pl.Expr:
    """The description of the first usual format not in ``formats`` that reads ``raw`` as a
    date (a US date in a day-first column reads as MDY); null when none does."""
    others = [f for f in ("ISO", "DMY", "MDY", "MY") if f not in formats]
    readings = [
        pl.when(parse_dates(raw, [f]).value.is_not_null()).then(pl.lit(format_description(f)))
        for f in others
    ]
    return pl.coalesce(readings) if readings else pl.lit(None, dtype=pl.String)


def detect_date_formats(values: pl.Series) -> list[str]:
    """Formats under which at least one of ``values`` parses (for profiling and drafts)."""
    frame = pl.DataFrame({"v": values.cast(pl.String)}).drop_nulls()
    found: list[str] = []
    for fmt in DATE_FORMATS:
        if fmt == "EXCEL1904":
            continue
        # ISO days parse under every format, so other formats need evidence of their own.
        subset = frame if fmt == "ISO" else frame.filter(~_iso_day_shape(pl.col("v")))
        parsed = subset.select(parse_dates(pl.col("v"), [fmt]).value.is_not_null().sum())
        if parsed.item() > 0:
            found.append(fmt)
    return found
