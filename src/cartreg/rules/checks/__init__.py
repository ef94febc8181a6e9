"""Registry of check types: parameterized builders of violating rows and denominators."""

from cartreg.rules.checks import cross, single, sql
from cartreg.rules.checks.base import (
    REGISTRY,
    VIOLATION_COLUMNS,
    CheckContext,
    CheckOutput,
    CheckType,
    validate_params,
)

__all__ = [
    "REGISTRY",
    "VIOLATION_COLUMNS",
    "CheckContext",
    "CheckOutput",
    "CheckType",
    "cross",
    "single",
    "sql",
    "validate_params",
]
