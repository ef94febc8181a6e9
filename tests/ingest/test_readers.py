"""Readers: everything arrives as text with the row number a person sees."""

from __future__ import annotations

import json
from collections.abc import Callable
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
from tests.zips import with_compression_method, with_version_needed


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


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        # the second, empty list silently replaced the patient's infusion (exit 0)
        (
            "p.json",
            '[{"id": "P1", "infusions": [{"date": "2021-04-12"}], "infusions": []}]',
            "p.json: the key 'infusions'",
        ),
        ("p.json", '{"patients": [{"id": "P1"}], "patients": []}', "the key 'patients'"),
        ("p.ndjson", '{"id": "P1"}\n{"id": "P2", "x": {"a": 1, "a": 2}}\n', "line 2: the key 'a'"),
        # a key that is itself an e-mail address is not echoed
        ("p.json", '[{"id": "P1", "j@example.org": 1, "j@example.org": 2}]', "the key '***'"),
    ],
)
def test_json_objects_naming_a_key_twice_are_refused(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="appears twice") as raised:
        read_json_text(path, records="patients" if '"patients"' in text else None)
    assert where in str(raised.value)
    assert "example.org" not in str(raised.value)


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


# --- issue 12: line endings, encodings, untrusted rows, independent counts, limits -------


@pytest.mark.parametrize(
    "payload",
    [
        b"id,sex\r1,F\r2,M\r3,F\r",  # old Mac: CR only
        b"id,sex\r\n1,F\r2,M\n3,F\r\n",  # mixed
        b"id,sex\n1,F\n2,M\n3,F",  # no final newline
        "id,sex\n1,F\n2,M\n3,F\n".encode("utf-16"),  # UTF-16 with BOM (Excel "Unicode")
    ],
    ids=["cr", "mixed", "no-final-newline", "utf-16"],
)
def test_every_line_ending_and_utf16_give_every_record(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(payload)
    for categorical in (False, True):
        result = read_csv_text(path, categorical=categorical)
        frame = result.frame.with_columns(pl.col(pl.Categorical).cast(pl.String))
        assert frame.select("source_row", "id", "sex").rows() == [
            (2, "1", "F"),
            (3, "2", "M"),
            (4, "3", "F"),
        ]
        assert result.records == 3 and result.rejected.is_empty()


def test_binary_files_and_broken_headers_are_input_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError, match="not a text file"):
        read_csv_text(path)
    path.write_bytes(b"id,sex,sex \n1,F,M\n")
    with pytest.raises(InputError, match="names column 'sex' twice"):
        read_csv_text(path)
    path.write_bytes(b'id,"sex\n1,F\n')
    with pytest.raises(InputError, match="unclosed quote"):
        read_csv_text(path)
    path.write_bytes(b"id;sex;year\n1,F,1970\n2,M,1980\n")
    with pytest.raises(InputError, match="header is split by ';' but most rows by ','"):
        read_csv_text(path)


def test_empty_header_names_get_their_position(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"id,,sex,\n1,a,F,\n")
    assert read_csv_text(path).frame.columns[2:] == ["id", "column_2", "sex", "column_4"]


def test_rows_that_are_not_records_are_rejected_without_their_cells(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "id,name,sex\n"
        "1,Ann,F\n"
        "# exported 2025-06-30, by the warehouse\n"
        "2,Doe, Jane,F\n"  # an unquoted comma shifts the values right
        "id,name,sex\n"  # the header again
        '3,"Roe\nRichard",M\n'  # a quoted line break: one record
        "4,Ray",
        encoding="utf-8",
    )
    result = read_csv_text(path)
    assert result.frame.select("source_row", "id").rows() == [(2, "1"), (6, "3")]
    assert result.rejected.select("source_row", "rule_id").rows() == [
        (3, "ING-COMMENT"),
        (4, "ING-RAGGED"),
        (5, "ING-REPEATED-HEADER"),
        (8, "ING-TRUNCATED"),
    ]
    assert "Jane" not in " ".join(result.rejected.get_column("message").to_list())
    assert result.records == 6


def test_a_stray_quote_that_swallows_lines_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        'id,email,sex\n1,a@b.org,F\n"2,c@d.org,M\n3,e@f.org,F\n"4,g@h.org,M\n', encoding="utf-8"
    )
    result = read_csv_text(path)
    assert result.rejected.select("source_row", "rule_id").rows() == [(3, "ING-QUOTE")]
    assert result.frame.get_column("id").to_list() == ["1"]


def test_a_stray_quote_inside_a_cell_is_read_and_counted_apart(tmp_path: Path) -> None:
    # polars refuses `5'10"`; Python's csv module reads it as text. The line-and-quote count
    # (an odd quote joins lines) then differs from the rows read, which the pipeline reports.
    path = tmp_path / "x.csv"
    path.write_text("id,height\n1,5'10\"\n2,6'1\n", encoding="utf-8")
    result = read_csv_text(path)
    assert result.frame.select("id", "height").rows() == [("1", "5'10\""), ("2", "6'1")]
    assert result.records == 1


def test_cells_larger_than_the_limit_are_refused(tmp_path: Path) -> None:
    from cartreg.ingest.limits import MAX_CELL_BYTES

    path = tmp_path / "x.csv"
    path.write_text(f"id,note\n1,ok\n2,{'x' * (MAX_CELL_BYTES + 1)}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"row 3, column 'note': a cell of 1 MiB"):
        read_csv_text(path, categorical=True)


def test_json_depth_is_limited_before_parsing_and_records_are_counted(tmp_path: Path) -> None:
    from cartreg.ingest.limits import MAX_JSON_DEPTH

    path = tmp_path / "x.json"
    inner = MAX_JSON_DEPTH - 3  # array of records, record, then the nested arrays
    path.write_text('[{"id": "1", "x": ' + "[" * inner + "1" + "]" * inner + "}]", "utf-8")
    assert read_json_text(path).records == 1
    deep = 5000  # far beyond Python's recursion limit: refused before json.loads runs
    path.write_text('[{"id": "1", "x": ' + "[" * deep + "1" + "]" * deep + "}]", "utf-8")
    with pytest.raises(InputError, match=f"nested {deep + 2} levels deep"):
        read_json_text(path)


def test_json_records_are_counted_by_their_brackets(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    # The objects of the record array are counted, not those of other arrays (two record
    # arrays under one key are refused: test_json_objects_naming_a_key_twice_are_refused).
    path.write_text('{"meta": [{"a": 1}], "p": [{"id": "1"}, {"id": "2", "x": {}}]}', "utf-8")
    result = read_json_text(path, records="p")
    assert result.frame.height == 2 and result.records == 2
    nd = tmp_path / "x.ndjson"
    nd.write_text('{"id": "1", "t": "a\u2028b"}\n\n{"id": "2"}\n', encoding="utf-8")
    result = read_json_text(nd)
    assert result.frame.select("source_row", "id").rows() == [(1, "1"), (3, "2")]
    assert result.records == 2


def test_excel_rows_keep_their_numbers_and_the_real_cells_are_scanned(tmp_path: Path) -> None:
    path = tmp_path / "site.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("S")
    sheet.write_row(3, 2, ["id", "sex"])  # the table starts at C4, rows 1-3 are empty
    sheet.write_row(4, 2, ["P1", "F"])
    sheet.write_row(6, 2, ["P2", "M"])
    sheet.write_row(7, 2, ["   ", ""])  # only blanks: not a record
    book.close()
    result = read_excel_text(path, sheet="S")
    assert result.frame.select("source_row", "id", "sex").rows() == [
        (5, "P1", "F"),
        (7, "P2", "M"),
    ]
    assert result.records == 2
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("S")
    sheet.write_row(0, 0, ["id", "sex"])
    sheet.write(1_048_575, 16_383, "x")  # XFD1048576: a 17-billion-cell rectangle
    book.close()
    with pytest.raises(InputError, match="over the 20,000,000-cell limit"):
        read_excel_text(path, sheet="S")


def test_excel_error_cells_and_formulas_without_results_are_findings(tmp_path: Path) -> None:
    # adversarial audit: both read as empty cells, exit 0 and no finding
    import openpyxl

    path = tmp_path / "site.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Registry export"])  # a title row above the header
    sheet.append(["id", "sex", "birth_year"])
    sheet.append(["P1", "F", 1970])
    sheet.append(["P2", "#N/A", "=C3+1"])  # an error, and a formula a program wrote
    sheet.append(["P3", "M", "#DIV/0!"])
    sheet.append(["#REF!", None, None])  # a row with nothing else
    book.save(path)
    result = read_excel_text(path, header_row=2)
    assert result.frame.select("source_row", "id", "sex", "birth_year").rows() == [
        (3, "P1", "F", "1970"),
        (4, "P2", None, None),
        (5, "P3", "M", None),
    ]
    found = result.findings.sort("source_row", "column")
    assert found.select("rule_id", "severity", "column", "source_row", "value").rows() == [
        ("ING-CELL", "warning", "birth_year", 4, None),
        ("ING-CELL", "warning", "sex", 4, "#N/A"),
        ("ING-CELL", "warning", "birth_year", 5, "#DIV/0!"),
        ("ING-CELL", "warning", "id", 6, "#REF!"),
    ]
    assert found["message"].to_list()[0] == (
        "cell C4 is a formula with no saved result: read as empty"
    )
    assert found["message"].to_list()[1] == "cell B4 holds the Excel error #N/A: read as empty"
    # the row holding only an error is counted as a record: it is not lost without a word
    assert result.records == 4 and result.frame.height == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: with_version_needed(data, 203),  # the fuzz run's seed 16694705: exit 3
        lambda data: with_compression_method(data, 99),
        lambda data: with_compression_method(data, 77),
    ],
)
def test_workbooks_with_zip_headers_python_cannot_read_are_unreadable_input(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "site.xlsx"
    book = xlsxwriter.Workbook(path)
    book.add_worksheet("S").write_row(0, 0, ["id", "sex"])
    book.close()
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InputError, match=r"not a readable \.xlsx workbook"):
        read_excel_text(path, sheet="S")


def test_parquet_text_that_is_not_utf8_is_unreadable_input(tmp_path: Path) -> None:
    # found by the fuzz run (Parquet seed 589059387): pyarrow hands over bytes that are not
    # UTF-8, and parsing them as dates panicked in chrono (exit 3)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    table = pa.table({"id": ["P1", "P2"], "dx_date": ["2021-02-12", "2021-03-04"]})
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)
    data = path.read_bytes()
    assert data.count(b"2021-02-12") == 1
    path.write_bytes(data.replace(b"2021-02-12", b"20\xb01-02-12"))
    with pytest.raises(InputError, match=r"not a readable Parquet file .*UTF8"):
        read_parquet_text(path)


def test_parquet_metadata_that_is_not_utf8_is_left_behind(tmp_path: Path) -> None:
    # found by the fuzz run (Parquet seed 470): a damaged metadata key made polars panic
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    field = pa.field("id", pa.string(), metadata={b"note\xff": b"\xfe"})
    table = pa.table({"id": ["P1"], "visit": [{"day": 3}]})
    table = pa.Table.from_arrays(
        [table.column("id"), table.column("visit")],
        schema=pa.schema([field, pa.field("visit", table.schema.field("visit").type)]),
    ).replace_schema_metadata({b"ARRO\xff:schema": b"x"})
    pq.write_table(table, path)
    result = read_parquet_text(path)
    assert result.frame.select("id", "visit.day").rows() == [("P1", "3")]


def test_parquet_records_come_from_the_footer_and_structs_are_flattened(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pl.DataFrame({"id": ["a", "b"], "dose": [{"value": 1.5}, {"value": None}]}).write_parquet(path)
    result = read_parquet_text(path)
    assert result.records == 2
    assert result.frame.columns == ["source_file", "source_row", "id", "dose.value"]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_parquet_text(path)


def _far_dates() -> dict[str, object]:
    """Values pyarrow stores and polars' Rust code panicked on (exit 3, "panicked" text)."""
    import pyarrow as pa

    far_day = pa.array([300_000_000, 17_987], pa.int32()).cast(pa.date32())  # year ~823,000
    return {
        "date32": far_day,
        "date64": pa.array([2**62, 1_554_076_800_000], pa.int64()).cast(pa.date64()),
        "timestamp_ms": pa.array([2**62, 1_554_076_800_000], pa.int64()).cast(pa.timestamp("ms")),
        "list_of_dates": pa.array([[300_000_000], [17_987]], pa.list_(pa.int32())).cast(
            pa.list_(pa.date32())
        ),
        "struct_of_dates": pa.StructArray.from_arrays([far_day], ["day"]),
    }


@pytest.mark.parametrize("kind", list(_far_dates()))
def test_parquet_dates_beyond_the_calendar_are_values_not_panics(tmp_path: Path, kind: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": ["P1", "P2"], "dx": _far_dates()[kind]}), path)
    frame = read_parquet_text(path).frame
    assert frame.height == 2
    # the far value stays a value (an unreadable date, reported by the date parser later);
    # the other row keeps its date
    text = str(frame.drop("source_file", "source_row").rows())
    assert "2019-04-01" in text or "2019-03-31" in text or "2019-04-01 00:00:00" in text


def test_parquet_decimal256_is_read_as_text(tmp_path: Path) -> None:
    # polars cannot take 256-bit decimals from Arrow: it panicked ("Int256"), at any nesting level
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    kind = pa.decimal256(40, 1)
    values = pa.array([Decimal("1970.5"), None], kind)
    table = pa.table(
        {
            "id": ["P1", "P2"],
            "yob": values,
            "nested": pa.StructArray.from_arrays([values], ["yob"]),
            "listed": pa.array([[Decimal("1.5")], []], pa.list_(kind)),
        }
    )
    pq.write_table(table, path)
    frame = read_parquet_text(path).frame
    assert frame.select("yob", "nested.yob").rows() == [("1970.5", "1970.5"), (None, None)]
    assert frame.get_column("listed").to_list() == [["1.5"], []]


def test_fhir_resources_naming_a_key_twice_are_refused(tmp_path: Path) -> None:
    from cartreg.ingest.readers.fhir import read_fhir

    path = tmp_path / "bundle.json"
    path.write_text(
        '{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", '
        '"id": "P1", "gender": "female", "gender": "male"}}]}',
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="the key 'gender' appears twice"):
        read_fhir(path, resource="Patient")


@pytest.mark.parametrize("header_row", [7, 99_999])
def test_a_header_row_below_the_file_counts_the_lines_written(
    tmp_path: Path, header_row: int
) -> None:
    # adversarial audit: a 6-line file was said to have 7 lines, and header_row 7 read nothing
    path = tmp_path / "six.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"header_row is {header_row}, but the file has 6 line"):
        read_csv_text(path, header_row=header_row)


def test_a_parquet_file_naming_a_column_twice_is_told_so(tmp_path: Path) -> None:
    # adversarial audit: the message was pyarrow's "Multiple matches for FieldRef.Name(id)"
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.table([pa.array(["a"]), pa.array(["b"])], names=["id", "id"]), path)
    with pytest.raises(InputError, match=r"the file names column 'id' twice \(columns 1 and 2\)"):
        read_parquet_text(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("x.json", '{"p": [{"id": "1", "n": "\\ud800"}]}'),
        ("x.ndjson", '{"id": "1", "n": "a\\udc00b"}\n'),
    ],
)
def test_a_lone_surrogate_escape_is_named_as_such(tmp_path: Path, name: str, text: str) -> None:
    # adversarial audit: it was "the records disagree on the shape of a field"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="a value holds a lone UTF-16 surrogate escape"):
        read_json_text(path, records="p" if name.endswith(".json") else None)


def test_a_second_byte_order_mark_does_not_hide_in_a_column_name(tmp_path: Path) -> None:
    # adversarial audit: the first column was "\ufeffid", and "did you mean" showed it
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfid,sex\n1,F\n")
    result = read_csv_text(path)
    assert result.frame.columns[2:] == ["id", "sex"]
    assert result.frame.select("id", "sex").rows() == [("1", "F")]
