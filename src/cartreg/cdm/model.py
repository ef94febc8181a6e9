"""Declarations of the CDM, loaded from YAML. No polars or pandera here.

A table file lists its own columns; the loader adds the columns every table shares or that a
column implies, so they can never be forgotten or spelt differently:

* the lineage columns of ``cdm.yaml`` (``site_id``, ``source_file``, ``source_row``);
* for a coded column ``x`` (one with a ``vocabulary``), ``x_raw``: the source's original string;
* for a date column ``x_date``, ``x_date_precision`` (DAY / MONTH / YEAR);
* for a date column with ``day_offset: true``, ``x_day``: days from the index CAR T infusion;
* for a column with ``derivable: true``, ``x_derivation`` (how ingest derived the value, a code of
  the ``derivation`` vocabulary; null when the site gave it) and ``x_derived_from`` (the id of
  the CDM row it was derived from).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cartreg.errors import ConfigError, did_you_mean
from cartreg.paths import schemas_dir
from cartreg.vocab import Vocabularies, load_vocabularies
from cartreg.yamlio import load_yaml

Dtype = Literal["string", "integer", "float", "boolean", "date"]
DTYPES: tuple[str, ...] = ("string", "integer", "float", "boolean", "date")
ColumnRole = Literal[
    "declared", "lineage", "raw", "precision", "day_offset", "derivation", "derived_from"
]
DERIVATION_VOCABULARY = "derivation"

_COLUMN_KEYS = {
    "name",
    "dtype",
    "required",
    "unit",
    "description",
    "vocabulary",
    "min",
    "max",
    "pattern",
    "identifier",
    "day_offset",
    "derivable",
}
_TABLE_KEYS = {
    "cdm_version",
    "table",
    "title",
    "description",
    "primary_key",
    "foreign_keys",
    "columns",
}
_MANIFEST_KEYS = {"cdm_version", "tables", "lineage_columns", "derivations"}


@dataclass(frozen=True)
class ColumnSpec:
    """One CDM column."""

    name: str
    dtype: Dtype
    required: bool = False
    description: str = ""
    unit: str | None = None
    vocabulary: str | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    identifier: bool = False
    derivable: bool = False
    role: ColumnRole = "declared"
    sibling_of: str | None = None

    @property
    def is_coded(self) -> bool:
        return self.vocabulary is not None

    @property
    def range_text(self) -> str:
        """Allowed range as "[min, max]" with an empty side when unbounded; "" if none."""
        if self.min is None and self.max is None:
            return ""
        low = "" if self.min is None else f"{self.min:g}"
        high = "" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high}]"


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    references: str


@dataclass(frozen=True)
class TableSpec:
    """One CDM table with its columns in declaration order (implied columns after their owner)."""

    name: str
    title: str
    description: str
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...]
    columns: tuple[ColumnSpec, ...]
    path: Path | None = None

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def date_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.dtype == "date")


@dataclass(frozen=True)
class CDM:
    """The loaded data model: version, tables in canonical order, and vocabularies."""

    version: str
    tables: Mapping[str, TableSpec]
    vocabularies: Vocabularies
    path: Path
    lineage_columns: tuple[str, ...] = field(default=("site_id", "source_file", "source_row"))
    # Parameters of the ingest derivations (cdm.yaml ``derivations``), per derivation.
    derivations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    schema_cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def table(self, name: str) -> TableSpec:
        try:
            return self.tables[name]
        except KeyError:
            hint = did_you_mean(name, list(self.tables)) or f"tables: {', '.join(self.tables)}"
            raise ConfigError(f"unknown CDM table '{name}'", path=self.path, hint=hint) from None

    def derivation_param(self, derivation: str, name: str) -> Any:
        """A parameter of an ingest derivation (``cdm.yaml`` ``derivations``), or its default."""
        return self.derivations.get(derivation, {}).get(name, DERIVATION_DEFAULTS[derivation][name])

    @property
    def major_minor(self) -> tuple[int, int]:
        return version_parts(self.version)[:2]


# Parameters of the ingest derivations and their defaults (docs/cdm.md, "Derived values").
DERIVATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "remission": {"count_crh_as_cr": False},
    "disease_burden": {"blast_threshold_pct": 5.0, "emd_counts_high": True},
}


def version_parts(version: str) -> tuple[int, int, int]:
    """``"0.2.0"`` -> ``(0, 2, 0)``; ValueError for anything else."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version.strip())
    if match is None:
        raise ValueError(version)
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _check_keys(raw: Mapping[str, Any], allowed: set[str], path: Path, where: str) -> None:
    for key in raw:
        if key not in allowed:
            loc = f"{where}.{key}" if where else str(key)
            raise ConfigError(
                f"unknown key '{key}'",
                path=path,
                key=loc,
                hint=did_you_mean(str(key), allowed) or f"allowed: {', '.join(sorted(allowed))}",
            )


def _number(raw: Any, path: Path, key: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"must be a number, got {raw!r}", path=path, key=key)
    return float(raw)


def _parse_column(
    raw: Any, path: Path, where: str, vocabularies: Vocabularies, role: ColumnRole = "declared"
) -> ColumnSpec:
    if not isinstance(raw, dict):
        raise ConfigError(
            "a column must be a mapping with 'name' and 'dtype'", path=path, key=where
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ConfigError(
            f"column name must be a lower-case identifier, got {name!r}", path=path, key=where
        )
    where = f"{where}({name})"
    _check_keys(raw, _COLUMN_KEYS, path, where)
    dtype = raw.get("dtype")
    if dtype not in DTYPES:
        raise ConfigError(
            f"unknown dtype {dtype!r}",
            path=path,
            key=f"{where}.dtype",
            hint=did_you_mean(str(dtype), DTYPES) or f"use one of: {', '.join(DTYPES)}",
        )
    vocabulary = raw.get("vocabulary")
    if vocabulary is not None:
        if vocabulary not in vocabularies:
            raise ConfigError(
                f"vocabulary '{vocabulary}' does not exist",
                path=path,
                key=f"{where}.vocabulary",
                hint=did_you_mean(str(vocabulary), list(vocabularies))
                or "add schemas/vocabularies/<name>.yaml",
            )
        if dtype != "string":
            raise ConfigError(
                "coded columns must have dtype string", path=path, key=f"{where}.dtype"
            )
    if raw.get("day_offset") and dtype != "date":
        raise ConfigError(
            "day_offset applies to date columns only", path=path, key=f"{where}.day_offset"
        )
    if raw.get("day_offset") and not name.endswith("_date"):
        raise ConfigError(
            "a column with day_offset must be named <event>_date", path=path, key=f"{where}.name"
        )
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"invalid regular expression: {exc}", path=path, key=f"{where}.pattern"
            ) from None
    return ColumnSpec(
        name=name,
        dtype=dtype,
        required=bool(raw.get("required", False)),
        description=" ".join(str(raw.get("description", "")).split()),
        unit=raw.get("unit"),
        vocabulary=vocabulary,
        min=_number(raw.get("min"), path, f"{where}.min"),
        max=_number(raw.get("max"), path, f"{where}.max"),
        pattern=pattern,
        identifier=bool(raw.get("identifier", False)),
        derivable=bool(raw.get("derivable", False)),
        role=role,
    )


def _implied_columns(col: ColumnSpec) -> list[ColumnSpec]:
    implied: list[ColumnSpec] = []
    if col.vocabulary is not None:
        implied.append(
            ColumnSpec(
                name=f"{col.name}_raw",
                dtype="string",
                description=f"Original source string of {col.name}, kept for audit.",
                identifier=col.identifier,
                role="raw",
                sibling_of=col.name,
            )
        )
    if col.dtype == "date":
        implied.append(
            ColumnSpec(
                name=f"{col.name}_precision",
                dtype="string",
                vocabulary="date_precision",
                description=f"Which parts of {col.name} are known (DAY, MONTH or YEAR).",
                role="precision",
                sibling_of=col.name,
            )
        )
    if col.derivable:
        implied.append(
            ColumnSpec(
                name=f"{col.name}_derivation",
                dtype="string",
                vocabulary=DERIVATION_VOCABULARY,
                description=(
                    f"How ingest derived {col.name} (a derivation code); empty when the site "
                    "gave the value."
                ),
                role="derivation",
                sibling_of=col.name,
            )
        )
        implied.append(
            ColumnSpec(
                name=f"{col.name}_derived_from",
                dtype="string",
                description=(
                    f"Id of the CDM row {col.name} was derived from (an assessment, infusion "
                    "or progression id); empty when the site gave the value."
                ),
                role="derived_from",
                sibling_of=col.name,
            )
        )
    return implied


def _day_offset_column(col: ColumnSpec) -> ColumnSpec:
    stem = col.name.removesuffix("_date")
    return ColumnSpec(
        name=f"{stem}_day",
        dtype="integer",
        unit="days from index infusion",
        description=(
            f"Day of {col.name} counted from the index CAR T infusion (day 0); given by "
            "de-identified sites, computed for the others."
        ),
        min=-36500,
        max=36500,
        role="day_offset",
        sibling_of=col.name,
    )


def _load_table(
    path: Path, version: str, lineage: list[ColumnSpec], vocabularies: Vocabularies
) -> TableSpec:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("a table file must be a mapping", path=path)
    _check_keys(data, _TABLE_KEYS, path, "")
    if str(data.get("cdm_version")) != version:
        raise ConfigError(
            f"cdm_version {data.get('cdm_version')!r} differs from cdm.yaml ({version!r})",
            path=path,
            key="cdm_version",
            hint="keep all schema files at one version",
        )
    name = data.get("table")
    if name != path.stem:
        raise ConfigError(f"'table' must equal the file name '{path.stem}'", path=path, key="table")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise ConfigError("'columns' must be a non-empty list", path=path, key="columns")

    columns: list[ColumnSpec] = []
    seen: dict[str, str] = {c.name: "lineage column" for c in lineage}
    for i, raw in enumerate(raw_columns):
        declared = _parse_column(raw, path, f"columns[{i}]", vocabularies)
        group = [declared, *_implied_columns(declared)]
        if isinstance(raw, dict) and raw.get("day_offset"):
            group.append(_day_offset_column(declared))
        for col in group:
            if col.name in seen:
                raise ConfigError(
                    f"duplicate column '{col.name}' (already defined as {seen[col.name]})",
                    path=path,
                    key=f"columns[{i}].name",
                )
            seen[col.name] = f"columns[{i}]" if col is declared else f"sibling of {declared.name}"
        columns.extend(group)
    columns.extend(lineage)

    names = {c.name for c in columns}
    primary_key = tuple(data.get("primary_key") or ())
    for key_col in primary_key:
        if key_col not in names:
            raise ConfigError(
                f"primary key column '{key_col}' is not a column",
                path=path,
                key="primary_key",
                hint=did_you_mean(key_col, names),
            )
    foreign_keys: list[ForeignKey] = []
    for j, fk in enumerate(data.get("foreign_keys") or []):
        if not isinstance(fk, dict) or set(fk) != {"columns", "references"}:
            raise ConfigError(
                "a foreign key needs exactly 'columns' and 'references'",
                path=path,
                key=f"foreign_keys[{j}]",
            )
        for fk_col in fk["columns"]:
            if fk_col not in names:
                raise ConfigError(
                    f"foreign key column '{fk_col}' is not a column",
                    path=path,
                    key=f"foreign_keys[{j}].columns",
                    hint=did_you_mean(fk_col, names),
                )
        foreign_keys.append(ForeignKey(tuple(fk["columns"]), str(fk["references"])))
    return TableSpec(
        name=name,
        title=str(data.get("title") or name),
        description=" ".join(str(data.get("description", "")).split()),
        primary_key=primary_key,
        foreign_keys=tuple(foreign_keys),
        columns=tuple(columns),
        path=path,
    )


def load_cdm(path: Path | str | None = None) -> CDM:
    """Load the CDM from a schemas folder (default: ``--schemas``/``$CARTREG_SCHEMAS``/bundled).

    Raises ConfigError (one line: file, key, fix) for any invalid declaration.
    """
    root = schemas_dir(path)
    manifest_path = root / "cdm.yaml"
    if not manifest_path.is_file():
        raise ConfigError(
            "schemas folder has no cdm.yaml",
            path=root,
            hint="point --schemas at a folder like schemas/",
        )
    manifest = load_yaml(manifest_path)
    if not isinstance(manifest, dict):
        raise ConfigError("cdm.yaml must be a mapping", path=manifest_path)
    _check_keys(manifest, _MANIFEST_KEYS, manifest_path, "")
    version = manifest.get("cdm_version")
    if not isinstance(version, str) or not version:
        raise ConfigError(
            'cdm_version must be a string like "0.1.0"', path=manifest_path, key="cdm_version"
        )
    vocabularies = load_vocabularies(root / "vocabularies")
    lineage = [
        _parse_column(raw, manifest_path, f"lineage_columns[{i}]", vocabularies, role="lineage")
        for i, raw in enumerate(manifest.get("lineage_columns") or [])
    ]
    table_names = manifest.get("tables")
    if not isinstance(table_names, list) or not table_names:
        raise ConfigError("'tables' must list the table files", path=manifest_path, key="tables")
    tables: dict[str, TableSpec] = {}
    for name in table_names:
        table_path = root / "tables" / f"{name}.yaml"
        if not table_path.is_file():
            raise ConfigError(
                f"table '{name}' has no file tables/{name}.yaml", path=manifest_path, key="tables"
            )
        tables[name] = _load_table(table_path, version, lineage, vocabularies)
    for table in tables.values():
        for k, fk in enumerate(table.foreign_keys):
            if fk.references not in tables:
                raise ConfigError(
                    f"foreign key references unknown table '{fk.references}'",
                    path=table.path or manifest_path,
                    key=f"foreign_keys[{k}].references",
                    hint=did_you_mean(fk.references, list(tables)),
                )
    if DERIVATION_VOCABULARY not in vocabularies:
        derivable = next(
            (c for t in tables.values() for c in t.columns if c.role == "derivation"), None
        )
        if derivable is not None:
            raise ConfigError(
                f"column {derivable.sibling_of} is derivable but vocabulary "
                f"'{DERIVATION_VOCABULARY}' does not exist",
                path=root / "vocabularies",
                hint=f"add vocabularies/{DERIVATION_VOCABULARY}.yaml",
            )
    return CDM(
        version=version,
        tables=tables,
        vocabularies=vocabularies,
        path=root,
        lineage_columns=tuple(c.name for c in lineage),
        derivations=_derivations(manifest.get("derivations"), manifest_path),
    )


def _derivations(raw: Any, path: Path) -> dict[str, dict[str, Any]]:
    """The ``derivations`` parameters of cdm.yaml, checked against the known parameters."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("'derivations' must be a mapping", path=path, key="derivations")
    out: dict[str, dict[str, Any]] = {}
    for name, params in raw.items():
        key = f"derivations.{name}"
        if name not in DERIVATION_DEFAULTS:
            raise ConfigError(
                f"unknown derivation '{name}'",
                path=path,
                key=key,
                hint=did_you_mean(str(name), list(DERIVATION_DEFAULTS))
                or f"derivations: {', '.join(DERIVATION_DEFAULTS)}",
            )
        if not isinstance(params, dict):
            raise ConfigError("must be a mapping of parameters", path=path, key=key)
        defaults = DERIVATION_DEFAULTS[name]
        _check_keys(params, set(defaults), path, key)
        for param, value in params.items():
            expected = defaults[param]
            ok = (
                isinstance(value, bool)
                if isinstance(expected, bool)
                else isinstance(value, int | float) and not isinstance(value, bool)
            )
            if not ok:
                kind = "true or false" if isinstance(expected, bool) else "a number"
                raise ConfigError(f"must be {kind}, got {value!r}", path=path, key=f"{key}.{param}")
        out[str(name)] = dict(params)
    return out
