"""Readers: everything arrives as text with the row number a person sees."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from cartreg.errors import InputError
from cartreg.ingest.readers.csv import read_csv_text
from cartreg.ingest.readers.excel import read_excel_text
from cartreg.ingest.readers.json import read_json_text
from cartreg.ingest.readers.parquet import read_parquet_text
from cartreg.ingest.readers.redcap import parse_choices, read_redcap


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        ("id;name\n1;Zoë\n2;José\n".encode(), "utf-8"),
        (b"\xef\xbb\xbfid;name\n1;Zo\xc3\xab\n2;Jos\xc3\xa9\n", "utf-8-sig"),
        ("id;name\n1;Zoë\n2;José\n".encode("cp1252"), "cp1252"),
    ],
)
def test_csv_encodings_and_delimiter_are_detected(
    tmp_path: Path, payload: bytes, encoding: str
) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(payload)
    frame = read_csv_text(path).frame
    assert frame.columns == ["source_file", "source_row", "id", "name"]
    assert frame["name"].to_list() == ["Zoë", "José"]
    assert frame["source_row"].to_list() == [2, 3]


def test_tsv_values_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("id\tval\n007\t1.50\n", encoding="utf-8")
    frame = read_csv_text(path).frame
    assert frame.row(0) == ("x.tsv", 2, "007", "1.50")


def test_quoted_newlines_keep_line_numbers_and_ragged_rows_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        'id,note,val\n1,"two\nlines",3\n2,short\n3,a,b,extra\n\n4,d,e\n', encoding="utf-8"
    )
    result = read_csv_text(path)
    # Rows with more or fewer fields than the header never reach a rule: their values may
    # be shifted into the wrong columns.
    assert result.frame["id"].to_list() == ["1", "4"]
    assert result.frame["source_row"].to_list() == [2, 7]
    assert result.frame["note"][0] == "two\nlines"
    assert result.rejected.select("source_row", "rule_id").rows() == [
        (4, "ING-RAGGED"),
        (5, "ING-RAGGED"),
    ]
    assert result.records == 4


def test_missing_and_empty_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_csv_text(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        read_csv_text(tmp_path / "empty.csv")


def test_excel_sheets_header_row_date_cells_and_serials(tmp_path: Path) -> None:
    path = tmp_path / "site.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Patients")
    sheet.write(0, 0, "Registry export - confidential")
    sheet.write_row(2, 0, ["id", "infusion", "typed", "serial"])
    sheet.write(3, 0, "P1")
    sheet.write_datetime(3, 1, datetime(2021, 3, 5), book.add_format({"num_format": "dd/mm/yyyy"}))
    sheet.write(3, 2, "05/03/2021")
    sheet.write(3, 3, 44265)
    sheet.write(5, 0, "P2")
    book.add_worksheet("Other").write(0, 0, "x")
    book.close()
    frame = read_excel_text(path, sheet="Patients", header_row=3).frame
    assert frame.columns[:2] == ["source_file", "source_row"]
    assert frame["source_file"][0] == "site.xlsx#Patients"
    assert frame.select("source_row", "id").rows() == [(4, "P1"), (6, "P2")]
    assert frame.row(0)[3:] == ("2021-03-05 00:00:00", "05/03/2021", "44265")
    with pytest.raises(InputError, match="did you mean 'Patients'"):
        read_excel_text(path, sheet="Patient")


def test_json_nested_objects_flatten_and_arrays_stay_lists(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    records = [
        {"id": 1, "demo": {"sex": "F", "age": 40}, "events": [{"type": "relapse", "day": 100}]},
        {"id": 2, "demo": {"sex": "M", "age": 51.5}, "events": []},
    ]
    path.write_text(json.dumps({"patients": records}), encoding="utf-8")
    frame = read_json_text(path).frame
    assert frame.select("source_row", "id", "demo.sex", "demo.age").rows() == [
        (1, "1", "F", "40"),  # as written in the file, not as a float
        (2, "2", "M", "51.5"),
    ]
    assert frame.schema["events"] == pl.List(pl.Struct({"type": pl.String, "day": pl.String}))


def test_ndjson_and_parquet(tmp_path: Path) -> None:
    nd = tmp_path / "e.ndjson"
    nd.write_text('{"id": "a", "n": 1}\n\n{"id": "b", "n": 2}\n', encoding="utf-8")
    # NDJSON rows are numbered by their line, as an editor shows them.
    assert read_json_text(nd).frame.select("source_row", "n").rows() == [(1, "1"), (3, "2")]
    pq = tmp_path / "e.parquet"
    pl.DataFrame({"id": ["a"], "day": [3], "flag": [True]}).write_parquet(pq)
    assert read_parquet_text(pq).frame.row(0) == ("e.parquet", 1, "a", "3", "true")


def test_redcap_choices_are_parsed_with_commas_in_labels() -> None:
    assert parse_choices("1, Yes | 0, No") == {"1": "Yes", "0": "No"}
    assert parse_choices("1, Flu, Cy | 2,Bendamustine") == {"1": "Flu, Cy", "2": "Bendamustine"}
    assert parse_choices(None) == {}


def test_redcap_decodes_choices_and_splits_repeating_instruments(tmp_path: Path) -> None:
    (tmp_path / "dict.csv").write_text(
        "Variable / Field Name,Form Name,Field Type,Field Label,"
        '"Choices, Calculations, OR Slider Labels",Identifier?\n'
        "record_id,baseline,text,Record,,\n"
        'sex,baseline,radio,Sex,"1, Female | 2, Male",\n'
        "bridging,baseline,yesno,Bridging,,\n"
        'salv,salvage,checkbox,Agents,"1, Blinatumomab | 2, Inotuzumab",\n'
        "mrn,baseline,text,MRN,,y\n",
        encoding="utf-8",
    )
    (tmp_path / "export.csv").write_text(
        "record_id,redcap_repeat_instrument,redcap_repeat_instance,sex,bridging,salv___1,salv___2,mrn\n"
        "1,,,1,0,,,123\n"
        "1,salvage,1,,,1,1,\n"
        "2,,,UNK,1,,,456\n",
        encoding="utf-8",
    )
    result = read_redcap(tmp_path / "export.csv", dictionary=tmp_path / "dict.csv")
    frame = result.frame
    assert frame["sex"].to_list() == ["Female", None, "UNK"]
    assert frame["bridging"].to_list() == ["No", None, "Yes"]
    assert frame["source_file"].to_list() == ["export.csv", "export.csv#salvage", "export.csv"]
    assert result.choices["salv"] == {"1": "Blinatumomab", "2": "Inotuzumab"}
