"""Submitting small versions of SITE_A at a given time, with hand-made findings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cartreg.cdm import CDM
from cartreg.findings import findings_frame
from cartreg.queries.lifecycle import close_queries, history, site_queries
from cartreg.registry import open_registry, submit_output
from tests.registry.helpers import Rows, write_output

SITE = "SITE_A"


def blasts(row: int, value: str, *, severity: str = "error") -> dict[str, Any]:
    """A finding on the marrow blasts of the assessment at ``row`` of the assessments file."""
    return {
        "rule_id": "PA-004",
        "severity": severity,
        "category": "plausibility",
        "message": f"blasts {value}",
        "site_id": SITE,
        "table": "disease_assessments",
        "column": "bm_blast_pct",
        "source_file": "disease_assessments.csv",
        "source_row": row,
        "value": value,
    }


class Site:
    """Submits versions of SITE_A at given times (the clock of the test)."""

    def __init__(
        self, registry: Path, mapping: Path, tmp: Path, cdm: CDM, mp: pytest.MonkeyPatch
    ) -> None:
        self.registry, self.mapping, self.tmp, self.cdm, self.mp = registry, mapping, tmp, cdm, mp
        self.count = 0

    def submit(self, when: str, rows: Rows, findings: list[dict[str, Any]], **options: Any) -> Any:
        self.count += 1
        self.mp.setenv("CARTREG_TEST_NOW", when)
        out = write_output(self.cdm, self.tmp / f"out{self.count}", SITE, rows, findings)
        frame = findings_frame(pl.DataFrame(findings)) if findings else None
        return submit_output(
            self.registry,
            out,
            site=SITE,
            findings=frame,
            mapping_path=self.mapping,
            who="dm",
            cdm=self.cdm,
            **options,
        )

    def queries(self) -> dict[str, tuple[str, str | None]]:
        with open_registry(self.registry) as reg:
            frame = site_queries(reg, SITE)
        return {q: (s, r) for q, s, r in frame.select("query_id", "state", "resolution").rows()}

    def reasons(self, query_id: str) -> list[tuple[str, str]]:
        with open_registry(self.registry) as reg:
            frame = history(reg, [query_id])
        return frame.select("action", "reason").rows()

    def close(self, query_id: str, when: str, **options: Any) -> None:
        with open_registry(self.registry, write=True) as reg:
            close_queries(
                reg, [query_id], actor="coord", when=dt.datetime.fromisoformat(when), **options
            )
