"""Finding fingerprints do not depend on row positions (docs/queries.md, "The fingerprint")."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartreg.cdm import CDM, load_cdm
from cartreg.cdm.schema import polars_dtype
from cartreg.findings import findings_frame
from cartreg.queries.fingerprint import QuarantinedRows, fingerprint_findings

SITE = "SITE_H"
FILES = {
    "patients": "patients.csv",
    "car_t_infusions": "infusions.csv",
    "disease_assessments": "marrow.csv",
}
SPECIMENS = ("BONE_MARROW", "PERIPHERAL_BLOOD")


@functools.cache
def _cdm() -> CDM:
    return load_cdm()


@pytest.fixture(scope="module")
def cdm() -> CDM:
    return _cdm()


@dataclass(frozen=True)
class Record:
    uid: str
    table: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """A finding on one column of one record (by uid, not by position)."""

    rule_id: str
    uid: str
    column: str


@dataclass(frozen=True)
class Cohort:
    records: tuple[Record, ...]
    problems: tuple[Problem, ...]
    order: tuple[int, ...] = field(default=())  # the position of each record in its file

    def render(self, cdm: CDM) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
        """CDM tables with source rows from ``order``, and the findings at those rows."""
        order = self.order or tuple(range(len(self.records)))
        positions: dict[str, int] = {}
        rows: dict[str, list[dict[str, Any]]] = {t: [] for t in FILES}
        for rank in sorted(range(len(self.records)), key=lambda i: order[i]):
            record = self.records[rank]
            positions[record.uid] = len(rows[record.table]) + 2
            rows[record.table].append(
                {
                    **record.fields,
                    "site_id": SITE,
                    "source_file": FILES[record.table],
                    "source_row": positions[record.uid],
                }
            )
        tables = {}
        for name, records in rows.items():
            schema = {c.name: polars_dtype(c) for c in cdm.tables[name].columns}
            tables[name] = pl.DataFrame(records, schema=schema)
        by_uid = {r.uid: r for r in self.records}
        findings = findings_frame(
            pl.DataFrame(
                [
                    {
                        "rule_id": p.rule_id,
                        "severity": "error",
                        "category": "plausibility",
                        "message": "x",
                        "site_id": SITE,
                        "table": by_uid[p.uid].table,
                        "column": p.column,
                        "source_file": FILES[by_uid[p.uid].table],
                        "source_row": positions[p.uid],
                        "value": _text(by_uid[p.uid].fields.get(p.column)),
                    }
                    for p in self.problems
                ],
                schema={
                    "rule_id": pl.String,
                    "severity": pl.String,
                    "category": pl.String,
                    "message": pl.String,
                    "site_id": pl.String,
                    "table": pl.String,
                    "column": pl.String,
                    "source_file": pl.String,
                    "source_row": pl.Int64,
                    "value": pl.String,
                },
            )
        )
        return tables, findings

    def fingerprints(self, cdm: CDM) -> dict[Problem, str]:
        tables, findings = self.render(cdm)
        prints = fingerprint_findings(findings, tables, cdm=cdm)
        return dict(zip(self.problems, prints["fingerprint"].to_list(), strict=True))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _patient(key: str, day0: dt.date, offsets: list[int], specimens: list[str]) -> list[Record]:
    out = [
        Record(f"{key}/pt", "patients", {"patient_key": key, "sex": "F", "birth_year": 1970}),
        Record(
            f"{key}/inf",
            "car_t_infusions",
            {
                "patient_key": key,
                "infusion_id": f"{key}-INF1",
                "infusion_number": 1,
                "is_index_infusion": True,
                "infusion_date": day0,
                "infusion_day": 0,
                "product": "tisagenlecleucel",
            },
        ),
    ]
    for k, (offset, specimen) in enumerate(zip(offsets, specimens, strict=True), start=1):
        out.append(
            Record(
                f"{key}/a{k}",
                "disease_assessments",
                {
                    "patient_key": key,
                    "assessment_id": f"{key}-A{k}",
                    "assessment_date": day0 + dt.timedelta(days=offset),
                    "assessment_day": offset,
                    "specimen": specimen,
                    "bm_blast_pct": float(k),
                },
            )
        )
    return out


@st.composite
def patients(draw: st.DrawFn, key: str) -> list[Record]:
    day0 = dt.date(2021, 1, 1) + dt.timedelta(days=draw(st.integers(0, 700)))
    n = draw(st.integers(1, 4))
    gaps = draw(st.lists(st.integers(10, 60), min_size=n, max_size=n))
    offsets = [sum(gaps[: i + 1]) for i in range(n)]
    specimens = draw(st.lists(st.sampled_from(SPECIMENS), min_size=n, max_size=n))
    return _patient(key, day0, offsets, specimens)


# Columns a finding can name, by table: an ordinary value, the event's own time, the column
# telling same-day events apart, and patient-level values.
PROBLEM_COLUMNS = {
    "disease_assessments": ("bm_blast_pct", "assessment_day", "assessment_date", "specimen"),
    "car_t_infusions": ("product", "infusion_date"),
    "patients": ("sex", "birth_year"),
}


@st.composite
def cohorts(draw: st.DrawFn) -> Cohort:
    n = draw(st.integers(2, 5))
    records = [r for i in range(n) for r in draw(patients(f"{SITE}-P{i:02d}"))]
    problems: set[Problem] = set()
    for record in draw(st.lists(st.sampled_from(records), min_size=1, max_size=6)):
        column = draw(st.sampled_from(PROBLEM_COLUMNS[record.table]))
        rule = draw(st.sampled_from(("PT-003", "PA-004")))
        problems.add(Problem(rule, record.uid, column))
    return Cohort(tuple(records), tuple(sorted(problems, key=repr)))


def _shuffled(cohort: Cohort, order: list[int]) -> Cohort:
    return replace(cohort, order=tuple(order))


@given(cohorts(), st.data())
def test_fingerprints_ignore_row_order(cohort: Cohort, data: st.DataObject) -> None:
    cdm = _cdm()
    before = cohort.fingerprints(cdm)
    # Distinct problems have distinct fingerprints: the invariance below is not vacuous.
    assert len(set(before.values())) == len(before)
    order = data.draw(st.permutations(range(len(cohort.records))))
    assert _shuffled(cohort, order).fingerprints(cdm) == before


@given(cohorts(), st.data())
def test_fingerprints_ignore_unrelated_patients_and_events(
    cohort: Cohort, data: st.DataObject
) -> None:
    """Unrelated: another patient, an event of another kind (specimen), or a later event."""
    cdm = _cdm()
    before = cohort.fingerprints(cdm)
    extra = data.draw(patients(f"{SITE}-P99"))
    keys = sorted({r.fields["patient_key"] for r in cohort.records})
    for i, key in enumerate(data.draw(st.lists(st.sampled_from(keys), max_size=3))):
        own = [r for r in cohort.records if r.fields.get("patient_key") == key]
        day0 = next(r.fields["infusion_date"] for r in own if r.table == "car_t_infusions")
        last = max([r.fields["assessment_day"] for r in own if r.table == "disease_assessments"])
        later = last + data.draw(st.integers(1, 90))
        extra.append(
            Record(
                f"{key}/extra{i}",
                "disease_assessments",
                {
                    "patient_key": key,
                    "assessment_id": f"{key}-A{90 + i}",
                    "assessment_date": day0 + dt.timedelta(days=later),
                    "assessment_day": later,
                    "specimen": data.draw(st.sampled_from((*SPECIMENS, "CSF"))),
                    "bm_blast_pct": 0.0,
                },
            )
        )
    grown = replace(cohort, records=cohort.records + tuple(extra))
    order = data.draw(st.permutations(range(len(grown.records))))
    assert _shuffled(grown, order).fingerprints(cdm) == before


@given(cohorts(), st.data())
def test_fingerprints_ignore_the_offending_value(cohort: Cohort, data: st.DataObject) -> None:
    """Correcting the value a finding names (to anything still at the event's place in time)
    keeps the finding's fingerprint, whatever column it is."""
    cdm = _cdm()
    before = cohort.fingerprints(cdm)
    problem = data.draw(st.sampled_from(cohort.problems))
    records = list(cohort.records)
    i = next(k for k, r in enumerate(records) if r.uid == problem.uid)
    fields = dict(records[i].fields)
    if problem.column in ("assessment_day", "assessment_date"):
        shift = data.draw(st.sampled_from((-4, -1, 1, 4)))  # events are >= 10 days apart
        fields["assessment_day"] += shift
        fields["assessment_date"] += dt.timedelta(days=shift)
    elif problem.column == "infusion_date":
        fields["infusion_date"] += dt.timedelta(days=data.draw(st.integers(-30, 30)))
    elif problem.column == "specimen":
        fields["specimen"] = data.draw(st.sampled_from((*SPECIMENS, "CSF", None)))
    elif problem.column == "bm_blast_pct":
        fields["bm_blast_pct"] = data.draw(st.floats(0, 100, allow_nan=False))
    elif problem.column == "product":
        fields["product"] = data.draw(st.sampled_from(("axicabtagene_ciloleucel", None)))
    elif problem.column == "sex":
        fields["sex"] = data.draw(st.sampled_from(("M", "U", None)))
    else:
        fields[problem.column] = data.draw(st.integers(1900, 2010))
    records[i] = replace(records[i], fields=fields)
    corrected = replace(cohort, records=tuple(records))
    assert corrected.fingerprints(cdm)[problem] == before[problem]


def _findings(rows: list[dict[str, Any]]) -> pl.DataFrame:
    base = {"severity": "error", "category": "plausibility", "message": "m", "site_id": SITE}
    return findings_frame(
        pl.DataFrame([{**base, **r} for r in rows], infer_schema_length=None).with_columns(
            pl.col("source_row").cast(pl.Int64)
        )
    )


def test_events_are_named_by_time_kind_and_place(cdm: CDM) -> None:
    key = f"{SITE}-P01"
    records = _patient(key, dt.date(2022, 3, 1), [28, 90], ["BONE_MARROW", "BONE_MARROW"])
    tables, _ = Cohort(tuple(records), ()).render(cdm)
    findings = _findings(
        [
            {
                "rule_id": "PA-004",
                "table": "disease_assessments",
                "column": "bm_blast_pct",
                "source_file": "marrow.csv",
                "source_row": 3,
                "value": "2.0",
            },
            {
                "rule_id": "PT-003",
                "table": "disease_assessments",
                "column": "assessment_day",
                "source_file": "marrow.csv",
                "source_row": 3,
                "value": "90",
            },
            {
                "rule_id": "PA-001",
                "table": "patients",
                "column": "birth_year",
                "source_file": "patients.csv",
                "source_row": 2,
                "value": "1970",
            },
            {"rule_id": "CDM-COLUMN-MISSING", "table": "patients", "column": "sex"},
            {
                "rule_id": "ING-DATE",
                "table": "disease_assessments",
                "column": "assessment_date",
                "source_file": "marrow.csv",
                "source_row": 40,
                "value": "2022-02-30",
            },
        ]
    )
    prints = fingerprint_findings(findings, tables, cdm=cdm)
    assert prints.select("patient_key", "event", "event_label", "anchor").rows() == [
        (key, "2022-05-30|BONE_MARROW|1", "2022-05-30 BONE_MARROW", "event"),
        (key, "#2|BONE_MARROW|1", "no. 2 in time order BONE_MARROW", "event"),
        (key, "||1", "", "event"),
        (None, "", "", "table"),
        (None, "row|marrow.csv|40", "marrow.csv row 40", "row"),
    ]
    assert prints["fingerprint"].n_unique() == 5


def test_one_source_row_feeding_two_events_names_the_one_with_the_value(cdm: CDM) -> None:
    """Two agents of one salvage line come from one source row: the finding is named by the
    row holding the reported value, whatever the order of the rows."""
    spec = cdm.tables["salvage_treatments"]
    schema = {c.name: polars_dtype(c) for c in spec.columns}
    rows = [
        {
            "patient_key": f"{SITE}-P01",
            "salvage_id": f"{SITE}-P01-S{k}",
            "start_day": 100,
            "agent": agent,
            "best_response": response,
            "site_id": SITE,
            "source_file": "salvage.csv",
            "source_row": 5,
        }
        for k, (agent, response) in enumerate([("venetoclax", "CR"), ("blinatumomab", "PD")])
    ]
    finding = _findings(
        [
            {
                "rule_id": "CP-007",
                "table": "salvage_treatments",
                "column": "best_response",
                "source_file": "salvage.csv",
                "source_row": 5,
                "value": "PD",
            }
        ]
    )
    for ordered in (rows, rows[::-1]):
        tables = {"salvage_treatments": pl.DataFrame(ordered, schema=schema)}
        prints = fingerprint_findings(finding, tables, cdm=cdm)
        assert prints["event"].to_list() == ["d100|blinatumomab|1"]


def test_quarantined_rows_are_named_by_their_other_cells(cdm: CDM) -> None:
    raw = pl.DataFrame(
        {
            "source_file": ["events.csv", "events.csv"],
            "source_row": [7, 9],
            "STUDY_ID": [" CT01 ", "CT02"],
            "EVENT_DATE": ["2021-02-03", "2021-02-03"],
            "ITEM_NAME": ["TECARTIS IV susp", "KYMRIA"],
            "quarantine_reasons": ["ING-UNMAPPED(product)", "ING-UNMAPPED(product)"],
        }
    )
    source = QuarantinedRows(raw, "STUDY_ID", {"car_t_infusions.product": "ITEM_NAME"})

    def named(row: int, value: str, frame: pl.DataFrame = raw) -> tuple[Any, ...]:
        finding = _findings(
            [
                {
                    "rule_id": "ING-UNMAPPED",
                    "table": "car_t_infusions",
                    "column": "product",
                    "source_file": "events.csv",
                    "source_row": row,
                    "value": value,
                }
            ]
        )
        prints = fingerprint_findings(
            finding, {}, cdm=cdm, quarantine=[replace(source, frame=frame)]
        )
        return prints.select("patient_key", "anchor", "fingerprint").row(0)

    first = named(7, "TECARTIS IV susp")
    assert first[:2] == (f"{SITE}-CT01", "quarantine")
    assert named(9, "KYMRIA")[2] != first[2]
    # The row moved and its product was changed to another unmapped name: the same problem.
    moved = raw.with_columns(
        pl.Series("source_row", [12, 9]), pl.Series("ITEM_NAME", ["TECARTUS?", "KYMRIA"])
    )
    assert named(12, "TECARTUS?", moved) == first
