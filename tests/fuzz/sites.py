"""Small, valid site submissions, one per reader, with direct identifiers planted in them.

Every site has identifier-named columns (a name, an e-mail, a phone number) holding values
that must never reach an output file, a log line or a report; the fuzz cases mutate these
sites and check that promise together with the exit-code contract and the reconciliation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

# Planted identifier values: distinctive enough that finding one in an output is a leak.
PATIENTS = [
    # local id, name, e-mail, phone, sex, birth year, diagnosis date, product, infusion date
    ("P001", "Wilhelmina Quarterfield", "w.quarterfield@example-clinic.org", "555-201-7781",
     "F", "1970", "2019-03-02", "Kymriah", "2021-04-12"),
    ("P002", "Bartholomew Ashcombe", "b.ashcombe@example-clinic.org", "555-202-7782",
     "M", "1965", "2018-07-19", "Tecartus", "2021-06-25"),
    ("P003", "Genoveva Stormcastle", "g.stormcastle@example-clinic.org", "555-203-7783",
     "F", "1981", "2020-01-15", "Kymriah", "2021-07-01"),
    ("P004", "Leopold Farnsworth-Ngata", "l.farnsworth@example-clinic.org", "555-204-7784",
     "M", "1958", "2019-05-05", "Aucatzyl", "2021-08-05"),
    ("P005", "Ottilie Brackenridge", "o.brackenridge@example-clinic.org", "555-205-7785",
     "F", "1990", "2021-02-11", "Tecartus", "2022-01-20"),
]  # fmt: skip
PLANTED: tuple[str, ...] = tuple(v for row in PATIENTS for v in row[1:4])
NAMES: tuple[str, ...] = tuple(row[1] for row in PATIENTS)
# Identifier values a value scan recognizes wherever they stand (e-mails, phone numbers);
# names are recognized by their column's name only.
VALUE_DETECTABLE: tuple[str, ...] = tuple(v for row in PATIENTS for v in row[2:4])
IDENTIFIER_COLUMNS = ("patient_name", "email", "phone")

HEADER = [
    "study_id",
    "patient_name",
    "email",
    "phone",
    "sex",
    "birth_year",
    "dx_date",
    "product",
    "inf_date",
]

_TABULAR_MAPPING = """\
mapping_version: "1"
site_id: FUZZ_T
sources:
  baseline: {{file: {file}, patient_id: study_id{extra}}}
tables:
  patients:
    - source: baseline
      columns:
        sex: sex
        birth_year: birth_year
        diagnosis_date: dx_date
  car_t_infusions:
    - source: baseline
      where: [{{column: product, not_in: [none]}}]
      columns:
        product: product
        infusion_date: inf_date
"""


@dataclass(frozen=True)
class Site:
    """A base submission: its folder layout and the file the mutators work on."""

    reader: str
    data_file: str  # the file mutated by the reader's mutators
    build: Callable[[Path], None]

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.build(folder)
        return folder


def _delimited(separator: str) -> bytes:
    lines = [separator.join(HEADER), *(separator.join(row) for row in PATIENTS)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _csv_site(folder: Path) -> None:
    (folder / "patients.csv").write_bytes(_delimited(","))
    (folder / "mapping.yaml").write_text(
        _TABULAR_MAPPING.format(file="patients.csv", extra=""), encoding="utf-8"
    )


def _tsv_site(folder: Path) -> None:
    (folder / "patients.tsv").write_bytes(_delimited("\t"))
    (folder / "mapping.yaml").write_text(
        _TABULAR_MAPPING.format(file="patients.tsv", extra=""), encoding="utf-8"
    )


_REDCAP_DICTIONARY = """\
Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"Choices, Calculations, OR Slider Labels",Field Note,Text Validation Type OR Show Slider Number,Text Validation Min,Text Validation Max,Identifier?
record_id,baseline,,text,Record ID,,,,,,
patient_name,baseline,,text,Name,,,,,,y
email,baseline,,text,E-mail,,,,,,y
phone,baseline,,text,Phone,,,,,,y
sex,baseline,,radio,Sex,"1, Male | 2, Female",,,,,
yob,baseline,,text,Year of birth,,,integer,,,
inf_product,baseline,,dropdown,Product,"1, Kymriah | 2, Tecartus | 3, Aucatzyl",,,,,
inf_date,baseline,,text,Infusion date,,,date_ymd,,,
prog_date,progression,,text,Progression date,,,date_ymd,,,
salv_agents,progression,,checkbox,Salvage agents,"1, blinatumomab | 2, inotuzumab_ozogamicin | 3, ponatinib",,,,,
"""
_REDCAP_MAPPING = """\
mapping_version: "1"
site_id: FUZZ_R
sources:
  records: {file: records.csv, reader: redcap, dictionary: data_dictionary.csv, patient_id: record_id}
vocabulary_overrides:
  car_t_products: {Aucatzyl: obecabtagene_autoleucel}
tables:
  patients:
    - source: records
      where: [{column: redcap_repeat_instrument, is_null: true}]
      columns: {sex: sex, birth_year: yob}
  car_t_infusions:
    - source: records
      where: [{column: redcap_repeat_instrument, is_null: true}]
      columns: {product: inf_product, infusion_date: inf_date}
  progression_events:
    - source: records
      where: [{column: redcap_repeat_instrument, equals: progression}]
      columns: {progression_date: prog_date, event_type: {value: RELAPSE}}
  salvage_treatments:
    - source: records
      where: [{column: redcap_repeat_instrument, equals: progression}]
      checkbox: {field: salv_agents, into: agent}
      columns: {agent: agent, start_date: prog_date}
"""


def _redcap_site(folder: Path) -> None:
    header = [
        "record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "patient_name",
        "email", "phone", "sex", "yob", "inf_product", "inf_date", "prog_date",
        "salv_agents___1", "salv_agents___2", "salv_agents___3",
    ]  # fmt: skip
    products = {"Kymriah": "1", "Tecartus": "2", "Aucatzyl": "3"}
    lines = [",".join(header)]
    for i, (pid, name, email, phone, sex, year, _dx, product, inf) in enumerate(PATIENTS):
        code = "2" if sex == "F" else "1"
        lines.append(
            ",".join([pid, "", "", name, email, phone, code, year, products[product], inf,
                      "", "", "", ""])
        )  # fmt: skip
        if i % 2 == 0:
            lines.append(",".join([pid, "progression", "1", "", "", "", "", "", "", "",
                                   "2022-09-01", "1", str(i % 4 // 2), "0"]))  # fmt: skip
    (folder / "records.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "data_dictionary.csv").write_text(_REDCAP_DICTIONARY, encoding="utf-8")
    (folder / "mapping.yaml").write_text(_REDCAP_MAPPING, encoding="utf-8")


def _excel_site(folder: Path) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(folder / "registry.xlsx"))
    sheet = book.add_worksheet("Patients")
    sheet.write(0, 0, "Registry export (title row)")
    sheet.write_row(1, 0, HEADER)
    for r, row in enumerate(PATIENTS, start=2):
        sheet.write_row(r, 0, row)
        sheet.write_number(r, 5, int(row[5]))
    book.close()
    (folder / "mapping.yaml").write_text(
        _TABULAR_MAPPING.format(file="registry.xlsx", extra=", sheet: Patients, header_row: 2"),
        encoding="utf-8",
    )


_JSON_MAPPING = """\
mapping_version: "1"
site_id: FUZZ_J
sources:
  cohort: {{file: {file}, patient_id: id{extra}}}
tables:
  patients:
    - source: cohort
      columns: {{sex: demographics.sex, birth_year: demographics.birth_year}}
  car_t_infusions:
    - source: cohort
      explode: infusions
      columns: {{product: infusions.product, infusion_date: infusions.date}}
"""


def _json_records() -> list[dict[str, object]]:
    return [
        {
            "id": pid,
            "patient_name": name,
            "contact": {"email": email, "phone": phone},
            "demographics": {"sex": sex, "birth_year": int(year)},
            "infusions": [{"product": product, "date": inf, "dose": {"value": 1.5}}],
            "flags": [True, False],
        }
        for pid, name, email, phone, sex, year, _dx, product, inf in PATIENTS
    ]


def _json_site(folder: Path) -> None:
    document = {"export_date": "2025-06-30", "patients": _json_records()}
    (folder / "cohort.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    (folder / "mapping.yaml").write_text(
        _JSON_MAPPING.format(file="cohort.json", extra=", records: patients"), encoding="utf-8"
    )


def _ndjson_site(folder: Path) -> None:
    lines = [json.dumps(r) for r in _json_records()]
    (folder / "cohort.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "mapping.yaml").write_text(
        _JSON_MAPPING.format(file="cohort.ndjson", extra=""), encoding="utf-8"
    )


def parquet_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {name: [row[i] for row in PATIENTS] for i, name in enumerate(HEADER)}
    ).with_columns(pl.col("birth_year").cast(pl.Int32))


def _parquet_site(folder: Path) -> None:
    parquet_frame().write_parquet(folder / "patients.parquet")
    (folder / "mapping.yaml").write_text(
        _TABULAR_MAPPING.format(file="patients.parquet", extra=""), encoding="utf-8"
    )


SITES: dict[str, Site] = {
    "csv": Site("csv", "patients.csv", _csv_site),
    "tsv": Site("tsv", "patients.tsv", _tsv_site),
    "redcap": Site("redcap", "records.csv", _redcap_site),
    "excel": Site("excel", "registry.xlsx", _excel_site),
    "json": Site("json", "cohort.json", _json_site),
    "ndjson": Site("ndjson", "cohort.ndjson", _ndjson_site),
    "parquet": Site("parquet", "patients.parquet", _parquet_site),
}
