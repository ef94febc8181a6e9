"""``mapping init``: a draft mapping proposing CDM targets for source columns.

Targets are proposed by column name (normalized, compared with CDM column names and a few
common aliases) and by value overlap with the CDM vocabularies. Every proposal carries a
``# REVIEW`` comment with its evidence: the draft is a starting point for a person, never a
mapping to run unread.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartreg.cdm import CDM
from cartreg.ingest.identifiers import identifier_columns
from cartreg.ingest.profile import SourceFrame, read_any, vocabulary_match
from cartreg.ingest.transforms.dates import detect_date_formats

# Site spellings seen in exports -> (table, column). Name matching handles the rest.
ALIASES: dict[str, tuple[str, str]] = {
    "gender": ("patients", "sex"),
    "sex": ("patients", "sex"),
    "yob": ("patients", "birth_year"),
    "dob": ("patients", "birth_year"),
    "ph": ("patients", "ph_status"),
    "bcr_abl": ("patients", "ph_status"),
    "dx_date": ("patients", "diagnosis_date"),
    "prior_lines": ("patients", "n_prior_lines"),
    "car_t_product": ("car_t_infusions", "product"),
    "product": ("car_t_infusions", "product"),
    "cart_date": ("car_t_infusions", "infusion_date"),
    "infusion_date": ("car_t_infusions", "infusion_date"),
    "ld_regimen": ("car_t_infusions", "lymphodepletion_regimen"),
    "response": ("disease_assessments", "response"),
    "relapse_date": ("progression_events", "progression_date"),
    "agent": ("salvage_treatments", "agent"),
    "hct_date": ("transplants", "hct_date"),
    "vital_status": ("follow_up", "vital_status"),
    "death_date": ("follow_up", "death_date"),
    "last_contact": ("follow_up", "last_contact_date"),
}
_ID_PATTERN = re.compile(r"^(record|study|patient|subject|pt|local)?[ _]?(id|no|number|key)$", re.I)
_NAME_CUTOFF = 0.8


@dataclass(frozen=True)
class Proposal:
    table: str
    column: str
    source_column: str
    evidence: str
    formats: tuple[str, ...] = ()


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _site_id_from(paths: list[Path]) -> str:
    stem = re.sub(r"[^A-Z0-9_]", "_", paths[0].parent.name.upper()).strip("_") or "SITE"
    if not stem[0].isalpha():
        stem = f"S_{stem}"
    return stem[:16]


def propose(source: SourceFrame, cdm: CDM) -> tuple[str | None, list[Proposal]]:
    """The likely patient id column and one proposal per mappable column of a source."""
    frame = source.frame
    columns = [c for c in frame.columns if c not in ("source_file", "source_row")]
    identifiers = set(identifier_columns(frame))
    patient_id = next((c for c in columns if _ID_PATTERN.match(_norm(c))), None)
    targets: dict[str, tuple[str, str]] = {}
    vocab_targets: dict[str, tuple[str, str]] = {}
    for table in cdm.tables.values():
        for col in table.columns:
            if col.role not in ("declared", "day_offset") or col.name == "patient_key":
                continue
            targets.setdefault(col.name, (table.name, col.name))
            if col.vocabulary is not None:
                vocab_targets.setdefault(col.vocabulary, (table.name, col.name))
    proposals: list[Proposal] = []
    for column in columns:
        if column == patient_id:
            continue
        key = _norm(column)
        values = frame.get_column(column).cast(pl.String, strict=False)
        target: tuple[str, str] | None = None
        evidence = ""
        if key in ALIASES:
            target, evidence = ALIASES[key], f"column name '{column}' is a known alias"
        else:
            close = difflib.get_close_matches(key, list(targets), n=1, cutoff=_NAME_CUTOFF)
            # Abbreviated names ("prior_blina" for prior_blinatumomab) match as prefixes.
            prefixed = [t for t in targets if len(key) >= 5 and t.startswith(key)]
            if close:
                target, evidence = targets[close[0]], f"column name close to '{close[0]}'"
            elif prefixed:
                best = min(prefixed, key=len)
                target, evidence = targets[best], f"'{column}' abbreviates '{best}'"
        if target is None:
            vocab, share = vocabulary_match(values, cdm)
            if vocab is not None and vocab in vocab_targets:
                target = vocab_targets[vocab]
                evidence = f"{share:.0%} of distinct values are terms of vocabulary '{vocab}'"
        if target is None:
            continue
        if column in identifiers and target[1] != "birth_year":
            continue
        spec = cdm.tables[target[0]].column(target[1])
        formats = tuple(detect_date_formats(values)) if spec.dtype == "date" else ()
        proposals.append(Proposal(target[0], target[1], column, evidence, formats))
    return patient_id, proposals


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def draft_mapping(paths: list[Path], cdm: CDM, *, site_id: str | None = None) -> str:
    """YAML text of a draft mapping for the files in ``paths``."""
    sources = [s for p in paths for s in read_any(p)]
    site = site_id or _site_id_from(paths)
    lines = [
        "# Draft mapping written by `cartreg mapping init`. Every line marked REVIEW is a guess:",
        "# check it against docs/mapping.md and the data, then run `cartreg mapping check`.",
        'mapping_version: "0.1"',
        f"site_id: {site}  # REVIEW: registry code of the site",
        f'cdm_version: "{cdm.version}"',
        "defaults:",
        "  date_formats: [ISO]  # REVIEW: add DMY or MDY (never both), MY, Y, EXCEL",
        "sources:",
    ]
    by_table: dict[str, list[tuple[str, str | None, list[Proposal]]]] = {}
    for i, source in enumerate(sources):
        name = f"source_{i + 1}"
        patient_id, proposals = propose(source, cdm)
        lines.append(f"  {name}:")
        lines.append(f"    file: {_q(str(source.path.name))}")
        if source.sheet:
            lines.append(f"    sheet: {_q(source.sheet)}")
        if patient_id:
            lines.append(f"    patient_id: {_q(patient_id)}  # REVIEW: local study id column")
        else:
            lines.append('    patient_id: ""  # REVIEW: no id column recognised; name it here')
        for table in {p.table for p in proposals}:
            chosen = [p for p in proposals if p.table == table]
            by_table.setdefault(table, []).append((name, patient_id, chosen))
    lines.append("tables:")
    for table in cdm.tables:
        if table not in by_table:
            continue
        lines.append(f"  {table}:")
        for source_name, _, proposals in by_table[table]:
            lines.append(f"    - source: {source_name}")
            lines.append("      columns:")
            seen: set[str] = set()
            for p in proposals:
                prefix = "# " if p.column in seen else ""
                seen.add(p.column)
                extra = ", part: year" if p.column == "birth_year" else ""
                fmt = f", formats: [{', '.join(p.formats)}]" if p.formats else ""
                lines.append(
                    f"        {prefix}{p.column}: {{from: {_q(p.source_column)}{extra}{fmt}}}"
                    f"  # REVIEW: {p.evidence}"
                )
    return "\n".join(lines) + "\n"
