"""Data-quality rules: declarations (YAML, one file per rule), check types and the engine."""

from __future__ import annotations

from typing import Any

from cartreg.rules.model import Example, Rule, find_rule, load_rule, load_rules

__all__ = ["Example", "Rule", "RuleRun", "find_rule", "load_rule", "load_rules", "run_rules"]


def __getattr__(name: str) -> Any:
    # The engine imports polars and the CDM validator; load it only when it is asked for, so
    # that `cartreg rules list` stays light.
    if name in ("run_rules", "RuleRun"):
        from cartreg.rules import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
