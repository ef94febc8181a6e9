"""The registry-style sample sites: a second cohort rendered in three layouts that leave
implicit what the first four state (a REDCap registry project, a French workbook with a long
visits sheet, a de-identified JSON document), their planted defects, and their site truth.

The cohort is separate from the four-site sample (its own seed), so the calibration of the
first cohort and everything built on it are unchanged.
"""

from __future__ import annotations

from types import ModuleType

import polars as pl

from cartreg.synth.cohort import Cohort, SiteInfo, simulate_cohort
from cartreg.synth.defects import AnswerKeyRow, Picker, Planted, _set, _set_cell
from cartreg.synth.render import classeur, jsondeid, registry
from cartreg.synth.render.common import REF, Export, Sheet

LAYOUTS: tuple[str, ...] = ("registry", "classeur", "jsondeid")
SEED = 2022
PATIENTS = 180
RENDERERS: dict[str, ModuleType] = {
    "registry": registry,
    "classeur": classeur,
    "jsondeid": jsondeid,
}

Tables = dict[str, pl.DataFrame]


def registry_style_cohort(seed: int = SEED) -> Cohort:
    """The truth behind the three registry-style sample sites (before defects)."""
    return simulate_cohort(PATIENTS, len(LAYOUTS), seed, layouts=LAYOUTS)


def build(site: SiteInfo, tables: Tables, seed: int) -> Export:
    if site.layout == "classeur":
        return classeur.build(site, tables, seed=seed)
    export: Export = RENDERERS[site.layout].build(site, tables)
    return export


def site_truth(site: SiteInfo, tables: Tables) -> Tables:
    """What a clean ingest of the site's export gives, field by field."""
    known: Tables = RENDERERS[site.layout].known(dict(tables))
    return known


# ---- planted defects ----------------------------------------------------------------------


def plant_table_defects(site: SiteInfo, t: Tables, picker: Picker) -> tuple[Tables, list[Planted]]:
    """Defects in the data itself, planted in the truth before rendering."""
    t = dict(t)
    planted: list[Planted] = []
    progressed = t["progression_events"]["patient_key"].implode()
    alive_never = t["follow_up"].filter(
        (pl.col("vital_status") == "ALIVE") & ~pl.col("patient_key").is_in(progressed)
    )
    if site.layout == "classeur":
        # a relapse typed with the wrong year, before the infusion: there is then no remission
        # before it either
        relapses = t["progression_events"].filter(
            (pl.col("event_type") == "RELAPSE_AFTER_CR") & (pl.col("progression_day") < 330)
        )
        row = picker.pick(relapses)
        if row:
            t["progression_events"] = _shift(
                t["progression_events"], "progression_id", row["progression_id"], "progression"
            )
            planted.append(
                Planted(
                    site.site_id,
                    "progression_events",
                    row["progression_id"],
                    "relapse dated a year early, before the infusion",
                    ("PT-002", "PT-006"),
                )
            )
    if site.layout == "jsondeid":
        later = (
            t["disease_assessments"]
            .filter(~pl.col("assessment_id").str.ends_with("-A1"))
            .join(alive_never.select("patient_key", "last_contact_day"), on="patient_key")
        )
        last = later.sort("assessment_day").group_by("patient_key", maintain_order=True).last()
        row = picker.pick(last)
        if row:
            t["disease_assessments"] = _set(
                t["disease_assessments"],
                "assessment_id",
                row["assessment_id"],
                "assessment_day",
                row["last_contact_day"] + 30,
            )
            planted.append(
                Planted(
                    site.site_id,
                    "disease_assessments",
                    row["patient_key"],
                    "marrow dated after the last contact",
                    ("PT-004",),
                )
            )
        row = picker.pick(t["patients"])
        if row:
            t["patients"] = _set(
                t["patients"], "patient_key", row["patient_key"], "age_at_index_years", 104.0
            )
            planted.append(
                Planted(
                    site.site_id,
                    "patients",
                    row["patient_key"],
                    "age of 104 at infusion",
                    ("PA-013",),
                )
            )
        row = picker.pick(later)
        if row:
            t["disease_assessments"] = _set(
                t["disease_assessments"], "assessment_id", row["assessment_id"], "response", "sCR"
            )
            planted.append(
                Planted(
                    site.site_id,
                    "disease_assessments",
                    row["patient_key"],
                    "response written as an unknown code",
                    ("ING-UNMAPPED",),
                )
            )
    return t, planted


def plant_cell_defects(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    """Defects in what the site typed, planted in the rendered export."""
    if site.layout == "registry":
        return _registry_cells(site, export, t, picker)
    if site.layout == "classeur":
        return _classeur_cells(site, export, t, picker)
    return []


def _registry_cells(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    """A day-28 response left "not evaluated" before a relapse, "progressed" ticked without a
    progression form, years of birth that make a patient a minor (surely, or perhaps)."""
    sheet = export.sheet(registry.RECORDS)
    sid = site.site_id
    planted: list[Planted] = []
    relapsed = t["progression_events"].filter(pl.col("event_type") == "RELAPSE_AFTER_CR")
    d28 = t["disease_assessments"].filter(pl.col("timepoint_label") == "D28")
    row = picker.pick(d28.join(relapsed.select("patient_key", "progression_id"), on="patient_key"))
    if row:
        _set_cell(sheet, row["assessment_id"], "d28_response", registry.RESPONSE["NOT_EVALUATED"])
        planted.append(
            Planted(
                sid,
                "progression_events",
                row["progression_id"],
                "relapse after CR with the day-28 response left 'not evaluated'",
                ("PT-006",),
            )
        )
    never = t["follow_up"].filter(
        ~pl.col("patient_key").is_in(t["progression_events"]["patient_key"].implode())
        & (pl.col("vital_status") == "ALIVE")
    )
    row = picker.pick(never)
    if row:
        _set_cell(sheet, row["patient_key"], "fu_prog", "1")
        planted.append(
            Planted(
                sid,
                "follow_up",
                row["patient_key"],
                "progression ticked on the follow-up form, no progression recorded",
                ("CR-014",),
            )
        )
    index = t["car_t_infusions"].filter(pl.col("is_index_infusion"))
    adults = (
        t["patients"]
        .join(index, on="patient_key")
        .filter(
            (pl.col("product") != "tisagenlecleucel")
            & (pl.col("infusion_date").dt.ordinal_day().is_between(30, 330))
        )
    )
    for years, text in ((16, "under 18"), (18, "possibly under 18")):
        row = picker.pick(adults)
        if row:
            _set_cell(sheet, row["patient_key"], "yob", str(row["infusion_date"].year - years))
            planted.append(
                Planted(
                    sid,
                    "patients",
                    row["patient_key"],
                    f"year of birth makes the patient {text} at infusion",
                    ("PA-001",),
                )
            )
    return planted


def _classeur_cells(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    """A patient row pasted twice, a date typed month-first, a relapsed patient "en rémission"."""
    sid = site.site_id
    planted: list[Planted] = []
    row = picker.pick(t["patients"])
    if row:
        copy = f"{row['patient_key']}#copy"
        _duplicate_row(export.sheet(classeur.WORKBOOK, "Patients"), row["patient_key"], copy)
        planted.append(
            Planted(sid, "patients", copy, "patient row pasted twice", ("ING-DUPLICATE",))
        )
    visits = export.sheet(classeur.WORKBOOK, "Visites")
    progressed = t["progression_events"]["patient_key"].implode()
    marrows = t["disease_assessments"].filter(
        ~pl.col("assessment_id").str.ends_with("-A1")
        & ~pl.col("patient_key").is_in(progressed)
        & (pl.col("assessment_date").dt.day() > 12)
    )
    row = picker.pick(marrows)
    if row:
        _set_cell(
            visits,
            row["assessment_id"],
            "Date",
            row["assessment_date"].strftime("%m/%d/%Y"),
            text=True,
        )
        planted.append(
            Planted(
                sid,
                "disease_assessments",
                row["assessment_id"],
                "date typed month first",
                ("ING-DATE",),
            )
        )
    relapsed_alive = t["follow_up"].filter(
        pl.col("patient_key").is_in(progressed) & (pl.col("vital_status") == "ALIVE")
    )
    row = picker.pick(relapsed_alive)
    if row:
        _set_cell(visits, row["patient_key"], "Statut maladie", classeur.STATUS["PROGRESSION_FREE"])
        planted.append(
            Planted(
                sid,
                "follow_up",
                row["patient_key"],
                "relapsed patient recorded 'en rémission' at the latest news",
                ("PT-027",),
            )
        )
    return planted


def _shift(frame: pl.DataFrame, ref_col: str, ref: str, event: str) -> pl.DataFrame:
    """The event's date and day moved one year earlier."""
    hit = pl.col(ref_col) == ref
    return frame.with_columns(
        pl.when(hit)
        .then(pl.col(f"{event}_date").dt.offset_by("-1y"))
        .otherwise(pl.col(f"{event}_date"))
        .alias(f"{event}_date"),
        pl.when(hit)
        .then(pl.col(f"{event}_day") - 365)
        .otherwise(pl.col(f"{event}_day"))
        .alias(f"{event}_day"),
    )


def _duplicate_row(sheet: Sheet, ref: str, copy_ref: str) -> None:
    """Insert a copy of the row rendered from ``ref`` right after it (a row pasted twice)."""
    index = int(sheet.frame.with_row_index("_i").filter(pl.col(REF) == ref)["_i"][0])
    copy = sheet.frame.slice(index, 1).with_columns(pl.lit(copy_ref).alias(REF))
    sheet.frame = pl.concat(
        [sheet.frame.slice(0, index + 1), copy, sheet.frame.slice(index + 1)], how="vertical"
    )
    for name, series in sheet.text_overrides.items():
        sheet.text_overrides[name] = pl.concat(
            [series.slice(0, index + 1), series.slice(index, 1), series.slice(index + 1)]
        )


def locate(export: Export, planted: Planted) -> list[AnswerKeyRow]:
    """Answer-key rows of a defect planted in a registry-style export."""
    sheet, source = RENDERERS[export.layout].sheet_of(export, planted.table)
    line = sheet.line_of(planted.ref)
    return [
        AnswerKeyRow(planted.site_id, source, line, planted.defect, rule)
        for rule in planted.rule_ids
    ]
