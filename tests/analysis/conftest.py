"""The six fixture patients of DOMAIN.md §6.6 as CDM frames, dated and day-offset-only.

Every patient's index infusion is on 2021-03-10 in the dated version; the day-offset version
carries the same timing as ``*_day`` columns only (a de-identified site). Patient E's
progression is known to the month only ("2021-03") in the dated version.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

INDEX = dt.date(2021, 3, 10)
SITE = "FIXTURE"
DATA_CUT = dt.date(2023, 12, 31)

# patient -> rows per table, timing in days from the index infusion
PATIENTS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "A": {
        "patients": [{"age_at_index_years": 45.0, "sex": "M"}],
        "assessments": [
            {"day": 28, "response": "CR", "bm_blast_pct": 1.0},
            {"day": 168, "response": "RELAPSE", "bm_blast_pct": 40.0},
        ],
        "progressions": [
            {
                "day": 168,
                "event_type": "RELAPSE_AFTER_CR",
                "antigen_phenotype": "CD19_NEG",
                "remission_day": 28,
            },
        ],
        "salvage": [
            {"day": 175, "agent": "blinatumomab", "category": "BLINATUMOMAB", "best_response": "NR"}
        ],
        "transplants": [],
        "follow_up": {
            "last_contact_day": 390,
            "vital_status": "DEAD",
            "death_day": 390,
            "cause_of_death": "PRIMARY_DISEASE",
        },
    },
    "B": {
        "patients": [{"age_at_index_years": 60.0, "sex": "F"}],
        "assessments": [{"day": 28, "response": "NR", "bm_blast_pct": 60.0}],
        "progressions": [
            {"day": 28, "event_type": "REFRACTORY_NONRESPONSE", "antigen_phenotype": "CD19_POS"},
        ],
        "salvage": [
            {
                "day": 35,
                "agent": "inotuzumab_ozogamicin",
                "category": "INOTUZUMAB",
                "best_response": "CR",
            }
        ],
        "transplants": [],
        "follow_up": {"last_contact_day": 200, "vital_status": "ALIVE"},
    },
    "C": {
        "patients": [{"age_at_index_years": 30.0, "sex": "M"}],
        "assessments": [
            {"day": 28, "response": "CR", "bm_blast_pct": 0.5},
            {"day": 90, "response": "CCR", "bm_blast_pct": 0.5},
            {"day": 690, "response": "CCR", "bm_blast_pct": 0.5},
        ],
        "progressions": [],
        "salvage": [],
        "transplants": [{"day": 80, "hct_type": "ALLOGENEIC", "intent": "CONSOLIDATION"}],
        "follow_up": {"last_contact_day": 700, "vital_status": "ALIVE"},
    },
    "D": {
        "patients": [{"age_at_index_years": 52.0, "sex": "F"}],
        "assessments": [{"day": 30, "response": "CR", "bm_blast_pct": 2.0}],
        "progressions": [],
        "salvage": [],
        "transplants": [],
        "follow_up": {
            "last_contact_day": 120,
            "vital_status": "DEAD",
            "death_day": 120,
            "cause_of_death": "INFECTION",
        },
    },
    "E": {
        "patients": [{"age_at_index_years": 38.0, "sex": "M"}],
        "assessments": [],
        # dated version: "2021-03" (MONTH precision); day-offset version: day 5
        "progressions": [
            {
                "day": 5,
                "event_type": "REFRACTORY_NONRESPONSE",
                "antigen_phenotype": "UNKNOWN",
                "month_only": True,
            }
        ],
        "salvage": [],
        "transplants": [],
        "follow_up": {"last_contact_day": 184, "vital_status": "ALIVE"},
    },
    "F": {
        "patients": [{"age_at_index_years": 67.0, "sex": "F"}],
        "assessments": [{"day": 28, "response": "CR"}, {"day": 266, "response": "RELAPSE"}],
        "progressions": [
            {
                "day": 266,
                "event_type": "RELAPSE_AFTER_CR",
                "antigen_phenotype": "CD19_POS",
                "remission_day": 28,
            }
        ],
        # death 2022-05-01 (day 417) but a salvage start 2022-06-01 (day 448): PT-003
        "salvage": [
            {
                "day": 448,
                "agent": "hyper_cvad",
                "category": "INTENSIVE_CHEMO",
                "best_response": "CR",
            }
        ],
        "transplants": [],
        "follow_up": {"last_contact_day": 417, "vital_status": "DEAD", "death_day": 417},
    },
}


def _date(day: int | None, dated: bool) -> dt.date | None:
    return INDEX + dt.timedelta(days=day) if (dated and day is not None) else None


def build_tables(dated: bool) -> dict[str, pl.DataFrame]:
    """CDM frames for patients A-F; ``dated`` chooses calendar dates or day offsets only."""
    rows: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in (
            "patients",
            "car_t_infusions",
            "disease_assessments",
            "progression_events",
            "salvage_treatments",
            "transplants",
            "follow_up",
        )
    }
    line = 2
    for letter, p in PATIENTS.items():
        key = f"{SITE}-{letter}"
        common = {"patient_key": key, "site_id": SITE, "source_file": "fixture.csv"}
        rows["patients"].append({**common, "source_row": line, **p["patients"][0]})
        rows["car_t_infusions"].append(
            {
                **common,
                "source_row": line,
                "infusion_id": f"{key}-INF1",
                "infusion_number": 1,
                "is_index_infusion": True,
                "is_reinfusion": False,
                "product": "tisagenlecleucel",
                "infusion_date": _date(0, dated),
                "infusion_date_precision": "DAY" if dated else None,
                "infusion_day": None if dated else 0,
                "disease_burden": "HIGH" if letter in "ABE" else "LOW",
            }
        )
        for k, a in enumerate(p["assessments"], start=1):
            rows["disease_assessments"].append(
                {
                    **common,
                    "source_row": 100 + line + k,
                    "assessment_id": f"{key}-A{k}",
                    "assessment_date": _date(a["day"], dated),
                    "assessment_date_precision": "DAY" if dated else None,
                    "assessment_day": None if dated else a["day"],
                    "response": a["response"],
                    "bm_blast_pct": a.get("bm_blast_pct"),
                    "specimen": "BONE_MARROW",
                }
            )
        for k, e in enumerate(p["progressions"], start=1):
            month_only = dated and e.get("month_only", False)
            rows["progression_events"].append(
                {
                    **common,
                    "source_row": 200 + line + k,
                    "progression_id": f"{key}-P{k}",
                    "event_seq": k,
                    "progression_date": dt.date(2021, 3, 1)
                    if month_only
                    else _date(e["day"], dated),
                    "progression_date_precision": ("MONTH" if month_only else "DAY")
                    if dated
                    else None,
                    "progression_day": None if dated else e["day"],
                    "event_type": e["event_type"],
                    "antigen_phenotype": e["antigen_phenotype"],
                    "remission_date": _date(e.get("remission_day"), dated),
                    "remission_date_precision": "DAY" if dated and e.get("remission_day") else None,
                    "remission_day": None if dated else e.get("remission_day"),
                }
            )
        for k, s in enumerate(p["salvage"], start=1):
            rows["salvage_treatments"].append(
                {
                    **common,
                    "source_row": 300 + line + k,
                    "salvage_id": f"{key}-S{k}",
                    "progression_id": f"{key}-P1",
                    "line_number": 1,
                    "start_date": _date(s["day"], dated),
                    "start_date_precision": "DAY" if dated else None,
                    "start_day": None if dated else s["day"],
                    "agent": s["agent"],
                    "category": s["category"],
                    "best_response": s["best_response"],
                }
            )
        for k, h in enumerate(p["transplants"], start=1):
            rows["transplants"].append(
                {
                    **common,
                    "source_row": 400 + line + k,
                    "hct_id": f"{key}-H{k}",
                    "hct_date": _date(h["day"], dated),
                    "hct_date_precision": "DAY" if dated else None,
                    "hct_day": None if dated else h["day"],
                    "hct_type": h["hct_type"],
                    "intent": h["intent"],
                }
            )
        fu = p["follow_up"]
        rows["follow_up"].append(
            {
                **common,
                "source_row": 500 + line,
                "data_cut_date": dt.date(2023, 6, 30) if dated else None,
                "last_contact_date": _date(fu["last_contact_day"], dated),
                "last_contact_date_precision": "DAY" if dated else None,
                "last_contact_day": None if dated else fu["last_contact_day"],
                "vital_status": fu["vital_status"],
                "death_date": _date(fu.get("death_day"), dated),
                "death_date_precision": "DAY" if dated and fu.get("death_day") else None,
                "death_day": None if dated else fu.get("death_day"),
                "cause_of_death": fu.get("cause_of_death"),
            }
        )
        line += 1
    schema_overrides = {"source_row": pl.Int64}
    frames = {}
    for name, recs in rows.items():
        frame = pl.DataFrame(recs, infer_schema_length=None) if recs else pl.DataFrame()
        if recs:
            frame = frame.with_columns(
                [pl.col(c).cast(t) for c, t in schema_overrides.items() if c in frame.columns]
            )
            # columns that are all null in this version still need their CDM type
            frame = frame.with_columns(
                [
                    pl.col(c).cast(pl.Date)
                    for c in frame.columns
                    if c.endswith("_date") and frame[c].dtype == pl.Null
                ]
                + [
                    pl.col(c).cast(pl.Int64)
                    for c in frame.columns
                    if c.endswith("_day") and frame[c].dtype in (pl.Null, pl.Float64)
                ]
                + [
                    pl.col(c).cast(pl.String)
                    for c in frame.columns
                    if frame[c].dtype == pl.Null and not c.endswith(("_date", "_day"))
                ]
            )
            frames[name] = frame
    return frames


@pytest.fixture(scope="session")
def dated_tables() -> dict[str, pl.DataFrame]:
    return build_tables(dated=True)


@pytest.fixture(scope="session")
def offset_tables() -> dict[str, pl.DataFrame]:
    return build_tables(dated=False)


@pytest.fixture(scope="session")
def tables_for() -> Any:
    """The builder itself, for tests that vary the fixture (``tables_for(dated=True)``)."""
    return build_tables


SAMPLE_DATA_CUT = dt.date(2025, 6, 30)  # the sample cohort's administrative data cut


@pytest.fixture(scope="session")
def sample_merged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The merged sample registry, as `make demo` builds it: the four sample sites ingested,
    validated and accepted (their planted defects included), merged with pseudonymous keys,
    candidate duplicates left unreviewed."""
    from cartreg.paths import repo_root
    from cartreg.registry import init_registry, merge_registry
    from cartreg.registry.submit import submit_submission
    from cartreg.yamlio import load_yaml

    root = tmp_path_factory.mktemp("sample_registry")
    registry = root / "registry.duckdb"
    init_registry(registry)
    for mapping in sorted((repo_root() / "sample_data").glob("*/mapping.yaml")):
        submit_submission(
            registry,
            mapping.parent,
            site=str(load_yaml(mapping)["site_id"]).upper(),
            mapping_path=mapping,
            accept_reason="sample data: the planted defects are known",
        )
    merged = root / "merged"
    merge_registry(registry, merged, secret=b"cartreg test consortium secret")
    return merged


@pytest.fixture(scope="session")
def sample_analysis(sample_merged: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``cartreg analyze`` on the merged sample registry with the default population rules."""
    from cartreg.analysis.run import analyze

    out = tmp_path_factory.mktemp("sample_analysis")
    return analyze(sample_merged, SAMPLE_DATA_CUT, out, figures=False), out
