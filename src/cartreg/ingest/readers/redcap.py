"""REDCap exports: flat raw/label CSV plus the project's data dictionary.

* With a data dictionary, coded radio/dropdown/yesno/truefalse values of a *raw* export are
  decoded to their labels (``"1, Yes | 0, No"``), so the CDM vocabularies and site overrides see
  the words a person sees; values that are not choice codes (missing-data codes such as ``UNK``)
  are left as they are for the sentinel step.
* Checkbox fields stay as ``field___code`` columns; a mapping rule turns them into one row per
  ticked choice (``checkbox:``), using the dictionary's labels. Decoded like the other coded
  fields, their ``1``/``0`` become ``Checked``/``Unchecked`` (what a label export writes), so
  a single checkbox column maps to a yes/no column directly.
* Rows of a repeating instrument are a record set of their own: their ``source_file`` is
  ``export.csv#<instrument>`` and a mapping rule selects them with ``where:``.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from cartreg.errors import InputError
from cartreg.ingest.readers.base import ReadResult
from cartreg.ingest.readers.csv import read_csv_text

REDCAP_COLUMNS = (
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
)
# Data-dictionary headers as the web UI exports them -> API names.
_DICTIONARY_HEADERS = {
    "variable / field name": "field_name",
    "form name": "form_name",
    "field type": "field_type",
    "field label": "field_label",
    "choices, calculations, or slider labels": "select_choices_or_calculations",
    "identifier?": "identifier",
    "text validation type or show slider number": "text_validation_type_or_show_slider_number",
}
_FIXED_CHOICES = {
    "yesno": {"1": "Yes", "0": "No"},
    "truefalse": {"1": "True", "0": "False"},
}
_CODED_TYPES = ("radio", "dropdown", "yesno", "truefalse", "checkbox")
# The two values of every checkbox column, raw code -> label (as a label export writes them).
CHECKBOX_CHOICES = {"1": "Checked", "0": "Unchecked"}


def parse_choices(text: str | None) -> dict[str, str]:
    """``"1, Yes | 0, No"`` -> ``{"1": "Yes", "0": "No"}`` (labels may contain commas)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in re.split(r"\s*\|\s*", text.strip()):
        code, sep, label = part.partition(",")
        if sep and code.strip():
            out[code.strip()] = label.strip()
    return out


def read_dictionary(path: Path) -> pl.DataFrame:
    """The data dictionary with API column names (field_name, form_name, field_type, …)."""
    frame = read_csv_text(path).frame
    renamed = {c: _DICTIONARY_HEADERS.get(c.strip().lower(), c) for c in frame.columns}
    frame = frame.rename(renamed)
    if "field_name" not in frame.columns or "field_type" not in frame.columns:
        raise InputError(
            f"{path}: not a REDCap data dictionary (no 'Variable / Field Name' / 'Field Type')"
        )
    if "select_choices_or_calculations" not in frame.columns:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.String).alias("select_choices_or_calculations")
        )
    return frame


def dictionary_choices(dictionary: pl.DataFrame) -> tuple[dict[str, dict[str, str]], set[str]]:
    """Choice labels per coded field, and the names of the checkbox fields."""
    coded = dictionary.filter(pl.col("field_type").str.to_lowercase().is_in(_CODED_TYPES))
    choices: dict[str, dict[str, str]] = {}
    checkboxes: set[str] = set()
    # One loop per coded field of the project (tens to hundreds), not per data row.
    for name, ftype, text in coded.select(
        "field_name", pl.col("field_type").str.to_lowercase(), "select_choices_or_calculations"
    ).iter_rows():
        choices[name] = _FIXED_CHOICES.get(ftype) or parse_choices(text)
        if ftype == "checkbox":
            checkboxes.add(name)
    return choices, checkboxes


def identifier_fields(dictionary: pl.DataFrame) -> set[str]:
    """Fields the project marked ``Identifier? = y``."""
    if "identifier" not in dictionary.columns:
        return set()
    flagged = dictionary.filter(pl.col("identifier").str.strip_chars().str.to_lowercase() == "y")
    return set(flagged["field_name"].to_list())


def read_redcap(
    path: Path,
    *,
    dictionary: Path | None = None,
    decode: bool = True,
    label: str | None = None,
) -> ReadResult:
    """Read a flat REDCap export; see the module docstring."""
    result = read_csv_text(path, label=label)
    frame = result.frame
    choices: dict[str, dict[str, str]] = {}
    if dictionary is not None:
        meta = read_dictionary(dictionary)
        choices, checkboxes = dictionary_choices(meta)
        if decode:
            decoded = [
                pl.col(field).replace(mapping).alias(field)
                for field, mapping in choices.items()
                if field in frame.columns and field not in checkboxes and mapping
            ]
            decoded += [
                pl.col(column).replace(CHECKBOX_CHOICES).alias(column)
                for column in frame.columns
                if column.partition("___")[0] in checkboxes and "___" in column
            ]
            frame = frame.with_columns(decoded)
    if "redcap_repeat_instrument" in frame.columns:
        instrument = pl.col("redcap_repeat_instrument").str.strip_chars()
        frame = frame.with_columns(
            pl.when(instrument.str.len_chars() > 0)
            .then(pl.concat_str(pl.col("source_file"), pl.lit("#"), instrument))
            .otherwise(pl.col("source_file"))
            .alias("source_file")
        )
    return ReadResult(frame=frame, findings=result.findings, choices=choices)


def column_choices(column: str, choices: dict[str, dict[str, str]]) -> dict[str, str] | None:
    """Code -> label of a data column: a coded field's choices, or ``1``/``0`` ->
    ``Checked``/``Unchecked`` for a checkbox column ``field___code``; None for other columns."""
    if column in choices:
        return choices[column]
    field, sep, code = column.partition("___")
    if sep and code and field in choices:
        return CHECKBOX_CHOICES
    return None
