from __future__ import annotations

import json
from pathlib import Path

import pytest

from cartreg.cdm import load_cdm
from cartreg.rules.frames import example_tables
from cartreg.validation import Report, validate_output
from cartreg.yamlio import load_yaml

COHORT = Path(__file__).resolve().parents[1] / "data" / "validation_cohort.yaml"
BIRTH_DATE = "1975-04-13"
# Ingest findings as `cartreg ingest` writes them; values chosen to probe escaping and masking.
INGEST_FINDINGS = [
    {
        "rule_id": "ING-UNMAPPED",
        "severity": "error",
        "category": "conformance",
        "subcategory": "value",
        "table": "car_t_infusions",
        "column": "product",
        "site_id": "DEMO",
        "source_file": "infusions.csv",
        "source_row": 7,
        "value": '=HYPERLINK("#x","click")',
        "message": "'=HYPERLINK(...)' is not a term of car_t_products",
    },
    {
        "rule_id": "ING-NUMBER",
        "severity": "warning",
        "category": "conformance",
        "subcategory": "value",
        "table": "disease_assessments",
        "column": "bm_blast_pct",
        "site_id": "DEMO",
        "source_file": "marrow.csv",
        "source_row": 3,
        "value": "-5",
        "message": "'-5' is not a number",
    },
    {
        "rule_id": "ING-DATE",
        "severity": "error",
        "category": "conformance",
        "subcategory": "value",
        "table": "patients",
        "column": "birth_date",
        "site_id": "DEMO",
        "source_file": "patients.csv",
        "source_row": 4,
        "value": BIRTH_DATE,
        "message": "ambiguous date in column birth_date",
    },
    {
        "rule_id": "ING-SENTINEL",
        "severity": "info",
        "category": "conformance",
        "subcategory": "value",
        "table": "follow_up",
        "column": "cause_of_death",
        "site_id": "DEMO",
        "source_file": "fu.csv",
        "source_row": 2,
        "value": "@SUM(A1)",
        "message": "<script>alert(1)</script> sentinel",
    },
]


def write_output(root: Path) -> Path:
    cdm = load_cdm()
    tables = example_tables(load_yaml(COHORT), cdm)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(root / "tables" / f"{name}.parquet")
    (root / "findings.json").write_text(json.dumps(INGEST_FINDINGS), encoding="utf-8")
    manifest = {
        "cdm_version": cdm.version,
        "mapping_version": "1",
        "site_id": "DEMO",
        "sources": [
            {
                "file": "patients.csv",
                "sha256": "0" * 64,
                "rows_read": 6,
                "rows_harmonized": 5,
                "rows_quarantined": 1,
            }
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_output(tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="session")
def report(out_dir: Path) -> Report:
    return validate_output(out_dir)
