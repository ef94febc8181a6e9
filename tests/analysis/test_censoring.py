"""Censoring from what is known: one fixture patient per censoring rule, answers by hand.

Progression-type endpoints (EFS, TTP, remission duration, CIR) are censored at the latest day
a patient is known progression-free: the last disease assessment, or a follow-up whose
documented ``disease_status`` is PROGRESSION_FREE as of ``disease_status_date``; overall
survival at the last day known alive. Every patient below is infused on 2021-03-10 (day 0);
``REG`` is a registry-style site: a day-28 marrow, then only yearly follow-up forms
("progression since the last report? no").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from cartreg.analysis.derive import derive_tte
from cartreg.analysis.endpoints import load_endpoints
from cartreg.analysis.followup import follow_up_summary

INDEX = dt.date(2021, 3, 10)
DATA_CUT = dt.date(2024, 6, 30)
CUT_DAY = (DATA_CUT - INDEX).days  # 1208
PF, PROGRESSED, UNKNOWN = "PROGRESSION_FREE", "PROGRESSED", "UNKNOWN"


def day(n: int) -> dt.date:
    return INDEX + dt.timedelta(days=n)


# patient -> what the site sent (days from the infusion); ``status`` is the follow-up's
# documented disease status and its day; ``offsets`` marks a de-identified patient
PATIENTS: dict[str, dict[str, Any]] = {
    # 1. the last assessment (day 180) is later than the progression-free status (day 120)
    "LDA_LATER": {"assess": [(28, "CR"), (180, "CCR")], "status": (PF, 120), "contact": 400},
    # 2. registry style: day-28 marrow, then "no progression" as of day 1095 (3 years)
    "REGISTRY": {"assess": [(28, "CR")], "status": (PF, 1095), "contact": 1100},
    # 3. documented PROGRESSED without a progression event: not progression-free, not extended
    "SAYS_PROGRESSED": {"assess": [(28, "CR")], "status": (PROGRESSED, 400), "contact": 500},
    # 4. status UNKNOWN: not extended
    "STATUS_UNKNOWN": {"assess": [(28, "CR")], "status": (UNKNOWN, 400), "contact": 500},
    # 5. progression-free as of a day after the data cut: capped at the cut
    "AFTER_CUT": {"assess": [(28, "CR")], "status": (PF, CUT_DAY + 100), "contact": CUT_DAY + 100},
    # 6. died on day 300 without relapse; a status dated after death is capped at death
    "DIED": {"assess": [(28, "CR")], "status": (PF, 350), "contact": 300, "death": 300},
    # 7. no assessment and no status: censored at the origin
    "NOTHING": {"assess": [], "status": None, "contact": 200},
    # 8. consolidative HCT on day 80, progression-free as of day 700
    "HCT": {"assess": [(28, "CR")], "status": (PF, 700), "contact": 710, "hct": 80},
    # 9. status date known to the month only ("2022-05"): counts from 2022-05-01 (day 417)
    "MONTH_ONLY": {"assess": [(28, "CR")], "status": (PF, 417), "contact": 500, "month": True},
    # 10. a progression on day 200 wins over a contradicting "progression-free" on day 365
    "PROGRESSED": {
        "assess": [(28, "CR"), (200, "RELAPSE")],
        "status": (PF, 365),
        "contact": 400,
        "progression": 200,
    },
    # 11. de-identified (day offsets only), progression-free as of day 730
    "OFFSETS": {"assess": [(28, "CR")], "status": (PF, 730), "contact": 735, "offsets": True},
    # 12. the status documents a contact: last known alive is day 800, not the last contact 700
    "STATUS_IS_CONTACT": {"assess": [(28, "CR")], "status": (PF, 800), "contact": 700},
}

# (patient, paramcd) -> (end_day, evntcd, srctable, srccol) computed by hand from the above
EXPECTED = {
    ("LDA_LATER", "EFS"): (180, 0, "disease_assessments", "assessment_date"),
    ("LDA_LATER", "OS"): (400, 0, "follow_up", "last_contact_date"),
    ("REGISTRY", "EFS"): (1095, 0, "follow_up", "disease_status_date"),
    ("REGISTRY", "TTP"): (1095, 0, "follow_up", "disease_status_date"),
    ("REGISTRY", "CIR"): (1095, 0, "follow_up", "disease_status_date"),
    ("REGISTRY", "OS"): (1100, 0, "follow_up", "last_contact_date"),
    ("SAYS_PROGRESSED", "EFS"): (28, 0, "disease_assessments", "assessment_date"),
    ("STATUS_UNKNOWN", "EFS"): (28, 0, "disease_assessments", "assessment_date"),
    ("AFTER_CUT", "EFS"): (CUT_DAY, 0, "data_cut", "data_cut_date"),
    ("AFTER_CUT", "OS"): (CUT_DAY, 0, "data_cut", "data_cut_date"),
    ("DIED", "EFS"): (300, 1, "follow_up", "death_date"),
    ("DIED", "TTP"): (300, 2, "follow_up", "death_date"),
    ("DIED", "CIR"): (300, 2, "follow_up", "death_date"),
    ("NOTHING", "EFS"): (0, 0, None, None),
    ("NOTHING", "OS"): (200, 0, "follow_up", "last_contact_date"),
    ("HCT", "EFS"): (700, 0, "follow_up", "disease_status_date"),
    ("HCT", "EFS_HCTC"): (80, 0, "transplants", "hct_date"),
    ("HCT", "TTP_HCTC"): (80, 0, "transplants", "hct_date"),
    ("MONTH_ONLY", "EFS"): (417, 0, "follow_up", "disease_status_date"),
    ("PROGRESSED", "TTP"): (200, 1, "progression_events", "progression_date"),
    ("PROGRESSED", "EFS"): (200, 1, "progression_events", "progression_date"),
    ("OFFSETS", "EFS"): (730, 0, "follow_up", "disease_status_date"),
    ("STATUS_IS_CONTACT", "OS"): (800, 0, "follow_up", "disease_status_date"),
}
# remission duration from the first CR (day 28); death without relapse is censored, at death
# when a later status contradicts it
EXPECTED_REMDUR = {"REGISTRY": (28, 1095), "DIED": (28, 300), "LDA_LATER": (28, 180)}


def build(patients: dict[str, dict[str, Any]], site: str = "REG") -> dict[str, pl.DataFrame]:
    rows: dict[str, list[dict[str, Any]]] = {
        t: []
        for t in (
            "patients",
            "car_t_infusions",
            "disease_assessments",
            "progression_events",
            "transplants",
            "follow_up",
        )
    }
    for line, (name, p) in enumerate(patients.items(), start=2):
        key = f"{site}-{name}"
        dated = not p.get("offsets", False)

        def when(n: int | None, _dated: bool = dated) -> dt.date | None:
            return day(n) if (_dated and n is not None) else None

        def offset(n: int | None, _dated: bool = dated) -> int | None:
            return None if _dated else n

        common = {"patient_key": key, "site_id": site, "source_file": "export.csv"}
        rows["patients"].append({**common, "source_row": line, "age_at_index_years": 40.0})
        rows["car_t_infusions"].append(
            {
                **common,
                "source_row": line,
                "infusion_id": f"{key}-I1",
                "infusion_number": 1,
                "is_index_infusion": True,
                "infusion_date": when(0),
                "infusion_date_precision": "DAY" if dated else None,
                "infusion_day": offset(0),
                "disease_burden": "LOW",
            }
        )
        for k, (d, response) in enumerate(p["assess"], start=1):
            rows["disease_assessments"].append(
                {
                    **common,
                    "source_row": 100 * line + k,
                    "assessment_id": f"{key}-A{k}",
                    "assessment_date": when(d),
                    "assessment_date_precision": "DAY" if dated else None,
                    "assessment_day": offset(d),
                    "response": response,
                }
            )
        if "progression" in p:
            rows["progression_events"].append(
                {
                    **common,
                    "source_row": 200 * line,
                    "progression_id": f"{key}-P1",
                    "event_seq": 1,
                    "progression_date": when(p["progression"]),
                    "progression_date_precision": "DAY" if dated else None,
                    "progression_day": offset(p["progression"]),
                    "event_type": "RELAPSE_AFTER_CR",
                    "remission_date": when(28),
                    "remission_date_precision": "DAY" if dated else None,
                    "remission_day": offset(28),
                }
            )
        if "hct" in p:
            rows["transplants"].append(
                {
                    **common,
                    "source_row": 300 * line,
                    "hct_id": f"{key}-H1",
                    "hct_date": when(p["hct"]),
                    "hct_date_precision": "DAY" if dated else None,
                    "hct_day": offset(p["hct"]),
                    "hct_type": "ALLOGENEIC",
                    "intent": "CONSOLIDATION",
                }
            )
        status, status_day = p["status"] if p["status"] else (None, None)
        month_only = p.get("month", False)
        rows["follow_up"].append(
            {
                **common,
                "source_row": 400 * line,
                "data_cut_date": DATA_CUT if dated else None,
                "last_contact_date": when(p["contact"]),
                "last_contact_date_precision": "DAY" if dated else None,
                "last_contact_day": offset(p["contact"]),
                "vital_status": "DEAD" if "death" in p else "ALIVE",
                "death_date": when(p.get("death")),
                "death_date_precision": "DAY" if dated and "death" in p else None,
                "death_day": offset(p.get("death")),
                "disease_status": status,
                # a month-only date is stored as the 1st of its month (CDM convention)
                "disease_status_date": dt.date(2022, 5, 1) if month_only else when(status_day),
                "disease_status_date_precision": ("MONTH" if month_only else "DAY")
                if dated and status
                else None,
                "disease_status_day": offset(status_day),
            }
        )
    types = {"source_row": pl.Int64, "infusion_number": pl.Int64, "event_seq": pl.Int64}
    out = {}
    for table, recs in rows.items():
        frame = pl.DataFrame(recs, infer_schema_length=None)
        fixes = [pl.col(c).cast(t) for c, t in types.items() if c in frame.columns]
        fixes += [
            pl.col(c).cast(
                pl.Date if c.endswith("_date") else pl.Int64 if c.endswith("_day") else pl.String
            )
            for c in frame.columns
            if frame[c].dtype == pl.Null
        ]
        out[table] = frame.with_columns(fixes)
    return out


@pytest.fixture(scope="module")
def tte() -> pl.DataFrame:
    return derive_tte(build(PATIENTS), load_endpoints(), DATA_CUT)


def _row(tte: pl.DataFrame, name: str, paramcd: str) -> dict[str, Any]:
    rows = tte.filter(pl.col("patient_key") == f"REG-{name}", pl.col("paramcd") == paramcd)
    assert rows.height == 1, (name, paramcd)
    return rows.row(0, named=True)


@pytest.mark.parametrize(("name", "paramcd"), list(EXPECTED), ids=lambda v: str(v))
def test_each_censoring_rule(tte: pl.DataFrame, name: str, paramcd: str) -> None:
    row = _row(tte, name, paramcd)
    got = (row["end_day"], row["evntcd"], row["srctable"], row["srccol"])
    assert got == EXPECTED[(name, paramcd)]
    assert row["aval_days"] == row["end_day"] - row["start_day"]


def test_remission_duration(tte: pl.DataFrame) -> None:
    for name, (start, end) in EXPECTED_REMDUR.items():
        row = _row(tte, name, "REMDUR")
        assert (row["start_day"], row["end_day"], row["evntcd"]) == (start, end, 0), name


def test_partial_status_date_is_flagged(tte: pl.DataFrame) -> None:
    row = _row(tte, "MONTH_ONLY", "EFS")
    assert (row["adt"], row["adtf"]) == (dt.date(2022, 5, 1), "D")


def test_registry_site_without_statuses_is_censored_at_day_28() -> None:
    """The same registry-style export with its follow-up forms not mapped (no status): every
    non-progressor is censored at the day-28 marrow, as the issue found on real exports."""
    bare = {n: {**p, "status": None} for n, p in PATIENTS.items()}
    rows = derive_tte(build(bare), load_endpoints(), DATA_CUT)
    assert _row(rows, "REGISTRY", "EFS")["end_day"] == 28
    assert _row(rows, "REGISTRY", "OS")["end_day"] == 1100


def _registry_site(site: str, with_status: bool) -> dict[str, pl.DataFrame]:
    """Twenty registry-style patients: day-28 CR, yearly forms, last contact after 3 years."""
    patients = {
        f"P{i:02d}": {
            "assess": [(28, "CR")],
            "status": (PF, 1000 + 5 * i) if with_status else None,
            "contact": 1005 + 5 * i,
        }
        for i in range(20)
    }
    return build(patients, site=site)


def test_short_progression_follow_up_is_warned_per_site() -> None:
    """Reverse KM per site: a registry-style site without its statuses has a progression
    follow-up of 28 days (0.9 months) against ~34 months of vital status: warned; the same
    site with its statuses mapped is not."""
    mapped, unmapped = _registry_site("MAPPED", True), _registry_site("UNMAPPED", False)
    tables = {t: pl.concat([mapped[t], unmapped[t]], how="diagonal_relaxed") for t in mapped}
    summary = follow_up_summary(derive_tte(tables, load_endpoints(), DATA_CUT))
    unmapped_site = summary["by_site"]["UNMAPPED"]
    assert unmapped_site["progression"]["median_months"] == pytest.approx(28 / 30.4375)
    # reverse KM of OS: contacts on days 1005, 1010, ..., 1100 (20 patients): the curve is
    # exactly 0.5 from the 10th (day 1050) to the 11th (day 1055), R's median is the midpoint
    assert unmapped_site["vital_status"]["median_months"] == pytest.approx(1052.5 / 30.4375)
    assert unmapped_site["short"] and not summary["by_site"]["MAPPED"]["short"]
    assert len(summary["warnings"]) == 1 and "Site UNMAPPED" in summary["warnings"][0]
    # statuses on days 1000, 1005, ..., 1095: midpoint of 1045 and 1050
    mapped_site = summary["by_site"]["MAPPED"]
    assert mapped_site["progression"]["median_months"] == pytest.approx(1047.5 / 30.4375)
