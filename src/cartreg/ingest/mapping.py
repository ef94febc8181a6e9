"""The per-site mapping: declarations only (which source feeds which CDM column, and how).

The YAML shape is defined once, as the JSON Schema in :data:`MAPPING_SCHEMA` (published as
``schemas/mapping.schema.json`` for editor completion). The loader takes its allowed keys from that
schema, then checks what a schema cannot: CDM tables and columns exist, override terms exist in
their vocabulary, sources referenced by a rule are declared. Every problem is a one-line
ConfigError naming the mapping file and the YAML key, with a "did you mean" where one is close.
Source column names are checked later, against the files, by :func:`check_source_columns`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartreg.cdm.model import CDM, TableSpec, version_parts
from cartreg.errors import ConfigError, did_you_mean
from cartreg.ingest.transforms.dates import DATE_FORMATS, DEFAULT_DATE_FORMATS, is_known_format
from cartreg.ingest.transforms.sentinels import DEFAULT_SENTINELS
from cartreg.vocab import Vocabulary
from cartreg.yamlio import load_yaml

READERS = ("csv", "tsv", "excel", "json", "ndjson", "parquet", "redcap")
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

_STRINGS = {"type": "array", "items": {"type": "string"}}
_FORMATS = {
    "type": "array",
    "items": {"anyOf": [{"enum": list(DATE_FORMATS)}, {"type": "string", "pattern": "%"}]},
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
                "scale": {
                    "type": "number",
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
                    "header_row": {"type": "integer", "minimum": 1},
                    "delimiter": {"type": "string"},
                    "encoding": {"type": "string"},
                    "dictionary": {"type": "string", "description": "REDCap data dictionary CSV."},
                    "decode": {
                        "type": "boolean",
                        "description": "Decode REDCap choice codes to labels.",
                    },
                    "records": {
                        "type": "string",
                        "description": "JSON key holding the record array.",
                    },
                    "patient_id": {
                        "type": "string",
                        "description": "Column with the local patient id.",
                    },
                    "allow_identifiers": {
                        **_STRINGS,
                        "description": "Identifier-like columns the site allows to be copied.",
                    },
                },
            },
        },
        "tables": {
            "type": "object",
            "description": "CDM table -> list of rules, each feeding it from one source.",
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["source", "columns"],
                    "properties": {
                        "source": {"type": "string"},
                        "patient_id": {"type": "string"},
                        "where": {"type": "array", "items": _CONDITION},
                        "explode": {
                            "anyOf": [{"type": "string"}, _STRINGS],
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
    allow_identifiers: tuple[str, ...] = ()


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


def _str_list(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise _fail(path, key, "must be a list")
    return tuple(_str(v, path, f"{key}[{i}]") for i, v in enumerate(raw))


def _formats(raw: Any, path: Path, key: str) -> tuple[str, ...]:
    formats = _str_list(raw, path, key)
    for i, fmt in enumerate(formats):
        if not is_known_format(fmt):
            hint = (
                did_you_mean(fmt, DATE_FORMATS)
                or f"use {', '.join(DATE_FORMATS)} or a strptime pattern"
            )
            raise _fail(path, f"{key}[{i}]", f"unknown date format '{fmt}'", hint)
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
    if isinstance(header_row, bool) or not isinstance(header_row, int) or header_row < 1:
        raise _fail(path, f"{key}.header_row", "must be a row number (1 = first row)")
    if reader == "redcap" and "dictionary" not in data and data.get("decode", False):
        raise _fail(path, f"{key}.decode", "decoding REDCap choices needs 'dictionary'")
    opt = {
        k: _str(data[k], path, f"{key}.{k}")
        for k in ("sheet", "delimiter", "encoding", "dictionary", "records", "patient_id")
        if k in data
    }
    return SourceSpec(
        name=name,
        file=file,
        reader=reader,
        key=key,
        header_row=header_row,
        decode=bool(data.get("decode", True)),
        allow_identifiers=_str_list(
            data.get("allow_identifiers", []), path, f"{key}.allow_identifiers"
        ),
        delimiter="\t" if reader == "tsv" and "delimiter" not in opt else opt.get("delimiter"),
        **{k: v for k, v in opt.items() if k != "delimiter"},
    )


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
    if ("from" in data) == ("value" in data):
        raise _fail(
            path, key, "give exactly one of 'from' (a source column) or 'value' (a constant)"
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
    scale = data.get("scale")
    if scale is not None:
        if spec.dtype not in ("integer", "float") or isinstance(scale, bool):
            raise _fail(
                path,
                f"{key}.scale",
                f"'scale' applies to number columns, '{target}' is {spec.dtype}",
            )
        if not isinstance(scale, int | float):
            raise _fail(path, f"{key}.scale", f"must be a number, got {scale!r}")
    return ColumnRule(
        target=target,
        key=key,
        source=_str(data["from"], path, f"{key}.from") if "from" in data else None,
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
    if isinstance(raw, list):
        return _str_list(raw, path, key)
    return (_str(raw, path, key),)


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
    patient_id = data.get("patient_id", source.patient_id)
    if patient_id is None:
        raise _fail(
            path,
            f"{key}.patient_id",
            "no patient id column",
            f"set patient_id here or on {source.key}",
        )
    conditions: list[Condition] = []
    for j, cond in enumerate(data.get("where") or []):
        ckey = f"{key}.where[{j}]"
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
                is_null=bool(cdata["is_null"]) if "is_null" in cdata else None,
                contains=_str_values(cdata["contains"], path, f"{ckey}.contains")
                if "contains" in cdata
                else None,
            )
        )
    columns_raw = _mapping(data.get("columns"), path, f"{key}.columns")
    columns = {
        str(t): _load_column(str(t), v, table, cdm, path, f"{key}.columns.{t}")
        for t, v in columns_raw.items()
    }
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
    reshapes = sum(x is not None for x in (data.get("explode"), unpivot, checkbox))
    if reshapes > 1:
        raise _fail(path, key, "use at most one of explode, unpivot, checkbox per rule")
    return TableRule(
        table=table.name,
        key=key,
        source=source_name,
        patient_id=_str(patient_id, path, f"{key}.patient_id"),
        columns=columns,
        where=tuple(conditions),
        explode=_explode(data.get("explode"), path, f"{key}.explode"),
        unpivot_pattern=pattern,
        unpivot_index=unpivot_index,
        checkbox_field=cb_field,
        checkbox_into=cb_into,
    )


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
    cdm_version = data.get("cdm_version")
    if cdm_version is not None:
        _check_cdm_version(_str(cdm_version, path, "cdm_version"), cdm, path)
    defaults = _mapping(data.get("defaults") or {}, path, "defaults")
    _check_keys(defaults, _DEFAULT_KEYS, path, "defaults")
    overrides: dict[str, dict[str, str]] = {}
    for vocab_name, terms in _mapping(
        data.get("vocabulary_overrides") or {}, path, "vocabulary_overrides"
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
            str(k): _str(v, path, f"{vkey}.{k}") for k, v in _mapping(terms, path, vkey).items()
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
        if not isinstance(rules, list):
            raise _fail(path, f"tables.{table_name}", "must be a list of rules (- source: …)")
        table = cdm.tables[str(table_name)]
        tables[str(table_name)] = tuple(
            _load_rule(table, i, r, sources, cdm, path) for i, r in enumerate(rules)
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


def rule_input_columns(rule: TableRule) -> list[tuple[str, str]]:
    """(source column, YAML key) pairs a rule reads from its (reshaped) source."""
    used = [(rule.patient_id, f"{rule.key}.patient_id")]
    used += [(c.column, f"{c.key}.column") for c in rule.where]
    used += [(c.source, f"{c.key}.from") for c in rule.columns.values() if c.source is not None]
    return used


def check_source_columns(mapping: SiteMapping, rule: TableRule, available: Iterable[str]) -> None:
    """ConfigError for the first column the rule reads that the source does not have."""
    names = list(available)
    for column, key in rule_input_columns(rule):
        if column not in names:
            source = mapping.sources[rule.source]
            raise ConfigError(
                f"source column '{column}' not found in {source.file}",
                path=mapping.path,
                key=key,
                hint=did_you_mean(column, names)
                or f"columns: {', '.join(names[:12])}{' …' if len(names) > 12 else ''}",
            )


def schema_json() -> str:
    """The published JSON Schema text (schemas/mapping.schema.json)."""
    return json.dumps(MAPPING_SCHEMA, indent=2, ensure_ascii=False) + "\n"
