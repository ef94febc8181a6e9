"""Fixtures: the CDM, ingest output folders built from rows, a mapping file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cartreg.cdm import CDM, load_cdm
from tests.registry.helpers import MakeOutput, Rows, combine, patient, write_output


@pytest.fixture(scope="session")
def cdm() -> CDM:
    return load_cdm()


@pytest.fixture
def make_output(tmp_path: Path, cdm: CDM) -> MakeOutput:
    counter = iter(range(1000))

    def make(site: str, rows: Rows, findings: list[dict[str, Any]] | None = None) -> Path:
        return write_output(cdm, tmp_path / f"out{next(counter)}", site, rows, findings)

    return make


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    # A stand-in stored as the provenance of any test site's versions: it names no site_id
    # (a mapping that names one must be the storing site's own).
    path.write_text("mapping_version: '1'\n", encoding="utf-8")
    return path


@pytest.fixture
def stored(tmp_path: Path, make_output: MakeOutput, mapping_file: Path) -> Path:
    """A registry holding one accepted version of SITE_A (two patients)."""
    from cartreg.registry import init_registry, submit_output

    path = tmp_path / "registry.duckdb"
    init_registry(path)
    out = make_output(
        "SITE_A", combine(patient("SITE_A", "1", assessments=3), patient("SITE_A", "2"))
    )
    submit_output(path, out, site="SITE_A", mapping_path=mapping_file)
    return path
