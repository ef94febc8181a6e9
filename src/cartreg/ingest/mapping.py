"""The per-site mapping: declarations only (which source feeds which CDM column, and how).

The YAML shape is defined once, as the JSON Schema in :data:`MAPPING_SCHEMA` (published as
``schemas/mapping.schema.json`` for editor completion). The loader takes its allowed keys from that
schema, then checks what a schema cannot: CDM tables and columns exist, override terms exist in
their vocabulary, sources referenced by a rule are declared. Every problem is a one-line
ConfigError naming the mapping file and the YAML key, with a "did you mean" where one is close.
Source column names are checked later, against the files, by :func:`check_source_columns`.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartreg.cdm.model import CDM, TableSpec, version_parts
from cartreg.errors import ConfigError, did_you_mean
from cartreg.ingest.limits import MAX_MAPPING_FILE_BYTES, size_text
from cartreg.ingest.transforms.dates import (
    DATE_FORMATS,
    DEFAULT_DATE_FORMATS,
    STRPTIME_PATTERN,
    strptime_problem,
)
from cartreg.ingest.transforms.sentinels import DEFAULT_SENTINELS
from cartreg.vocab import Vocabulary
from cartreg.yamlio import load_yaml

READERS = ("csv", "tsv", "excel", "json", "ndjson", "parquet", "redcap", "fhir")
_EXTENSION_READERS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
}
SITE_ID_PATTERN = r"^[A-Z][A-Z0-9_]{1,15}$"
# Ranges of numeric options: a scale of 0 would turn every number into 0 (birth year 0).
SCALE_RANGE = (1e-12, 1e12)
MAX_HEADER_ROW = 1_048_576
MAX_WINDOW_DAYS = 36_500
RELATIONS = ("last_before", "first_after", "nearest")

_STRINGS = {"type": "array", "items": {"type": "string"}}
_FORMATS = {
    "type": "array",
    "items": {
        "anyOf": [{"enum": list(DATE_FORMATS)}, {"type": "string", "pattern": STRPTIME_PATTERN}]
    },
    "description": (
        "Date formats to try: ISO, DMY, MDY, MY (03.2021), Y, EXCEL, EXCEL1904 "
        "or a strptime pattern."
    ),
}
_CONDITION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["column"],
    "properties": {
        "column": {"type": "string", "description": "Source column tested."},
        "equals": {"type": "string"},
        "in": _STRINGS,
        "not_in": _STRINGS,
        "is_null": {"type": "boolean"},
        "contains": {
            "anyOf": [{"type": "string"}, _STRINGS],
            "description": (
                "The cell is a list (JSON array, or text split at , ; |) holding one of these "
                "values (case-insensitive)."
            ),
        },
    },
}
_PATIENT_ID = {
    "anyOf": [
        {"type": "string", "description": "Column with the local patient id."},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "extract"],
            "properties": {
                "from": {"type": "string"},
                "extract": {
                    "type": "string",
                    "description": "Regular expression whose first group is the id "
                    "(Patient/(.+) for a FHIR reference).",
                },
            },
        },
    ]
}
_LOOKUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["value", "date"],
    "description": (
        "The value of a related row of the same patient, found by date: the last one before, "
        "the first one after, or the nearest one to a date of this rule's row."
    ),
    "properties": {
        "source": {"type": "string", "description": "Source of the related rows (default: own)."},
        "patient_id": _PATIENT_ID,
        "where": {"type": "array", "items": _CONDITION},
        "value": {"type": "string", "description": "Column of the related row giving the value."},
        "date": {"type": "string", "description": "Column of the related row with its date."},
        "formats": _FORMATS,
        "last_before": {"type": "string", "description": "A date column of this rule."},
        "first_after": {"type": "string", "description": "A date column of this rule."},
        "nearest": {"type": "string", "description": "A date column of this rule."},
        "within_days": {"type": "integer", "minimum": 0, "maximum": MAX_WINDOW_DAYS},
    },
}
_SEPARATORS = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}
_COLUMN: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "description": "Shorthand for {from: <source column>}."},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "from": {"type": "string", "description": "Source column (after reshaping)."},
                "value": {
                    "type": ["string", "number", "boolean"],
                    "description": "Constant value.",
                },
                "map": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "null"]},
                    "description": (
                        "Site spellings or local codes -> CDM vocabulary code; null means "
                        "'no value' (e.g. false -> no qualifier), without a finding."
                    ),
                },
                "otherwise": {
                    "type": ["string", "null"],
                    "description": (
                        "CDM code for any other value (not a term, override or map key); "
                        "null leaves other values empty on purpose, without a finding."
                    ),
                },
                "contains": {
                    "anyOf": [{"type": "string"}, _STRINGS],
                    "description": (
                        "Yes/no column: Y when the list in 'from' (JSON array, or text split at "
                        ", ; |) holds one of these values, N when it does not, empty when empty."
                    ),
                },
                "formats": _FORMATS,
                "sentinels": _STRINGS,
                "decimal": {"enum": [".", ",", "auto"]},
                "unit": {
                    "enum": ["percent", "fraction"],
                    "description": "Unit of numbers without a % sign.",
                },
                "part": {"enum": ["year"], "description": "Keep only the year of a date."},
                "code": {
                    "anyOf": [{"type": "string"}, _STRINGS],
                    "description": (
                        "Pivot: take the value only from rows whose pivot code is one of these."
                    ),
                },
                "extract": {
                    "type": "string",
                    "description": (
                        "Regular expression (polars syntax) whose first group is the value."
                    ),
                },
                "split": {
                    **_SEPARATORS,
                    "description": "Literal separator(s): one row per part of the cell.",
                },
                "cell": {
                    "type": "string",
                    "description": (
                        "A single cell outside the table: A1 for a CSV or sheet title row, "
                        "a dotted path for a JSON document."
                    ),
                },
                "lookup": _LOOKUP,
                "scale": {
                    "type": "number",
                    "minimum": SCALE_RANGE[0],
                    "maximum": SCALE_RANGE[1],
                    "description": "Multiply numbers by this (1000000 for doses in millions).",
                },
            },
        },
    ]
}
MAPPING_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://cartreg.org/schemas/mapping.schema.json",
    "title": "cartreg site mapping",
    "description": "How one site's export files become CDM tables. See docs/mapping.md.",
    "type": "object",
    "additionalProperties": False,
    "required": ["mapping_version", "site_id", "sources", "tables"],
    "properties": {
        "mapping_version": {"type": "string", "description": "Version of this mapping file."},
        "site_id": {"type": "string", "pattern": SITE_ID_PATTERN},
        "cdm_version": {
            "type": "string",
            "description": "CDM version the mapping was written for.",
        },
        "description": {"type": "string"},
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "date_formats": _FORMATS,
                "sentinels": _STRINGS,
                "decimal": {"enum": [".", ",", "auto"]},
            },
        },
        "vocabulary_overrides": {
            "type": "object",
            "description": "Per vocabulary: site spelling -> CDM code, for every column using it.",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "sources": {
            "type": "object",
            "minProperties": 1,
            "description": "Named source record sets.",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "description": "Path relative to the submission folder.",
                    },
                    "reader": {"enum": list(READERS)},
                    "sheet": {"type": "string"},
                    "header_row": {"type": "integer", "minimum": 1, "maximum": MAX_HEADER_ROW},
                    "delimiter": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 1,
                        "not": {"enum": ['"', "\n", "\r"]},
                        "description": "One character; leave it out to detect it.",
                    },
                    "encoding": {"type": "string", "description": "A Python codec name."},
                    "dictionary": {"type": "string", "description": "REDCap data dictionary CSV."},
                    "decode": {
                        "type": "boolean",
                        "description": "Decode REDCap choice codes to labels.",
                    },
                    "records": {
                        "type": "string",
                        "description": "JSON key holding the record array.",
                    },
                    "resource": {
                        "type": "string",
                        "description": "FHIR: the resourceType read from the bundle.",
                    },
                    "patient_id": _PATIENT_ID,
                    "allow_identifiers": {
                        **_STRINGS,
                        "description": "Identifier-like columns the site allows to be copied.",
                    },
                },
            },
        },
        "tables": {
            "type": "object",
            "minProperties": 1,
            "description": "CDM table -> list of rules, each feeding it from one source.",
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["source", "columns"],
                    "properties": {
                        "source": {"type": "string"},
                        "patient_id": _PATIENT_ID,
                        "where": {"type": "array", "items": _CONDITION},
                        "key": {
                            "type": "array",
                            "items": {"type": "string"},
                            "minItems": 1,
                            "description": (
                                "Rows with equal values of these CDM columns (or source columns) "
                                "of one patient are one CDM row, across every rule of the table "
                                "declaring a key. patient_key alone for patients and follow_up."
                            ),
                        },
                        "pivot": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["code"],
                            "properties": {
                                "code": {"type": "string", "description": "Column of codes."},
                                "value": {
                                    "type": "string",
                                    "description": "Column of values (default for code: columns).",
                                },
                            },
                        },
                        "join": {
                            "type": "object",
                            "description": (
                                "name -> the row of another source this row refers to; its "
                                "columns are read as <name>.<column>."
                            ),
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["source", "from"],
                                "properties": {
                                    "source": {"type": "string"},
                                    "from": {
                                        "type": "string",
                                        "description": "Column of this row (a FHIR reference).",
                                    },
                                    "to": {
                                        "type": "string",
                                        "description": (
                                            "Column of the other source (default for FHIR: "
                                            "the resource's Type/id)."
                                        ),
                                    },
                                },
                            },
                        },
                        "after_index_infusion": {
                            "type": "boolean",
                            "description": (
                                "Keep only rows dated on or after the index CAR T infusion."
                            ),
                        },
                        "explode": {
                            "anyOf": [
                                {"type": "string", "minLength": 1},
                                {**_STRINGS, "minItems": 1, "uniqueItems": True},
                            ],
                            "description": (
                                "Array column(s), exploded in order: one row per element."
                            ),
                        },
                        "unpivot": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["pattern"],
                            "properties": {
                                "pattern": {
                                    "type": "string",
                                    "description": "Regex with groups (?P<index>) and (?P<field>).",
                                },
                                "index": {
                                    "type": "string",
                                    "description": "Name of the group-index column.",
                                },
                            },
                        },
                        "checkbox": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["field", "into"],
                            "properties": {"field": {"type": "string"}, "into": {"type": "string"}},
                        },
                        "columns": {"type": "object", "additionalProperties": _COLUMN},
                    },
                },
            },
        },
    },
}


def _keys(schema: Mapping[str, Any]) -> set[str]:
    return set(schema.get("properties", {}))


_TOP_KEYS = _keys(MAPPING_SCHEMA)
_DEFAULT_KEYS = _keys(MAPPING_SCHEMA["properties"]["defaults"])
_SOURCE_KEYS = _keys(MAPPING_SCHEMA["properties"]["sources"]["additionalProperties"])
_RULE_SCHEMA: dict[str, Any] = MAPPING_SCHEMA["properties"]["tables"]["additionalProperties"][
    "items"
]
_RULE_KEYS = _keys(_RULE_SCHEMA)
_CONDITION_KEYS = _keys(_CONDITION)
_COLUMN_KEYS = _keys(_COLUMN["anyOf"][1])
# Where a column's value comes from: exactly one of these (or a pivot code alone).
_VALUE_SOURCES = ("from", "value", "cell", "lookup")
_LOOKUP_KEYS = _keys(_LOOKUP)
_JOIN_KEYS = _keys(_RULE_SCHEMA["properties"]["join"]["additionalProperties"])
_PIVOT_KEYS = _keys(_RULE_SCHEMA["properties"]["pivot"])


@dataclass(frozen=True)
class ColumnRule:
    """How one CDM column is filled by one rule."""

    target: str
    key: str
    source: str | None = None
    value: str | None = None
    map: Mapping[str, str] = field(default_factory=dict)
    null_values: tuple[str, ...] = ()
    formats: tuple[str, ...] | None = None
    sentinels: tuple[str, ...] | None = None
    decimal: str | None = None
    unit: str | None = None
    part: str | None = None
    scale: float | None = None
    # ``otherwise:`` given (its code, or None to leave other values empty on purpose)
    has_otherwise: bool = False
    otherwise: str | None = None
    contains: tuple[str, ...] | None = None
    # pivot: the value only from rows whose pivot code is one of these
    code: tuple[str, ...] | None = None
    extract: str | None = None
    split: tuple[str, ...] | None = None
    cell: str | None = None
    lookup: Lookup | None = None
    # what messages call the value's origin when ``source`` is an internal column
    shown: str | None = None


@dataclass(frozen=True)
class Condition:
    column: str
    key: str
    equals: str | None = None
    any_of: tuple[str, ...] | None = None
    none_of: tuple[str, ...] | None = None
    is_null: bool | None = None
    contains: tuple[str, ...] | None = None

    @property
    def values(self) -> tuple[str, ...]:
        """The values the condition compares cells with (none for ``is_null``)."""
        if self.equals is not None:
            return (self.equals,)
        return self.any_of or self.none_of or self.contains or ()


@dataclass(frozen=True)
class Lookup:
    """A column's value taken from a related row of the same patient (``lookup:``)."""

    key: str
    source: str
    patient_id: str
    patient_id_extract: str | None
    value: str
    date: str
    relation: str  # one of RELATIONS
    anchor: str  # a date (or day offset) target of the rule
    within_days: int | None = None
    where: tuple[Condition, ...] = ()
    formats: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Join:
    """The row of another source a row refers to (``join:``); read as ``<name>.<column>``."""

    name: str
    key: str
    source: str
    column: str  # ``from``: the column of this row holding the reference or key
    to: str | None = None  # None: the FHIR resource's own reference (Type/id)


@dataclass(frozen=True)
class SourceSpec:
    name: str
    file: str
    reader: str
    key: str
    sheet: str | None = None
    header_row: int = 1
    delimiter: str | None = None
    encoding: str | None = None
    dictionary: str | None = None
    decode: bool = True
    records: str | None = None
    patient_id: str | None = None
    patient_id_extract: str | None = None
    allow_identifiers: tuple[str, ...] = ()
    resource: str | None = None  # FHIR resourceType

    @property
    def label(self) -> str:
        """How findings and messages name the source: ``file#sheet`` for a workbook sheet,
        ``file#Resource`` for the resources of a FHIR bundle."""
        if self.reader == "fhir":
            return f"{self.file}#{self.resource}"
        return f"{self.file}#{self.sheet}" if self.reader == "excel" and self.sheet else self.file


@dataclass(frozen=True)
class TableRule:
    table: str
    key: str
    source: str
    patient_id: str
    columns: Mapping[str, ColumnRule]
    where: tuple[Condition, ...] = ()
    explode: tuple[str, ...] = ()
    unpivot_pattern: str | None = None
    unpivot_index: str = "index"
    checkbox_field: str | None = None
    checkbox_into: str | None = None
    patient_id_extract: str | None = None
    # ``key:``: rows of every rule of the table with a key and equal key values are one CDM row.
    combine_key: tuple[str, ...] | None = None
    pivot_code: str | None = None
    pivot_value: str | None = None
    joins: tuple[Join, ...] = ()
    after_index_infusion: bool = False

    @property
    def splits(self) -> ColumnRule | None:
        """The column whose cells are split into one row per part, if any."""
        return next((c for c in self.columns.values() if c.split), None)

    def key_items(self) -> list[tuple[str, bool]]:
        """(name, is_target) per key item: a CDM column the rule maps, or a source column."""
        return [(k, k in self.columns or k == "patient_key") for k in self.combine_key or ()]


@dataclass(frozen=True)
class SiteMapping:
    """A loaded, checked site mapping."""

    path: Path
    site_id: str
    mapping_version: str
    cdm_version: str | None
    date_formats: tuple[str, ...]
    sentinels: tuple[str, ...]
    decimal: str
    vocabulary_overrides: Mapping[str, Mapping[str, str]]
    sources: Mapping[str, SourceSpec]
    tables: Mapping[str, tuple[TableRule, ...]]

    def vocabulary(self, cdm: CDM, name: str, column: ColumnRule | None = None) -> Vocabulary:
        """The CDM vocabulary with this site's overrides (mapping-wide, then the column's)."""
        vocab = cdm.vocabularies[name]
        overrides = self.vocabulary_overrides.get(name)
        if overrides:
            vocab = vocab.with_overrides(overrides, source=str(self.path))
        if column is not None and column.map:
            vocab = vocab.with_overrides(column.map, source=f"{self.path}: {column.key}.map")
        return vocab


def _fail(path: Path, key: str, message: str, hint: str = "") -> ConfigError:
    return ConfigError(message, path=path, key=key, hint=hint)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], path: Path, where: str) -> None:
    for k in raw:
        if k not in allowed:
            loc = f"{where}.{k}" if where else str(k)
            hint = did_you_mean(str(k), allowed) or f"allowed: {', '.join(sorted(allowed))}"
            raise _fail(path, loc, f"unknown key '{k}'", hint)


def _mapping(raw: Any, path: Path, key: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(path, key, "must be a mapping (key: value lines)")
    return raw


def _str(raw: Any, path: Path, key: str) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _fail(path, key, f"must be a text value, got {type(raw).__name__}")
    return str(raw)


def _bool(raw: Any, path: Path, key: str) -> bool:
    """A YAML boolean: ``true``/``false`` unquoted. A string such as ``'no'`` is an error
    (Python would read every non-empty string as true)."""
    if not isinstance(raw, bool):
        raise _fail(path, key, f"must be true or false (unquoted), got {_shown(raw)}")
    return raw


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _key_text(raw: Any, path: Path, key: str) -> str:
    """A YAML key where a site spelling is written (``map``, ``vocabulary_overrides``): text or
    a number. ``true``/``false``/``null`` keys would become Python's ``True``/``None``, which
    no cell holds: they must be quoted."""
    if isinstance(raw, bool) or raw is None:
        raise _fail(
            path,
            key,
            f"the key {_shown(raw)} is a YAML {'boolean' if raw is not None else 'null'}",
            f'quote it: "{str(raw).lower() if raw is not None else "null"}"',
        )
    return str(raw)


def _optional(
    data: Mapping[str, Any],
    name: str,
    kind: type[list[Any]] | type[dict[str, Any]],
    path: Path,
    key: str,
) -> Any:
    """An optional list or mapping under ``name``: missing or empty (``name:``) is empty, any
    other type an error (``where: 0`` was read as no condition)."""
    raw = data.get(name)
    if raw is None:
        return kind()
    if not isinstance(raw, kind):
        what = "a list" if kind is list else "a mapping (key: value lines)"
        raise _fail(path, f"{key}.{name}" if key else name, f"must be {what}, got {_shown(raw)}")
    return raw


def _str_list(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise _fail(path, key, "must be a list")
    return tuple(_str(v, path, f"{key}[{i}]") for i, v in enumerate(raw))


def _formats(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    formats = _str_list(raw, path, key)
    for i, fmt in enumerate(formats):
        if fmt in DATE_FORMATS:
            continue
        problem = strptime_problem(fmt) if "%" in fmt else None
        if problem is not None:
            raise _fail(
                path,
                f"{key}[{i}]",
                f"invalid date pattern '{fmt[:40]}': {problem}",
                "see docs/mapping.md, Dates",
            )
        if "%" not in fmt:
            hint = (
                did_you_mean(fmt, DATE_FORMATS)
                or f"use {', '.join(DATE_FORMATS)} or a strptime pattern"
            )
            raise _fail(path, f"{key}[{i}]", f"unknown date format '{fmt[:40]}'", hint)
    return formats


def _choice(raw: Any, allowed: Iterable[str], path: Path, key: str) -> str:
    options = tuple(allowed)
    text = _str(raw, path, key)
    if text not in options:
        raise _fail(
            path, key, f"'{text}' is not one of {', '.join(options)}", did_you_mean(text, options)
        )
    return text


def _load_source(name: str, raw: Any, path: Path) -> SourceSpec:
    key = f"sources.{name}"
    data = _mapping(raw, path, key)
    _check_keys(data, _SOURCE_KEYS, path, key)
    if "file" not in data:
        raise _fail(path, f"{key}.file", "a source needs 'file'")
    file = _str(data["file"], path, f"{key}.file")
    reader = data.get("reader")
    if reader is None:
        reader = _EXTENSION_READERS.get(Path(file).suffix.lower())
        if reader is None:
            raise _fail(
                path,
                f"{key}.reader",
                f"cannot tell the reader from '{file}'",
                f"set reader: one of {', '.join(READERS)}",
            )
    reader = _choice(reader, READERS, path, f"{key}.reader")
    header_row = data.get("header_row", 1)
    if (
        isinstance(header_row, bool)
        or not isinstance(header_row, int)
        or not 1 <= header_row <= MAX_HEADER_ROW
    ):
        raise _fail(path, f"{key}.header_row", f"must be a row number from 1 to {MAX_HEADER_ROW:,}")
    decode = _bool(data.get("decode", True), path, f"{key}.decode")
    if reader == "redcap" and "dictionary" not in data and "decode" in data and decode:
        raise _fail(path, f"{key}.decode", "decoding REDCap choices needs 'dictionary'")
    opt = {
        k: _str(data[k], path, f"{key}.{k}")
        for k in ("sheet", "delimiter", "encoding", "dictionary", "records", "resource")
        if k in data
    }
    delimiter = opt.get("delimiter")
    if delimiter is not None and (len(delimiter) != 1 or delimiter in ('"', "\n", "\r")):
        raise _fail(
            path,
            f"{key}.delimiter",
            f"must be one character other than a quote or line break, got {_shown(delimiter)}",
            "e.g. ';' or '\\t'; leave it out to detect it",
        )
    if "encoding" in opt:
        try:
            codec = codecs.lookup(opt["encoding"])
        except LookupError:
            raise _fail(
                path,
                f"{key}.encoding",
                f"unknown encoding {_shown(opt['encoding'])}",
                "e.g. utf-8, cp1252, latin-1; leave it out to detect it",
            ) from None
        if codec.name in _REWRITING_CODECS or not getattr(codec, "_is_text_encoding", True):
            raise _fail(
                path,
                f"{key}.encoding",
                f"{_shown(opt['encoding'])} is not a character set a file is saved in (it would "
                "rewrite the text read)",
                "e.g. utf-8, cp1252, latin-1; leave it out to detect it",
            )
    if reader == "fhir" and "resource" not in opt:
        raise _fail(
            path,
            f"{key}.resource",
            "a fhir source reads one resourceType of the bundle",
            "e.g. resource: Observation",
        )
    if "resource" in opt and reader != "fhir":
        raise _fail(path, f"{key}.resource", "'resource' selects resources of a FHIR bundle")
    patient_id, patient_extract = (
        _patient_id(data["patient_id"], path, f"{key}.patient_id")
        if "patient_id" in data
        else (None, None)
    )
    return SourceSpec(
        name=name,
        file=file,
        reader=reader,
        key=key,
        header_row=header_row,
        decode=decode,
        patient_id=patient_id,
        patient_id_extract=patient_extract,
        allow_identifiers=_str_list(
            data.get("allow_identifiers", []), path, f"{key}.allow_identifiers"
        ),
        delimiter="\t" if reader == "tsv" and "delimiter" not in opt else opt.get("delimiter"),
        **{k: v for k, v in opt.items() if k != "delimiter"},
    )


def _patient_id(raw: Any, path: Path, key: str) -> tuple[str, str | None]:
    """``patient_id: column`` or ``{from: column, extract: regex}``."""
    if not isinstance(raw, dict):
        return _str(raw, path, key), None
    _check_keys(raw, {"from", "extract"}, path, key)
    if set(raw) != {"from", "extract"}:
        raise _fail(path, key, "give 'from' (a column) and 'extract' (a regular expression)")
    return _str(raw["from"], path, f"{key}.from"), _extract(raw["extract"], path, f"{key}.extract")


def _extract(raw: Any, path: Path, key: str) -> str:
    """A regular expression polars can run, with a group giving the value."""
    pattern = _str(raw, path, key)
    problem = regex_problem(pattern)
    if problem:
        raise _fail(
            path,
            key,
            f"invalid regular expression: {problem}",
            'docs/mapping.md, "Split, extract, single cells"',
        )
    return pattern


def regex_problem(pattern: str) -> str | None:
    """Why polars cannot extract a value with ``pattern`` (None when it can)."""
    import polars as pl

    try:
        groups = pl.Series([""], dtype=pl.String).str.extract_groups(pattern).struct.fields
    except pl.exceptions.PolarsError as exc:
        # The regex crate's message spans lines; its "error: …" line says what is wrong.
        lines = [line.strip() for line in str(exc).splitlines()]
        why = next((line for line in lines if line.startswith("error:")), lines[0] if lines else "")
        return why.removeprefix("error:").strip()[:120]
    if not groups:
        return "it needs a group in parentheses: the group is the value, e.g. \\((\\d+)%\\)"
    return None


def _target_columns(table: TableSpec) -> dict[str, str]:
    """CDM columns a mapping may fill: declared columns and ``*_day`` offsets."""
    return {c.name: c.role for c in table.columns if c.role in ("declared", "day_offset")}


def _load_column(
    target: str, raw: Any, table: TableSpec, cdm: CDM, path: Path, key: str
) -> ColumnRule:
    allowed = _target_columns(table)
    if target not in allowed:
        hint = (
            did_you_mean(target, list(allowed)) or f"columns of {table.name}: {', '.join(allowed)}"
        )
        raise _fail(path, key, f"'{target}' is not a column of CDM table {table.name}", hint)
    if isinstance(raw, str):
        return ColumnRule(target=target, key=key, source=raw)
    data = _mapping(raw, path, key)
    _check_keys(data, _COLUMN_KEYS, path, key)
    given = [k for k in _VALUE_SOURCES if k in data]
    if len(given) > 1 or (not given and "code" not in data):
        raise _fail(
            path,
            key,
            "give exactly one of 'from' (a source column), 'value' (a constant), 'cell' "
            "(a cell outside the table) or 'lookup' (a related row)"
            + (f"; got {' and '.join(given)}" if given else ""),
        )
    spec = table.column(target)
    vocab_name = spec.vocabulary or "yes_no_unknown"
    vocab = cdm.vocabularies[vocab_name]

    def check_code(code: Any, where: str) -> None:
        code_text = _str(code, path, where)
        if code_text not in vocab.codes:
            hint = did_you_mean(code_text, vocab.codes) or f"terms: {', '.join(vocab.codes)}"
            raise _fail(
                path, where, f"'{code_text}' is not a term of vocabulary '{vocab_name}'", hint
            )

    for option in ("map", "otherwise"):
        if option in data and spec.vocabulary is None and spec.dtype != "boolean":
            raise _fail(
                path,
                f"{key}.{option}",
                f"'{target}' is not a coded column; '{option}' applies to coded columns",
            )
    if "map" in data:
        overrides = _mapping(data["map"], path, f"{key}.map")
        for raw_value, code in overrides.items():
            _key_text(raw_value, path, f"{key}.map")
            if code is not None:
                check_code(code, f"{key}.map.{raw_value}")
    if data.get("otherwise") is not None:
        check_code(data["otherwise"], f"{key}.otherwise")
    contains = None
    if "contains" in data:
        if vocab_name != "yes_no_unknown":
            raise _fail(
                path,
                f"{key}.contains",
                f"'contains' fills yes/no columns (Y/N); '{target}' is not one",
                "map each value to its own yes/no column, or use 'contains' in a where",
            )
        if "from" not in data:
            raise _fail(path, f"{key}.contains", "'contains' reads the list in 'from'")
        contains = _str_values(data["contains"], path, f"{key}.contains")
    if "formats" in data and spec.dtype != "date":
        raise _fail(path, f"{key}.formats", f"'{target}' is not a date column")
    if "part" in data and spec.dtype != "integer":
        raise _fail(
            path, f"{key}.part", f"'part: year' fills an integer column, '{target}' is {spec.dtype}"
        )
    value = data.get("value")
    if "value" in data and (value is None or not isinstance(value, str | int | float)):
        raise _fail(
            path, f"{key}.value", f"a constant is text, a number or true/false, got {_shown(value)}"
        )
    scale = data.get("scale")
    if scale is not None:
        if spec.dtype not in ("integer", "float") or isinstance(scale, bool):
            raise _fail(
                path,
                f"{key}.scale",
                f"'scale' applies to number columns, '{target}' is {spec.dtype}",
            )
        if not isinstance(scale, int | float):
            raise _fail(path, f"{key}.scale", f"must be a number, got {_shown(scale)}")
        if not (math.isfinite(scale) and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]):
            raise _fail(
                path,
                f"{key}.scale",
                f"must be between {SCALE_RANGE[0]:g} and {SCALE_RANGE[1]:g}, got {scale:g}",
                "e.g. 1000000 for doses exported in millions",
            )
    split = None
    if "split" in data:
        split = _str_values(data["split"], path, f"{key}.split")
        if any(not part for part in split):
            raise _fail(path, f"{key}.split", "a separator cannot be empty")
    return ColumnRule(
        target=target,
        key=key,
        source=_str(data["from"], path, f"{key}.from") if "from" in data else None,
        code=_str_values(data["code"], path, f"{key}.code") if "code" in data else None,
        extract=_extract(data["extract"], path, f"{key}.extract") if "extract" in data else None,
        split=split,
        cell=_str(data["cell"], path, f"{key}.cell") if "cell" in data else None,
        lookup=_load_lookup(data["lookup"], path, f"{key}.lookup") if "lookup" in data else None,
        value=None
        if value is None
        else (str(value).lower() if isinstance(value, bool) else str(value)),
        map={str(k): str(v) for k, v in (data.get("map") or {}).items() if v is not None},
        null_values=tuple(str(k) for k, v in (data.get("map") or {}).items() if v is None),
        formats=_formats(data["formats"], path, f"{key}.formats") if "formats" in data else None,
        sentinels=_str_list(data["sentinels"], path, f"{key}.sentinels")
        if "sentinels" in data
        else None,
        decimal=_choice(data["decimal"], (".", ",", "auto"), path, f"{key}.decimal")
        if "decimal" in data
        else None,
        unit=_choice(data["unit"], ("percent", "fraction"), path, f"{key}.unit")
        if "unit" in data
        else None,
        part=_choice(data["part"], ("year",), path, f"{key}.part") if "part" in data else None,
        scale=None if scale is None else float(scale),
        has_otherwise="otherwise" in data,
        otherwise=None if data.get("otherwise") is None else str(data["otherwise"]),
        contains=contains,
    )


def _str_values(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    """One text value or a non-empty list of them."""
    values = _str_list(raw, path, key) if isinstance(raw, list) else (_str(raw, path, key),)
    if not values:
        raise _fail(path, key, "give at least one value")
    return values


def _explode(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    paths = _str_list(raw, path, key) if isinstance(raw, list) else (_str(raw, path, key),)
    if not paths or any(not p for p in paths):
        raise _fail(path, key, "name the array column(s) to explode")
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise _fail(
            path, key, f"'{repeated[0][:40]}' is listed twice", "list each array once, outer first"
        )
    return paths


def _load_rule(
    table: TableSpec, index: int, raw: Any, sources: Mapping[str, SourceSpec], cdm: CDM, path: Path
) -> TableRule:
    key = f"tables.{table.name}[{index}]"
    data = _mapping(raw, path, key)
    _check_keys(data, _RULE_KEYS, path, key)
    source_name = _str(data.get("source", ""), path, f"{key}.source")
    if source_name not in sources:
        hint = did_you_mean(source_name, list(sources)) or f"sources: {', '.join(sources)}"
        raise _fail(path, f"{key}.source", f"unknown source '{source_name}'", hint)
    source = sources[source_name]
    patient_id: str | None = source.patient_id
    patient_extract = source.patient_id_extract
    if "patient_id" in data:
        patient_id, patient_extract = _patient_id(data["patient_id"], path, f"{key}.patient_id")
    if patient_id is None:
        raise _fail(
            path,
            f"{key}.patient_id",
            "no patient id column",
            f"set patient_id here or on {source.key}",
        )
    conditions = _conditions(data.get("where"), path, f"{key}.where")
    columns_raw = _mapping(data.get("columns"), path, f"{key}.columns")
    columns = {
        str(t): _load_column(str(t), v, table, cdm, path, f"{key}.columns.{t}")
        for t, v in columns_raw.items()
    }
    pivot_code, pivot_value = _load_pivot(data.get("pivot"), path, f"{key}.pivot")
    columns = _resolve_columns(
        columns, table, cdm, sources, source, patient_id, patient_extract, pivot_value, path
    )
    if pivot_code is None and any(c.code for c in columns.values()):
        name = next(t for t, c in columns.items() if c.code)
        raise _fail(
            path,
            f"{key}.columns.{name}.code",
            "'code' takes the value of the rows with that code: declare the rule's pivot",
            "e.g. pivot: {code: <column of codes>, value: <column of values>}",
        )
    if pivot_code is not None and not any(c.code for c in columns.values()):
        raise _fail(
            path, f"{key}.pivot", "no column of this rule names a code", "e.g. {code: BM_BLAST}"
        )
    splits = [t for t, c in columns.items() if c.split]
    if len(splits) > 1:
        raise _fail(
            path, f"{key}.columns.{splits[1]}.split", "split one column per rule (rows multiply)"
        )
    rule_key = _load_key(data.get("key"), table, columns, pivot_code, path, f"{key}.key")
    joins = _load_joins(data.get("join"), sources, path, f"{key}.join")
    after_index = data.get("after_index_infusion", False)
    if not isinstance(after_index, bool):
        raise _fail(path, f"{key}.after_index_infusion", "must be true or false (unquoted)")
    if after_index and not _event_dates(table):
        raise _fail(
            path,
            f"{key}.after_index_infusion",
            f"{table.name} has no event date to compare with the index infusion",
        )
    unpivot = data.get("unpivot")
    pattern: str | None = None
    unpivot_index = "index"
    if unpivot is not None:
        udata = _mapping(unpivot, path, f"{key}.unpivot")
        _check_keys(udata, _keys(_RULE_SCHEMA["properties"]["unpivot"]), path, f"{key}.unpivot")
        pattern = _str(udata.get("pattern", ""), path, f"{key}.unpivot.pattern")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise _fail(
                path, f"{key}.unpivot.pattern", f"invalid regular expression: {exc}"
            ) from None
        if not {"index", "field"} <= set(compiled.groupindex):
            raise _fail(
                path, f"{key}.unpivot.pattern", "needs named groups (?P<index>…) and (?P<field>…)"
            )
        unpivot_index = _str(udata.get("index", "index"), path, f"{key}.unpivot.index")
    checkbox = data.get("checkbox")
    cb_field = cb_into = None
    if checkbox is not None:
        cdata = _mapping(checkbox, path, f"{key}.checkbox")
        _check_keys(cdata, {"field", "into"}, path, f"{key}.checkbox")
        if set(cdata) != {"field", "into"}:
            raise _fail(
                path,
                f"{key}.checkbox",
                "needs 'field' (the REDCap checkbox) and 'into' (a column name)",
            )
        cb_field = _str(cdata["field"], path, f"{key}.checkbox.field")
        cb_into = _str(cdata["into"], path, f"{key}.checkbox.into")
    explode = _explode(data.get("explode"), path, f"{key}.explode")
    reshapes = sum(x is not None for x in (data.get("explode"), unpivot, checkbox))
    if reshapes > 1:
        raise _fail(path, key, "use at most one of explode, unpivot, checkbox per rule")
    return TableRule(
        table=table.name,
        key=key,
        source=source_name,
        patient_id=patient_id,
        patient_id_extract=patient_extract,
        combine_key=rule_key,
        pivot_code=pivot_code,
        pivot_value=pivot_value,
        joins=joins,
        after_index_infusion=after_index,
        columns=columns,
        where=tuple(conditions),
        explode=explode,
        unpivot_pattern=pattern,
        unpivot_index=unpivot_index,
        checkbox_field=cb_field,
        checkbox_into=cb_into,
    )


def _conditions(raw: Any, path: Path, key: str) -> tuple[Condition, ...]:
    """A ``where`` list."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(path, key, f"must be a list, got {_shown(raw)}", "a list of conditions")
    conditions: list[Condition] = []
    for j, cond in enumerate(raw):
        ckey = f"{key}[{j}]"
        cdata = _mapping(cond, path, ckey)
        _check_keys(cdata, _CONDITION_KEYS, path, ckey)
        if "column" not in cdata or len(cdata) != 2:
            raise _fail(
                path,
                ckey,
                "a condition has 'column' and one of equals, in, not_in, is_null, contains",
            )
        conditions.append(
            Condition(
                column=_str(cdata["column"], path, f"{ckey}.column"),
                key=ckey,
                equals=_str(cdata["equals"], path, f"{ckey}.equals") if "equals" in cdata else None,
                any_of=_str_list(cdata["in"], path, f"{ckey}.in") if "in" in cdata else None,
                none_of=_str_list(cdata["not_in"], path, f"{ckey}.not_in")
                if "not_in" in cdata
                else None,
                is_null=_bool(cdata["is_null"], path, f"{ckey}.is_null")
                if "is_null" in cdata
                else None,
                contains=_str_values(cdata["contains"], path, f"{ckey}.contains")
                if "contains" in cdata
                else None,
            )
        )
    return tuple(conditions)


def _load_pivot(raw: Any, path: Path, key: str) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    data = _mapping(raw, path, key)
    _check_keys(data, _PIVOT_KEYS, path, key)
    if "code" not in data:
        raise _fail(path, f"{key}.code", "name the column holding each row's code")
    value = _str(data["value"], path, f"{key}.value") if "value" in data else None
    return _str(data["code"], path, f"{key}.code"), value


def _load_lookup(raw: Any, path: Path, key: str) -> Lookup:
    """A ``lookup:`` as written; its source and patient id are resolved by the rule."""
    data = _mapping(raw, path, key)
    _check_keys(data, _LOOKUP_KEYS, path, key)
    relations = [r for r in RELATIONS if r in data]
    if len(relations) != 1:
        raise _fail(
            path,
            key,
            "give one of last_before, first_after or nearest: a date column of this rule",
            "e.g. last_before: infusion_date",
        )
    for needed in ("value", "date"):
        if needed not in data:
            raise _fail(path, f"{key}.{needed}", f"name the related row's {needed} column")
    within = data.get("within_days")
    if within is not None and (
        isinstance(within, bool)
        or not isinstance(within, int)
        or not 0 <= within <= MAX_WINDOW_DAYS
    ):
        raise _fail(
            path, f"{key}.within_days", f"must be a whole number of days (0-{MAX_WINDOW_DAYS})"
        )
    relation = relations[0]
    if relation == "nearest" and within is None:
        raise _fail(path, f"{key}.within_days", "'nearest' needs a window", "e.g. within_days: 14")
    patient_id, extract = (
        _patient_id(data["patient_id"], path, f"{key}.patient_id")
        if "patient_id" in data
        else ("", None)
    )
    return Lookup(
        key=key,
        source=_str(data["source"], path, f"{key}.source") if "source" in data else "",
        patient_id=patient_id,
        patient_id_extract=extract,
        value=_str(data["value"], path, f"{key}.value"),
        date=_str(data["date"], path, f"{key}.date"),
        relation=relation,
        anchor=_str(data[relation], path, f"{key}.{relation}"),
        within_days=within,
        where=_conditions(data.get("where"), path, f"{key}.where"),
        formats=_formats(data["formats"], path, f"{key}.formats") if "formats" in data else None,
    )


def _resolve_columns(
    columns: dict[str, ColumnRule],
    table: TableSpec,
    cdm: CDM,
    sources: Mapping[str, SourceSpec],
    source: SourceSpec,
    patient_id: str,
    patient_extract: str | None,
    pivot_value: str | None,
    path: Path,
) -> dict[str, ColumnRule]:
    """Column rules completed with what the rule knows: the pivot's value column for
    ``{code: X}``, a lookup's source, patient id and anchor; cells checked against the reader."""
    out: dict[str, ColumnRule] = {}
    for target, col in columns.items():
        if col.code and col.source is None and col.value is None and col.cell is None:
            if col.lookup is not None:
                raise _fail(path, f"{col.key}.code", "a lookup finds its own row: drop 'code'")
            if pivot_value is None:
                raise _fail(
                    path,
                    col.key,
                    "say which column holds the value: 'from' here, or 'value' in the pivot",
                )
            col = dataclasses.replace(col, source=pivot_value)
        if col.cell is not None:
            _check_cell(col.cell, source, path, f"{col.key}.cell")
        if col.lookup is not None:
            lookup = _resolve_lookup(col.lookup, columns, table, sources, source, path)
            if not lookup.patient_id:  # the rule's own source: its patient id
                lookup = dataclasses.replace(
                    lookup, patient_id=patient_id, patient_id_extract=patient_extract
                )
            col = dataclasses.replace(col, lookup=lookup)
        out[target] = col
    return out


def _resolve_lookup(
    lookup: Lookup,
    columns: Mapping[str, ColumnRule],
    table: TableSpec,
    sources: Mapping[str, SourceSpec],
    source: SourceSpec,
    path: Path,
) -> Lookup:
    name = lookup.source or source.name
    if name not in sources:
        hint = did_you_mean(name, list(sources)) or f"sources: {', '.join(sources)}"
        raise _fail(path, f"{lookup.key}.source", f"unknown source '{name}'", hint)
    other = sources[name]
    anchor_key = f"{lookup.key}.{lookup.relation}"
    anchor = columns.get(lookup.anchor)
    spec = table.column(lookup.anchor) if lookup.anchor in table.column_names else None
    if anchor is None or spec is None:
        raise _fail(
            path,
            anchor_key,
            f"'{lookup.anchor}' is not a column this rule maps",
            "name a date column of this rule, e.g. infusion_date",
        )
    if not (spec.dtype == "date" or spec.role == "day_offset"):
        raise _fail(path, anchor_key, f"'{lookup.anchor}' is not a date or a day offset")
    if anchor.source is None or anchor.lookup is not None or anchor.code:
        raise _fail(
            path,
            anchor_key,
            f"'{lookup.anchor}' must be read directly from a source column ('from')",
        )
    if name != source.name and (lookup.patient_id or other.patient_id) is None:
        raise _fail(path, f"{lookup.key}.patient_id", f"no patient id column for source '{name}'")
    if name != source.name and not lookup.patient_id:
        return dataclasses.replace(
            lookup,
            source=name,
            patient_id=other.patient_id or "",
            patient_id_extract=other.patient_id_extract,
        )
    return dataclasses.replace(lookup, source=name)


_A1 = re.compile(r"^([A-Z]{1,3})([1-9][0-9]{0,6})$")


def cell_position(ref: str) -> tuple[int, int] | None:
    """(row, column), 1-based, of an ``A1``-style reference; None if it is not one."""
    match = _A1.fullmatch(ref.strip().upper())
    if match is None:
        return None
    column = 0
    for letter in match.group(1):
        column = column * 26 + ord(letter) - ord("A") + 1
    return int(match.group(2)), column


def _check_cell(ref: str, source: SourceSpec, path: Path, key: str) -> None:
    if source.reader in ("csv", "tsv", "excel"):
        position = cell_position(ref)
        if position is None:
            raise _fail(path, key, f"'{ref}' is not a cell like A1", "column letters, row number")
        if position[0] >= source.header_row:
            raise _fail(
                path,
                key,
                f"cell {ref} is not above the table (its header is on row {source.header_row})",
                "set header_row on the source, or map the column with 'from'",
            )
    elif source.reader in ("json", "fhir"):
        if not all(ref.split(".")):
            raise _fail(path, key, f"'{ref}' is not a path like export.data_cut")
    else:
        raise _fail(path, key, f"a {source.reader} source has no cells outside its table")


def _load_key(
    raw: Any,
    table: TableSpec,
    columns: Mapping[str, ColumnRule],
    pivot_code: str | None,
    path: Path,
    key: str,
) -> tuple[str, ...] | None:
    """The combine key: CDM columns the rule maps (or source columns), patient_key first.

    A pivot feeding a table of one row per patient combines by patient without saying so;
    a pivot feeding an event table must say which rows are one event.
    """
    per_patient = is_per_patient(table)
    if raw is None:
        if pivot_code is None:
            return None
        if per_patient:
            return ("patient_key",)
        raise _fail(
            path,
            key,
            f"a pivot on {table.name} needs a key: which rows of a patient are one "
            f"{table.name.removesuffix('s').replace('_', ' ')}",
            f"e.g. key: [{_event_dates(table)[0] if _event_dates(table) else 'a date column'}]",
        )
    items = _str_list(raw, path, key)
    if not items:
        raise _fail(path, key, "name at least one column (patient_key for one row per patient)")
    if len(set(items)) != len(items):
        raise _fail(path, key, "a column is listed twice")
    names = set(table.column_names)
    for i, item in enumerate(items):
        if item == "patient_key":
            continue
        if item in names and item not in columns:
            raise _fail(path, f"{key}[{i}]", f"'{item}' is a CDM column this rule does not map")
        if item in columns and (columns[item].code or columns[item].split):
            raise _fail(
                path,
                f"{key}[{i}]",
                f"'{item}' cannot be a key: its value depends on the row's code or part",
            )
    if per_patient and [i for i in items if i != "patient_key"]:
        raise _fail(path, key, f"{table.name} has one row per patient: key: [patient_key]")
    rest = tuple(i for i in items if i != "patient_key")
    return ("patient_key", *rest)


def _load_joins(
    raw: Any, sources: Mapping[str, SourceSpec], path: Path, key: str
) -> tuple[Join, ...]:
    if raw is None:
        return ()
    data = _mapping(raw, path, key)
    joins: list[Join] = []
    for name, spec in data.items():
        jkey = f"{key}.{name}"
        name = str(name)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _fail(path, jkey, f"'{name}' must be a simple name (letters, digits, _)")
        jdata = _mapping(spec, path, jkey)
        _check_keys(jdata, _JOIN_KEYS, path, jkey)
        for needed in ("source", "from"):
            if needed not in jdata:
                raise _fail(path, f"{jkey}.{needed}", f"a join needs '{needed}'")
        other = _str(jdata["source"], path, f"{jkey}.source")
        if other not in sources:
            hint = did_you_mean(other, list(sources)) or f"sources: {', '.join(sources)}"
            raise _fail(path, f"{jkey}.source", f"unknown source '{other}'", hint)
        to = _str(jdata["to"], path, f"{jkey}.to") if "to" in jdata else None
        if to is None and sources[other].reader != "fhir":
            raise _fail(
                path,
                f"{jkey}.to",
                f"name the column of {other} that '{jdata['from']}' refers to",
                "only FHIR resources are found by their reference (Type/id) without 'to'",
            )
        joins.append(Join(name, jkey, other, _str(jdata["from"], path, f"{jkey}.from"), to))
    return tuple(joins)


def is_per_patient(table: TableSpec) -> bool:
    """Whether the table has one row per patient (its primary key is the patient)."""
    return tuple(table.primary_key) == ("patient_key",)


def _event_dates(table: TableSpec) -> list[str]:
    """The event date (then day offset) ordering a table's rows; [] for per-patient tables."""
    from cartreg.ingest.derive import event_order

    return event_order(table)


# Python codecs that decode bytes into other text than the file shows: ``unicode_escape`` turns
# a cell's ``\\n`` into a line break, ``idna`` and ``punycode`` decode domain names. base64, hex
# and rot13 are not text encodings at all.
_REWRITING_CODECS = frozenset({"unicode-escape", "raw-unicode-escape", "utf-7", "punycode", "idna"})


def _check_cdm_version(written_for: str, cdm: CDM, path: Path) -> None:
    """A mapping runs on the CDM it was written for and on later minor versions of it.

    A minor version only adds columns, vocabulary terms and derivations (docs/cdm.md,
    "Versioning"), so what the mapping fills still exists. A new major version renamed or
    removed something, and a mapping for a newer CDM may use columns this one lacks.
    """
    try:
        major, minor, _ = version_parts(written_for)
        current = version_parts(cdm.version)
    except ValueError:
        raise _fail(
            path, "cdm_version", f"'{written_for}' is not a version like \"{cdm.version}\""
        ) from None
    if major != current[0]:
        raise _fail(
            path,
            "cdm_version",
            f"mapping written for CDM {written_for}, this is CDM {cdm.version} (a new major "
            "version renamed or removed columns)",
            "review the mapping against docs/data-dictionary.md and the migration notes in "
            "docs/cdm.md, then update cdm_version",
        )
    if minor > current[1]:
        raise _fail(
            path,
            "cdm_version",
            f"mapping written for CDM {written_for}, newer than this cartreg's CDM {cdm.version}",
            "upgrade cartreg, or run with the schemas the mapping was written for (--schemas)",
        )


def load_mapping(path: Path | str, cdm: CDM) -> SiteMapping:
    """Load and check a mapping file against the CDM (not yet against the source files)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("mapping file not found", path=path)
    if path.stat().st_size > MAX_MAPPING_FILE_BYTES:
        raise ConfigError(
            f"a mapping of {size_text(path.stat().st_size)} is larger than the "
            f"{size_text(MAX_MAPPING_FILE_BYTES)} limit",
            path=path,
            hint="is this the mapping file?",
        )
    data = _mapping(load_yaml(path), path, "")
    _check_keys(data, _TOP_KEYS, path, "")
    for required in MAPPING_SCHEMA["required"]:
        if required not in data:
            raise _fail(path, required, f"missing required key '{required}'")
    site_id = _str(data["site_id"], path, "site_id")
    if not re.fullmatch(SITE_ID_PATTERN, site_id):
        raise _fail(
            path,
            "site_id",
            f"site id '{site_id}' must be upper case, 2-16 characters",
            "e.g. REDCAP_A",
        )
    if "description" in data and not isinstance(data["description"], str):
        raise _fail(path, "description", f"must be text, got {_shown(data['description'])}")
    cdm_version = data.get("cdm_version")
    if cdm_version is not None:
        _check_cdm_version(_str(cdm_version, path, "cdm_version"), cdm, path)
    defaults = _optional(data, "defaults", dict, path, "")
    _check_keys(defaults, _DEFAULT_KEYS, path, "defaults")
    overrides: dict[str, dict[str, str]] = {}
    for vocab_name, terms in _mapping(
        _optional(data, "vocabulary_overrides", dict, path, ""), path, "vocabulary_overrides"
    ).items():
        vkey = f"vocabulary_overrides.{vocab_name}"
        if vocab_name not in cdm.vocabularies:
            raise _fail(
                path,
                vkey,
                f"unknown vocabulary '{vocab_name}'",
                did_you_mean(str(vocab_name), list(cdm.vocabularies)),
            )
        vocab = cdm.vocabularies[vocab_name]
        entries = {
            _key_text(k, path, vkey): _str(v, path, f"{vkey}.{k}")
            for k, v in _mapping(terms, path, vkey).items()
        }
        for raw_value, code in entries.items():
            if code not in vocab.codes:
                hint = did_you_mean(code, vocab.codes) or f"terms: {', '.join(vocab.codes)}"
                raise _fail(
                    path,
                    f"{vkey}.{raw_value}",
                    f"'{code}' is not a term of vocabulary '{vocab_name}'",
                    hint,
                )
        overrides[str(vocab_name)] = entries
    sources = {
        str(name): _load_source(str(name), raw, path)
        for name, raw in _mapping(data["sources"], path, "sources").items()
    }
    if not sources:
        raise _fail(path, "sources", "declare at least one source")
    tables: dict[str, tuple[TableRule, ...]] = {}
    for table_name, rules in _mapping(data["tables"], path, "tables").items():
        if table_name not in cdm.tables:
            hint = (
                did_you_mean(str(table_name), list(cdm.tables))
                or f"tables: {', '.join(cdm.tables)}"
            )
            raise _fail(path, f"tables.{table_name}", f"unknown CDM table '{table_name}'", hint)
        if not isinstance(rules, list) or not rules:
            raise _fail(path, f"tables.{table_name}", "must be a list of rules (- source: …)")
        table = cdm.tables[str(table_name)]
        tables[str(table_name)] = tuple(
            _load_rule(table, i, r, sources, cdm, path) for i, r in enumerate(rules)
        )
        _check_combined(table, tables[str(table_name)], path)
    if not tables:
        raise _fail(
            path, "tables", "map at least one CDM table", "e.g. tables: {patients: [{source: …}]}"
        )
    return SiteMapping(
        path=path,
        site_id=site_id,
        mapping_version=_str(data["mapping_version"], path, "mapping_version"),
        cdm_version=None if cdm_version is None else str(cdm_version),
        date_formats=_formats(defaults["date_formats"], path, "defaults.date_formats")
        if "date_formats" in defaults
        else DEFAULT_DATE_FORMATS,
        sentinels=_str_list(defaults["sentinels"], path, "defaults.sentinels")
        if "sentinels" in defaults
        else DEFAULT_SENTINELS,
        decimal=_choice(
            defaults.get("decimal", "auto"), (".", ",", "auto"), path, "defaults.decimal"
        ),
        vocabulary_overrides=overrides,
        sources=sources,
        tables=tables,
    )


def _check_combined(table: TableSpec, rules: tuple[TableRule, ...], path: Path) -> None:
    """Rules combined by key compare the same things, and together fill the required columns."""
    from cartreg.ingest.harmonize import DERIVED_COLUMNS

    keyed = [r for r in rules if r.combine_key is not None]
    if not keyed:
        return
    first = keyed[0]
    for rule in keyed[1:]:
        assert rule.combine_key is not None and first.combine_key is not None
        same_length = len(rule.combine_key) == len(first.combine_key)
        mine = [(i, n) for i, (n, t) in enumerate(rule.key_items()) if t]
        theirs = [(i, n) for i, (n, t) in enumerate(first.key_items()) if t]
        if not same_length or mine != theirs:
            raise _fail(
                path,
                f"{rule.key}.key",
                f"rules combined into {table.name} must declare the same key: "
                f"[{', '.join(first.combine_key)}] in {first.key}",
                "CDM columns at the same positions; source columns may differ by name",
            )
    for col in table.columns:
        if not col.required or col.role != "declared" or col.name in DERIVED_COLUMNS:
            continue
        if not any(col.name in r.columns for r in keyed):
            raise _fail(
                path,
                f"{first.key}.columns",
                f"required CDM column '{col.name}' of {table.name} is not mapped by any rule "
                "combined by key",
                f"add {col.name}: {{from: <source column>}} to one of them",
            )


def duplicated_patients(mapping: SiteMapping, cdm: CDM) -> ConfigError | None:
    """Why the mapping can give one patient two rows of a per-patient table (None: it cannot).

    Two rules feeding ``patients`` or ``follow_up`` give a patient selected by both two rows,
    unless both declare ``key: [patient_key]`` (they are then combined); a rule that
    multiplies its rows (explode, unpivot, checkbox, split) does the same. Ingest keeps the
    first of such rows (ING-DUPLICATE); ``mapping check`` refuses the mapping.
    """
    for name, rules in mapping.tables.items():
        table = cdm.tables[name]
        if not is_per_patient(table):
            continue
        loose = [r for r in rules if r.combine_key is None]
        for rule in loose:
            if is_multiplying(rule):
                return ConfigError(
                    f"{name} has one row per patient, and this rule can give a patient several "
                    "(it makes rows of array elements, column groups, ticks or parts)",
                    path=mapping.path,
                    key=rule.key,
                    hint="select one row per patient, or pivot/combine with key: [patient_key]",
                )
        if len(rules) > 1 and loose:
            other = next(r for r in rules if r is not loose[0])
            return ConfigError(
                f"{name} has one row per patient and {other.key} feeds it too: a patient "
                "selected by both rules gets two rows",
                path=mapping.path,
                key=loose[0].key,
                hint="add key: [patient_key] to every rule of the table to combine their rows",
            )
    return None


def is_multiplying(rule: TableRule) -> bool:
    """Whether a rule can make several rows of one source row."""
    return bool(rule.explode or rule.unpivot_pattern or rule.checkbox_field or rule.splits)


def rule_input_columns(rule: TableRule) -> list[tuple[str, str]]:
    """(source column, YAML key) pairs a rule reads from its (reshaped) source; columns of
    joined rows (``<join>.<column>``) are listed by :func:`joined_columns` instead."""
    used = [(rule.patient_id, f"{rule.key}.patient_id")]
    used += [(c.column, f"{c.key}.column") for c in rule.where]
    used += [(c.source, f"{c.key}.from") for c in rule.columns.values() if c.source is not None]
    if rule.pivot_code is not None:
        used.append((rule.pivot_code, f"{rule.key}.pivot.code"))
    used += [(n, f"{rule.key}.key") for n, target in rule.key_items() if not target]
    used += [(j.column, f"{j.key}.from") for j in rule.joins]
    prefixes = tuple(f"{j.name}." for j in rule.joins)
    return [(c, k) for c, k in used if not (prefixes and c.startswith(prefixes))]


def joined_columns(rule: TableRule) -> list[tuple[str, str]]:
    """(``<join>.<column>``, YAML key) pairs a rule reads from the rows it joins."""
    used = [(c.column, f"{c.key}.column") for c in rule.where]
    used += [(c.source, f"{c.key}.from") for c in rule.columns.values() if c.source is not None]
    if rule.pivot_code is not None:
        used.append((rule.pivot_code, f"{rule.key}.pivot.code"))
    prefixes = tuple(f"{j.name}." for j in rule.joins)
    return [(c, k) for c, k in used if prefixes and c.startswith(prefixes)]


def check_source_columns(mapping: SiteMapping, rule: TableRule, available: Iterable[str]) -> None:
    """ConfigError for the first column the rule reads that the source does not have."""
    names = list(available)
    for column, key in rule_input_columns(rule):
        if column not in names:
            source = mapping.sources[rule.source]
            raise ConfigError(
                f"source column '{column}' not found in {source.label}",
                path=mapping.path,
                key=key,
                hint=did_you_mean(column, names)
                or f"columns: {', '.join(names[:12])}{' …' if len(names) > 12 else ''}",
            )


def schema_json() -> str:
    """The published JSON Schema text (schemas/mapping.schema.json)."""
    return json.dumps(MAPPING_SCHEMA, indent=2, ensure_ascii=False) + "\n"
