"""The committed corpus of hostile submissions: one folder per case under ``corpus/``.

Every class of broken or hostile input found in issue 12 has a case here, written by this
module (``python -m tests.fuzz.corpus_cases`` rewrites ``tests/fuzz/corpus/``; the files are
committed so that a change in a writer library cannot change the corpus). ``cases.json``
lists each case's expected exit codes and the findings it must produce; ``test_corpus.py``
runs them all and checks the promises of ``harness.py`` too. Symbolic links that leave the
folder are made by the test (``links``), not committed.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fuzz.sites import HEADER, PATIENTS, SITES

CORPUS = Path(__file__).parent / "corpus"
Case = dict[str, Any]
CASES: dict[str, tuple[Callable[[Path], None], Case]] = {}


def case(name: str, *, exit: tuple[int, ...], **expect: Any) -> Callable[..., Any]:
    """Register a builder of the folder ``corpus/<name>`` and what ingesting it must give:
    ``exit`` codes allowed, ``findings`` rule ids that must appear, ``error`` text the one-line
    error must hold, ``base`` the site written first, ``links`` links made by the test."""

    def register(build: Callable[[Path], None]) -> Callable[[Path], None]:
        CASES[name] = (build, {"exit": list(exit), **expect})
        return build

    return register


def _csv(rows: list[list[str]] | None = None, header: list[str] | None = None) -> str:
    lines = [",".join(header or HEADER), *(",".join(r) for r in (rows or map(list, PATIENTS)))]
    return "\n".join(lines) + "\n"


def _write(folder: Path, name: str, data: str | bytes) -> None:
    path = folder / name
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _edit_mapping(folder: Path, old: str, new: str) -> None:
    path = folder / "mapping.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# --- crashes and exit codes ---------------------------------------------------------------


@case("csv-embedded-newline", exit=(0, 1), base="csv")
def _(folder: Path) -> None:
    rows = [list(r) for r in PATIENTS]
    rows[1][7] = '"Tecartus\nsecond line"'
    _write(folder, "patients.csv", _csv(rows))


@case("csv-control-characters", exit=(0, 1), base="csv")
def _(folder: Path) -> None:
    # \x1f and \x1e were the line splitter's separators: "found more fields than defined".
    rows = [list(r) for r in PATIENTS]
    rows[0][7] = "Kym\x1friah\x1e"
    rows[2][7] = '"two\nlines\x1f\x1e"'
    _write(folder, "patients.csv", _csv(rows))


@case("redcap-ragged-after-quoted-newline", exit=(1,), base="redcap", findings=["ING-RAGGED"])
def _(folder: Path) -> None:
    # A quoted newline (records grouped by line) and ragged rows: the ING-RAGGED messages
    # were built with pl.format over chunked columns, which panicked in polars 2.1.
    lines = (folder / "records.csv").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("2021-04-12", '"2021-04-12\nnote"')
    lines[3] += ",extra"
    lines[5] += ",extra,more"
    lines[7] = lines[7].rsplit(",", 2)[0]
    _write(folder, "records.csv", "\n".join(lines) + "\n")


@case("parquet-damaged-pages", exit=(2,), base="parquet", error="not a readable Parquet file")
def _(folder: Path) -> None:
    from tests.fuzz.mutators import build_parquet
    from tests.fuzz.sites import parquet_frame

    # Found by the fuzzer: polars' own decoder panicked on this file.
    _write(folder, "patients.parquet", build_parquet(831996252, parquet_frame()))


@case("parquet-truncated", exit=(2,), base="parquet", error="not a readable Parquet file")
def _(folder: Path) -> None:
    data = (folder / "patients.parquet").read_bytes()
    _write(folder, "patients.parquet", data[: len(data) // 2] + data[-8:])


@case("header-trailing-space-duplicate", exit=(2,), base="csv", error="twice")
def _(folder: Path) -> None:
    _write(folder, "patients.csv", _csv(header=[*HEADER[:-1], "sex "]))


@case("header-exact-duplicate", exit=(2,), base="csv", error="twice")
def _(folder: Path) -> None:
    _write(folder, "patients.csv", _csv(header=[*HEADER[:-1], "sex"]))


@case("column-named-source-row", exit=(2,), base="csv", error="lineage")
def _(folder: Path) -> None:
    header = [*HEADER[:-2], "source_row", "source_row_source"]
    _write(folder, "patients.csv", _csv(header=header))


@case("column-named-source-file", exit=(0, 1), base="csv")
def _(folder: Path) -> None:
    rows = [[*r, "from the warehouse"] for r in PATIENTS]
    _write(folder, "patients.csv", _csv(rows, header=[*HEADER, "source_file"]))


@case("json-nested-500-deep", exit=(2,), base="json", error="levels deep")
def _(folder: Path) -> None:
    deep = "[" * 500 + "1" + "]" * 500
    text = (folder / "cohort.json").read_text(encoding="utf-8")
    _write(folder, "cohort.json", text.replace('"flags": [', f'"flags": [{deep}, ', 1))


@case("ndjson-nested-5000-deep", exit=(2,), base="ndjson", error="levels deep")
def _(folder: Path) -> None:
    deep = "{" + '"a":{' * 5000 + '"b":1' + "}" * 5001
    text = (folder / "cohort.ndjson").read_text(encoding="utf-8")
    _write(folder, "cohort.ndjson", text + deep + "\n")


@case("json-long-value", exit=(1, 2), base="json")
def _(folder: Path) -> None:
    # A 548-character value was echoed whole in an error message.
    text = (folder / "cohort.json").read_text(encoding="utf-8")
    _write(folder, "cohort.json", text.replace('"Kymriah"', json.dumps("K" * 548), 1))


@case("mapping-complex-key", exit=(2,), base="csv", error="key must be a plain name")
def _(folder: Path) -> None:
    path = folder / "mapping.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "? [a, b]\n: c\n", encoding="utf-8")


@case("mapping-multi-character-delimiter", exit=(2,), base="csv", error="delimiter")
def _(folder: Path) -> None:
    _edit_mapping(folder, "patient_id: study_id", "patient_id: study_id, delimiter: ';;'")


@case("mapping-file-proc-environ", exit=(2,), base="csv", error="outside the submission folder")
def _(folder: Path) -> None:
    _edit_mapping(folder, "file: patients.csv", "file: /proc/self/environ, reader: csv")


@case("mapping-explode-twice", exit=(2,), base="json", error="listed twice")
def _(folder: Path) -> None:
    _edit_mapping(folder, "explode: infusions", "explode: [infusions, infusions]")


@case("binary-file-as-csv", exit=(2,), base="csv", error="not a text file")
def _(folder: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    _write(folder, "patients.csv", png)


@case("xlsx-cells-at-a1-and-xfd1048576", exit=(2,), base="excel", error="cell limit")
def _(folder: Path) -> None:
    _patch_sheet(
        folder,
        lambda xml: xml.replace(
            b"</sheetData>",
            b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
            b"</sheetData>",
        ),
    )


@case("xlsx-only-cell-at-xfd1048576", exit=(1, 2), base="excel")
def _(folder: Path) -> None:
    def only_far_cell(xml: bytes) -> bytes:
        head, rest = xml.split(b"<sheetData>", 1)
        tail = rest.split(b"</sheetData>", 1)[1]
        far = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
        return head.replace(b'<dimension ref="', b'<dimension ref="XFD1048576" x="') + (
            b"<sheetData>" + far + b"</sheetData>" + tail
        )

    _patch_sheet(folder, only_far_cell)


@case("xlsx-declared-dimension-lies", exit=(0, 1), base="excel")
def _(folder: Path) -> None:
    _patch_sheet(
        folder, lambda xml: xml.replace(b'<dimension ref="', b'<dimension ref="A1:XFD1048576" x="')
    )


@case("xlsx-not-a-zip", exit=(2,), base="excel", error="not a readable .xlsx")
def _(folder: Path) -> None:
    _write(folder, "registry.xlsx", _csv())


def _patch_sheet(folder: Path, edit: Callable[[bytes], bytes]) -> None:
    path = folder / "registry.xlsx"
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = edit(data)
            target.writestr(info.filename, data)
    path.write_bytes(out.getvalue())


# --- data lost or invented silently -------------------------------------------------------


@case("redcap-cr-only-line-ends", exit=(0, 1), base="redcap", rows={"records.csv": 8})
def _(folder: Path) -> None:
    data = (folder / "records.csv").read_bytes()
    _write(folder, "records.csv", data.replace(b"\n", b"\r"))


@case("csv-mixed-line-ends", exit=(0, 1), base="csv", rows={"patients.csv": 5})
def _(folder: Path) -> None:
    lines = _csv().split("\n")
    ends = ["\r\n", "\r", "\n", "\r", "\r\n", "\n"]
    _write(folder, "patients.csv", "".join(a + b for a, b in zip(lines, ends, strict=False)))


@case("tsv-cr-only-line-ends", exit=(0, 1), base="tsv", rows={"patients.tsv": 5})
def _(folder: Path) -> None:
    data = (folder / "patients.tsv").read_bytes()
    _write(folder, "patients.tsv", data.replace(b"\n", b"\r"))


@case("csv-truncated-mid-line", exit=(1,), base="csv", findings=["ING-TRUNCATED"])
def _(folder: Path) -> None:
    text = _csv()
    _write(folder, "patients.csv", text[: text.index("o.brackenridge")])


@case("csv-unclosed-quote-at-end", exit=(1,), base="csv", findings=["ING-TRUNCATED"])
def _(folder: Path) -> None:
    text = _csv()
    cut = text.index("P005")
    _write(folder, "patients.csv", text[:cut] + '"P005,' + text[cut + 5 : cut + 40])


@case("csv-header-only", exit=(1,), base="csv", findings=["ING-NO-ROWS"])
def _(folder: Path) -> None:
    _write(folder, "patients.csv", ",".join(HEADER) + "\n")


@case("csv-blank-lines-before-header", exit=(2,), base="csv", error="holds no column names")
def _(folder: Path) -> None:
    # Found by the fuzzer: no column names made the cell-by-cell reader fail (exit 3).
    _write(folder, "patients.csv", "\n\n" + _csv())


@case("csv-empty-file", exit=(2,), base="csv", error="empty")
def _(folder: Path) -> None:
    _write(folder, "patients.csv", b"")


@case("xlsx-header-only", exit=(1,), base="excel", findings=["ING-NO-ROWS"])
def _(folder: Path) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(folder / "registry.xlsx"))
    sheet = book.add_worksheet("Patients")
    sheet.write(0, 0, "Registry export (title row)")
    sheet.write_row(1, 0, HEADER)
    book.close()


@case("csv-comment-lines", exit=(1,), base="csv", findings=["ING-COMMENT"])
def _(folder: Path) -> None:
    lines = _csv().split("\n")
    lines.insert(1, "# exported by the warehouse")
    lines.insert(4, "# filter: all patients, 2025")
    _write(folder, "patients.csv", "\n".join(lines))


@case("csv-header-repeated", exit=(1,), base="csv", findings=["ING-REPEATED-HEADER"])
def _(folder: Path) -> None:
    lines = _csv().split("\n")
    lines.insert(3, lines[0])
    _write(folder, "patients.csv", "\n".join(lines))


@case("csv-semicolon-header-comma-rows", exit=(2,), base="csv", error="header is split by")
def _(folder: Path) -> None:
    lines = _csv().split("\n")
    lines[0] = lines[0].replace(",", ";")
    _write(folder, "patients.csv", "\n".join(lines))


@case(
    "mapping-where-selects-nothing",
    exit=(0, 1),
    base="csv",
    findings=["ING-RULE-EMPTY", "ING-WHERE-VALUE"],
)
def _(folder: Path) -> None:
    _edit_mapping(folder, "not_in: [none]", "in: [Kymria]")


@case("mapping-explode-empty-everywhere", exit=(0, 1), base="json", findings=["ING-RULE-EMPTY"])
def _(folder: Path) -> None:
    text = (folder / "cohort.json").read_text(encoding="utf-8")
    document = json.loads(text)
    for record in document["patients"]:
        record["infusions"] = []
    _write(folder, "cohort.json", json.dumps(document))


@case("mapping-tables-empty", exit=(2,), base="csv", error="map at least one CDM table")
def _(folder: Path) -> None:
    path = folder / "mapping.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.split("tables:")[0] + "tables: {}\n", encoding="utf-8")


@case("mapping-checkbox-field-misspelt", exit=(2,), base="redcap", error="no checkbox")
def _(folder: Path) -> None:
    _edit_mapping(folder, "field: salv_agents", "field: salv_agent")


@case("mapping-scale-zero", exit=(2,), base="csv", error="scale")
def _(folder: Path) -> None:
    _edit_mapping(folder, "birth_year: birth_year", "birth_year: {from: birth_year, scale: 0}")


@case("mapping-decode-string-no", exit=(2,), base="redcap", error="true or false")
def _(folder: Path) -> None:
    _edit_mapping(folder, "reader: redcap,", "reader: redcap, decode: 'no',")


@case("mapping-strptime-unknown-directive", exit=(2,), base="csv", error="strptime directive")
def _(folder: Path) -> None:
    _edit_mapping(
        folder, "diagnosis_date: dx_date", "diagnosis_date: {from: dx_date, formats: ['%Q%Y']}"
    )


@case("mapping-strptime-lone-percent", exit=(2,), base="csv", error="strptime directive")
def _(folder: Path) -> None:
    _edit_mapping(
        folder, "diagnosis_date: dx_date", "diagnosis_date: {from: dx_date, formats: ['%']}"
    )


# --- identifiers --------------------------------------------------------------------------


@case("csv-unquoted-comma-in-name", exit=(1,), base="csv", findings=["ING-RAGGED"])
def _(folder: Path) -> None:
    rows = [list(r) for r in PATIENTS]
    rows[1][1] = "Ashcombe, Bartholomew"  # unquoted: every later value shifts right
    _write(folder, "patients.csv", _csv(rows))


@case("csv-stray-quote-swallows-rows", exit=(1,), base="redcap", findings=["ING-QUOTE"])
def _(folder: Path) -> None:
    # Found by the fuzzer: a quote opening line 3 and another opening line 6 made one record
    # of lines 3-6 with the header's field count; its id held an e-mail address.
    lines = (folder / "records.csv").read_text(encoding="utf-8").split("\n")
    lines[2] = '"' + lines[2]
    lines[5] = '"' + lines[5]
    _write(folder, "records.csv", "\n".join(lines))


@case("csv-identifier-in-header", exit=(2,), base="csv", error="looks like an e-mail")
def _(folder: Path) -> None:
    lines = _csv().split("\n")
    lines[0] = lines[0] + lines[1]  # the first record's line break lost
    del lines[1]
    _write(folder, "patients.csv", "\n".join(lines))


# --- confinement --------------------------------------------------------------------------


@case("mapping-file-etc-passwd", exit=(2,), base="csv", error="outside the submission folder")
def _(folder: Path) -> None:
    _edit_mapping(folder, "file: patients.csv", "file: /etc/passwd, reader: csv")


@case("mapping-file-dot-dot", exit=(2,), base="csv", error="outside the submission folder")
def _(folder: Path) -> None:
    _edit_mapping(folder, "file: patients.csv", "file: ../../../../etc/passwd, reader: csv")


@case(
    "symlink-out-of-the-folder",
    exit=(2,),
    base="csv",
    error="outside the submission folder",
    links={"patients.csv": "/etc/passwd"},
)
def _(folder: Path) -> None:
    (folder / "patients.csv").unlink()


@case(
    "redcap-dictionary-outside",
    exit=(2,),
    base="redcap",
    error="outside the submission folder",
)
def _(folder: Path) -> None:
    _edit_mapping(folder, "dictionary: data_dictionary.csv", "dictionary: /etc/hosts")


def write_corpus(root: Path = CORPUS) -> None:
    """Rewrite ``root`` with every case and ``cases.json``."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    index: dict[str, Case] = {}
    for name, (build, expect) in sorted(CASES.items()):
        folder = root / name
        SITES[expect["base"]].write(folder)
        build(folder)
        index[name] = expect
    (root / "cases.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_corpus()
    print(f"wrote {len(CASES)} cases to {CORPUS}")
