"""Great Expectations interoperability: the CDM and the single-table rules as GX suites.

A consortium already on GX can validate harmonized tables with these suites. One suite per CDM
table (``cartreg_<table>``) holds the schema's constraints (required, vocabulary, range, pattern,
primary key) and every rule GX can express on one table (null, set, range, regex, uniqueness,
and conditional rules whose condition is a plain column comparison, as a pandas
``row_condition``). Cross-table rules (foreign keys, day order across tables, SQL) cannot be
expressed in GX on pandas; they are listed in the suite's ``meta`` as skipped, with the reason.

Building suites needs only the standard library; GX itself (heavy: ~3 s to import) is imported
inside :func:`run_suites` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartreg.errors import InputError

if TYPE_CHECKING:
    import polars as pl

    from cartreg.cdm import CDM
    from cartreg.rules import Rule

GX_VERSION = "1.24"
_BETWEEN = {
    "gt": ("min_value", True),
    "gte": ("min_value", False),
    "lt": ("max_value", True),
    "lte": ("max_value", False),
}


class NotExpressible(Exception):
    """A rule (or condition) that has no GX equivalent."""


def _quote(name: str) -> str:
    return f"`{name}`"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def row_condition(cond: Mapping[str, Any]) -> str:
    """A pandas ``DataFrame.query`` expression for a cartreg condition (NaN compares False)."""
    if "all" in cond:
        return " & ".join(f"({row_condition(c)})" for c in cond["all"])
    if "any" in cond:
        return " | ".join(f"({row_condition(c)})" for c in cond["any"])
    if "not" in cond or "minus" in cond or "abs" in cond or "null_as" in cond:
        raise NotExpressible("negated, null-defaulted or arithmetic conditions")
    col = _quote(str(cond["column"]))
    if cond.get("not_null") is True or cond.get("is_null") is False:
        return f"{col}.notnull()"
    if cond.get("is_null") is True or cond.get("not_null") is False:
        return f"{col}.isnull()"
    ops = {"equals": "==", "not_equals": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    for op, sym in ops.items():
        if op in cond:
            return f"{col} {sym} {_literal(cond[op])}"
    if "in" in cond:
        return f"{col}.isin([{', '.join(_literal(v) for v in cond['in'])}])"
    raise NotExpressible(f"condition operator {sorted(cond)}")


def _expectation(kind: str, meta: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": dict(meta)}


def _with_condition(exp: dict[str, Any], where: Mapping[str, Any] | None) -> dict[str, Any]:
    if where:
        exp["kwargs"]["row_condition"] = row_condition(where)
        exp["kwargs"]["condition_parser"] = "pandas"
    return exp


def _then_expectation(then: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    if set(then) - {
        "column",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "not_in",
        "equals",
        "not_null",
        "gt_column",
        "gte_column",
        "lt_column",
        "lte_column",
    }:
        raise NotExpressible("the required condition is not a single column comparison")
    col = str(then["column"])
    for op, (bound, strict) in _BETWEEN.items():
        if op in then:
            strict_key = "strict_min" if bound == "min_value" else "strict_max"
            return _expectation(
                "expect_column_values_to_be_between",
                meta,
                column=col,
                **{bound: then[op], strict_key: strict},
            )
    if "in" in then or "equals" in then:
        values = then.get("in", [then.get("equals")])
        return _expectation("expect_column_values_to_be_in_set", meta, column=col, value_set=values)
    if "not_in" in then:
        return _expectation(
            "expect_column_values_to_not_be_in_set", meta, column=col, value_set=then["not_in"]
        )
    if then.get("not_null") is True:
        return _expectation("expect_column_values_to_not_be_null", meta, column=col)
    for op, (a_is_col, equal) in {
        "gt_column": (True, False),
        "gte_column": (True, True),
        "lt_column": (False, False),
        "lte_column": (False, True),
    }.items():
        if op in then:
            other = str(then[op])
            a, b = (col, other) if a_is_col else (other, col)
            return _expectation(
                "expect_column_pair_values_a_to_be_greater_than_b",
                meta,
                column_A=a,
                column_B=b,
                or_equal=equal,
                ignore_row_if="either_value_is_missing",
            )
    raise NotExpressible("the required condition is not a single column comparison")


def rule_expectation(rule: Rule) -> dict[str, Any]:
    """The GX expectation of a single-table rule; raises NotExpressible otherwise.

    A rule's tolerance becomes GX's ``mostly`` (pass when at least 1 - threshold of the rows
    in scope conform), so both engines pass and fail together.
    """
    exp = _rule_expectation(rule)
    if rule.threshold_pct > 0:
        exp["kwargs"]["mostly"] = round(1.0 - rule.threshold_pct / 100.0, 6)
    return exp


def _rule_expectation(rule: Rule) -> dict[str, Any]:
    p = rule.params
    meta = {"rule_id": rule.id, "severity": rule.severity, "source": "rule", "name": rule.name}
    kind = rule.check_type
    if kind in ("not_null", "in_set", "not_in_set", "range", "regex"):
        col = str(p["column"])
        if kind == "not_null":
            exp = _expectation("expect_column_values_to_not_be_null", meta, column=col)
        elif kind == "in_set":
            exp = _expectation(
                "expect_column_values_to_be_in_set", meta, column=col, value_set=list(p["values"])
            )
        elif kind == "not_in_set":
            exp = _expectation(
                "expect_column_values_to_not_be_in_set",
                meta,
                column=col,
                value_set=list(p["values"]),
            )
        elif kind == "range":
            exp = _expectation(
                "expect_column_values_to_be_between",
                meta,
                column=col,
                min_value=p.get("min"),
                max_value=p.get("max"),
            )
        else:
            exp = _expectation(
                "expect_column_values_to_match_regex", meta, column=col, regex=str(p["pattern"])
            )
        return _with_condition(exp, p.get("where"))
    if kind == "unique":
        columns = [str(c) for c in p["columns"]]
        exp = _expectation(
            "expect_compound_columns_to_be_unique",
            meta,
            column_list=columns,
            ignore_row_if="any_value_is_missing",
        )
        return _with_condition(exp, p.get("where"))
    if kind == "conditional" and not p.get("join"):
        return _with_condition(_then_expectation(p["then"], meta), p.get("when"))
    raise NotExpressible(
        f"check type {kind} spans tables or rows"
        if kind != "conditional"
        else "conditional rule with a join"
    )


def schema_expectations(cdm: CDM, table: str) -> list[dict[str, Any]]:
    """Expectations for the CDM constraints of one table (the CDM-* schema checks)."""
    spec = cdm.table(table)
    out: list[dict[str, Any]] = []
    for col in spec.columns:
        base = {"source": "schema", "severity": "error"}
        if col.required:
            out.append(
                _expectation(
                    "expect_column_values_to_not_be_null",
                    {**base, "rule_id": "CDM-REQUIRED"},
                    column=col.name,
                )
            )
        if col.vocabulary:
            codes = list(cdm.vocabularies[col.vocabulary].codes)
            out.append(
                _expectation(
                    "expect_column_values_to_be_in_set",
                    {**base, "rule_id": "CDM-VOCAB"},
                    column=col.name,
                    value_set=codes,
                )
            )
        if col.min is not None or col.max is not None:
            out.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    {**base, "rule_id": "CDM-RANGE"},
                    column=col.name,
                    min_value=col.min,
                    max_value=col.max,
                )
            )
        if col.pattern:
            out.append(
                _expectation(
                    "expect_column_values_to_match_regex",
                    {**base, "rule_id": "CDM-PATTERN"},
                    column=col.name,
                    regex=col.pattern,
                )
            )
    if spec.primary_key:
        meta = {"source": "schema", "severity": "error", "rule_id": "CDM-UNIQUE"}
        if len(spec.primary_key) == 1:
            out.append(
                _expectation("expect_column_values_to_be_unique", meta, column=spec.primary_key[0])
            )
        else:
            out.append(
                _expectation(
                    "expect_compound_columns_to_be_unique", meta, column_list=list(spec.primary_key)
                )
            )
    return out


def build_suites(cdm: CDM, rules: Sequence[Rule]) -> dict[str, dict[str, Any]]:
    """One GX suite (as the JSON GX persists) per CDM table."""
    suites: dict[str, dict[str, Any]] = {}
    skipped: dict[str, list[dict[str, str]]] = {t: [] for t in cdm.tables}
    per_table: dict[str, list[dict[str, Any]]] = {
        t: schema_expectations(cdm, t) for t in cdm.tables
    }
    for rule in rules:
        try:
            per_table[rule.primary_table].append(rule_expectation(rule))
        except NotExpressible as why:
            skipped.setdefault(rule.primary_table, []).append(
                {"rule_id": rule.id, "reason": str(why)}
            )
    for table, expectations in per_table.items():
        suites[table] = {
            "name": f"cartreg_{table}",
            "expectations": expectations,
            "meta": {
                "great_expectations_version": GX_VERSION,
                "cartreg": {
                    "cdm_version": cdm.version,
                    "table": table,
                    "skipped_rules": skipped.get(table, []),
                },
            },
        }
    return suites


def write_suites(suites: Mapping[str, Mapping[str, Any]], dest: Path) -> list[Path]:
    """Write ``<dest>/expectations/<suite>.json`` (the GX file-context layout)."""
    folder = dest / "expectations"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suite in suites.values():
        path = folder / f"{suite['name']}.json"
        path.write_text(json.dumps(suite, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _class_name(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


def run_suites(
    tables: Mapping[str, pl.DataFrame], suites: Mapping[str, Mapping[str, Any]]
) -> pl.DataFrame:
    """Validate each table with its suite in GX (pandas); one row per expectation.

    Columns: table, rule_id, expectation, success, unexpected_count.
    """
    import logging
    import warnings

    import polars as pl

    try:
        import great_expectations as gx
    except ImportError:
        raise InputError(
            "Great Expectations is not installed", hint="pip install 'cartreg[gx]'"
        ) from None
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name="cartreg")
    rows: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        # String row conditions are deprecated in GX 1.9+ but are what a persisted suite holds
        # and still run in 1.x; Condition objects cannot be written as plain JSON.
        warnings.simplefilter("ignore", DeprecationWarning)
        for table, frame in tables.items():
            if table not in suites:
                continue
            spec = suites[table]
            suite = gx.ExpectationSuite(name=str(spec["name"]))
            for exp in spec["expectations"]:
                cls = getattr(gx.expectations, _class_name(str(exp["type"])))
                suite.add_expectation(cls(**exp["kwargs"], meta=dict(exp["meta"])))
            suite = context.suites.add(suite)
            asset = source.add_dataframe_asset(name=table)
            batch = asset.add_batch_definition_whole_dataframe(f"{table}_all").get_batch(
                batch_parameters={"dataframe": frame.to_pandas()}
            )
            result = batch.validate(suite)
            for item in result.results:  # one entry per expectation, not per data row
                config = item.expectation_config
                if config is None:
                    continue
                rows.append(
                    {
                        "table": table,
                        "rule_id": str((config.meta or {}).get("rule_id", "")),
                        "expectation": str(config.type),
                        "success": bool(item.success),
                        "unexpected_count": int((item.result or {}).get("unexpected_count") or 0),
                    }
                )
    schema = {
        "table": pl.String,
        "rule_id": pl.String,
        "expectation": pl.String,
        "success": pl.Boolean,
        "unexpected_count": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)
