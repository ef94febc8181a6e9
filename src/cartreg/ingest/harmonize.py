"""One mapping rule applied to one source frame: select, reshape, parse, map, quarantine.

Everything is done with polars expressions over the whole frame; Python only loops over the
rule's columns and over the distinct values of coded columns.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import polars as pl

from cartreg.cdm.model import CDM, ColumnSpec, TableSpec
from cartreg.errors import ConfigError, did_you_mean
from cartreg.exprs import format_text
from cartreg.findings import MASK, empty_findings, findings_frame
from cartreg.ingest.linking import (
    PID,
    Linked,
    SourceAccess,
    apply_joins,
    apply_lookups,
    key_column,
    lineage_columns,
    patient_key,
    pivot_rows,
    single_value,
    single_values,
    split_rows,
    take_joined_rows,
)
from cartreg.ingest.mapping import (
    ColumnRule,
    Condition,
    SiteMapping,
    TableRule,
    check_source_columns,
    joined_columns,
    rule_input_columns,
)
from cartreg.ingest.readers.base import category_values
from cartreg.ingest.readers.redcap import column_choices
from cartreg.ingest.transforms.codes import boolean_mapping, code_mapping, map_codes
from cartreg.ingest.transforms.dates import (
    STATUS_AMBIGUOUS,
    STATUS_YEAR_RANGE,
    format_description,
    normalized_date_text,
    other_reading,
    parse_dates,
)
from cartreg.ingest.transforms.lists import contains_any
from cartreg.ingest.transforms.numbers import parse_numbers, unit_of
from cartreg.ingest.transforms.reshape import (
    LINEAGE,
    checkbox_columns,
    checkbox_to_rows,
    explode_path,
    unpivot_groups,
)
from cartreg.ingest.transforms.sentinels import REDCAP_MISSING_CODES, blank_to_null, is_sentinel
from cartreg.redact import redact_expr

# Required CDM columns that derive.py fills when a mapping does not; all other required columns
# must come from the source, and a row that lacks one is quarantined.
DERIVED_COLUMNS = frozenset(
    {
        "infusion_id",
        "assessment_id",
        "progression_id",
        "salvage_id",
        "hct_id",
        "patient_key",
        "infusion_number",
        "is_index_infusion",
        "is_reinfusion",
        "event_seq",
        "line_number",
    }
)
ORDER = "__order"
COMBINE = "__combine"  # marks rows of rules combined by key (see cartreg.ingest.combine)


@dataclass
class RuleOutput:
    rows: pl.DataFrame
    findings: pl.DataFrame
    selected: pl.Series  # source rows the rule's conditions select (repeats possible)
    quarantine: pl.DataFrame  # source_row, source_file, rule_id, column
    # rows of other sources the rule read (joins, lookups): source -> source rows
    used: dict[str, list[pl.Series]] = dataclasses.field(default_factory=dict)


def _raw(name: str) -> str:
    return f"__raw::{name}"


def _bad(name: str) -> str:
    return f"__bad::{name}"


def _sentinel(name: str) -> str:
    return f"__sentinel::{name}"


def _num(name: str) -> str:
    return f"__num::{name}"


def _norm(name: str) -> str:
    return f"__norm::{name}"


def condition_expr(
    conditions: Collection[Condition], schema: Mapping[str, pl.DataType] | None = None
) -> pl.Expr:
    """All ``conditions`` hold (``schema`` tells list columns, for ``contains``)."""
    expr = pl.lit(True)
    for cond in conditions:
        if cond.contains is not None:
            dtype = (schema or {}).get(cond.column)
            hit = contains_any(pl.col(cond.column), dtype, cond.contains)
            expr = expr & hit.fill_null(False)
            continue
        value = pl.col(cond.column).cast(pl.String).str.strip_chars()
        if cond.equals is not None:
            expr = expr & (value == cond.equals).fill_null(False)
        if cond.any_of is not None:
            expr = expr & value.is_in(list(cond.any_of)).fill_null(False)
        if cond.none_of is not None:
            expr = expr & ~value.is_in(list(cond.none_of)).fill_null(False)
        if cond.is_null is not None:
            empty = value.is_null() | (value == "")
            expr = expr & (empty if cond.is_null else ~empty)
    return expr


def _where_in_delivered_values(
    rule: TableRule, choices: dict[str, dict[str, str]], *, decoded: bool
) -> tuple[TableRule, list[tuple[Condition, str, dict[str, str]]]]:
    """REDCap ``where`` values in the form the reader delivers them, and the values that are no
    choice of their field.

    A coded field (radio, dropdown, yes/no, checkbox column) reaches the rules as its label when
    decoded (the default with a dictionary), as its code with ``decode: false``. A condition may
    name either: ``prog_yn in ["1"]`` and ``in ["Yes"]`` select the same rows. A value that is
    neither (nor a REDCap missing-data code) selects nothing and is returned for a warning.
    """
    conditions: list[Condition] = []
    unknown: list[tuple[Condition, str, dict[str, str]]] = []
    for cond in rule.where:
        labels = column_choices(cond.column, choices)
        if not labels or not cond.values:
            conditions.append(cond)
            continue

        def each(
            values: tuple[str, ...] | None, cond: Condition = cond, labels: dict[str, str] = labels
        ) -> tuple[str, ...] | None:
            if values is None:
                return None
            out = []
            for value in values:
                form = _delivered_value(value, labels, decoded=decoded)
                if form is None and value.strip().upper() not in REDCAP_MISSING_CODES:
                    unknown.append((cond, value, labels))
                out.append(value if form is None else form)
            return tuple(out)

        equals = each(None if cond.equals is None else (cond.equals,))
        conditions.append(
            dataclasses.replace(
                cond,
                equals=None if equals is None else equals[0],
                any_of=each(cond.any_of),
                none_of=each(cond.none_of),
                contains=each(cond.contains),
            )
        )
    return dataclasses.replace(rule, where=tuple(conditions)), unknown


def _delivered_value(value: str, labels: dict[str, str], *, decoded: bool) -> str | None:
    """``value`` (a choice code or label, any case) as the reader delivers it; None if neither."""
    text = value.strip()
    by_label = {label.strip().lower(): label for label in labels.values()}
    if text in labels:
        return labels[text] if decoded else text
    if text.lower() in by_label:
        label = by_label[text.lower()]
        return label if decoded else next(c for c, lb in labels.items() if lb == label)
    return None


def _where_findings(
    unknown: list[tuple[Condition, str, dict[str, str]]],
    rule: TableRule,
    mapping: SiteMapping,
    decoded: bool,
) -> pl.DataFrame:
    """ING-WHERE-VALUE warnings: a condition value that is no code or label of its field."""
    if not unknown:
        return empty_findings()
    source = mapping.sources[rule.source]
    compared = "labels" if decoded else "codes (decode: false)"
    messages = [
        f"{cond.key}: '{value}' is neither a code nor a label of REDCap field '{cond.column}' "
        f"(choices: {'; '.join(f'{c} = {lb}' for c, lb in labels.items())}); the condition "
        f"compares {compared} and this value selects no rows"
        for cond, value, labels in unknown
    ]
    return findings_frame(
        pl.DataFrame(
            {
                "rule_id": "ING-WHERE-VALUE",
                "severity": "warning",
                "category": "conformance",
                "subcategory": "value",
                "table": rule.table,
                "column": [cond.column for cond, _, _ in unknown],
                "site_id": mapping.site_id,
                "source_file": source.file,
                "value": [value for _, value, _ in unknown],
                "message": messages,
            }
        )
    )


def _reshape(
    frame: pl.DataFrame,
    rule: TableRule,
    choices: dict[str, dict[str, str]],
    mapping: SiteMapping,
) -> pl.DataFrame:
    if rule.explode:
        for path in rule.explode:
            dtype = frame.schema.get(path)
            if dtype is not None and not isinstance(dtype, pl.List | pl.Null):
                raise ConfigError(
                    f"'{path}' is not an array in {mapping.sources[rule.source].file}",
                    path=mapping.path,
                    key=f"{rule.key}.explode",
                    hint="explode names array columns only; map single values directly",
                )
            if path not in frame.columns and frame.is_empty():
                # No element anywhere (``"salvage": []`` in every record): the reader saw no
                # fields under the array, but next month's submission will have them.
                frame = frame.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias(path))
            frame = explode_path(frame, path)
        return frame
    if rule.unpivot_pattern is not None:
        return unpivot_groups(frame, rule.unpivot_pattern, index_name=rule.unpivot_index)
    if rule.checkbox_field is not None and rule.checkbox_into is not None:
        return checkbox_to_rows(
            frame,
            rule.checkbox_field,
            into=rule.checkbox_into,
            labels=choices.get(rule.checkbox_field),
        )
    return frame


def qualifier_column(table: TableSpec, target: str) -> str | None:
    """``bm_blast_pct`` -> ``bm_blast_qualifier`` when the table has it."""
    candidate = re.sub(r"_(pct|value)$", "_qualifier", target)
    names = table.column_names
    return candidate if candidate != target and candidate in names else None


def _sentinel_codes(rule_col: ColumnRule, mapping: SiteMapping, reader: str) -> tuple[str, ...]:
    codes = rule_col.sentinels if rule_col.sentinels is not None else mapping.sentinels
    if reader == "redcap" and rule_col.sentinels is None:
        codes = (*codes, *REDCAP_MISSING_CODES)
    return tuple(codes)


def _parse_column(
    frame: pl.DataFrame,
    rule_col: ColumnRule,
    spec: ColumnSpec,
    table: TableSpec,
    mapping: SiteMapping,
    cdm: CDM,
    reader: str,
    mapped_targets: Collection[str],
) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Expressions producing the typed target (and siblings) plus problem markers.

    The first list holds intermediate columns the second one reads (see ``_with_parsed``).
    """
    target = rule_col.target
    original = pl.col(_raw(target))
    sentinel_codes = _sentinel_codes(rule_col, mapping, reader)
    sentinel = is_sentinel(original, sentinel_codes)
    raw = original
    no_match: pl.Expr | None = None
    if rule_col.extract is not None:
        # The pattern's group is the value; a cell it does not match has none (ING-EXTRACT).
        raw = blank_to_null(original.str.extract(rule_col.extract, 1).str.strip_chars())
        no_match = original.is_not_null() & ~sentinel & raw.is_null()
    staged: list[pl.Expr] = []
    out: list[pl.Expr] = []
    bad: Any
    if spec.vocabulary is not None or spec.dtype == "boolean":
        vocab_name = spec.vocabulary or "yes_no_unknown"
        vocab = mapping.vocabulary(cdm, vocab_name, rule_col)
        values = frame.select(raw.alias(_raw(target))).to_series()
        if spec.dtype == "boolean":
            bool_map = boolean_mapping(values, vocab)
            typed = raw.replace_strict(bool_map, default=None, return_dtype=pl.Boolean)
        else:
            typed = map_codes(raw, code_mapping(values, vocab))
        # A vocabulary term wins over a sentinel: "UNK" in a coded column means UNKNOWN.
        sentinel = sentinel & typed.is_null()
        declared_null = (
            raw.str.to_lowercase().is_in([v.lower() for v in rule_col.null_values]).fill_null(False)
            if rule_col.null_values
            else pl.lit(False)
        )
        if rule_col.has_otherwise:
            # ``otherwise:`` catches every other value: its code, or empty on purpose.
            other = raw.is_not_null() & typed.is_null() & ~sentinel & ~declared_null
            if rule_col.otherwise is not None:
                code = rule_col.otherwise
                fallback = (
                    pl.lit(boolean_mapping(pl.Series([code]), vocab).get(code), dtype=pl.Boolean)
                    if spec.dtype == "boolean"
                    else pl.lit(code)
                )
                typed = pl.when(other).then(fallback).otherwise(typed)
            declared_null = declared_null | other
        bad = pl.when(raw.is_not_null() & typed.is_null() & ~sentinel & ~declared_null).then(
            pl.lit("unmapped")
        )
        out.append(typed.alias(target))
        if spec.vocabulary is not None:
            # The source spelling is kept for review, unless it looks like an identifier (a
            # name shifted into the column): computed once per distinct value, like the rest.
            out.append(redact_expr(original).alias(f"{target}_raw"))
    elif spec.dtype == "date":
        formats = rule_col.formats or mapping.date_formats
        text = pl.when(sentinel).then(None).otherwise(raw)
        staged.append(normalized_date_text(text).alias(_norm(target)))
        parsed = parse_dates(text, formats, normalized=pl.col(_norm(target)))
        bad = pl.when(parsed.status != "ok").then(parsed.status)
        out.append(parsed.value.alias(target))
        out.append(parsed.precision.alias(f"{target}_precision"))
    elif spec.dtype in ("integer", "float"):
        text = pl.when(sentinel).then(None).otherwise(raw)
        written: pl.Expr | None = None  # the comparator written before the number, as a code
        if rule_col.part == "year":
            formats = rule_col.formats or mapping.date_formats
            parsed_date = parse_dates(text, (*formats, "Y"))
            value = parsed_date.value.dt.year().cast(pl.Float64)
        else:
            number = parse_numbers(
                text,
                decimal=rule_col.decimal or mapping.decimal,  # type: ignore[arg-type]
                source_unit=rule_col.unit,  # type: ignore[arg-type]
                target_unit=unit_of(spec.unit),
            )
            value, written = number.value, number.written_qualifier
            if rule_col.scale is not None:
                value = value * rule_col.scale
        # The parsed value is read several times (the target, the ok flag, the qualifier, the
        # whole-number test): as an expression, each use would run the regex-heavy parse again
        # (about 20 ms per column, even on a few distinct values), so it is computed once as an
        # intermediate column.
        staged.append(value.alias(_num(target)))
        value = pl.col(_num(target))
        ok = text.is_null() | value.is_not_null()
        qualifier = None if written is None else pl.when(value.is_not_null()).then(written)
        if spec.dtype == "integer":
            # Beyond 2**53 a float no longer holds a whole number exactly (and 1e30 does not fit
            # an Int64): such a value is unparseable as an integer, not a crash.
            whole = (value.round(0) == value) & (value.abs() <= _MAX_EXACT_INT)
            ok = ok & (value.is_null() | whole)
            typed = pl.when(whole).then(value).otherwise(None).cast(pl.Int64)
        else:
            typed = value
        qualifier_target = qualifier_column(table, target)
        bad = pl.when(~ok).then(pl.lit("unparseable"))
        if written is not None and qualifier_target is None:
            # '<0,01' into a column without a qualifier: the bound would pass for a measurement
            bad = bad.when(value.is_not_null() & written.is_not_null()).then(pl.lit(BOUND_KEPT))
        out.append(typed.alias(target))
        if qualifier is not None and qualifier_target and qualifier_target not in mapped_targets:
            out.append(qualifier.alias(qualifier_target))
    else:
        bad = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.String))
        out.append(raw.alias(target))
    bad = bad.otherwise(None).cast(pl.String)
    if no_match is not None:
        bad = pl.when(no_match).then(pl.lit(NO_MATCH)).otherwise(bad)
    out.append(bad.alias(_bad(target)))
    out.append(sentinel.alias(_sentinel(target)))
    return staged, out


def _with_parsed(
    frame: pl.LazyFrame, parses: list[tuple[list[pl.Expr], list[pl.Expr]]]
) -> pl.LazyFrame:
    """Add the columns of ``_parse_column`` results, dropping their intermediate columns."""
    staged = [e for first, _ in parses for e in first]
    final = [e for _, then in parses for e in then]
    if not staged:
        return frame.with_columns(final)
    temporary = [e.meta.output_name() for e in staged]
    return frame.with_columns(staged).with_columns(final).drop(temporary)


_MAX_EXACT_INT = float(2**53)
NO_MATCH = "no_match"
BOUND_KEPT = "bound_kept"  # a number written as a bound, stored where no qualifier can say so

_PROBLEM_RULES = {
    "date": ("ING-DATE", "conformance"),
    "integer": ("ING-NUMBER", "conformance"),
    "float": ("ING-NUMBER", "conformance"),
}


# A value shown in a date finding's message: digits and separators only, so text that landed in
# a date column (a name in a shifted row) is never repeated there.
_DATE_SHAPED = r"^[0-9./ -]{1,24}$"


def _date_message(
    rule_col: ColumnRule, table: str, masked: bool, formats: tuple[str, ...]
) -> pl.Expr:
    """What was expected, the value found, how else it reads, and the YAML key to change."""
    raw = pl.col(_raw(rule_col.target))
    expected = " or ".join(format_description(f) for f in formats)
    shown = (
        pl.lit("the value")
        if masked
        else pl.when(raw.str.contains(_DATE_SHAPED))
        .then(pl.lit("'") + raw + pl.lit("'"))
        .otherwise(pl.lit("the value"))
    )
    status = pl.col(_bad(rule_col.target))
    problem = status.replace_strict(
        {
            STATUS_AMBIGUOUS: (
                " reads as two dates (day and month swapped): write it as YYYY-MM-DD, or list "
                "only one of DMY/MDY"
            ),
            STATUS_YEAR_RANGE: (
                " has a year outside 1800-2200 (for two-digit years list a pattern such as "
                "%d/%m/%y)"
            ),
        },
        default=pl.lit(f" is not a date in {expected}"),
        return_dtype=pl.String,
    )
    reading = other_reading(raw, formats)
    elsewhere = (
        pl.when(reading.is_not_null() & (status != STATUS_AMBIGUOUS))
        .then(pl.lit(" but reads as ") + reading)
        .otherwise(pl.lit(""))
    )
    return pl.concat_str(
        pl.lit(
            f"{table}.{rule_col.target} from '{rule_col.shown or rule_col.source or 'constant'}': "
        ),
        shown,
        problem,
        elsewhere,
        pl.lit(
            f": correct the value, or if the whole column is written so, set {rule_col.key}.formats"
        ),
    )


def _column_findings(
    frame: pl.DataFrame,
    rule_col: ColumnRule,
    spec: ColumnSpec,
    table: TableSpec,
    site_id: str,
    masked: bool,
    formats: tuple[str, ...],
) -> list[pl.DataFrame]:
    if frame.is_empty():  # usually: only rows with a problem or a sentinel get here
        return []
    target = rule_col.target
    value = pl.lit(MASK) if masked else pl.col(_raw(target))
    source = (
        rule_col.shown
        or rule_col.source
        or (f"cell {rule_col.cell}" if rule_col.cell else "constant")
    )
    if spec.vocabulary is not None or spec.dtype == "boolean":
        rule_id, category = "ING-UNMAPPED", "conformance"
        vocab_name = spec.vocabulary or "yes_no_unknown"
        detail = (
            f"not a term of vocabulary '{vocab_name}' nor a site override; "
            f"add it under {rule_col.key}.map"
        )
    else:
        rule_id, category = _PROBLEM_RULES.get(spec.dtype, ("ING-NUMBER", "conformance"))
        detail = ""
    out: list[pl.DataFrame] = []

    def flag(rows: pl.Expr, rule: str, severity: str, category: str, message: pl.Expr) -> None:
        """One finding per row of ``frame`` that ``rows`` selects."""
        hits = frame.filter(rows)
        if hits.height:
            out.append(
                hits.select(
                    pl.lit(rule).alias("rule_id"),
                    pl.lit(severity).alias("severity"),
                    pl.lit(category).alias("category"),
                    pl.lit("value").alias("subcategory"),
                    pl.lit(table.name).alias("table"),
                    pl.lit(target).alias("column"),
                    pl.lit(site_id).alias("site_id"),
                    "source_file",
                    "source_row",
                    value.alias("value"),
                    message.alias("message"),
                )
            )

    where = f"{table.name}.{target} from '{source}'"
    status = pl.col(_bad(target))
    if rule_col.extract is not None:
        flag(
            status == NO_MATCH,
            "ING-EXTRACT",
            "info",
            "conformance",
            pl.lit(f"{where}: the extract pattern finds no value in this cell; left empty"),
        )
    flag(
        status == BOUND_KEPT,
        "ING-QUALIFIER",
        "warning",
        "conformance",
        pl.lit(
            f"{where}: the value is a bound ('<' or '>'), not a measurement, and {target} has no "
            "qualifier column: the number is kept without its sign; check it, or record the "
            "measured value"
        ),
    )
    if detail:
        message = pl.lit(f"{where}: {detail}")
    elif spec.dtype == "date":
        message = _date_message(rule_col, table.name, masked, formats)
    else:
        message = pl.lit(
            f"{where}: not a {'whole number' if spec.dtype == 'integer' else 'number'}; "
            "value set to null"
        )
    flag(
        status.is_not_null() & ~status.is_in([NO_MATCH, BOUND_KEPT]),
        rule_id,
        "error",
        category,
        message,
    )
    flag(
        pl.col(_sentinel(target)),
        "ING-SENTINEL",
        "info",
        "completeness",
        pl.lit(f"{where}: missing-value code read as null"),
    )
    return out


def _distinct_codes(values: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """The distinct values of ``values`` (plus a last null row) and each row's index into them.

    The distinct values become an Enum, so a row's physical code is its position in the frame;
    null values point at the extra null row. A Categorical column read with its own category
    mapping (``read_csv_text(categorical=True)``) already has these codes; its domain may hold
    values of rows filtered out since, which only costs their parse.
    """
    # Both in one chunk: every rule gathers from them, and polars gathers from an array in
    # pieces (a reader's parse is in dozens) several times slower than from a contiguous one.
    if isinstance(values.dtype, pl.Categorical):
        categories = category_values(values)
        nullable = pl.concat([categories, pl.Series(values.name, [None], dtype=pl.String)])
        codes = values.to_physical().cast(pl.UInt32)
        return nullable.rechunk().to_frame(), codes.fill_null(categories.len()).rechunk()
    values = values.cast(pl.String)
    distinct = values.drop_nulls().unique()
    domain = pl.concat([distinct, pl.Series(values.name, [None], dtype=pl.String)]).to_frame()
    codes = values.cast(pl.Enum(distinct)).to_physical().cast(pl.UInt32)
    return domain.rechunk(), codes.fill_null(distinct.len()).rechunk()


ParseKey = tuple[Hashable, ...]
_VALUE = "__value"


def parse_key(col: ColumnRule, table: TableSpec, rule: TableRule) -> ParseKey | None:
    """What the parsed lookup of ``col`` depends on besides its target's name.

    None for columns that are not parsed per distinct value, and for columns with their own
    ``map:`` (its overrides name the column's YAML key).
    """
    if (
        col.source is None
        or col.map
        or col.contains
        or col.extract
        or col.code
        or col.split
        or col.lookup
        or col.target not in table.column_names
    ):
        return None
    spec = table.column(col.target)
    if spec.vocabulary is None and spec.dtype == "string":
        return None
    qualifier = qualifier_column(table, col.target)
    return (
        col.source,
        spec.dtype,
        spec.vocabulary,
        spec.unit,
        col.null_values,
        col.formats,
        col.sentinels,
        col.decimal,
        col.unit,
        col.part,
        col.scale,
        col.has_otherwise,
        col.otherwise,
        qualifier if qualifier not in rule.columns else None,
    )


def is_reshaped(rule: TableRule) -> bool:
    """Whether the rule's rows are not its source rows one for one, or read more than them
    (joins, lookups, pivots, splits): such rules take the general path, without shared parses
    or the reader's codes."""
    return (
        bool(rule.explode)
        or rule.unpivot_pattern is not None
        or bool(rule.checkbox_field)
        or bool(rule.joins)
        or rule.pivot_code is not None
        or rule.splits is not None
        or any(c.lookup is not None for c in rule.columns.values())
    )


def shared_parse_keys(rules: Iterable[TableRule], cdm: CDM) -> set[ParseKey]:
    """Keys of the columns that two or more rules of one source parse the same way."""
    seen: set[ParseKey] = set()
    shared: set[ParseKey] = set()
    for rule in rules:
        if is_reshaped(rule) or rule.table not in cdm.tables:
            continue
        table = cdm.tables[rule.table]
        for col in rule.columns.values():
            key = parse_key(col, table, rule)
            if key is not None:
                (shared if key in seen else seen).add(key)
    return shared


class SharedParses:
    """Parsed lookups of source columns that several rules read the same way, built once.

    A long event export is filtered per event type and EVENT_DATE is parsed by eight rules:
    the distinct values of the whole source column are coded and parsed once, and each rule
    keeps the codes of its own rows. Parsing is per value, so a rule gets the values, markers
    and findings it would have computed from its own distinct values. Rules run on threads:
    the first rule needing an entry builds it, the others wait for it.
    """

    def __init__(self, source: pl.DataFrame, keys: Collection[ParseKey]) -> None:
        self._source = source
        self._keys = frozenset(keys)
        self._lock = threading.Lock()
        self._built: dict[Hashable, Future[Any]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def covers(self, source: pl.DataFrame) -> bool:
        """Whether the codes are positions in ``source`` (the frame given to the rules)."""
        return source is self._source

    def once(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """``build()``, run by the first rule asking for ``key``; the others get its result."""
        with self._lock:
            entry = self._built.get(key)
            owner = entry is None
            if entry is None:
                entry = self._built[key] = Future()
        if owner:
            try:
                entry.set_result(build())
            except BaseException as exc:
                entry.set_exception(exc)
                raise
        return entry.result()

    def codes(self, column: str) -> tuple[pl.DataFrame, pl.Series]:
        """``_distinct_codes`` of the whole source column."""
        result: tuple[pl.DataFrame, pl.Series] = self.once(
            ("codes", column),
            lambda: _distinct_codes(self._source.get_column(column)),
        )
        return result

    def mask(self, conditions: Collection[Condition]) -> pl.Series:
        """The source rows meeting all ``conditions``, evaluated once per distinct value."""
        meets = []
        for cond in conditions:
            domain, codes = self.codes(cond.column)
            meets.append(
                domain.select(condition_expr([cond], domain.schema)).to_series().gather(codes)
            )
        mask = meets[0]
        for more in meets[1:]:
            mask = mask & more
        return mask.alias(_VALUE)

    def lookup(
        self, key: ParseKey, build: Callable[[pl.DataFrame], pl.DataFrame], target: str
    ) -> tuple[str, pl.DataFrame]:
        """(target the lookup was built for, lookup over ``codes(key[0])``'s domain)."""
        column = str(key[0])

        def run() -> tuple[str, pl.DataFrame]:
            return target, build(self.codes(column)[0])

        result: tuple[str, pl.DataFrame] = self.once(("lookup", key), run)
        return result


def _lookup_names(target: str) -> list[str]:
    return [
        _raw(target),
        target,
        f"{target}_precision",
        f"{target}_raw",
        _bad(target),
        _sentinel(target),
    ]


def harmonize_rule(
    source: pl.DataFrame,
    rule: TableRule,
    mapping: SiteMapping,
    cdm: CDM,
    *,
    reader: str,
    choices: dict[str, dict[str, str]],
    identifiers: Mapping[str, str],
    rule_index: int,
    shared: SharedParses | None = None,
    order_by: Sequence[str] = (),
    access: SourceAccess | None = None,
) -> RuleOutput:
    """Apply one rule; see the module docstring.

    ``access`` gives the other sources of the submission, for joins and lookups.

    ``shared`` holds the lookups shared with the other rules of ``source`` (built over it).
    Rows come out ordered by patient id, then the ``order_by`` targets the rule parses, then
    source order: the order the derivations sort the table into, which they then find
    already done (see ``derive.sort_rows``).
    """
    if shared is not None and not shared.covers(source):
        shared = None
    table = cdm.tables[rule.table]
    spec_source = mapping.sources[rule.source]
    allowed = set(spec_source.allow_identifiers)
    check_identifiers(mapping, rule, identifiers, allowed)
    where_findings = empty_findings()
    if reader == "redcap" and choices and rule.where:
        decoded = spec_source.decode and spec_source.dictionary is not None
        rule, unknown = _where_in_delivered_values(rule, choices, decoded=decoded)
        where_findings = _where_findings(unknown, rule, mapping, decoded)
    linked = Linked()
    if reader == "fhir" and source.is_empty():
        # No resource of this type in this bundle: its fields are empty, not unknown.
        absent = {c for c, _ in rule_input_columns(rule) if c not in source.columns}
        source = source.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in sorted(absent))
    if rule.patient_id not in source.columns:
        raise ConfigError(
            f"source column '{rule.patient_id}' not found in {spec_source.label}",
            path=mapping.path,
            key=f"{rule.key}.patient_id",
            hint=did_you_mean(rule.patient_id, list(source.columns)),
        )
    if rule.checkbox_field is not None and not checkbox_columns(
        source.columns, rule.checkbox_field
    ):
        fields = sorted({c.split("___")[0] for c in source.columns if "___" in c})
        raise ConfigError(
            f"no checkbox '{rule.checkbox_field}' in {spec_source.label} "
            f"(no '{rule.checkbox_field}___<code>' columns)",
            path=mapping.path,
            key=f"{rule.key}.checkbox.field",
            hint=did_you_mean(rule.checkbox_field, fields)
            or (f"checkboxes: {', '.join(fields[:8])}" if fields else "the export has none"),
        )
    if rule.explode and rule.explode[0] not in source.columns:
        raise ConfigError(
            f"array column '{rule.explode[0]}' not found in {spec_source.label}",
            path=mapping.path,
            key=f"{rule.key}.explode",
            hint=did_you_mean(rule.explode[0], list(source.columns)),
        )
    # Conditions on source columns select rows before reshaping; conditions on columns that
    # reshaping creates (``events.type`` after ``explode: events``) filter the reshaped rows.
    before = [c for c in rule.where if c.column in source.columns]
    after = [c for c in rule.where if c.column not in source.columns]
    reshaped = is_reshaped(rule) or reader == "fhir"
    key_sources = {name for name, target in rule.key_items() if not target}
    if reshaped:
        # Reshaping stacks columns into one: their categories must be plain text first.
        source = source.with_columns(pl.col(pl.Categorical).cast(pl.String))
    else:
        # Only the columns this rule reads are carried along (a wide export has dozens).
        check_source_columns(mapping, rule, source.columns)
        used = {c for c, _ in rule_input_columns(rule)}
        source = source.select([c for c in source.columns if c in used or c in LINEAGE])
    # Conditions on source columns (and, without reshaping, every column read) want one value
    # per row: an array or object there is a mistake, not something to compare.
    # A list is what `contains` reads, in a condition or a column.
    list_columns = {c.source for c in rule.columns.values() if c.contains is not None and c.source}
    list_columns |= {c.column for c in rule.where if c.contains is not None}
    single = {c.column for c in before if c.contains is None} | (
        set() if reshaped else set(source.columns) - list_columns
    )
    _check_single_values(mapping, rule, source, single)
    # One code per distinct value of a condition column (the event type) makes a rule's
    # condition a gather instead of a text comparison over every row.
    listed = any(isinstance(source.schema.get(c.column), pl.List) for c in before)
    mask = shared.mask(before) if shared is not None and before and not listed else None
    # Columns the reader coded (categorical) are parsed from their codes over the whole source
    # column, so only the codes of the selected rows move; the text stays behind.
    coded = set()
    if not reshaped:
        coded = {
            c.source
            for c in rule.columns.values()
            if c.source is not None
            and c.source != rule.patient_id
            and c.source not in key_sources
            and c.contains is None
            and isinstance(source.schema[c.source], pl.Categorical)
        }
        if coded and mask is None and before:
            mask = source.select(condition_expr(before, source.schema)).to_series()
    full_source = source

    def whole_column(name: str) -> tuple[pl.DataFrame, pl.Series]:
        """Domain and codes of a source column over every source row (shared by the rules of
        the source when possible), the codes narrowed to the selected rows."""
        domain, codes = (
            shared.codes(name)
            if shared is not None
            else _distinct_codes(full_source.get_column(name))
        )
        return domain, codes if mask is None else codes.filter(mask)

    selected = source.drop(coded).filter(
        condition_expr(before, source.schema) if mask is None else mask
    )
    # PID holds the patient key (site id + cleaned local id), null without a local id.
    if not reshaped and isinstance(source.schema[rule.patient_id], pl.Categorical):
        # Built once per distinct id and spread by the reader's codes.
        ids, id_codes = whole_column(rule.patient_id)

        def patient_keys() -> pl.Series:
            return ids.select(
                _patient_key(mapping.site_id, pl.first(), rule.patient_id_extract)
            ).to_series()

        keys = (
            shared.once(("patient_key", rule.patient_id, rule.patient_id_extract), patient_keys)
            if shared is not None
            else patient_keys()
        )
        selected = selected.with_columns(keys.gather(id_codes).alias(PID))
    else:
        selected = selected.with_columns(
            _patient_key(mapping.site_id, pl.col(rule.patient_id), rule.patient_id_extract).alias(
                PID
            )
        )
    frame = _reshape(selected, rule, choices, mapping)
    if rule.explode and frame.is_empty():
        # Fields under an exploded array exist as soon as one element does; with no element,
        # they are empty rather than unknown, and the rule yields zero rows.
        under = tuple(f"{p}." for p in rule.explode)
        missing = {
            c
            for c, _ in rule_input_columns(rule)
            if c not in frame.columns and (c in rule.explode or c.startswith(under))
        }
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in sorted(missing))
    if rule.joins:
        if access is None:
            raise ValueError("a rule with joins needs the other sources (access)")
        frame = apply_joins(frame, rule, mapping, access, linked)
        _check_joined_columns(mapping, rule, frame)
    check_source_columns(mapping, rule, [*frame.columns, *source.columns])
    lists = {c.source for c in rule.columns.values() if c.contains is not None and c.source}
    if reader == "fhir" or rule.pivot_code is not None:
        # FHIR lists are read as one value (single_values); a pivot's codes may be a list.
        lists |= {c for c, t in frame.schema.items() if isinstance(t, pl.List)}
    _check_read_columns(mapping, rule, frame, {c.column for c in before} | coded | lists)
    frame = frame.filter(condition_expr(after, frame.schema))
    if rule.pivot_code is not None:
        frame, rule = pivot_rows(frame, rule)
        # a row of a code no column asks for is not this rule's: NOT-MAPPED unless another
        # rule selects it (nothing is counted as harmonized that went nowhere)
        selected = selected.filter(pl.col("source_row").is_in(frame["source_row"].implode()))
    frame, rule = single_values(frame, rule, mapping, linked)
    frame = split_rows(frame, rule)
    if any(c.lookup is not None for c in rule.columns.values()):
        if access is None:
            raise ValueError("a rule with lookups needs the other sources (access)")
        frame, rule = apply_lookups(frame, rule, table, mapping, access, linked)
    if rule.joins:
        frame = take_joined_rows(frame, rule, linked)
    frame, rule = _with_contains_columns(frame, rule)
    frame = frame.with_row_index(ORDER).with_columns(
        (pl.col(ORDER).cast(pl.Int64) + rule_index * 1_000_000_000).alias(ORDER)
    )
    # Coded, date and number columns read from the source are cleaned and parsed once per
    # distinct source value (dates and lab values repeat a lot), then spread back to the rows by
    # position: a million rows cost what their few thousand spellings cost, plus one hash lookup
    # per row (cheaper than a join on the text). Constants and free text are handled per row.
    originals = {
        c.source: full_source.get_column(c.source) if c.source in coded else frame[c.source]
        for c in rule.columns.values()
        if c.source is not None
    }

    def parsed_lookup(domain: pl.DataFrame, col: ColumnRule, spec: ColumnSpec) -> pl.LazyFrame:
        """The parse of each distinct value in ``domain`` (its only column) for ``col``."""
        domain = domain.select(blank_to_null(pl.first()).alias(_raw(col.target)))
        parse = _parse_column(domain, col, spec, table, mapping, cdm, reader, rule.columns)
        return _with_parsed(domain.lazy(), [parse])

    per_row: list[ColumnRule] = []
    parsed: list[ColumnRule] = []
    lookups: list[pl.LazyFrame] = []
    positions: list[pl.Series] = []
    for col in rule.columns.values():
        spec = table.column(col.target)
        free_text = spec.vocabulary is None and spec.dtype == "string"
        if col.source is None or (
            free_text and not isinstance(originals[col.source].dtype, pl.Categorical)
        ):
            # Free text has as many spellings as rows, unless the reader coded it already.
            per_row.append(col)
            continue
        key = None if reshaped or shared is None else parse_key(col, table, rule)
        if key is not None and shared is not None and key in shared:
            _, codes = whole_column(col.source)

            def build(
                domain: pl.DataFrame, col: ColumnRule = col, spec: ColumnSpec = spec
            ) -> pl.DataFrame:
                return parsed_lookup(domain, col, spec).collect(engine="in-memory")

            built_for, lookup_every = shared.lookup(key, build, col.target)
            renames = dict(zip(_lookup_names(built_for), _lookup_names(col.target), strict=True))
            planned = lookup_every.lazy().rename(renames, strict=False)
        else:
            domain, codes = (
                whole_column(col.source)
                if col.source in coded
                else _distinct_codes(originals[col.source])
            )
            planned = parsed_lookup(domain, col, spec)
        parsed.append(col)
        lookups.append(planned)
        positions.append(codes)
    # One by one: these plans are small, and collect_all's parallel dispatch costs more than
    # it saves (measured: 150 ms against 85 ms per 1M-row event export). In memory: polars 2's
    # default (streaming) engine costs ~4 ms more per plan, and a rule has dozens of them.
    computed = [lookup.collect(engine="in-memory") for lookup in lookups]
    order = _row_order(frame, parsed, computed, positions, order_by)
    if order is not None:
        frame = frame.select(pl.all().gather(order))
        positions = [codes.gather(order) for codes in positions]
    raws = []
    for col in per_row:
        base = pl.col(col.source) if col.source is not None else pl.lit(col.value, dtype=pl.String)
        raws.append(blank_to_null(base.cast(pl.String)).alias(_raw(col.target)))
    frame = frame.with_columns(raws)
    # Raw text and problem markers of parsed columns are only spread to the rows with a problem
    # or a sentinel (the rows that get a finding); the typed values go to every row.
    flagged: dict[str, pl.DataFrame] = {}

    def lineage_of(target: str) -> pl.DataFrame:
        """The rows findings about ``target`` name: a looked-up value's own row."""
        file_column, row_column = lineage_columns(target)
        if row_column in frame.columns:
            return frame.select(
                pl.coalesce(file_column, "source_file").alias("source_file"),
                pl.coalesce(row_column, "source_row").alias("source_row"),
            )
        return frame.select("source_file", "source_row")

    for col, lookup, codes in zip(parsed, computed, positions, strict=True):
        lineage = lineage_of(col.target)
        markers = [_raw(col.target), _bad(col.target), _sentinel(col.target)]
        spread = lookup.drop(markers).select(pl.all().gather(codes))
        # Targets replace same-named source columns (source values were captured above).
        clash = [c for c in spread.columns if c in frame.columns]
        frame = frame.drop(clash).hstack(spread.get_columns())
        hits = lookup.select(
            pl.arg_where(pl.col(_bad(col.target)).is_not_null() | pl.col(_sentinel(col.target)))
        ).to_series()
        if hits.is_empty():
            flagged[col.target] = lineage.clear().hstack(lookup.select(markers).clear())
            continue
        hit_rows = codes.is_in(hits.cast(pl.UInt32).implode())
        flagged[col.target] = lineage.filter(hit_rows).hstack(
            lookup.select(pl.col(markers).gather(codes.filter(hit_rows))).get_columns()
        )
    direct = [
        _parse_column(
            frame, col, table.column(col.target), table, mapping, cdm, reader, rule.columns
        )
        for col in per_row
    ]
    # Eager: collecting a lazy plan over the rule's whole frame would copy every column.
    staged = [e for first, _ in direct for e in first]
    frame = frame.with_columns(staged).with_columns(e for _, then in direct for e in then)
    frame = frame.drop([e.meta.output_name() for e in staged])

    findings: list[pl.DataFrame] = list(linked.findings)
    for col in rule.columns.values():
        spec = table.column(col.target)
        masked = spec.identifier or (col.source is not None and col.source in identifiers)
        per_row_frame = flagged.get(col.target)
        if per_row_frame is None:
            per_row_frame = frame
            if lineage_columns(col.target)[1] in frame.columns:
                per_row_frame = frame.drop("source_file", "source_row").hstack(
                    lineage_of(col.target).get_columns()
                )
        findings += _column_findings(
            per_row_frame,
            col,
            spec,
            table,
            mapping.site_id,
            masked,
            col.formats or mapping.date_formats,
        )

    # Quarantine: no patient id, or a required column (not derivable) missing or unreadable.
    reasons: list[pl.DataFrame] = []
    missing_key = frame.filter(pl.col(PID).is_null())
    if missing_key.height:
        reasons.append(
            missing_key.select(
                "source_file",
                "source_row",
                pl.lit("ING-MISSING-KEY").alias("rule_id"),
                pl.lit(rule.patient_id).alias("column"),
            )
        )
    # Rows combined by key are checked once combined (cartreg.ingest.combine).
    required = [
        c
        for c in table.columns
        if c.required
        and c.role == "declared"
        and c.name not in DERIVED_COLUMNS
        and rule.combine_key is None
    ]
    for spec in required:
        if spec.name not in rule.columns:
            raise ConfigError(
                f"required CDM column '{spec.name}' of {table.name} is not mapped",
                path=mapping.path,
                key=f"{rule.key}.columns",
                hint=f"add {spec.name}: {{from: <source column>}} or {{value: <constant>}}",
            )
        lacking = frame.filter(pl.col(PID).is_not_null() & pl.col(spec.name).is_null())
        if lacking.height:
            reasons.append(
                lacking.select(
                    "source_file",
                    "source_row",
                    pl.lit("ING-REQUIRED").alias("rule_id"),
                    pl.lit(spec.name).alias("column"),
                )
            )
    quarantine = (
        pl.concat(reasons, how="vertical")
        if reasons
        else pl.DataFrame(
            schema={
                "source_file": pl.String,
                "source_row": pl.Int64,
                "rule_id": pl.String,
                "column": pl.String,
            }
        )
    )
    if quarantine.height:
        findings.append(
            quarantine.join(
                frame.select("source_file", "source_row", PID).unique(
                    ["source_file", "source_row"]
                ),
                on=["source_file", "source_row"],
                how="left",
            ).select(
                "rule_id",
                pl.lit("error").alias("severity"),
                pl.lit("completeness").alias("category"),
                pl.lit("atemporal").alias("subcategory"),
                pl.lit(table.name).alias("table"),
                "column",
                pl.lit(mapping.site_id).alias("site_id"),
                "source_file",
                "source_row",
                pl.lit(None, dtype=pl.String).alias("value"),
                pl.when(pl.col("rule_id") == "ING-MISSING-KEY")
                .then(pl.lit(f"no patient id in '{rule.patient_id}'; row quarantined"))
                .otherwise(
                    format_text(
                        "required {}.{} missing or unreadable; row quarantined",
                        pl.lit(table.name),
                        pl.col("column"),
                    )
                )
                .alias("message"),
            )
        )
    bad_rows = quarantine.select("source_file", "source_row").unique()
    kept = frame.lazy()
    if bad_rows.height:
        kept = kept.join(bad_rows.lazy(), on=["source_file", "source_row"], how="anti")
    targets = [c for c in frame.columns if not c.startswith("__") and c in table.column_names]
    rows = kept.select(
        pl.lit(mapping.site_id).alias("site_id"),
        "source_file",
        "source_row",
        pl.col(PID).alias("patient_key"),
        *[c for c in targets if c not in ("site_id", "source_file", "source_row", "patient_key")],
        ORDER,
        *_combine_columns(rule, frame.schema),
    ).collect()
    # A source column passed through under its CDM name still holds the reader's categories.
    rows = rows.with_columns(pl.col(pl.Categorical).cast(pl.String))
    all_findings = [findings_frame(f) for f in findings if f.height]
    if where_findings.height:
        all_findings.append(where_findings)
    return RuleOutput(
        rows=rows,
        findings=pl.concat(all_findings, how="vertical") if all_findings else empty_findings(),
        selected=selected.get_column("source_row"),
        quarantine=quarantine,
        used=linked.used,
    )


def _combine_columns(rule: TableRule, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    """For a rule combined by key: the marker and the key items read from source columns."""
    if rule.combine_key is None:
        return []
    out = [pl.lit(True).alias(COMBINE)]
    for position, (name, target) in enumerate(rule.key_items()):
        if target:
            continue
        value = single_value(name)[0] if isinstance(schema.get(name), pl.List) else pl.col(name)
        out.append(
            blank_to_null(value.cast(pl.String).str.strip_chars()).alias(key_column(position))
        )
    return out


def _check_joined_columns(mapping: SiteMapping, rule: TableRule, frame: pl.DataFrame) -> None:
    for column, key in joined_columns(rule):
        if column not in frame.columns:
            name = column.split(".", 1)[0]
            join = next(j for j in rule.joins if j.name == name)
            brought = [c.split(".", 1)[1] for c in frame.columns if c.startswith(f"{name}.")]
            raise ConfigError(
                f"source column '{column.split('.', 1)[1]}' not found in "
                f"{mapping.sources[join.source].file} (joined as '{name}')",
                path=mapping.path,
                key=key,
                hint=did_you_mean(column.split(".", 1)[1], brought),
            )


def _with_contains_columns(frame: pl.DataFrame, rule: TableRule) -> tuple[pl.DataFrame, TableRule]:
    """Columns ``{from: list, contains: [..]}`` become Y/N text columns the rule then maps like
    any yes/no column (their ``_raw`` is that Y or N)."""
    listed = {t: c for t, c in rule.columns.items() if c.contains is not None and c.source}
    if not listed:
        return frame, rule
    added, columns = [], dict(rule.columns)
    for target, col in listed.items():
        assert col.source is not None and col.contains is not None
        name = f"__contains::{target}"
        hit = contains_any(pl.col(col.source), frame.schema.get(col.source), col.contains)
        added.append(pl.when(hit).then(pl.lit("Y")).when(~hit).then(pl.lit("N")).alias(name))
        columns[target] = dataclasses.replace(col, source=name, contains=None)
    return frame.with_columns(added), dataclasses.replace(rule, columns=columns)


def _patient_key(site_id: str, local_id: pl.Expr, extract: str | None = None) -> pl.Expr:
    """``<site id>-<local id>``; null when the local id is blank."""
    return patient_key(site_id, local_id, extract)


def _row_order(
    frame: pl.DataFrame,
    parsed: list[ColumnRule],
    computed: list[pl.DataFrame],
    positions: list[pl.Series],
    order_by: Sequence[str],
) -> pl.Series | None:
    """Positions putting ``frame`` in (patient id, ``order_by`` values, source) order, or None
    when it is in that order already."""
    keys = [pl.col(PID)]
    values = []
    for target in order_by:
        for col, lookup, codes in zip(parsed, computed, positions, strict=True):
            if col.target == target:
                values.append(lookup.get_column(target).gather(codes).alias(target))
                keys.append(pl.col(target))
    keyed = frame.select(keys[0], ORDER).hstack(values)
    order = keyed.select(pl.arg_sort_by([*keys, pl.col(ORDER)], nulls_last=True)).to_series()
    return None if is_identity(order) else order


def is_identity(order: pl.Series) -> bool:
    """Whether ``order`` lists the positions 0..n-1 in order (a sort that moves nothing)."""
    positions = pl.int_range(0, order.len(), eager=True).cast(order.dtype)
    return order.is_empty() or bool((order == positions).all())


def _check_read_columns(
    mapping: SiteMapping, rule: TableRule, frame: pl.DataFrame, elsewhere: Collection[str]
) -> None:
    """ConfigError for a column read as a single value that holds arrays or objects."""
    file = mapping.sources[rule.source].file
    for column, key in rule_input_columns(rule):
        if column in elsewhere:
            continue
        if column not in frame.columns:
            # Present before reshaping, gone after: an exploded array of objects.
            fields = [c for c in frame.columns if c.startswith(f"{column}.")]
            raise ConfigError(
                f"source column '{column}' of {file} holds objects; map their fields",
                path=mapping.path,
                key=key,
                hint=f"e.g. {', '.join(fields[:4])}" if fields else "",
            )
        if isinstance(frame.schema[column], pl.List):
            raise ConfigError(
                f"source column '{column}' of {file} holds arrays",
                path=mapping.path,
                key=key,
                hint=f"add '{column}' to this rule's explode (after the arrays holding it)",
            )


def _check_single_values(
    mapping: SiteMapping, rule: TableRule, frame: pl.DataFrame, columns: Collection[str]
) -> None:
    """ConfigError for a column a rule compares or reads as one value that holds arrays."""
    keys = dict(reversed(rule_input_columns(rule)))
    for column in sorted(columns):
        if column in keys and isinstance(frame.schema.get(column), pl.List | pl.Array):
            file = mapping.sources[rule.source].file
            raise ConfigError(
                f"source column '{column}' of {file} holds arrays",
                path=mapping.path,
                key=keys[column],
                hint=f"add '{column}' to this rule's explode, or read another column",
            )


def check_identifiers(
    mapping: SiteMapping, rule: TableRule, identifiers: Mapping[str, str], allowed: set[str]
) -> None:
    """ConfigError when ``rule`` reads an identifier-like column not in ``allowed``."""
    used: list[tuple[str, str, str | None]] = [(rule.patient_id, f"{rule.key}.patient_id", None)]
    used += [
        (c.source, f"{c.key}.from", c.part) for c in rule.columns.values() if c.source is not None
    ]
    for column, key, part in used:
        if column in identifiers and column not in allowed and part != "year":
            raise ConfigError(
                f"source column '{column}' looks like a direct identifier "
                f"({identifiers[column]}) and is not copied",
                path=mapping.path,
                key=key,
                hint=(
                    "map another column, use part: year for a birth date, or list it under "
                    f"{mapping.sources[rule.source].key}.allow_identifiers"
                ),
            )
