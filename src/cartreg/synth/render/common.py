"""What every site renderer shares: the rendered-export container, value formatting, writers.

A renderer turns a site's truth tables into :class:`Export`: one polars frame per physical file
(or workbook sheet) holding the cells exactly as the site would write them, plus a hidden
``_ref`` column naming the truth row each line came from. Defects are planted by editing those
frames (so the answer key knows the exact line), then :func:`write_export` serializes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

REF = "_ref"
# Fixed document timestamp so workbooks are byte-identical run to run.
FIXED_TIMESTAMP = dt.datetime(2025, 7, 1, 8, 0, 0)


@dataclass
class Sheet:
    """One rendered source: a CSV/NDJSON file, or one sheet of a workbook.

    ``frame`` has the cells in file order; ``_ref`` (dropped on write) links lines to truth ids.
    ``header_rows`` is how many lines precede the first data line (CSV/xlsx header = 1, NDJSON 0),
    so the line a person sees is ``index + header_rows + 1``.
    """

    file: str
    frame: pl.DataFrame
    sheet: str | None = None
    header_rows: int = 1
    text_overrides: dict[str, pl.Series] = field(default_factory=dict)
    # A JSON document around the records (``_json``, one per line): ``@RECORDS@`` marks them.
    envelope: str | None = None
    # A CSV's field separator, and a title line written above its header (count it in
    # ``header_rows``).
    separator: str = ","
    title: str | None = None

    @property
    def source_file(self) -> str:
        return f"{self.file}#{self.sheet}" if self.sheet else self.file

    def line_of(self, ref: str) -> int:
        """Line (1-based, header included) of the first row rendered from truth id ``ref``."""
        hits = self.frame.with_row_index("_i").filter(pl.col(REF) == ref)["_i"]
        if hits.len() == 0:
            raise KeyError(ref)
        return int(hits[0]) + self.header_rows + 1


@dataclass
class Export:
    """A site's rendered export: its sources plus static files (README, data dictionary)."""

    site_id: str
    layout: str
    sheets: list[Sheet]
    static_files: dict[str, str] = field(default_factory=dict)

    def sheet(self, file: str, sheet: str | None = None) -> Sheet:
        for s in self.sheets:
            if s.file == file and s.sheet == sheet:
                return s
        raise KeyError(f"{file}#{sheet}")


def iso(col: str | pl.Expr) -> pl.Expr:
    expr = pl.col(col) if isinstance(col, str) else col
    return expr.dt.to_string("%Y-%m-%d")


def num(col: str | pl.Expr, decimals: int = 4, *, comma: bool = False) -> pl.Expr:
    """A number as text: rounded, no trailing ``.0``, optionally with a decimal comma."""
    expr = pl.col(col) if isinstance(col, str) else col
    text = expr.cast(pl.Float64).round(decimals).cast(pl.String).str.replace(r"\.0$", "")
    return text.str.replace(".", ",", literal=True) if comma else text


def qualified(value: str, qualifier: str, decimals: int = 1, *, comma: bool = False) -> pl.Expr:
    """A lab value as the site writes it: ``<1`` when its qualifier column says LT."""
    text = num(value, decimals, comma=comma)
    return pl.when(pl.col(qualifier) == "LT").then(pl.concat_str(pl.lit("<"), text)).otherwise(text)


def typed_as_text(frame: pl.DataFrame, col: str, rng: Any, share: float, pattern: str) -> pl.Series:
    """A ``share`` of a date column's cells typed by hand as text (``pattern``, strftime)."""
    typed = pl.Series(rng.random(frame.height) < share)
    return frame.select(
        pl.when(typed & pl.col(col).is_not_null()).then(pl.col(col).dt.to_string(pattern))
    ).to_series()


def coded(col: str, mapping: Mapping[str, str]) -> pl.Expr:
    """CDM code → the site's own code or label (null stays null)."""
    return pl.col(col).replace_strict(dict(mapping), default=None, return_dtype=pl.String)


def by_patient(frame: pl.DataFrame, keys: pl.Series) -> pl.DataFrame:
    """Rows in the site's patient order (``keys``), then by the row's own id order."""
    order = pl.DataFrame({"patient_key": keys, "_p": pl.int_range(keys.len(), eager=True)})
    return (
        frame.join(order, on="patient_key", how="left").sort("_p", maintain_order=True).drop("_p")
    )


def write_xlsx(sheets: list[Sheet], path: Path) -> None:
    """A workbook with text, number and date cells as a site's spreadsheet would have them."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path), {"in_memory": True})
    book.set_properties({"created": FIXED_TIMESTAMP, "author": "", "company": ""})
    bold = book.add_format({"bold": True})
    date_fmt = book.add_format({"num_format": "dd.mm.yyyy"})
    for sheet in sheets:
        ws = book.add_worksheet(sheet.sheet)
        frame = sheet.frame.drop(REF, strict=False)
        ws.write_row(0, 0, frame.columns, bold)
        for j, name in enumerate(frame.columns):
            series = frame[name]
            ws.set_column(j, j, max(10, min(28, len(name) + 2)))
            if series.dtype == pl.Date:
                text = sheet.text_overrides.get(name)
                values = series.to_list()
                texts = text.to_list() if text is not None else [None] * len(values)
                for i, (value, typed) in enumerate(zip(values, texts, strict=True)):
                    if typed is not None:
                        ws.write_string(i + 1, j, typed)
                    elif value is not None:
                        ws.write_datetime(i + 1, j, dt.datetime.combine(value, dt.time()), date_fmt)
            elif series.dtype.is_numeric():
                for i, value in enumerate(series.to_list()):
                    if value is not None:
                        ws.write_number(i + 1, j, value)
            else:
                for i, value in enumerate(series.to_list()):
                    if value is not None:
                        ws.write_string(i + 1, j, value)
    book.close()


def write_export(export: Export, folder: Path, *, append: bool = False) -> list[Path]:
    """Write every source and static file of an export into ``folder``; return the paths.

    With ``append`` the CSV/NDJSON lines are added to files a previous chunk wrote (no second
    header). Workbooks cannot be appended: merge chunks with :func:`merge_exports` first.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    workbooks: dict[str, list[Sheet]] = {}
    for sheet in export.sheets:
        path = folder / sheet.file
        if sheet.sheet is not None:
            workbooks.setdefault(sheet.file, []).append(sheet)
            continue
        if sheet.envelope is not None:
            if append:
                raise ValueError(f"{sheet.file}: a JSON document cannot be written in chunks")
            records = ",\n".join(sheet.frame["_json"])
            path.write_bytes(sheet.envelope.replace("@RECORDS@", records).encode("utf-8"))
            written.append(path)
            continue
        with path.open("ab" if append else "wb") as fh:
            if sheet.file.endswith(".ndjson"):
                fh.write("".join(line + "\n" for line in sheet.frame["_json"]).encode("utf-8"))
            else:
                if sheet.title is not None and not append:
                    fh.write((sheet.title + "\n").encode("utf-8"))
                sheet.frame.drop(REF, strict=False).write_csv(
                    fh,
                    include_header=not append,
                    null_value="",
                    line_terminator="\n",
                    separator=sheet.separator,
                )
        written.append(path)
    for file, book_sheets in workbooks.items():
        write_xlsx(book_sheets, folder / file)
        written.append(folder / file)
    if not append:
        for name, text in export.static_files.items():
            (folder / name).write_text(text, encoding="utf-8")
            written.append(folder / name)
    return written


def merge_exports(first: Export, later: Export) -> Export:
    """One export from two chunks of the same site (rows of ``later`` after ``first``)."""
    sheets = []
    for a, b in zip(first.sheets, later.sheets, strict=True):
        overrides = {}
        for col in set(a.text_overrides) | set(b.text_overrides):
            parts = [
                s.text_overrides.get(col, pl.Series(col, [None] * s.frame.height, pl.String))
                for s in (a, b)
            ]
            overrides[col] = pl.concat(parts)
        frame = pl.concat([a.frame, b.frame], how="vertical_relaxed")
        sheets.append(Sheet(a.file, frame, a.sheet, a.header_rows, overrides))
    return Export(first.site_id, first.layout, sheets, first.static_files)


def render_template(name: str, **values: str) -> str:
    """A README template from ``cartreg/synth/templates`` with ``$name`` placeholders filled."""
    from importlib.resources import files
    from string import Template

    text = files("cartreg.synth").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text).substitute(values)
