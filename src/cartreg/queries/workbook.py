"""The exchange with a site: one XLSX workbook of open queries out, the same workbook back.

``queries`` sheet: one row per open query (query id, patient, table, field, event, value —
masked when it is an identifier —, rule, message, guidance) and two response columns: a
drop-down (corrected in the next submission / confirmed correct as is / cannot be obtained)
and a free-text comment. Only the response columns are unlocked; the sheet is protected
without a password (it guides, it does not secure). ``about`` sheet: the registry id, the site
and the time of the export, checked on import so that a workbook is never applied to another
registry or site.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import ZIP_DAMAGE, ZIP_ENTRY_DAMAGE, InputError
from cartreg.exprs import format_text
from cartreg.ingest.limits import MAX_QUERY_ROWS, MAX_QUERY_WORKBOOK_XML_BYTES, size_text
from cartreg.queries.lifecycle import OPEN, RESPONSES, mask_identifiers, site_queries
from cartreg.registry.store import Registry
from cartreg.spreadsheet import neutralize_text, new_workbook

FORMAT = "cartreg-queries 1"
_GIVEN = "by `cartreg queries export` or the portal"
SHEET, ABOUT = "queries", "about"
_ABOUT_ROWS = 50  # the 'about' sheet holds a handful of facts
RESPONSE, COMMENT = "response", "comment"
# (header, width, source column); the last two are the site's.
COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("query_id", 18, "query_id"),
    ("patient", 16, "patient"),
    ("table", 20, "table"),
    ("field", 20, "column"),
    ("event", 26, "event_label"),
    ("value", 16, "value"),
    ("rule", 12, "rule_id"),
    ("severity", 9, "severity"),
    ("message", 60, "message"),
    ("guidance", 50, "guidance"),
    ("opened", 11, "opened"),
    ("source", 24, "source"),
    (RESPONSE, 34, ""),
    (COMMENT, 50, ""),
)


def registry_id(registry: Registry) -> str:
    value = registry.scalar("SELECT value FROM registry_meta WHERE key = 'registry_id'")
    return str(value or "")


def export_frame(
    registry: Registry, site: str, guidance: dict[str, str], identifiers: Iterable[str]
) -> pl.DataFrame:
    """The open queries of ``site`` as the rows of the workbook (identifier values masked,
    again: they are stored masked)."""
    rows = mask_identifiers(
        site_queries(registry, site).filter(pl.col("state") == OPEN), identifiers
    )
    return rows.sort("query_id").select(
        "query_id",
        pl.when(pl.col("patient_key").str.starts_with(f"{site}-"))
        .then(pl.col("patient_key").str.slice(len(site) + 1))
        .otherwise(pl.col("patient_key"))
        .alias("patient"),
        "table",
        "column",
        pl.col("event_label").fill_null(""),
        "value",
        "rule_id",
        "severity",
        "message",
        pl.col("rule_id")
        .replace_strict(guidance, default="", return_dtype=pl.String)
        .alias("guidance"),
        pl.col("opened_at").dt.date().cast(pl.String).alias("opened"),
        format_text("{} row {}", pl.col("source_file"), pl.col("source_row")).alias("source"),
    )


def all_guidance() -> dict[str, str]:
    """What a site should do, by rule id: the data-quality rules and the ingest/schema checks."""
    from cartreg.rules.model import load_rules
    from cartreg.validation import STAGE_CHECKS

    guidance = {rule.id: rule.guidance for rule in load_rules()}
    guidance.update({rid: guide for rid, (_, _, guide) in STAGE_CHECKS.items()})
    return guidance


def write_workbook(
    registry: Registry,
    site: str,
    path: Path | str,
    *,
    guidance: dict[str, str],
    identifiers: Iterable[str],
    when: dt.datetime,
) -> int:
    """Write the open queries of ``site`` to ``path``; returns the number of queries."""
    frame = export_frame(registry, site, guidance, identifiers)
    workbook = new_workbook(Path(path))
    try:
        header = workbook.add_format({"bold": True, "bg_color": "#E8E8E8", "locked": True})
        locked = workbook.add_format({"locked": True, "text_wrap": True, "valign": "top"})
        answer = workbook.add_format(
            {"locked": False, "bg_color": "#FFF8D6", "text_wrap": True, "valign": "top"}
        )
        sheet = workbook.add_worksheet(SHEET)
        for j, (name, width, _) in enumerate(COLUMNS):
            sheet.write_string(0, j, name, header)
            site_column = name in (RESPONSE, COMMENT)
            sheet.set_column(j, j, width, answer if site_column else locked)
        sources = [source for _, _, source in COLUMNS if source]
        for i, row in enumerate(frame.select(sources).iter_rows(), start=1):
            for j, value in enumerate(row):  # writing cells is per cell by nature
                if value is not None:
                    sheet.write_string(i, j, neutralize_text(str(value)), locked)
            sheet.write_blank(i, len(sources), None, answer)
            sheet.write_blank(i, len(sources) + 1, None, answer)
        last = max(frame.height, 1)
        sheet.data_validation(
            1,
            len(sources),
            last,
            len(sources),
            {
                "validate": "list",
                "source": list(RESPONSES.values()),
                "input_title": "Your answer",
                "input_message": "Pick one; explain in the comment.",
                "error_title": "Not an answer",
                "error_message": "Choose one of the answers in the list.",
            },
        )
        sheet.freeze_panes(1, 1)
        sheet.autofilter(0, 0, last, len(COLUMNS) - 1)
        sheet.protect("", {"autofilter": True, "sort": False, "format_columns": True})
        about = workbook.add_worksheet(ABOUT)
        facts = [
            ("format", FORMAT),
            ("registry_id", registry_id(registry)),
            ("site_id", site),
            ("exported_at", when.replace(microsecond=0).isoformat()),
            ("queries", str(frame.height)),
            (
                "how to answer",
                "Fill the yellow columns of the 'queries' sheet only: pick an answer and add "
                "a comment, save, and send the file back. Do not add, remove or reorder rows.",
            ),
        ]
        about.set_column(0, 0, 16)
        about.set_column(1, 1, 90)
        for i, (key, value) in enumerate(facts):
            about.write_string(i, 0, key, header)
            about.write_string(i, 1, neutralize_text(value), locked)
        about.protect("")
    finally:
        workbook.close()
    return frame.height


@dataclass(frozen=True)
class Answers:
    """A workbook read back: its site and the answered rows."""

    site_id: str
    registry_id: str
    rows: pl.DataFrame  # answered rows: query_id, response (code or null), comment (or null)
    query_ids: tuple[str, ...]  # every query id in the sheet, answered or not


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _response_code(text: str | None, where: str) -> str | None:
    if text is None:
        return None
    wanted = text.casefold().strip(" .")
    for code, label in RESPONSES.items():
        if wanted in (code, label.casefold()):
            return code
    raise InputError(
        f"'{text}' is not one of the answers",
        where=where,
        hint="pick from the drop-down: " + " / ".join(RESPONSES.values()),
    )


def read_workbook(path: Path | str) -> Answers:
    """The site's answers in a workbook made by :func:`write_workbook` (any row order)."""
    import openpyxl

    path = Path(path)
    if not path.is_file():
        raise InputError("workbook not found", where=str(path))

    def unreadable(exc: BaseException) -> InputError:
        return InputError(
            f"not a readable XLSX workbook ({type(exc).__name__})",
            where=str(path),
            hint=f"send back the query workbook you were given, saved as .xlsx ({_GIVEN})",
        )

    try:
        # openpyxl holds shared strings and each row read as Python objects: a small upload
        # that unpacks to gigabytes must not get that far. The sizes the zip directory declares
        # are the most its parts unpack to (zipfile stops there).
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_QUERY_WORKBOOK_XML_BYTES:
            raise InputError(
                f"the workbook unpacks to {size_text(unpacked)}, more than the "
                f"{size_text(MAX_QUERY_WORKBOOK_XML_BYTES)} a query workbook may",
                where=str(path),
                hint=f"send back the query workbook you were given ({_GIVEN})",
            )
        book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except (*ZIP_DAMAGE, KeyError) as exc:
        raise unreadable(exc) from None
    try:
        if SHEET not in book.sheetnames or ABOUT not in book.sheetnames:
            raise InputError(
                f"no '{SHEET}' and '{ABOUT}' sheets: not a query workbook",
                where=str(path),
                hint=f"send back the query workbook you were given ({_GIVEN})",
            )
        facts = {
            str(row[0]): _text(row[1])
            for row in book[ABOUT].iter_rows(
                min_col=1, max_col=2, max_row=_ABOUT_ROWS, values_only=True
            )
            if row and row[0] is not None
        }
        if facts.get("format") != FORMAT or not facts.get("site_id"):
            raise InputError(
                "the 'about' sheet does not describe a cartreg query workbook",
                where=str(path),
                hint=f"send back the query workbook you were given ({_GIVEN})",
            )
        rows = list(islice(book[SHEET].iter_rows(values_only=True), MAX_QUERY_ROWS + 2))
        if len(rows) > MAX_QUERY_ROWS + 1:
            raise InputError(
                f"sheet '{SHEET}' has more than {MAX_QUERY_ROWS:,} rows: not a query workbook",
                where=str(path),
                hint=f"send back the query workbook you were given ({_GIVEN})",
            )
    except (*ZIP_ENTRY_DAMAGE, KeyError, SyntaxError) as exc:
        # read-only sheets are unpacked and parsed while their rows are read (SyntaxError:
        # the XML parsers' errors)
        raise unreadable(exc) from None
    finally:
        book.close()
    if not rows:
        raise InputError(f"sheet '{SHEET}' is empty", where=str(path))
    names = [_text(c) for c in rows[0]]
    for needed in ("query_id", RESPONSE, COMMENT):
        if needed not in names:
            raise InputError(f"sheet '{SHEET}' has no column '{needed}'", where=str(path))
    at = {name: names.index(name) for name in ("query_id", RESPONSE, COMMENT)}
    records: list[dict[str, str | None]] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):  # a few hundred answered rows at most
        cells = list(row) + [None] * (len(names) - len(row))
        query_id = _text(cells[at["query_id"]])
        if query_id is None:
            continue
        query_id = query_id.lstrip("'")
        if query_id in seen:
            raise InputError(
                f"query {query_id} appears twice (rows {seen[query_id]} and {number})",
                where=f"{path}: {SHEET}",
            )
        seen[query_id] = number
        response = _response_code(
            _text(cells[at[RESPONSE]]), f"{path}: {SHEET} row {number}, column {RESPONSE}"
        )
        comment = _text(cells[at[COMMENT]])
        if response is None and comment is None:
            continue
        records.append({"query_id": query_id, "response": response, "comment": comment})
    frame = pl.DataFrame(
        records, schema={"query_id": pl.String, "response": pl.String, "comment": pl.String}
    )
    return Answers(str(facts["site_id"]), str(facts.get("registry_id") or ""), frame, tuple(seen))


def check_workbook(
    registry: Registry, answers: Answers, path: Path | str, *, site: str | None = None
) -> None:
    """Refuse a workbook from another registry or site, or naming queries it should not."""
    where = str(path)
    if answers.registry_id != registry_id(registry):
        raise InputError(
            "the workbook was exported from another registry",
            where=where,
            hint=f"import it into the registry it came from, not {registry.path}",
        )
    if site is not None and answers.site_id != site:
        raise InputError(
            f"the workbook is for site {answers.site_id}, not {site}",
            where=where,
            hint="check --site, or import the site's own workbook",
        )
    ids = list(answers.query_ids)
    if not ids:
        return
    known = registry.frame(
        "SELECT query_id FROM queries WHERE query_id IN (SELECT unnest(?)) AND site_id = ?",
        [ids, answers.site_id],
    )
    # Another site's query id reads exactly like one that does not exist: the answer must not
    # tell a site user which ids other sites have.
    unknown = sorted(set(ids) - set(known["query_id"].to_list()))
    if unknown:
        raise InputError(
            f"query id {unknown[0]} is not a query of site {answers.site_id} in this registry"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
            where=where,
            hint="was the query id edited? export a fresh workbook (it holds one site's queries)",
        )
