"""Realistic defects planted in rendered site exports, and the answer key that lists them.

Each defect is placed where exactly one data-quality rule (or ingest check) should catch it,
on a patient that carries no other defect. Two kinds:

* **table defects** change a truth value before rendering (a salvage dated after death, a
  mislabelled disease burden, a patient reported by two sites …);
* **cell defects** change what the site typed after rendering (a day/month swap, an invalid
  calendar date, a decimal comma lost, a misspelt product, a blank required date …).

The answer key gives the file and the line a person sees (spreadsheet row or CSV line with the
header as 1, NDJSON line), and the rule id expected to report it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render import deid, ehr, excel, redcap
from cartreg.synth.render.common import REF, Export, Sheet

ANSWER_KEY_COLUMNS = ("site_id", "source_file", "source_row", "defect", "rule_id")

Tables = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class Planted:
    """A defect placed on one truth row (``ref`` = its CDM id) of one site."""

    site_id: str
    table: str
    ref: str
    defect: str
    rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class AnswerKeyRow:
    site_id: str
    source_file: str
    source_row: int
    defect: str
    rule_id: str


def answer_key_frame(rows: list[AnswerKeyRow]) -> pl.DataFrame:
    frame = pl.DataFrame(
        [{c: getattr(r, c) for c in ANSWER_KEY_COLUMNS} for r in rows],
        schema={
            "site_id": pl.String,
            "source_file": pl.String,
            "source_row": pl.Int64,
            "defect": pl.String,
            "rule_id": pl.String,
        },
    )
    return frame.sort(["site_id", "source_file", "source_row", "rule_id"])


# ---- helpers ---------------------------------------------------------------------------------


class Picker:
    """Seeded choice of a candidate patient not yet used by another defect."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.used: set[str] = set()

    def pick(self, frame: pl.DataFrame, key: str = "patient_key") -> dict[str, Any] | None:
        frame = frame.filter(~pl.col("patient_key").is_in(list(self.used))).sort(key)
        if frame.height == 0:
            return None
        row = frame.row(int(self.rng.integers(frame.height)), named=True)
        self.used.add(row["patient_key"])
        return row


def _set(frame: pl.DataFrame, ref_col: str, ref: str, column: str, value: Any) -> pl.DataFrame:
    dtype = frame.schema[column]
    return frame.with_columns(
        pl.when(pl.col(ref_col) == ref)
        .then(pl.lit(value, dtype=dtype))
        .otherwise(pl.col(column))
        .alias(column)
    )


def _set_cell(sheet: Sheet, ref: str, column: str, value: Any, *, text: bool = False) -> None:
    """Change one rendered cell (the first line rendered from ``ref``)."""
    index = sheet.frame.with_row_index("_i").filter(pl.col(REF) == ref)["_i"][0]
    if text:
        series = sheet.text_overrides.get(
            column, pl.Series(column, [None] * sheet.frame.height, pl.String)
        )
        sheet.text_overrides[column] = series.scatter(index, value)
        return
    mask = pl.int_range(pl.len()) == index
    dtype = sheet.frame.schema[column]
    sheet.frame = sheet.frame.with_columns(
        pl.when(mask).then(pl.lit(value, dtype=dtype)).otherwise(pl.col(column)).alias(column)
    )


def simple_patients(t: Tables) -> pl.DataFrame:
    """Alive patients with no progression or reinfusion: few rows for a defect to upset."""
    progressed = t["progression_events"]["patient_key"].implode()
    reinfused = t["car_t_infusions"].filter(pl.col("is_reinfusion"))["patient_key"].implode()
    return t["follow_up"].filter(
        (pl.col("vital_status") == "ALIVE")
        & ~pl.col("patient_key").is_in(progressed)
        & ~pl.col("patient_key").is_in(reinfused)
    )


# ---- table defects (before rendering) -------------------------------------------------------


def plant_table_defects(site: SiteInfo, t: Tables, picker: Picker) -> tuple[Tables, list[Planted]]:
    t = dict(t)
    planted: list[Planted] = []
    if site.layout == "redcap":
        # salvage started after the death date (PT-004 also sees it after last contact)
        sal = t["salvage_treatments"].filter(
            pl.col("salvage_id").str.ends_with("-S1") & (pl.col("agent") != "car_t_reinfusion")
        )
        cand = (
            sal.join(t["follow_up"].filter(pl.col("vital_status") == "DEAD"), on="patient_key")
            .join(
                t["progression_events"].select("patient_key", "progression_date"), on="patient_key"
            )
            .filter((pl.col("death_date") - pl.col("progression_date")).dt.total_days() < 150)
        )
        row = picker.pick(cand)
        if row:
            # a wrong year or month typed at entry moves the whole line, response date included
            shift = row["death_date"] + dt.timedelta(days=12) - row["start_date"]
            t["salvage_treatments"] = t["salvage_treatments"].with_columns(
                pl.when(pl.col("patient_key") == row["patient_key"])
                .then(pl.col(c) + shift)
                .otherwise(pl.col(c))
                .alias(c)
                for c in ("start_date", "best_response_date")
            )
            planted.append(
                Planted(
                    site.site_id,
                    "salvage_treatments",
                    row["salvage_id"],
                    "salvage start dated after death",
                    ("PT-003", "PT-004"),
                )
            )
    if site.layout == "deid":
        # salvage day before the progression it treats
        sal = t["salvage_treatments"].filter(
            pl.col("salvage_id").str.ends_with("-S1") & (pl.col("agent") != "car_t_reinfusion")
        )
        row = picker.pick(sal)
        if row:
            prog_day = t["progression_events"].filter(pl.col("patient_key") == row["patient_key"])[
                "progression_day"
            ][0]
            t["salvage_treatments"] = _set(
                t["salvage_treatments"],
                "patient_key",
                row["patient_key"],
                "start_day",
                prog_day - 9,
            )
            planted.append(
                Planted(
                    site.site_id,
                    "salvage_treatments",
                    row["salvage_id"],
                    "salvage start before progression",
                    ("PT-008",),
                )
            )
        # a remission marrow dated after death (preferably of a patient who never progressed)
        progressed = t["progression_events"]["patient_key"].implode()
        follow = t["disease_assessments"].filter(
            ~pl.col("assessment_id").str.ends_with("-A1") & (pl.col("response") != "RELAPSE")
        )
        last = follow.group_by("patient_key").agg(
            pl.col("assessment_id").sort_by("assessment_day").last()
        )
        cand = t["follow_up"].filter(pl.col("vital_status") == "DEAD").join(last, on="patient_key")
        row = picker.pick(cand.filter(~pl.col("patient_key").is_in(progressed))) or picker.pick(
            cand
        )
        if row:
            t["disease_assessments"] = _set(
                t["disease_assessments"],
                "assessment_id",
                row["assessment_id"],
                "assessment_day",
                row["death_day"] + 20,
            )
            planted.append(
                Planted(
                    site.site_id,
                    "disease_assessments",
                    row["assessment_id"],
                    "assessment dated after death",
                    ("PT-003", "PT-004"),
                )
            )
        # disease burden recorded as low with >= 5% marrow blasts
        inf = t["car_t_infusions"].filter(
            pl.col("is_index_infusion")
            & (pl.col("pre_bm_blast_pct") >= 10)
            & (pl.col("pre_emd_present") == "N")
        )
        row = picker.pick(inf)
        if row:
            t["car_t_infusions"] = _set(
                t["car_t_infusions"], "infusion_id", row["infusion_id"], "disease_burden", "LOW"
            )
            planted.append(
                Planted(
                    site.site_id,
                    "car_t_infusions",
                    row["infusion_id"],
                    "disease burden low despite >=5% marrow blasts",
                    ("CC-003",),
                )
            )
    return t, planted


def copy_patient(src: Tables, key: str, dst_site: SiteInfo, dst: Tables) -> tuple[Tables, str]:
    """Append one patient of another site to ``dst`` under the destination's next local id."""
    n = dst["patients"].height + 1
    local = {"redcap": str(n), "excel": f"P{n:03d}", "ehr": f"CT{n:05d}", "deid": f"D{n:04d}"}[
        dst_site.layout
    ]
    new_key = f"{dst_site.site_id}-{local}"
    out = dict(dst)
    for name, frame in src.items():
        rows = frame.filter(pl.col("patient_key") == key)
        if rows.height == 0:
            continue
        string_cols = [
            c for c, d in rows.schema.items() if d == pl.String and c not in ("source_file",)
        ]
        rows = rows.with_columns(
            [
                pl.col(c).str.replace(f"^{key}", new_key)
                for c in string_cols
                if c.endswith("_id") or c == "patient_key"
            ]
        ).with_columns(pl.lit(dst_site.site_id).alias("site_id"))
        out[name] = pl.concat([dst[name], rows], how="vertical_relaxed")
    return out, new_key


# ---- cell defects (after rendering) ---------------------------------------------------------


def plant_cell_defects(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    planted: list[Planted] = []
    sid = site.site_id
    if site.layout == "redcap":
        sheet = export.sheet(redcap.RECORDS)
        reinf = t["car_t_infusions"].filter(pl.col("is_reinfusion"))
        row = picker.pick(reinf) or picker.pick(
            t["car_t_infusions"].join(simple_patients(t).select("patient_key"), on="patient_key")
        )
        if row:
            _set_cell(sheet, row["infusion_id"], "inf_date", None)
            planted.append(
                Planted(
                    sid,
                    "car_t_infusions",
                    row["infusion_id"],
                    "infusion date left blank",
                    ("CP-001",),
                )
            )
        dead = t["follow_up"].filter(pl.col("vital_status") == "DEAD")
        row = picker.pick(dead)
        if row:
            _set_cell(sheet, row["patient_key"], "fu_death_date", None)
            planted.append(
                Planted(
                    sid, "follow_up", row["patient_key"], "dead without a death date", ("CP-003",)
                )
            )
        # A blank remission date is derived from the remission marrow at ingest; a mistyped
        # year is not: the remission then falls after the relapse it preceded.
        rel = t["progression_events"].filter(
            (pl.col("event_type") == "RELAPSE_AFTER_CR")
            & (pl.col("remission_date").dt.offset_by("1y") > pl.col("progression_date"))
        )
        row = picker.pick(rel)
        if row:
            cr = row["remission_date"]
            typo = dt.date(cr.year + 1, cr.month, min(cr.day, 28 if cr.month == 2 else 31))
            _set_cell(sheet, row["progression_id"], "prog_cr_date", typo.isoformat())
            planted.append(
                Planted(
                    sid,
                    "progression_events",
                    row["progression_id"],
                    "remission date typed a year late, after the relapse",
                    ("PT-006",),
                )
            )
    elif site.layout == "excel":
        fu = t["follow_up"].filter(
            (pl.col("vital_status") == "ALIVE")
            & (pl.col("last_contact_date").dt.day().is_between(7, 12))
            & (pl.col("last_contact_date").dt.month() < pl.col("last_contact_date").dt.day())
            & (pl.col("last_contact_date").dt.year() == pl.col("data_cut_date").dt.year())
        )
        row = picker.pick(fu)
        if row:
            swapped = row["last_contact_date"].strftime("%m.%d.%Y")
            _set_cell(
                export.sheet(excel.WORKBOOK, "Follow-up"),
                row["patient_key"],
                "Letzter Kontakt",
                swapped,
                text=True,
            )
            planted.append(
                Planted(
                    sid,
                    "follow_up",
                    row["patient_key"],
                    "day and month swapped, date after the data cut",
                    ("PT-011",),
                )
            )
        asm = t["disease_assessments"].filter(
            (pl.col("response") == "CR")
            & pl.col("bm_blast_qualifier").is_null()
            & pl.col("bm_blast_pct").is_between(0.6, 2.0)
            & ((pl.col("bm_blast_pct") * 10).round(0) % 10 != 0)
        )
        row = picker.pick(asm)
        if row:
            typed = str(round(row["bm_blast_pct"] * 10))
            _set_cell(
                export.sheet(excel.WORKBOOK, "Verlauf"),
                row["assessment_id"],
                "KM-Blasten (%)",
                typed,
            )
            planted.append(
                Planted(
                    sid,
                    "disease_assessments",
                    row["assessment_id"],
                    "CR with >=5% marrow blasts (decimal comma lost)",
                    ("PA-004",),
                )
            )
        bad = _invalid_date_candidates(t)
        row = picker.pick(bad)
        if row:
            d = row["assessment_date"]
            text = f"{31 if d.month != 2 else 30}.{d.month:02d}.{d.year}"
            _set_cell(
                export.sheet(excel.WORKBOOK, "Verlauf"),
                row["assessment_id"],
                "Datum",
                text,
                text=True,
            )
            planted.append(
                Planted(
                    sid,
                    "disease_assessments",
                    row["assessment_id"],
                    "impossible calendar date",
                    ("ING-DATE",),
                )
            )
        kid = (
            t["patients"]
            .join(t["car_t_infusions"].filter(pl.col("is_index_infusion")), on="patient_key")
            .filter(pl.col("product") != "tisagenlecleucel")
        )
        row = picker.pick(kid)
        if row:
            sheet = export.sheet(excel.WORKBOOK, "Patienten")
            _set_cell(sheet, row["patient_key"], "Alter bei CAR-T (Jahre)", 17.4)
            _set_cell(sheet, row["patient_key"], "Geburtsjahr", row["infusion_year"] - 18)
            planted.append(
                Planted(
                    sid,
                    "patients",
                    row["patient_key"],
                    "patient younger than 18 at infusion",
                    ("PA-001",),
                )
            )
    elif site.layout == "ehr":
        sheet = export.sheet(ehr.EVENTS)
        reinf = t["car_t_infusions"].filter(pl.col("is_reinfusion"))
        row = picker.pick(reinf)
        if row:
            _set_cell(sheet, row["infusion_id"], "ITEM_NAME", "TECARTIS IV susp")
            planted.append(
                Planted(
                    sid,
                    "car_t_infusions",
                    row["infusion_id"],
                    "misspelt product name",
                    # product is required, so the unmapped row is also quarantined
                    ("ING-UNMAPPED", "ING-REQUIRED"),
                )
            )
        refr = t["progression_events"].filter(pl.col("event_type") == "REFRACTORY_NONRESPONSE")
        row = picker.pick(refr)
        if row:
            d = row["progression_date"]
            _set_cell(
                sheet,
                row["progression_id"],
                "EVENT_DATE",
                d.replace(year=d.year - 1).isoformat()
                if not (d.month == 2 and d.day == 29)
                else f"{d.year - 1}-02-28",
            )
            planted.append(
                Planted(
                    sid,
                    "progression_events",
                    row["progression_id"],
                    "progression dated before the infusion (wrong year)",
                    ("PT-002",),
                )
            )
        cut = t["follow_up"]["data_cut_date"][0]
        pats = (
            t["patients"]
            .join(t["car_t_infusions"].filter(pl.col("is_index_infusion")), on="patient_key")
            .filter(
                (pl.col("diagnosis_date_precision") == "DAY")
                & (pl.col("prior_allohct") == "N")
                & (pl.col("diagnosis_day") > -500)
                & (pl.col("infusion_date") < pl.lit(cut) - pl.duration(days=800))
            )
        )
        row = picker.pick(pats)
        if row:
            d = row["diagnosis_date"]
            typo = (
                d.replace(year=d.year + 2)
                if not (d.month == 2 and d.day == 29)
                else dt.date(d.year + 2, 2, 28)
            )
            _set_cell(export.sheet(ehr.PATIENTS), row["patient_key"], "DIAG_DATE", typo.isoformat())
            planted.append(
                Planted(
                    sid,
                    "patients",
                    row["patient_key"],
                    "diagnosis dated after the infusion (wrong year)",
                    ("PT-001",),
                )
            )
        row = picker.pick(_invalid_date_candidates(t))
        if row:
            d = row["assessment_date"]
            _set_cell(
                sheet,
                row["assessment_id"],
                "EVENT_DATE",
                f"{d.year}-{d.month:02d}-{31 if d.month != 2 else 30}",
            )
            planted.append(
                Planted(
                    sid,
                    "disease_assessments",
                    row["assessment_id"],
                    "impossible calendar date",
                    ("ING-DATE",),
                )
            )
    return planted


def _invalid_date_candidates(t: Tables) -> pl.DataFrame:
    """Follow-up marrows in a month without a 31st (Feb: without a 30th), not the D28 one."""
    return t["disease_assessments"].filter(
        ~pl.col("assessment_id").str.ends_with("-A1")  # A1 is the day-28 marrow
        & (pl.col("response") != "RELAPSE")
        & pl.col("assessment_date").dt.month().is_in([2, 4, 6, 9, 11])
    )


# ---- locating planted defects in the rendered files ------------------------------------------

_REDCAP_FORM = {
    "patients": "baseline",
    "follow_up": "follow_up",
    "car_t_infusions": "car_t_infusion",
    "disease_assessments": "disease_assessment",
    "progression_events": "progression",
    "salvage_treatments": "salvage",
    "transplants": "transplant",
}
_EXCEL_SHEET = {
    "patients": "Patienten",
    "follow_up": "Follow-up",
    "car_t_infusions": "CAR-T",
    "disease_assessments": "Verlauf",
    "progression_events": "Progress",
    "salvage_treatments": "Salvage",
    "transplants": "SZT",
}


def locate(export: Export, planted: Planted) -> list[AnswerKeyRow]:
    """Answer-key rows (one per expected rule) for a planted defect."""
    if export.layout == "redcap":
        sheet = export.sheet(redcap.RECORDS)
        # base rows hold two forms (baseline, follow_up): they are named by the file alone
        form = _REDCAP_FORM[planted.table]
        source = f"{redcap.RECORDS}#{form}" if form in redcap.REPEATING else redcap.RECORDS
    elif export.layout == "excel":
        sheet = export.sheet(excel.WORKBOOK, _EXCEL_SHEET[planted.table])
        source = sheet.source_file
    elif export.layout == "ehr":
        sheet = export.sheet(ehr.PATIENTS if planted.table == "patients" else ehr.EVENTS)
        source = sheet.file
    else:
        sheet = export.sheet(deid.COHORT)
        source = sheet.file
    ref = planted.ref
    if export.layout == "deid":
        ref = (
            ref.rsplit("-", 1)[0]
            if planted.table != "patients" and planted.table != "follow_up"
            else ref
        )
    line = sheet.line_of(ref)
    return [
        AnswerKeyRow(planted.site_id, source, line, planted.defect, rule)
        for rule in planted.rule_ids
    ]
