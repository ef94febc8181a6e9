"""Hypothesis strategies that damage site exports and mappings the way real ones get damaged.

Text exports (CSV, TSV, REDCap, JSON, NDJSON) get sequences of edits: byte edits anywhere
(deletions, insertions from an alphabet of delimiters, quotes, line ends, NUL, BOMs and
non-ASCII, duplicated ranges, cuts) and edits with a meaning (CR-only or mixed line ends, a
comment line, the header repeated, the header's delimiter changed, an unquoted delimiter in a
cell, a quote that never closes, a blank line, the file cut mid-line, a BOM, another encoding,
deep nesting and type changes for JSON). Workbooks are built cell by cell (title rows, far
cells, blank and duplicate headers, formulas, typed cells) and then damaged as zip files;
Parquet files are written from random typed frames and damaged byte by byte. Mappings are
changed key by key (wrong types, unknown keys, out-of-range numbers, paths out of the
folder) and as YAML text.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import zipfile
from datetime import date, datetime
from typing import Any

import polars as pl
import yaml
from hypothesis import strategies as st

NASTY = [
    b'"', b",", b";", b"\t", b"|", b"\n", b"\r", b"\r\n", b"#", b"\x00", b"\\", b"{", b"}",
    b"[", b"]", b":", b" ", b"\xef\xbb\xbf", b"\xff\xfe", "é".encode(), b"\xe9", b"\xc3",
    "\u2028".encode(), b"=cmd|' /C calc'!A0", b"-99", b"UNK", b"null", b"true", b"1e308",
    b"9" * 40, b"0x1F", b"\x1f", b"\x1e", b"x" * 300,
]  # fmt: skip


def _byte_edit(data: bytes, rnd: random.Random) -> bytes:
    n = len(data)
    i = rnd.randrange(n + 1)
    op = rnd.randrange(7)
    if op == 0 and n:  # delete a range
        return data[:i] + data[i + rnd.randrange(1, 40) :]
    if op == 1:  # insert nasty bytes
        return data[:i] + rnd.choice(NASTY) * rnd.randrange(1, 4) + data[i:]
    if op == 2 and n:  # duplicate a range elsewhere
        j = rnd.randrange(n)
        return data[:i] + data[j : j + rnd.randrange(1, 200)] + data[i:]
    if op == 3 and n:  # flip a byte
        i = min(i, n - 1)
        return data[:i] + bytes([rnd.randrange(256)]) + data[i + 1 :]
    if op == 4:  # cut the file
        return data[:i]
    if op == 5 and n:  # swap two ranges
        j = rnd.randrange(n)
        a, b = sorted((i, j))
        return data[:a] + data[b : b + 20] + data[a + 20 : b] + data[a : a + 20] + data[b + 20 :]
    return data + rnd.choice(NASTY)


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _line_edit(data: bytes, rnd: random.Random, separator: bytes) -> bytes:
    """An edit with a meaning for a delimited file."""
    lines = _lines(data)
    k = rnd.randrange(1, max(2, len(lines)))
    op = rnd.randrange(14)
    if op == 0:  # CR-only line ends
        return data.replace(b"\n", b"\r")
    if op == 1:  # mixed line ends
        return (
            b"".join(line + rnd.choice([b"\n", b"\r", b"\r\n"]) for line in lines[:-1]) + lines[-1]
        )
    if op == 2:  # a comment line
        lines.insert(k, b"# exported by the hospital warehouse, " + separator + b" v2")
    elif op == 3:  # the header again
        lines.insert(k, lines[0])
    elif op == 4:  # the header with another delimiter
        other = rnd.choice([b";", b",", b"\t", b"|"])
        lines[0] = lines[0].replace(separator, other)
    elif op == 5 and k < len(lines):  # an unquoted delimiter inside a cell (a shifted row)
        cells = lines[k].split(separator)
        j = rnd.randrange(len(cells))
        cells[j] = cells[j][: len(cells[j]) // 2] + separator + cells[j][len(cells[j]) // 2 :]
        lines[k] = separator.join(cells)
    elif op == 6 and k < len(lines):  # a quote that never closes
        lines[k] = b'"' + lines[k]
    elif op == 7:  # blank lines
        lines.insert(k, b"")
        lines.insert(k, b"   ")
    elif op == 8:  # cut mid-line, no final newline
        text = b"\n".join(lines)
        return text[: rnd.randrange(len(text) // 2, len(text) + 1)].rstrip(b"\n")
    elif op == 9:  # a quoted cell with a line break and quotes inside
        cells = lines[k].split(separator) if k < len(lines) else [b""]
        j = rnd.randrange(len(cells))
        cells[j] = b'"' + cells[j] + b'\nsecond ""line""' + b'"'
        if k < len(lines):
            lines[k] = separator.join(cells)
    elif op == 10:  # trailing delimiters
        lines = [line + separator * rnd.randrange(1, 3) if line else line for line in lines]
    elif op == 11:  # another encoding
        text = b"\n".join(lines)
        try:
            return text.decode("utf-8").encode(
                rnd.choice(["utf-16", "cp1252", "latin-1"]), errors="replace"
            )
        except UnicodeDecodeError:
            return text
    elif op == 12:  # a row of the header's names plus data, or a duplicated row
        lines.insert(k, lines[min(k, len(lines) - 1)])
    else:  # header only
        return lines[0] + b"\n"
    return b"\n".join(lines)


def _json_edit(data: bytes, rnd: random.Random) -> bytes:
    """An edit with a meaning for JSON text (applied to the parsed document when it parses)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return _byte_edit(data, rnd)
    records = document.get("patients") if isinstance(document, dict) else document
    if not isinstance(records, list) or not records:
        return _byte_edit(data, rnd)
    record = rnd.choice(records)
    if not isinstance(record, dict) or not record:
        return _byte_edit(data, rnd)
    key = rnd.choice(list(record))
    op = rnd.randrange(9)
    if op == 0:  # deep nesting, written as text (Python's json cannot build 2000 levels)
        depth = rnd.choice([5, 29, 31, 200, 2000])
        record[key] = "__deep__"
        nested = ("[" * depth + "1" + "]" * depth).encode()
        return json.dumps(document).encode().replace(b'"__deep__"', nested, 1)
    elif op == 1:  # a type change: object, array, number, bool, null
        record[key] = rnd.choice(
            [{"x": {"y": 1}}, [1, "a", None], 12345678901234567890, True, None]
        )
    elif op == 2:  # a key dropped
        del record[key]
    elif op == 3:  # a huge string
        record[key] = "z" * rnd.choice([1000, 2**20 + 10])
    elif op == 4:  # the record is not an object
        records[records.index(record)] = rnd.choice([[1, 2], "text", 3, None])
    elif op == 5:  # an empty array / object
        record[key] = rnd.choice([[], {}])
    elif op == 6:  # keys that clash with lineage, or with each other once flattened
        record[rnd.choice(["source_row", "source_file", "demographics.sex", ""])] = "x"
    elif op == 7:  # a duplicate key in the text (json.dumps cannot write one)
        text = json.dumps(document).encode()
        return text.replace(b'"id": ', b'"id": "dup", "id": ', 1)
    else:  # mixed scalar types across records
        record[key] = rnd.choice(["5", 5, 5.5, "five", False])
    return json.dumps(document, indent=rnd.choice([None, 1])).encode()


def apply_edits(data: bytes, kind: str, seed: int, steps: list[str]) -> bytes:
    """``steps`` ("byte" or "meaning") applied to a text export of ``kind``."""
    separator = b"\t" if kind == "tsv" else b","
    rnd = random.Random(seed)
    for step in steps:
        if step == "byte":
            data = _byte_edit(data, rnd)
        elif kind == "json":
            data = _json_edit(data, rnd)
        elif kind == "ndjson" and rnd.random() < 0.5:
            lines = data.split(b"\n")
            k = rnd.randrange(len(lines))
            lines[k] = _json_edit(b'{"patients": [' + lines[k] + b"]}", rnd)
            data = b"\n".join(lines)
        else:
            data = _line_edit(data, rnd, separator)
    return data


class Edits:
    """A reproducible list of edits (its repr is what a failing case prints)."""

    def __init__(self, kind: str, seed: int, steps: list[str]) -> None:
        self.kind, self.seed, self.steps = kind, seed, steps

    def __call__(self, data: bytes) -> bytes:
        return apply_edits(data, self.kind, self.seed, self.steps)

    def __repr__(self) -> str:
        return f"Edits({self.kind!r}, seed={self.seed}, steps={self.steps})"


def text_mutations(kind: str) -> st.SearchStrategy[Edits]:
    """A list of edits for a text export of ``kind`` (csv, tsv, redcap, json, ndjson)."""
    return st.builds(
        Edits,
        st.just(kind),
        st.integers(0, 2**32 - 1),
        st.lists(st.sampled_from(["byte", "meaning"]), min_size=1, max_size=4),
    )


# --- workbooks -------------------------------------------------------------------------


class Built:
    """Bytes built from a seed (its repr, printed by a failing case, is the seed)."""

    def __init__(self, what: str, seed: int, data: bytes, intact: bool = True) -> None:
        self.what, self.seed, self.data, self.intact = what, seed, data, intact

    def __repr__(self) -> str:
        return f"Built({self.what!r}, seed={self.seed}, {len(self.data)} bytes)"


@st.composite
def workbooks(
    draw: st.DrawFn, header: list[str], rows: list[tuple[str, ...]], keep: tuple[str, ...]
) -> Built:
    """A workbook holding the site's table, built with damage, then possibly damaged as a zip;
    ``intact`` says whether the header names in ``keep`` were written unchanged."""
    seed = draw(st.integers(0, 2**32 - 1))
    return Built("workbook", seed, *build_workbook(seed, header, rows, keep))


def build_workbook(
    seed: int, header: list[str], rows: list[tuple[str, ...]], keep: tuple[str, ...]
) -> tuple[bytes, bool]:
    import xlsxwriter

    rnd = random.Random(seed)
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    name = "Patients" if rnd.random() < 0.9 else rnd.choice(["Patienten", "Sheet1", "x" * 31])
    sheet = book.add_worksheet(name)
    date_format = book.add_format({"num_format": "dd/mm/yyyy"})
    top = 1 if rnd.random() < 0.8 else rnd.randrange(0, 4)
    if top:
        sheet.write(0, 0, "Registry export (title row)")
    names = list(header)
    if rnd.random() < 0.2:
        names[rnd.randrange(len(names))] = rnd.choice(["", " ", names[0], names[0] + " ", "#x"])
    intact = all(k in names for k in keep)
    sheet.write_row(top, 0, names)
    r = top
    for row in rows:
        r += 1 + (rnd.random() < 0.1)  # blank rows now and then
        for c, value in enumerate(row):
            choice = rnd.random()
            if choice < 0.05:
                sheet.write_formula(r, c, f'="{value}"', None, value)
            elif choice < 0.08 and value[:4].isdigit() and len(value) == 10:
                sheet.write_datetime(r, c, datetime.fromisoformat(value), date_format)
            elif choice < 0.1 and value.isdigit():
                sheet.write_number(r, c, int(value))
            elif choice < 0.11:
                sheet.write_boolean(r, c, True)
            else:
                sheet.write(r, c, value)
    extra = rnd.random()
    if extra < 0.1:  # a stray cell far away (within, or beyond, the cell limit)
        sheet.write(rnd.choice([5000, 1_048_575]), rnd.choice([20, 16383]), "stray")
    elif extra < 0.2:  # the header repeated, a comment row
        sheet.write_row(r + 1, 0, names)
        sheet.write(r + 2, 0, "# note: end of export")
    elif extra < 0.25:
        sheet.merge_range(r + 1, 0, r + 1, 3, "merged")
    if rnd.random() < 0.1:
        book.add_worksheet("Other").write(0, 0, "x")
    book.close()
    data = buffer.getvalue()
    if rnd.random() < 0.3:
        data = _damage_zip(data, rnd)
        intact = False
    return data, intact


def _damage_zip(data: bytes, rnd: random.Random) -> bytes:
    """Damage the sheet XML (still a valid zip) or the zip's bytes."""
    if rnd.random() < 0.6:
        source = zipfile.ZipFile(io.BytesIO(data))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                part = source.read(info.filename)
                if info.filename.endswith("sheet1.xml") or (
                    info.filename.endswith("sharedStrings.xml") and rnd.random() < 0.3
                ):
                    part = _xml_edit(part, rnd)
                if not (info.filename.endswith("sharedStrings.xml") and rnd.random() < 0.05):
                    target.writestr(info.filename, part)
        return out.getvalue()
    for _ in range(rnd.randrange(1, 4)):
        data = _byte_edit(data, rnd)
    return data


def _xml_edit(xml: bytes, rnd: random.Random) -> bytes:
    op = rnd.randrange(6)
    if op == 0:  # a declared dimension that lies
        return xml.replace(b'<dimension ref="', b'<dimension ref="A1:XFD1048576" x="', 1)
    if op == 1:  # cells without references
        return xml.replace(b' r="A', b' q="A')
    if op == 2:  # a cell far away
        return xml.replace(
            b"</sheetData>",
            b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>far</t></is></c></row>'
            b"</sheetData>",
        )
    if op == 3:  # a shared-string index out of range
        return xml.replace(b"<v>1</v>", b"<v>99999</v>", 1)
    if op == 4:  # rows out of order
        return xml.replace(b'<row r="3"', b'<row r="40"', 1)
    return _byte_edit(xml, rnd)


# --- Parquet -----------------------------------------------------------------------------


def _random_values(kind: str, n: int, rnd: random.Random) -> list[Any]:
    if kind == "text":
        alphabet = 'aé ,;"\n\t0#=@'
        return ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12))) for _ in range(n)]
    if kind == "int":
        return [
            rnd.choice([0, -1, 2**63 - 1, -(2**63), rnd.randrange(-999, 9999)]) for _ in range(n)
        ]
    if kind == "float":
        return [rnd.choice([0.5, -1e308, float("nan"), float("inf"), 1e-300]) for _ in range(n)]
    if kind == "bool":
        return [rnd.random() < 0.5 for _ in range(n)]
    if kind == "date":
        return [date(rnd.randrange(1, 9999), rnd.randrange(1, 13), 1) for _ in range(n)]
    return [[str(rnd.randrange(10)) for _ in range(rnd.randrange(3))] for _ in range(n)]


@st.composite
def parquet_files(draw: st.DrawFn, base: pl.DataFrame) -> Built:
    """The site's frame with columns retyped, added, dropped or renamed, then maybe damaged."""
    seed = draw(st.integers(0, 2**32 - 1))
    return Built("parquet", seed, build_parquet(seed, base))


def build_parquet(seed: int, base: pl.DataFrame) -> bytes:
    rnd = random.Random(seed)
    frame = base
    for _ in range(rnd.randrange(4)):
        op = rnd.randrange(5)
        if op == 0:
            kind = rnd.choice(["text", "int", "float", "bool", "date", "list"])
            values = _random_values(kind, frame.height, rnd)
            name = rnd.choice([*frame.columns, "extra", "source_row", "notes"])
            with contextlib.suppress(
                pl.exceptions.PolarsError, OverflowError, TypeError, ValueError
            ):
                frame = frame.with_columns(pl.Series(name, values))
        elif op == 1 and frame.width > 1:
            frame = frame.drop(rnd.choice(frame.columns))
        elif op == 2:
            frame = frame.rename({frame.columns[0]: rnd.choice(["id", "", "study_id "])})
        elif op == 3:
            frame = frame.head(rnd.randrange(frame.height + 1))
        else:
            frame = frame.with_columns(pl.struct(pl.all()).alias("nested"))
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression=rnd.choice(["zstd", "snappy", "uncompressed"]))
    data = buffer.getvalue()
    if rnd.random() < 0.4:
        for _ in range(rnd.randrange(1, 5)):
            data = _byte_edit(data, rnd) if rnd.random() < 0.3 else _flip(data, rnd)
    return data


def _flip(data: bytes, rnd: random.Random) -> bytes:
    if not data:
        return data
    i = rnd.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rnd.randrange(8))]) + data[i + 1 :]


# --- mappings ----------------------------------------------------------------------------

_WRONG_VALUES: list[Any] = [
    None, True, False, "no", "yes", 0, -1, 1e309, "", " ", "%Q%Y", "%", ";;", "auto",
    [], ["x", "x"], {}, {"a": 1}, "../../../../etc/passwd", "/etc/passwd", "/proc/self/environ",
    "link_out.csv", "x" * 500, "utf-99", 10**12, 0.0, "0", "%d/%m/%Y",
]  # fmt: skip
_EXTRA_KEYS = ["decode", "delimiter", "encoding", "header_row", "scale", "explode", "formats",
               "unknown_key", "where", "checkbox", "is_null", "part", "unit", "sheet"]  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def mapping_text(seed: int, base: str) -> str:
    """The YAML of ``base`` with values replaced, keys added or removed, or the text damaged."""
    rnd = random.Random(seed)
    document = copy.deepcopy(yaml.safe_load(base))
    for _ in range(rnd.randrange(1, 4)):
        paths = [p for p in _paths(document) if p]
        path = rnd.choice(paths)
        parent = _get(document, path[:-1])
        op = rnd.randrange(4)
        if op == 0:
            parent[path[-1]] = copy.deepcopy(rnd.choice(_WRONG_VALUES))
        elif op == 1 and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == 2:
            target = _get(document, path)
            if isinstance(target, dict):
                target[rnd.choice(_EXTRA_KEYS)] = copy.deepcopy(rnd.choice(_WRONG_VALUES))
        else:
            target = _get(document, path)
            if isinstance(target, str):
                parent[path[-1]] = target[: rnd.randrange(len(target) + 1)] + rnd.choice(
                    ["", "x", " ", "___1", ".day"]
                )
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if rnd.random() < 0.15:
        edits = [b"? [a, b]\n: c\n", b"a: &x [*x]\n", b"\t", b"\x00", b"{", b": :", b"- -"]
        raw = text.encode()
        i = rnd.randrange(len(raw) + 1)
        text = (raw[:i] + rnd.choice(edits) + raw[i:]).decode("utf-8", errors="replace")
    return text
