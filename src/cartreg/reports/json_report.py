"""The JSON report: a documented, versioned schema (docs/report-schema.json), stable ordering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cartreg.validation import Report


def render_json(report: Report) -> str:
    """The report as JSON text (schema key order; rules by id; findings by severity, location)."""
    return report.to_json()


def load_schema(path: Path | None = None) -> dict[str, Any]:
    """The JSON Schema of the report (``docs/report-schema.json`` of a source checkout)."""
    from cartreg.paths import repo_root

    target = path or repo_root() / "docs" / "report-schema.json"
    data: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    return data
