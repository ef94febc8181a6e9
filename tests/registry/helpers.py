"""Builders of small ingest output folders (the fixed contract) from row dictionaries."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from cartreg.cdm import CDM
from cartreg.cdm.schema import polars_dtype

Rows = dict[str, list[dict[str, Any]]]
MakeOutput = Callable[..., Path]


def write_output(
    cdm: CDM, out_dir: Path, site: str, rows: Rows, findings: list[dict[str, Any]] | None = None
) -> Path:
    """Write ``out_dir`` like `cartreg ingest` would: typed tables, manifest, findings."""
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    sources = []
    for name, spec in cdm.tables.items():
        schema = {c.name: polars_dtype(c) for c in spec.columns}
        records = [
            {"site_id": site, "source_file": f"{name}.csv", "source_row": i + 2, **r}
            for i, r in enumerate(rows.get(name, []))
        ]
        frame = pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)
        frame.write_parquet(out_dir / "tables" / f"{name}.parquet")
        content = json.dumps(records, sort_keys=True, default=str).encode()
        sources.append(
            {
                "file": f"{name}.csv",
                "sha256": hashlib.sha256(content).hexdigest(),
                "rows_read": len(records),
                "rows_harmonized": len(records),
                "rows_quarantined": 0,
            }
        )
    manifest = {
        "cdm_version": cdm.version,
        "mapping_version": "1",
        "site_id": site,
        "sources": sources,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (out_dir / "findings.json").write_text(json.dumps(findings or []), encoding="utf-8")
    return out_dir


def patient(
    site: str,
    local: str,
    *,
    sex: str = "F",
    birth_year: int = 1970,
    infusion: str = "2022-03-01",
    product: str = "tisagenlecleucel",
    assessments: int = 1,
) -> Rows:
    """One patient with an index infusion, ``assessments`` assessments and a follow-up row."""
    import datetime as dt

    key = f"{site}-{local}"
    day0 = dt.date.fromisoformat(infusion)
    return {
        "patients": [{"patient_key": key, "sex": sex, "birth_year": birth_year}],
        "car_t_infusions": [
            {
                "infusion_id": f"{key}-INF1",
                "patient_key": key,
                "infusion_number": 1,
                "is_index_infusion": True,
                "infusion_date": day0,
                "infusion_day": 0,
                "infusion_year": day0.year,
                "product": product,
                "is_reinfusion": False,
            }
        ],
        "disease_assessments": [
            {
                "assessment_id": f"{key}-A{k}",
                "patient_key": key,
                "assessment_date": day0 + dt.timedelta(days=28 * k),
                "assessment_day": 28 * k,
                "specimen": "BONE_MARROW",
                "bm_blast_pct": 1.0,
            }
            for k in range(1, assessments + 1)
        ],
        "follow_up": [
            {
                "patient_key": key,
                "data_cut_date": dt.date(2024, 6, 30),
                "last_contact_date": dt.date(2024, 5, 1),
                "vital_status": "ALIVE",
            }
        ],
    }


def combine(*parts: Rows) -> Rows:
    out: Rows = {}
    for part in parts:
        for name, rows in part.items():
            out.setdefault(name, []).extend(rows)
    return out


def snapshot(path: Path) -> dict[str, object]:
    """Everything a submit may change: submissions, files, findings, decisions, data rows."""
    from cartreg.registry import open_registry

    with open_registry(path) as reg:
        snap: dict[str, object] = {
            t: reg.conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in (
                "submissions",
                "submission_files",
                "submission_tables",
                "submission_findings",
                "decisions",
                "queries",
                "query_events",
                "finding_fingerprints",
            )
        }
        for name in reg.data_tables():
            snap[name] = reg.scalar(f'SELECT count(*) FROM "cdm_{name}"')
    return snap


def data_blocks(path: Path) -> dict[int, set[str]]:
    """File offset of every block holding column data -> the tables stored in it."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        size = conn.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        assert size is not None
        block_size = int(size[0])
        tables = [r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        blocks: dict[int, set[str]] = {}
        for table in tables:
            for (block,) in conn.execute(
                "SELECT DISTINCT block_id FROM pragma_storage_info(?) WHERE block_id >= 0",
                [table],
            ).fetchall():
                blocks.setdefault(3 * 4096 + int(block) * block_size, set()).add(table)
    finally:
        conn.close()
    return blocks


def damage(path: Path, offset: int, size: int = 4096) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset + 64)  # past the block's checksum, into its data
        handle.write(os.urandom(size))
