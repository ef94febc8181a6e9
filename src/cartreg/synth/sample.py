"""Render a truth cohort as site exports (with or without planted defects) and write them.

``write_sample_data`` writes the committed ``sample_data/`` set: four sites, one per layout,
240 patients from seed 2021; three registry-style sites, 180 patients from seed 2022
(``cartreg.synth.registry_style``); and the answer key ``defects.csv`` of all seven.
``synthesize`` is the general form behind ``cartreg synth`` (any size, any number of sites,
truth tables as Parquet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import InputError
from cartreg.synth import registry_style
from cartreg.synth.cohort import (
    CHUNK_SIZE,
    LAYOUTS,
    Cohort,
    SiteInfo,
    iter_cohort_chunks,
    make_sites,
    simulate_cohort,
)
from cartreg.synth.defects import (
    AnswerKeyRow,
    Picker,
    Planted,
    answer_key_frame,
    copy_patient,
    locate,
    plant_cell_defects,
    plant_table_defects,
    simple_patients,
)
from cartreg.synth.duplicates import empty_pairs
from cartreg.synth.render import deid, ehr, excel, redcap
from cartreg.synth.render.common import Export, merge_exports, write_export

SAMPLE_SEED = 2021
SAMPLE_PATIENTS = 240
SAMPLE_SITES = 4

Progress = Callable[[str], None]


@dataclass
class Rendered:
    exports: list[Export]
    answer_key: pl.DataFrame
    # the patient copied to a second site as a planted defect (PU-001), as a truth pair
    duplicate: pl.DataFrame | None = None


def _build(layout: str, site: SiteInfo, tables: dict[str, pl.DataFrame], seed: int) -> Export:
    if layout in registry_style.LAYOUTS:
        return registry_style.build(site, tables, seed)
    if layout == "redcap":
        return redcap.build(site, tables)
    if layout == "excel":
        return excel.build(site, tables, seed=seed)
    if layout == "ehr":
        return ehr.build(site, tables)
    return deid.build(site, tables)


def render_sites(
    cohort: Cohort, *, clean: bool = False, progress: Progress | None = None
) -> Rendered:
    """Render every site; unless ``clean``, plant the defects and build the answer key."""
    site_tables = {s.site_id: cohort.site_tables(s.site_id) for s in cohort.sites}
    pickers = {s.site_id: Picker(cohort.seed * 1000 + i) for i, s in enumerate(cohort.sites)}
    planted: list[Planted] = []
    duplicate: tuple[str, str, str, str] | None = None
    if not clean:
        src = next((s for s in cohort.sites if s.layout == "redcap"), None)
        dst = next((s for s in cohort.sites if s.layout == "excel"), None)
        if src is not None and dst is not None:
            row = pickers[src.site_id].pick(simple_patients(site_tables[src.site_id]))
            if row is not None:
                site_tables[dst.site_id], new_key = copy_patient(
                    site_tables[src.site_id], row["patient_key"], dst, site_tables[dst.site_id]
                )
                pickers[dst.site_id].used.add(new_key)
                duplicate = (src.site_id, row["patient_key"], dst.site_id, new_key)
    exports: list[Export] = []
    for i, site in enumerate(cohort.sites):
        if progress:
            progress(f"rendering {site.site_id} ({site.layout})")
        tables = site_tables[site.site_id]
        # registry-style layouts plant their own kinds of defects (cartreg.synth.registry_style)
        style = registry_style if site.layout in registry_style.LAYOUTS else None
        if not clean:
            plant = style.plant_table_defects if style else plant_table_defects
            tables, found = plant(site, tables, pickers[site.site_id])
            planted.extend(found)
        export = _build(site.layout, site, tables, cohort.seed + i)
        if not clean:
            plant_cells = style.plant_cell_defects if style else plant_cell_defects
            planted.extend(plant_cells(site, export, tables, pickers[site.site_id]))
        exports.append(export)
    by_site = {e.site_id: e for e in exports}
    rows: list[AnswerKeyRow] = []
    for p in planted:
        export = by_site[p.site_id]
        located = registry_style.locate if export.layout in registry_style.LAYOUTS else locate
        rows.extend(located(export, p))
    if duplicate is not None:
        src_id, src_key, dst_id, dst_key = duplicate
        text = "same patient reported by two sites"
        rows.extend(
            locate(by_site[src_id], Planted(src_id, "patients", src_key, text, ("PU-001",)))
        )
        rows.extend(
            locate(by_site[dst_id], Planted(dst_id, "patients", dst_key, text, ("PU-001",)))
        )
    pair = None
    if duplicate is not None:
        pair = pl.DataFrame(
            {"patient_key_a": [duplicate[1]], "patient_key_b": [duplicate[3]]},
            schema={"patient_key_a": pl.String, "patient_key_b": pl.String},
        )
    return Rendered(exports, answer_key_frame(rows), pair)


def write_answer_key(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path, line_terminator="\n")


def write_sample_data(
    dest: Path | str, *, seed: int = SAMPLE_SEED, clean: bool = False
) -> list[Path]:
    """Write the committed sample set: ``<dest>/<site>/…`` for the four sites of the first
    cohort and the three registry-style sites of the second, and one ``defects.csv``."""
    dest = Path(dest)
    cohorts = [
        simulate_cohort(SAMPLE_PATIENTS, SAMPLE_SITES, seed, layouts=LAYOUTS),
        registry_style.registry_style_cohort(),
    ]
    written: list[Path] = []
    keys: list[pl.DataFrame] = []
    for cohort in cohorts:
        rendered = render_sites(cohort, clean=clean)
        for export in rendered.exports:
            written.extend(write_export(export, dest / export.site_id.lower()))
        keys.append(rendered.answer_key)
    key = dest / "defects.csv"
    write_answer_key(pl.concat(keys).sort(["site_id", "source_file", "source_row", "rule_id"]), key)
    written.append(key)
    return written


def sample_cohort(seed: int = SAMPLE_SEED) -> Cohort:
    """The truth behind the four original sites of ``sample_data/`` (before defects)."""
    return simulate_cohort(SAMPLE_PATIENTS, SAMPLE_SITES, seed, layouts=LAYOUTS)


def sample_site_truth(site_id: str) -> dict[str, pl.DataFrame]:
    """What a clean ingest of any sample site gives: the cohort's tables for the four original
    sites, the layout's site truth (``registry_style.site_truth``) for the registry-style ones."""
    for cohort in (sample_cohort(), registry_style.registry_style_cohort()):
        site = next((s for s in cohort.sites if s.site_id == site_id), None)
        if site is None:
            continue
        tables = cohort.site_tables(site_id)
        if site.layout in registry_style.LAYOUTS:
            return registry_style.site_truth(site, tables)
        return tables
    raise KeyError(site_id)


def synthesize(
    out: Path | str,
    *,
    n_patients: int,
    n_sites: int,
    seed: int,
    clean: bool = False,
    layouts: tuple[str, ...] = LAYOUTS,
    truth_only: bool = False,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
    duplicate_rate: float = 0.0,
) -> list[SiteInfo]:
    """``cartreg synth``: ``out/truth/*.parquet``, ``out/truth/duplicates.csv``,
    ``out/sites/<site>/…``, ``out/defects.csv``.

    Patients are simulated and written ``chunk_size`` at a time, so memory stays bounded for
    millions of patients. Defects (unless ``clean``) are planted in the first chunk only.
    ``duplicate_rate`` reports that share of the patients a second time at another site; the
    truth pairs (with the one planted as a defect) go to ``truth/duplicates.csv``.
    """
    import pyarrow.parquet as pq

    out = Path(out)
    _check_excel_fits(n_patients, n_sites, layouts, truth_only)
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Any] = {}
    excel_parts: dict[str, Export] = {}
    answer_key: pl.DataFrame | None = None
    sites: list[SiteInfo] = []
    pairs: list[pl.DataFrame] = []
    chunks = iter_cohort_chunks(
        n_patients,
        n_sites,
        seed,
        chunk_size=chunk_size,
        layouts=layouts,
        duplicate_rate=duplicate_rate,
    )
    try:
        for i, cohort in enumerate(chunks):
            sites = cohort.sites
            if progress:
                done = min((i + 1) * chunk_size, n_patients)
                progress(f"simulated {done:,} of {n_patients:,} patients")
            for name, frame in cohort.tables.items():
                table = frame.to_arrow()
                if name not in writers:
                    writers[name] = pq.ParquetWriter(truth / f"{name}.parquet", table.schema)
                writers[name].write_table(table)
            if cohort.duplicates is not None:
                pairs.append(cohort.duplicates)
            if truth_only:
                continue
            rendered = render_sites(cohort, clean=clean or i > 0)
            if rendered.duplicate is not None:
                pairs.append(rendered.duplicate)
            if i == 0 and not clean:
                answer_key = rendered.answer_key
            for export in rendered.exports:
                folder = out / "sites" / export.site_id.lower()
                if export.layout == "excel":
                    prior = excel_parts.get(export.site_id)
                    excel_parts[export.site_id] = (
                        export if prior is None else merge_exports(prior, export)
                    )
                else:
                    write_export(export, folder, append=i > 0)
    finally:
        for writer in writers.values():
            writer.close()
    for site_id, export in excel_parts.items():
        if progress:
            progress(f"writing the {site_id} workbook")
        write_export(export, out / "sites" / site_id.lower())
    if answer_key is not None:
        write_answer_key(answer_key, out / "defects.csv")
    truth_pairs = pl.concat(pairs) if pairs else empty_pairs()
    truth_pairs.write_csv(truth / "duplicates.csv", line_terminator="\n")
    return sites


def _check_excel_fits(
    n_patients: int, n_sites: int, layouts: tuple[str, ...], truth_only: bool
) -> None:
    """Fail early, not after minutes of work, when a workbook sheet would exceed Excel's limit."""
    if truth_only or "excel" not in layouts:
        return
    excel_sites = sum(1 for s in make_sites(n_sites, layouts) if s.layout == "excel")
    # about 5.5 assessment rows per patient; the largest site gets ~30% more than its share
    rows = n_patients / n_sites * 1.3 * 5.5
    if excel_sites and rows > excel.MAX_ROWS:
        raise InputError(
            f"an Excel site would get about {int(rows):,} rows in one sheet, over Excel's limit",
            hint="use more sites, fewer patients, or --layouts without excel",
        )
