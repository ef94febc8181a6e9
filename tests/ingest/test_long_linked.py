"""Long and linked exports (issue 14): an entity-attribute-value extract and a FHIR bundle,
written by hand (not rendered by the simulator), map with YAML alone; a pivot gives what the
wide layout gives; rows combined by key do not depend on source order; no row is lost."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cartreg.cdm import load_cdm
from cartreg.ingest import IngestResult, ingest_submission
from cartreg.ingest.profile import profile_files

FIXTURES = Path(__file__).parent / "fixtures"
_LINEAGE = ("source_file", "source_row")


def _ingest(folder: Path) -> IngestResult:
    return ingest_submission(folder, folder / "mapping.yaml", None, cdm=load_cdm())


def _errors(result: IngestResult) -> pl.DataFrame:
    return result.findings.filter(pl.col("severity") == "error")


def _row(table: pl.DataFrame, key: str, value: str) -> dict[str, object]:
    rows = table.filter(pl.col(key) == value).to_dicts()
    assert len(rows) == 1, f"{key}={value}: {len(rows)} rows"
    return rows[0]


def _data_rows(path: Path, header_row: int, delimiter: str) -> int:
    """An independent count: the rows of a delimited file below its header."""
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle, delimiter=delimiter)) - header_row


def _reconciles(result: IngestResult) -> None:
    for source in result.manifest["sources"]:
        assert source["rows_read"] == source["rows_harmonized"] + source["rows_quarantined"]
        quarantined = result.quarantine[source["source"]]
        assert quarantined.height == source["rows_quarantined"]
        if quarantined.height:
            assert quarantined["quarantine_reasons"].str.len_chars().min() > 0  # type: ignore[operator]


# ---- an entity-attribute-value extract -------------------------------------------------------


@pytest.fixture(scope="module")
def eav() -> IngestResult:
    return _ingest(FIXTURES / "eav_site")


def test_eav_extract_gives_each_patient_one_row_from_a_demographics_file_and_coded_rows(
    eav: IngestResult,
) -> None:
    patients = eav.tables["patients"]
    assert patients.select("patient_key", "sex", "birth_year", "diagnosis_date").rows() == [
        ("EAV_T-E01", "F", 1971, date(2019, 3, 12)),
        ("EAV_T-E02", "M", 1958, date(2018, 1, 5)),
        ("EAV_T-E03", "F", 1990, date(2020, 2, 20)),
    ]
    assert patients["ph_status"].to_list() == ["BCR_ABL1_POS", "BCR_ABL1_NEG", "BCR_ABL1_NEG"]
    assert patients["diagnosis_icd10"].to_list() == ["C91.00"] * 3


def test_eav_marrow_rows_of_one_date_are_one_assessment_and_the_pre_infusion_one_the_baseline(
    eav: IngestResult,
) -> None:
    inf = eav.tables["car_t_infusions"]
    assert inf.select("patient_key", "pre_bm_blast_pct", "disease_burden").rows() == [
        ("EAV_T-E01", 45.0, "HIGH"),
        ("EAV_T-E02", 12.0, "HIGH"),
        ("EAV_T-E03", None, None),  # no marrow before the infusion
    ]
    da = eav.tables["disease_assessments"]
    assert da.select(
        "patient_key", "assessment_day", "bm_blast_pct", "mrd_value", "response"
    ).rows() == [
        ("EAV_T-E01", 28, 2.0, pytest.approx(1e-4), "CR"),
        ("EAV_T-E02", 28, 1.0, None, "CR"),
        ("EAV_T-E03", 28, None, None, "NR"),  # two different blasts the same day: no pick
    ]


def test_eav_relapse_takes_the_cd19_of_a_nearby_row_and_a_combined_cell_splits_into_agents(
    eav: IngestResult,
) -> None:
    prog = eav.tables["progression_events"]
    assert prog.select("patient_key", "progression_date", "antigen_phenotype").rows() == [
        ("EAV_T-E01", date(2021, 11, 2), "CD19_NEG")
    ]
    salvage = eav.tables["salvage_treatments"]
    assert salvage.select("agent", "start_date", "progression_id", "source_row").rows() == [
        ("blinatumomab", date(2021, 11, 20), "EAV_T-E01-P1", 12),
        ("inotuzumab_ozogamicin", date(2021, 11, 20), "EAV_T-E01-P1", 12),
    ]


def test_eav_follow_up_reads_the_data_cut_from_the_title_row_and_yyyymmdd_dates(
    eav: IngestResult,
) -> None:
    fu = eav.tables["follow_up"]
    assert fu.select(
        "patient_key",
        "data_cut_date",
        "vital_status",
        "death_date",
        "cause_of_death",
        "last_contact_date",
    ).rows() == [
        (
            "EAV_T-E01",
            date(2025, 6, 30),
            "DEAD",
            date(2022, 3, 1),
            "PRIMARY_DISEASE",
            date(2022, 3, 1),
        ),
        ("EAV_T-E02", date(2025, 6, 30), "ALIVE", None, None, date(2025, 5, 15)),
        ("EAV_T-E03", date(2025, 6, 30), "ALIVE", None, None, date(2023, 1, 1)),
    ]


def test_eav_only_error_is_the_planted_duplicate_code_and_every_row_is_accounted_for(
    eav: IngestResult,
) -> None:
    errors = _errors(eav)
    assert errors.select("rule_id", "source_row", "column").rows() == [
        ("ING-CONFLICT", 26, "bm_blast_pct")
    ]
    assert "row 25" in errors["message"][0]
    _reconciles(eav)
    folder = FIXTURES / "eav_site"
    counts = {s["file"]: s["rows_read"] for s in eav.manifest["sources"]}
    assert counts["observations.csv"] == _data_rows(folder / "observations.csv", 2, ";")
    assert counts["demographics.csv"] == _data_rows(folder / "demographics.csv", 1, ",")


# ---- a FHIR bundle ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fhir() -> IngestResult:
    return _ingest(FIXTURES / "fhir_site")


def test_fhir_bundle_maps_resources_linked_by_reference(fhir: IngestResult) -> None:
    tables = fhir.tables
    patients = tables["patients"]
    assert patients.select(
        "patient_key", "sex", "birth_year", "diagnosis_date", "diagnosis_icd10", "ph_status"
    ).rows() == [
        ("FHIR_T-f1", "F", 1972, date(2019, 6, 1), "C91.00", "BCR_ABL1_POS"),  # urn:uuid subject
        ("FHIR_T-f2", "M", 1960, date(2020, 1, 15), "C91.00", "BCR_ABL1_NEG"),
    ]
    assert tables["car_t_infusions"].select("product", "pre_bm_blast_pct").rows() == [
        ("tisagenlecleucel", 30.0),
        ("brexucabtagene_autoleucel", 3.0),
    ]
    assert tables["disease_assessments"].select(
        "patient_key", "assessment_day", "bm_blast_pct", "response"
    ).rows() == [("FHIR_T-f1", 28, 1.0, "CR"), ("FHIR_T-f2", 28, None, "CR")]
    assert tables["progression_events"]["antigen_phenotype"].to_list() == ["CD19_DIM_PARTIAL"]
    assert tables["salvage_treatments"].select("agent", "progression_id").rows() == [
        ("inotuzumab_ozogamicin", "FHIR_T-f2-P1")
    ]
    assert tables["follow_up"].select(
        "patient_key", "vital_status", "death_date", "last_contact_date"
    ).rows() == [
        ("FHIR_T-f1", "ALIVE", None, date(2025, 5, 20)),
        ("FHIR_T-f2", "DEAD", date(2023, 2, 14), date(2023, 2, 14)),
    ]
    assert _errors(fhir).is_empty()
    _reconciles(fhir)
    read = {s["file"]: s["rows_read"] for s in fhir.manifest["sources"]}
    bundle = json.loads((FIXTURES / "fhir_site" / "bundle.json").read_text(encoding="utf-8"))
    by_type: dict[str, int] = {}
    for entry in bundle["entry"]:
        kind = entry["resource"]["resourceType"]
        by_type[kind] = by_type.get(kind, 0) + 1
    assert read == {f"bundle.json#{k}": n for k, n in by_type.items()}


def test_fhir_names_never_reach_outputs_or_the_profile(fhir: IngestResult) -> None:
    for table in fhir.tables.values():
        for column in table.columns:
            assert not table[column].cast(pl.String).str.contains("Doe").any(), column
    profile = profile_files([FIXTURES / "fhir_site" / "bundle.json"], load_cdm())
    assert set(profile["source"]) >= {"bundle.json#Patient", "bundle.json#Observation"}
    assert not profile["top_values"].str.contains("Doe").any()
    assert not profile["column"].str.starts_with("name").any()


# ---- mapping check ---------------------------------------------------------------------------


def test_mapping_check_refuses_two_rules_that_can_give_a_patient_two_rows(tmp_path: Path) -> None:
    text = (FIXTURES / "eav_site" / "mapping.yaml").read_text(encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(
        text.replace(
            "      key: [patient_key]\n      columns:\n        sex: SEX",
            "      columns:\n        sex: SEX",
        ),
        encoding="utf-8",
    )
    assert "key: [patient_key]" not in (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "cartreg", "mapping", "check", str(tmp_path / "mapping.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:"), proc.stderr
    assert "tables.patients[0]" in proc.stderr and "key: [patient_key]" in proc.stderr


# ---- invariants ------------------------------------------------------------------------------

_NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
_PH = st.sampled_from(["POSITIVE", "NEGATIVE", "Ph-like", None])
_ICD = st.sampled_from(["C91.00", "C91.01", None])
_PATIENT = st.tuples(_PH, _ICD, st.integers(1940, 2005))
_MARROW = st.tuples(
    st.integers(0, 400),  # day after 2021-01-01
    st.one_of(st.none(), st.integers(0, 100)),
    st.sampled_from(["CR", "CRi", "NR", None]),
)


def _site(folder: Path, files: dict[str, list[list[str]]], tables: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(rows)
    sources = "\n".join(
        f"  {n.removesuffix('.csv')}: {{file: {n}, patient_id: pid}}" for n in files
    )
    (folder / "mapping.yaml").write_text(
        'mapping_version: "1"\nsite_id: PIV_T\ndefaults: {date_formats: ["%Y%m%d"]}\n'
        "vocabulary_overrides: {ph_status: {POSITIVE: BCR_ABL1_POS, NEGATIVE: BCR_ABL1_NEG}}\n"
        f"sources:\n{sources}\ntables:\n{tables}",
        encoding="utf-8",
    )
    return folder


def _content(result: IngestResult, table: str) -> pl.DataFrame:
    frame = result.tables[table].drop(*_LINEAGE)
    return frame.sort(frame.columns, nulls_last=True)


_WIDE_RULES = """  patients:
    - source: wide
      columns: {ph_status: ph, diagnosis_icd10: icd, birth_year: birth_year}
  disease_assessments:
    - source: marrows
      columns: {assessment_date: date, bm_blast_pct: blasts, response: response}
"""
_LONG_RULES = """  patients:
    - source: long
      pivot: {code: code, value: value}
      columns:
        ph_status: {code: PH}
        diagnosis_icd10: {code: ICD}
        birth_year: {code: BY}
  disease_assessments:
    - source: long
      pivot: {code: code, value: value}
      key: [assessment_date]
      columns:
        assessment_date: date
        bm_blast_pct: {code: BM_BLAST}
        response: {code: RESP}
"""


def _yyyymmdd(day: int) -> str:
    return date.fromordinal(date(2021, 1, 1).toordinal() + day).strftime("%Y%m%d")


def _long_rows(
    patients: list[tuple[str | None, str | None, int]],
    marrows: list[list[tuple[int, int | None, str | None]]],
) -> list[list[str]]:
    rows: list[list[str]] = []
    for n, (ph, icd, by) in enumerate(patients):
        pid = f"P{n}"
        for code, value in (("PH", ph), ("ICD", icd), ("BY", str(by))):
            if value is not None:
                rows.append([pid, "", code, value])
        for day, blasts, response in marrows[n]:
            rows.append([pid, _yyyymmdd(day), "MARROW_DONE", ""])  # a code no column asks for
            if blasts is not None:
                rows.append([pid, _yyyymmdd(day), "BM_BLAST", str(blasts)])
            if response is not None:
                rows.append([pid, _yyyymmdd(day), "RESP", response])
    return rows


_COHORT = st.lists(_PATIENT, min_size=1, max_size=6).flatmap(
    lambda ps: st.tuples(
        st.just(ps),
        st.lists(
            st.lists(_MARROW, max_size=3, unique_by=lambda m: m[0]),
            min_size=len(ps),
            max_size=len(ps),
        ),
    )
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=_NO_SHRINK,  # an ingest per example: shrinking would take minutes
)
@given(cohort=_COHORT, seed=st.integers(0, 2**16))
def test_pivoting_a_long_table_gives_the_wide_layouts_cdm_tables(
    tmp_path_factory: pytest.TempPathFactory,
    cohort: tuple[
        list[tuple[str | None, str | None, int]], list[list[tuple[int, int | None, str | None]]]
    ],
    seed: int,
) -> None:
    patients, marrows = cohort
    wide = [["pid", "ph", "icd", "birth_year"]] + [
        [f"P{n}", ph or "", icd or "", str(by)] for n, (ph, icd, by) in enumerate(patients)
    ]
    marrow_rows = [["pid", "date", "blasts", "response"]] + [
        [f"P{n}", _yyyymmdd(day), "" if b is None else str(b), r or ""]
        for n, ms in enumerate(marrows)
        for day, b, r in ms
        if b is not None or r is not None
    ]
    long = _long_rows(patients, marrows)
    random.Random(seed).shuffle(long)
    root = tmp_path_factory.mktemp("pivot")
    from_wide = _ingest(
        _site(root / "wide", {"wide.csv": wide, "marrows.csv": marrow_rows}, _WIDE_RULES)
    )
    from_long = _ingest(
        _site(root / "long", {"long.csv": [["pid", "date", "code", "value"], *long]}, _LONG_RULES)
    )
    for table in ("patients", "disease_assessments"):
        assert _content(from_long, table).equals(_content(from_wide, table)), table
    _reconciles(from_long)
    read = from_long.manifest["sources"][0]["rows_read"]
    assert read == len(long)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=_NO_SHRINK,  # an ingest per example: shrinking would take minutes
)
@given(
    cohort=_COHORT,
    duplicates=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 100)), max_size=3),
    seeds=st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)),
)
def test_rows_combined_by_key_do_not_depend_on_source_order_and_none_is_lost(
    tmp_path_factory: pytest.TempPathFactory,
    cohort: tuple[
        list[tuple[str | None, str | None, int]], list[list[tuple[int, int | None, str | None]]]
    ],
    duplicates: list[tuple[int, int]],
    seeds: tuple[int, int],
) -> None:
    patients, marrows = cohort
    long = _long_rows(patients, marrows)
    for n, blasts in duplicates:  # a second blast value for a patient's first marrow: a conflict
        if n < len(patients) and marrows[n]:
            long.append([f"P{n}", _yyyymmdd(marrows[n][0][0]), "BM_BLAST", str(blasts)])
    results = []
    root = tmp_path_factory.mktemp("order")
    for k, seed in enumerate(seeds):
        rows = list(long)
        random.Random(seed).shuffle(rows)
        folder = _site(
            root / f"o{k}", {"long.csv": [["pid", "date", "code", "value"], *rows]}, _LONG_RULES
        )
        results.append(_ingest(folder))
        _reconciles(results[-1])
        assert results[-1].manifest["sources"][0]["rows_read"] == len(rows)
    first, second = results
    for table in ("patients", "disease_assessments"):
        assert _content(first, table).equals(_content(second, table)), table
    conflicted = [
        set(r.findings.filter(pl.col("rule_id") == "ING-CONFLICT")["column"].to_list())
        for r in results
    ]
    assert conflicted[0] == conflicted[1]


def test_profile_offers_a_date_format_for_yyyymmdd_integers(tmp_path: Path) -> None:
    (tmp_path / "obs.csv").write_text(
        "pid,obs_date,count\nA,20190312,20190312\nB,20200101,20200101\nC,20211231,20211331\n",
        encoding="utf-8",
    )
    profile = profile_files([tmp_path / "obs.csv"], load_cdm())
    rows = {r["column"]: r for r in profile.to_dicts()}
    assert (rows["obs_date"]["inferred_type"], rows["obs_date"]["date_formats"]) == (
        "date",
        "%Y%m%d",
    )
    assert rows["count"]["inferred_type"] == "integer"  # 20211331 is no day


def test_extract_reads_a_number_inside_text_and_split_makes_a_row_per_agent(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.csv").write_text(
        "pid;inf;mrd;agents;prod\n"
        "X1;2021-01-05;positiva (1,64%);Blinatumomab + Inotuzumab / Ponatinib;Kymriah\n"
        "X2;2021-02-05;negativa;;Kymriah\n",
        encoding="utf-8",
    )
    (tmp_path / "mapping.yaml").write_text(
        'mapping_version: "1"\nsite_id: EXT_T\nsources:\n  a: {file: a.csv, patient_id: pid}\n'
        "tables:\n  car_t_infusions:\n    - source: a\n      columns:\n"
        "        infusion_date: inf\n        product: prod\n"
        '        pre_mrd_value: {from: mrd, extract: "\\\\(([0-9.,]+) ?%\\\\)", decimal: ",",'
        " unit: percent}\n"
        "  salvage_treatments:\n    - source: a\n"
        "      where: [{column: agents, is_null: false}]\n"
        '      columns:\n        agent: {from: agents, split: ["+", "/"]}\n',
        encoding="utf-8",
    )
    result = _ingest(tmp_path)
    mrd = result.tables["car_t_infusions"]["pre_mrd_value"].to_list()
    assert mrd == [pytest.approx(0.0164), None]
    assert result.tables["salvage_treatments"].select("agent", "source_row").rows() == [
        ("blinatumomab", 2),
        ("inotuzumab_ozogamicin", 2),
        ("ponatinib", 2),
    ]
    assert result.findings.select("rule_id", "source_row").rows() == [("ING-EXTRACT", 3)]
    _reconciles(result)


def test_a_draft_for_a_fhir_bundle_reads_each_resource_type_and_ingests(tmp_path: Path) -> None:
    from cartreg.ingest.draft import draft_mapping
    from cartreg.ingest.mapping import load_mapping

    bundle = tmp_path / "bundle.json"
    bundle.write_bytes((FIXTURES / "fhir_site" / "bundle.json").read_bytes())
    text = draft_mapping([bundle], load_cdm(), site_id="DRAFT_F")
    assert 'resource: "Observation"' in text and 'reader: "fhir"' in text
    assert 'patient_id: {from: "subject.reference", extract: "^Patient/(.+)$"}' in text
    assert "records:" not in text and "sheet:" not in text
    (tmp_path / "mapping.yaml").write_text(text, encoding="utf-8")
    mapping = load_mapping(tmp_path / "mapping.yaml", load_cdm())
    assert {s.resource for s in mapping.sources.values()} >= {"Patient", "Procedure"}
    result = _ingest(tmp_path)
    assert set(result.tables["patients"]["patient_key"]) == {"DRAFT_F-f1", "DRAFT_F-f2"}
    _reconciles(result)


def test_the_docs_long_and_linked_examples_are_the_fixture_mappings(tmp_path: Path) -> None:
    """Every YAML block of docs/mapping.md's "Long and linked exports" is part of the mapping
    of its fixture (EAV blocks before "### FHIR bundles", FHIR blocks after)."""
    import textwrap

    from cartreg.yamlio import load_yaml

    doc = (Path(__file__).parents[2] / "docs" / "mapping.md").read_text(encoding="utf-8")
    section = doc.split("## Long and linked exports", 1)[1].split("## Worked examples", 1)[0]
    eav_part, fhir_part = section.split("### FHIR bundles", 1)
    checked = 0
    for part, site in ((eav_part, "eav_site"), (fhir_part, "fhir_site")):
        whole = load_yaml(FIXTURES / site / "mapping.yaml")
        for block in part.split("```yaml\n")[1:]:
            text = textwrap.dedent(block.split("```", 1)[0])
            path = tmp_path / f"{site}-{checked}.yaml"
            path.write_text(text, encoding="utf-8")
            shown = load_yaml(path)
            tables = shown.pop("tables", {}) | {
                k: shown.pop(k) for k in list(shown) if k in whole["tables"]
            }
            for table, rules in tables.items():
                assert rules == whole["tables"][table], (site, table)
                checked += 1
            for key, value in shown.items():
                assert {k: whole[key][k] for k in value} == value, (site, key)
    assert checked >= 10


@pytest.mark.parametrize("ending", [b"\r", b"\r\n"])
def test_eav_extract_with_other_line_endings_gives_the_same_tables(
    tmp_path: Path, ending: bytes
) -> None:
    """The title cell (`cell: C1`) and the rows read the same from CR-only and CRLF files."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(FIXTURES / "eav_site", site)
    for name in ("observations.csv", "demographics.csv"):
        path = site / name
        path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", ending))
    cdm = load_cdm()
    expected = ingest_submission(
        FIXTURES / "eav_site", FIXTURES / "eav_site" / "mapping.yaml", None, cdm=cdm
    )
    got = ingest_submission(site, site / "mapping.yaml", None, cdm=cdm)
    for name, table in expected.tables.items():
        assert got.tables[name].equals(table), name


def test_a_row_of_a_code_no_rule_asks_for_is_quarantined_not_mapped(tmp_path: Path) -> None:
    """A pivot rule selects only the rows of the codes its columns take: a ferritin row that
    no rule maps is quarantined with a finding, never counted as harmonized."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(FIXTURES / "eav_site", site)
    observations = site / "observations.csv"
    with observations.open("a", encoding="utf-8") as handle:
        handle.write("E01;20210401;FERRITIN;1250;ng/mL\n")
    rows = len(observations.read_text(encoding="utf-8").splitlines()) - 2  # title and header
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=load_cdm())
    source = next(s for s in result.manifest["sources"] if s["file"] == "observations.csv")
    assert (source["rows_read"], source["rows_quarantined"]) == (rows, 1)
    not_mapped = result.findings.filter(pl.col("rule_id") == "ING-NOT-MAPPED")
    assert not_mapped["source_row"].to_list() == [rows + 2]


def test_a_bound_read_into_a_column_without_a_qualifier_is_reported(tmp_path: Path) -> None:
    """`<0.01` MRD has no qualifier column to go to: the number is kept and a warning says the
    value is a bound, not a measurement; `<5` blasts go to their qualifier column silently."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(FIXTURES / "eav_site", site)
    observations = site / "observations.csv"
    text = observations.read_text(encoding="utf-8")
    observations.write_text(text.replace("E01;20210429;MRD;0.01;%", "E01;20210429;MRD;<0.01;%"))
    result = ingest_submission(site, site / "mapping.yaml", None, cdm=load_cdm())
    bound = result.findings.filter(pl.col("rule_id") == "ING-QUALIFIER")
    assert bound.select("column", "severity", "value").rows() == [("mrd_value", "warning", "<0.01")]
    assert "is a bound" in bound["message"][0] and "__code" not in bound["message"][0]
    mrd = result.tables["disease_assessments"].filter(pl.col("mrd_value").is_not_null())
    assert mrd["mrd_value"].to_list() == pytest.approx([0.0001])
