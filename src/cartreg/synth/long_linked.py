"""The long and linked layouts (issue 14): an entity-attribute-value warehouse extract
(:mod:`cartreg.synth.render.eav`) and a FHIR R4-style bundle (:mod:`cartreg.synth.render.fhir`),
the defects planted in them, and where the answer key finds each one.

They are not part of ``sample_data/``: ``tests/synth/test_eav_fhir.py`` renders them from a
small cohort, clean and with these defects. Each defect is planted on a patient that carries
no other (``Picker``), in what the site wrote (a cell of the extract, a field of a resource).
"""

from __future__ import annotations

import datetime as dt
import json
from types import ModuleType
from typing import Any

import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.defects import AnswerKeyRow, Picker, Planted, _set_cell
from cartreg.synth.registry_style import _duplicate_row
from cartreg.synth.render import eav, fhir
from cartreg.synth.render.common import REF, Export, Sheet

LAYOUTS: tuple[str, ...] = ("eav", "fhir")
RENDERERS: dict[str, ModuleType] = {"eav": eav, "fhir": fhir}

Tables = dict[str, pl.DataFrame]
# a salvage dated after death is also after the last contact (the death date)
AFTER_DEATH = ("PT-003", "PT-004")


def build(site: SiteInfo, tables: Tables) -> Export:
    export: Export = RENDERERS[site.layout].build(site, tables)
    return export


def mapping(site: SiteInfo) -> str:
    text: str = RENDERERS[site.layout].mapping(site)
    return text


def plant_cell_defects(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    """Defects in what the site wrote, planted in the rendered export."""
    if site.layout == "eav":
        return _eav_cells(site, export, t, picker)
    return _fhir_cells(site, export, t, picker)


def _later_marrows(t: Tables) -> pl.DataFrame:
    """Marrows after day 28 of patients who never progressed, with a measured blast count."""
    progressed = t["progression_events"]["patient_key"].implode()
    return t["disease_assessments"].filter(
        ~pl.col("assessment_id").str.ends_with("-A1")
        & ~pl.col("patient_key").is_in(progressed)
        & pl.col("bm_blast_qualifier").is_null()
        & pl.col("bm_blast_pct").is_not_null()
    )


def _salvaged_dead(t: Tables) -> pl.DataFrame:
    """First salvage rows of patients who died."""
    dead = t["follow_up"].filter(pl.col("vital_status") == "DEAD")
    return (
        t["salvage_treatments"]
        .filter(pl.col("salvage_id").str.ends_with("-S1"))
        .join(dead.select("patient_key", "death_date"), on="patient_key")
    )


def _eav_cells(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    """Two different blast counts for one marrow, a salvage dated after death, a date that
    does not exist."""
    sheet = export.sheet(eav.OBSERVATIONS)
    sid = site.site_id
    planted: list[Planted] = []
    row = picker.pick(_later_marrows(t))
    if row:
        ref = f"{row['assessment_id']}:BM_BLAST"
        copy = f"{ref}#second"
        _duplicate_row(sheet, ref, copy)
        _set_cell(sheet, copy, "VALUE", f"{row['bm_blast_pct'] + 7.0:.1f}")
        planted.append(
            Planted(
                sid,
                "disease_assessments",
                copy,
                "two different blast counts for one marrow",
                ("ING-CONFLICT",),
            )
        )
    row = picker.pick(_salvaged_dead(t))
    if row:
        ref = f"{row['salvage_id']}:SALVAGE"
        late: dt.date = row["death_date"] + dt.timedelta(days=12)
        _set_cell(sheet, ref, "DATE", late.strftime("%Y%m%d"))
        planted.append(
            Planted(sid, "salvage_treatments", ref, "salvage dated after death", AFTER_DEATH)
        )
    row = picker.pick(_later_marrows(t).filter(pl.col("assessment_date").dt.month() != 2))
    if row:
        ref = f"{row['assessment_id']}:RESP"
        day = row["assessment_date"]
        month_end = {4: 31, 6: 31, 9: 31, 11: 31}.get(day.month, 32)
        _set_cell(sheet, ref, "DATE", f"{day.year}{day.month:02d}{month_end}")
        planted.append(
            Planted(sid, "disease_assessments", ref, "a date that does not exist", ("ING-DATE",))
        )
    return planted


def _edit_resource(sheet: Sheet, ref: str, edit: Any) -> None:
    """Change one bundle entry (``edit`` takes and changes its resource dict)."""
    index = sheet.frame.with_row_index("_i").filter(pl.col(REF) == ref)["_i"][0]
    entry = json.loads(sheet.frame["_json"][index])
    edit(entry["resource"])
    _set_cell(sheet, ref, "_json", json.dumps(entry))


def _fhir_cells(site: SiteInfo, export: Export, t: Tables, picker: Picker) -> list[Planted]:
    """A response written as a code the registry does not know, a salvage whose reason names
    no resource of the bundle, a salvage dated after death."""
    sheet = export.sheet(fhir.BUNDLE)
    sid = site.site_id
    planted: list[Planted] = []
    row = picker.pick(_later_marrows(t))
    if row:
        ref = f"{row['assessment_id']}:RESPONSE"
        _edit_resource(sheet, ref, lambda r: r["valueCodeableConcept"].update(text="sCR"))
        planted.append(
            Planted(
                sid, "disease_assessments", ref, "response as an unknown code", ("ING-UNMAPPED",)
            )
        )
    row = picker.pick(t["salvage_treatments"])
    if row:
        ref = f"{row['salvage_id']}:SALVAGE"
        gone = [{"reference": f"Condition/{row['patient_key']}-P9"}]
        _edit_resource(sheet, ref, lambda r: r.update(reasonReference=gone))
        planted.append(
            Planted(
                sid,
                "salvage_treatments",
                ref,
                "salvage reason names no resource of the bundle",
                ("ING-REFERENCE",),
            )
        )
    row = picker.pick(_salvaged_dead(t))
    if row:
        ref = f"{row['salvage_id']}:SALVAGE"
        late: dt.date = row["death_date"] + dt.timedelta(days=12)
        _edit_resource(sheet, ref, lambda r: r["effectivePeriod"].update(start=late.isoformat()))
        planted.append(
            Planted(sid, "salvage_treatments", ref, "salvage dated after death", AFTER_DEATH)
        )
    return planted


def locate(export: Export, planted: Planted) -> list[AnswerKeyRow]:
    """Answer-key rows of a defect: the extract's line, or the bundle entry's position."""
    if export.layout == "eav":
        sheet = export.sheet(eav.OBSERVATIONS)
        source = sheet.file
    else:
        sheet = export.sheet(fhir.BUNDLE)
        entry = json.loads(sheet.frame["_json"][sheet.line_of(planted.ref) - 1])
        source = f"{sheet.file}#{entry['resource']['resourceType']}"
    line = sheet.line_of(planted.ref)
    return [
        AnswerKeyRow(planted.site_id, source, line, planted.defect, rule)
        for rule in planted.rule_ids
    ]
