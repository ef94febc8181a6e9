"""Data-quality rule declarations and their loader. No polars here: rules are data.

One YAML file per rule under ``rules/<category>/<ID>_<short_name>.yaml``. The loader checks the
shape of every file (keys, Kahn category, severity, check type and parameters, the CDM tables and
columns it requires) and raises a one-line :class:`ConfigError` naming the file and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartreg.errors import ConfigError, did_you_mean
from cartreg.paths import rules_dir
from cartreg.yamlio import entries, load_yaml

if TYPE_CHECKING:
    from cartreg.cdm import CDM

CATEGORIES: dict[str, tuple[str, ...]] = {
    "conformance": ("value", "relational", "computational"),
    "completeness": ("none",),
    "plausibility": ("uniqueness", "atemporal", "temporal"),
}
SEVERITIES = ("error", "warning", "info")
RULE_ID = re.compile(r"^[A-Z]{2,3}-\d{3}$")
_RULE_KEYS = {
    "id",
    "name",
    "category",
    "subcategory",
    "severity",
    "requires",
    "check",
    "threshold_pct",
    "description",
    "guidance",
    "examples",
    "references",
}
_REQUIRED_KEYS = (
    "id",
    "name",
    "category",
    "subcategory",
    "severity",
    "requires",
    "check",
    "description",
    "guidance",
    "examples",
)
_EXAMPLE_KEYS = {"description", "tables", "violated"}


@dataclass(frozen=True)
class Example:
    """A small set of CDM rows and the number of rows the rule must flag in them."""

    tables: Mapping[str, tuple[Mapping[str, Any], ...]]
    violated: int
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """One data-quality rule (a check type plus its parameters, and its documentation)."""

    id: str
    name: str
    category: str
    subcategory: str
    severity: str
    requires: Mapping[str, tuple[str, ...]]
    check_type: str
    params: Mapping[str, Any]
    threshold_pct: float
    description: str
    guidance: str
    pass_examples: tuple[Example, ...] = ()
    fail_examples: tuple[Example, ...] = ()
    references: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)

    @property
    def primary_table(self) -> str:
        """The table whose rows the rule counts (its denominator) and reports."""
        if "table" in self.params:
            return str(self.params["table"])
        side = "earlier" if self.params.get("locate") == "earlier" else "later"
        return str(self.params.get(side, "")).partition(".")[0]

    @property
    def kahn(self) -> str:
        return (
            self.category if self.subcategory == "none" else f"{self.category}/{self.subcategory}"
        )

    def doc_dict(self) -> dict[str, Any]:
        """The documentation fields shown in reports (no examples)."""
        return {
            "rule_id": self.id,
            "name": self.name,
            "category": self.category,
            "subcategory": self.subcategory,
            "severity": self.severity,
            "threshold_pct": self.threshold_pct,
            "requires": {t: list(c) for t, c in self.requires.items()},
            "check_type": self.check_type,
            "description": self.description,
            "guidance": self.guidance,
        }


def _text(raw: Mapping[str, Any], key: str, path: Path) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"'{key}' must be a non-empty string", path=path, key=key)
    return " ".join(value.split())


def _requires(raw: Any, path: Path, cdm: CDM | None) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            "'requires' must map table names to lists of columns", path=path, key="requires"
        )
    out: dict[str, tuple[str, ...]] = {}
    for table, columns in raw.items():
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ConfigError("must be a list of column names", path=path, key=f"requires.{table}")
        if cdm is not None:
            if table not in cdm.tables:
                hint = did_you_mean(str(table), list(cdm.tables))
                raise ConfigError(
                    f"unknown CDM table '{table}'", path=path, key="requires", hint=hint
                )
            known = cdm.tables[table].column_names
            for col in columns:
                if col not in known:
                    raise ConfigError(
                        f"unknown column '{col}' of table {table}",
                        path=path,
                        key=f"requires.{table}",
                        hint=did_you_mean(col, known),
                    )
        out[str(table)] = tuple(columns)
    return out


def _examples(
    raw: Any, path: Path, kind: str, requires: Mapping[str, tuple[str, ...]]
) -> tuple[Example, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"at least one '{kind}' example is needed", path=path, key=f"examples.{kind}"
        )
    out: list[Example] = []
    section = f"examples.{kind}"
    for key, item in entries(
        raw, path=path, section=section, allowed=_EXAMPLE_KEYS, noun="example"
    ):
        tables = item.get("tables")
        if not isinstance(tables, Mapping):
            raise ConfigError(
                "'tables' must map table names to lists of rows", path=path, key=f"{key}.tables"
            )
        rows: dict[str, tuple[Mapping[str, Any], ...]] = {}
        for table, table_rows in tables.items():
            if not isinstance(table_rows, list) or not all(
                isinstance(r, Mapping) for r in table_rows
            ):
                raise ConfigError(
                    "must be a list of rows (mappings)", path=path, key=f"{key}.tables.{table}"
                )
            rows[str(table)] = tuple(table_rows)
        violated = item.get("violated")
        if not isinstance(violated, int) or violated < 0:
            raise ConfigError("'violated' must be a count >= 0", path=path, key=f"{key}.violated")
        if kind == "pass" and violated != 0:
            raise ConfigError(
                "a pass example must have violated: 0", path=path, key=f"{key}.violated"
            )
        if kind == "fail" and violated == 0:
            raise ConfigError(
                "a fail example must flag at least one row", path=path, key=f"{key}.violated"
            )
        out.append(
            Example(tables=rows, violated=violated, description=str(item.get("description", "")))
        )
    return tuple(out)


def parse_rule(raw: Any, path: Path, cdm: CDM | None = None) -> Rule:
    """Build a :class:`Rule` from a parsed YAML mapping, checking every key."""
    from cartreg.rules.checks import validate_params

    if not isinstance(raw, Mapping):
        raise ConfigError("a rule file must be a mapping", path=path)
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"unknown key '{name}'",
            path=path,
            key=name,
            hint=did_you_mean(name, _RULE_KEYS) or f"allowed: {', '.join(sorted(_RULE_KEYS))}",
        )
    for key in _REQUIRED_KEYS:
        if key not in raw:
            raise ConfigError(f"missing key '{key}'", path=path, key=key)
    rule_id = _text(raw, "id", path)
    if not RULE_ID.match(rule_id):
        raise ConfigError(f"rule id '{rule_id}' must look like PT-003", path=path, key="id")
    if not path.name.startswith(f"{rule_id}_"):
        raise ConfigError(f"file name must start with '{rule_id}_'", path=path, key="id")
    category = _text(raw, "category", path)
    if category not in CATEGORIES:
        raise ConfigError(
            f"unknown category '{category}'",
            path=path,
            key="category",
            hint=did_you_mean(category, list(CATEGORIES)),
        )
    subcategory = _text(raw, "subcategory", path)
    if subcategory not in CATEGORIES[category]:
        raise ConfigError(
            f"subcategory '{subcategory}' is not one of {category}",
            path=path,
            key="subcategory",
            hint=f"allowed: {', '.join(CATEGORIES[category])}",
        )
    severity = _text(raw, "severity", path)
    if severity not in SEVERITIES:
        raise ConfigError(
            f"unknown severity '{severity}'",
            path=path,
            key="severity",
            hint=f"allowed: {', '.join(SEVERITIES)}",
        )
    threshold = raw.get("threshold_pct", 0)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 100
    ):
        raise ConfigError(
            "'threshold_pct' must be a number in [0, 100]", path=path, key="threshold_pct"
        )
    check = raw["check"]
    if not isinstance(check, Mapping) or not isinstance(check.get("type"), str):
        raise ConfigError("'check' must be a mapping with a 'type'", path=path, key="check")
    params = {k: v for k, v in check.items() if k != "type"}
    validate_params(check["type"], params, path)
    requires = _requires(raw["requires"], path, cdm)
    examples = raw["examples"]
    if not isinstance(examples, Mapping):
        raise ConfigError("'examples' must have 'pass' and 'fail' lists", path=path, key="examples")
    refs = raw.get("references", [])
    return Rule(
        id=rule_id,
        name=_text(raw, "name", path),
        category=category,
        subcategory=subcategory,
        severity=severity,
        requires=requires,
        check_type=check["type"],
        params=params,
        threshold_pct=float(threshold),
        description=_text(raw, "description", path),
        guidance=_text(raw, "guidance", path),
        pass_examples=_examples(examples.get("pass"), path, "pass", requires),
        fail_examples=_examples(examples.get("fail"), path, "fail", requires),
        references=tuple(str(r) for r in refs) if isinstance(refs, list) else (),
        path=path,
    )


def load_rule(path: Path, cdm: CDM | None = None) -> Rule:
    return parse_rule(load_yaml(path), path, cdm)


def load_rules(folder: Path | str | None = None, *, cdm: CDM | None = None) -> tuple[Rule, ...]:
    """Every ``*.yaml`` rule under ``folder`` (default: the bundled ``rules/``), sorted by id."""
    root = rules_dir(folder)
    if not root.is_dir():
        raise ConfigError("rules folder not found", path=root, hint="give --rules DIR")
    rules = [load_rule(p, cdm) for p in sorted(root.rglob("*.yaml"))]
    seen: dict[str, Path | None] = {}
    for rule in rules:
        if rule.id in seen:
            raise ConfigError(
                f"rule id {rule.id} is also used by {seen[rule.id]}",
                path=rule.path or root,
                key="id",
            )
        seen[rule.id] = rule.path
    if not rules:
        raise ConfigError("no rule files (*.yaml) found", path=root)
    return tuple(sorted(rules, key=lambda r: r.id))


def find_rule(rules: tuple[Rule, ...], rule_id: str) -> Rule:
    for rule in rules:
        if rule.id == rule_id.upper():
            return rule
    raise ConfigError(
        f"no rule with id '{rule_id}'",
        path=rules_dir(),
        hint=did_you_mean(rule_id.upper(), [r.id for r in rules]),
    )
