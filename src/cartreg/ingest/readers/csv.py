"""CSV/TSV as text: encoding, line endings and delimiter, quoted newlines, untrustworthy rows.

The file is decoded (UTF-8 with or without BOM, UTF-16 with a BOM, else cp1252, else latin-1;
a file with NUL bytes is binary, not text) and its line endings made ``\\n`` (CR-only and mixed
endings are lines too), then parsed by ``pl.read_csv(infer_schema=False)``.

Fast path: when the file has no quote characters and no lone CR, the strict parse raised no
"too many fields" error and the byte counts of newlines and separators prove that every line
is one record with exactly the header's field count, record k is line k + 1 and nothing is
ragged; the record count is the newline count (the usual case for warehouse exports).

Otherwise the text is also split into lines and grouped into records by quote parity (a line
continues a record while an odd number of quotes precede it). That count is independent of the
CSV parser: when the parser finds as many records, each gets its first physical line and field
count from it; when it does not (or fails: stray quotes), Python's ``csv`` module parses the
text instead and the two counts go to the manifest, where a difference is an error finding.

Rows that cannot be trusted are rejected (see ``ReadResult``): a record with more or fewer
fields than the header (an unquoted delimiter shifts every later value), the last record when
the file ends inside it (a cut-off file), a comment line or the header repeated.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cartreg.errors import InputError
from cartreg.exprs import format_text
from cartreg.ingest.limits import (
    MAX_CELL_BYTES,
    MAX_IRREGULAR_TEXT_BYTES,
    MAX_TEXT_FILE_BYTES,
    check_file_size,
    size_text,
)
from cartreg.ingest.readers.base import (
    ReadResult,
    check_cell_sizes,
    clean_names,
    no_rejected,
    require_file,
    suspicious_rows,
    with_lineage,
)

DELIMITERS = (",", ";", "\t", "|")
_BLOCK = 2**20
_LF = 0x0A
_HEAD = 65536
_UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
# The csv module refuses fields above its limit (128 kB by default): allow one byte more than
# ours, so that a larger cell is reported by our own limit check.
csv.field_size_limit(MAX_CELL_BYTES + 1)


def decode(data: bytes, encoding: str | None = None, where: str | Path = "") -> tuple[bytes, str]:
    """UTF-8 bytes of ``data`` and the encoding it was read as.

    InputError for a file that is not text (NUL bytes outside UTF-16) or not in ``encoding``.
    """
    prefix = f"{where}: " if where else ""
    if encoding not in (None, "auto"):
        try:
            return data.decode(encoding).encode("utf-8").removeprefix(b"\xef\xbb\xbf"), encoding
        except (LookupError, UnicodeDecodeError) as exc:
            reason = exc.reason if isinstance(exc, UnicodeDecodeError) else "unknown encoding"
            raise InputError(
                f"{prefix}cannot decode as {encoding} ({reason})",
                hint="set the source's encoding to the one the file was written in",
            ) from None
    for bom, utf16 in _UTF16_BOMS.items():
        if data.startswith(bom):
            try:
                text = data[2:].decode(utf16).removeprefix("\ufeff")
                return text.encode("utf-8"), utf16
            except UnicodeDecodeError:
                break
    if b"\x00" in data:
        raise InputError(
            f"{prefix}not a text file (it holds NUL bytes)",
            hint="export the data as CSV text, or set the source's reader",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:], "utf-8-sig"
    if data.isascii():
        # ASCII is valid UTF-8; this check is far cheaper than decoding the whole file.
        return data, "utf-8"
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252").encode("utf-8"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1").encode("utf-8"), "latin-1"


def normalize_newlines(data: bytes) -> bytes:
    """``\\r\\n`` and lone ``\\r`` (old Mac exports, mixed files) become ``\\n``.

    polars only ends lines at ``\\n``: a CR-only file was one line. A CR inside a quoted cell
    becomes a newline too, which a cell of text can hold either way.
    """
    if b"\r" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def sniff_delimiter(data: bytes) -> str:
    """The delimiter that splits the header line into the most fields (ties: comma first)."""
    end = data.find(b"\n")
    header = data[: end if end >= 0 else len(data)].decode("utf-8", errors="replace")
    counts = {d: _count_outside_quotes(header, d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _count_outside_quotes(line: str, delimiter: str) -> int:
    inside = False
    count = 0
    for ch in line:
        if ch == '"':
            inside = not inside
        elif ch == delimiter and not inside:
            count += 1
    return count


def header_names(text: str, separator: str, where: str | Path) -> list[str]:
    """The header's column names as written (read by the ``csv`` module, quotes resolved)."""
    first = text.split("\n", 1)[0]
    if first.count('"') % 2:
        raise InputError(
            f"{where}: the header line has an unclosed quote",
            hint="remove the stray quote character from the column names",
        )
    try:
        names = next(csv.reader(io.StringIO(first, newline=""), delimiter=separator), [])
    except csv.Error as exc:
        raise InputError(f"{where}: unreadable header line ({exc})") from None
    if not any(name.strip() for name in names):
        raise InputError(
            f"{where}: the header line holds no column names",
            hint="put the column names on the first line, or set the source's header_row",
        )
    return names


def split_lines(data: bytes) -> pl.Series:
    """The lines of UTF-8 ``data`` (newlines already ``\\n``), a trailing empty line dropped."""
    text = data.decode("utf-8")
    lines = pl.Series("line", [text], dtype=pl.String).str.split("\n").explode()
    if text.endswith("\n"):
        lines = lines.head(-1)
    return lines


@dataclass(frozen=True)
class Records:
    """The records after the header by line and quote parity, independent of the CSV parser."""

    frame: pl.DataFrame  # lineno (first physical line, 1-based), fields, blank, lines, text
    unclosed: bool  # the file ends inside a quoted field
    complete: bool  # the file ends with a newline

    @property
    def count(self) -> int:
        """Records that are not blank lines."""
        return int((~self.frame.get_column("blank")).sum())


def _records(data: bytes, delimiter: str) -> Records:
    """Per record after the header: first physical line number and field count."""
    lines = split_lines(data).to_frame().with_row_index("lineno", offset=1)
    quotes = pl.col("line").str.count_matches('"', literal=True)
    # A line starts a new record when an even number of quotes precede it (not inside a field).
    lines = lines.with_columns(quotes.alias("quotes"))
    lines = lines.with_columns(
        ((pl.col("quotes").cum_sum() - pl.col("quotes")) % 2 == 0).alias("starts")
    )
    unclosed = bool(lines.get_column("quotes").sum() % 2)
    lines = lines.filter(pl.col("lineno") > 1)
    if lines.get_column("starts").all():
        # No quoted newlines (the usual case): one line per record, no regrouping needed.
        records = lines.select("lineno", pl.col("line").alias("text"), pl.lit(1).alias("lines"))
    else:
        records = lines.with_columns(pl.col("starts").cast(pl.Int64).cum_sum().alias("record"))
        records = records.group_by("record", maintain_order=True).agg(
            pl.col("lineno").first(),
            pl.col("line").str.join("\n").alias("text"),
            pl.len().alias("lines"),
        )
    text = pl.col("text")
    unquoted = (
        pl.when(text.str.contains('"', literal=True))
        .then(text.str.replace_all(r'"(?:[^"]|"")*"', ""))
        .otherwise(text)
    )
    frame = records.select(
        pl.col("lineno").cast(pl.Int64),
        (unquoted.str.count_matches(delimiter, literal=True) + 1).cast(pl.Int64).alias("fields"),
        (text.str.strip_chars() == "").alias("blank"),
        pl.col("lines").cast(pl.Int64),
        ((pl.col("lines") > 1) & _stray_quote(text, delimiter)).alias("stray"),
        text,
    )
    return Records(frame.rechunk(), unclosed, data.endswith(b"\n") or not data)


def _stray_quote(text: pl.Expr, delimiter: str) -> pl.Expr:
    """Whether a record holds a quote that does not open a cell or is not followed by the end
    of one: ``"P1,x\nP2,y"P3,z`` is lines of records swallowed by a stray quote, even when its
    field count happens to match the header's."""
    sep = "".join(f"\\x{{{ord(ch):x}}}" for ch in delimiter)
    marked = text.str.replace_all(f'(^|{sep})"(?:[^"]|"")*"', "${1}\x00")
    closed_well = marked.str.count_matches(f"\x00(?:{sep}|$)")
    return marked.str.contains('"', literal=True) | (
        marked.str.count_matches("\x00", literal=True) != closed_well
    )


def _with_stray_quotes(facts: pl.DataFrame, text: str, delimiter: str) -> pl.DataFrame:
    """``facts`` of the ``csv`` module's records with ``stray`` computed from their lines (only
    records spanning several lines can hide swallowed ones)."""
    multi = facts.filter(pl.col("lines") > 1)
    if multi.is_empty():
        return facts
    lines = text.split("\n")
    spans = [
        "\n".join(lines[start - 1 : start - 1 + count])
        for start, count in multi.select("lineno", "lines").iter_rows()
    ]
    stray = pl.DataFrame({"text": spans}).select(_stray_quote(pl.col("text"), delimiter))
    marked = multi.select("lineno").with_columns(stray.to_series().alias("multi_stray"))
    return (
        facts.join(marked, on="lineno", how="left", maintain_order="left")
        .with_columns(pl.col("multi_stray").fill_null(False).alias("stray"))
        .drop("multi_stray")
    )


def _byte_counts(data: bytes, sep: str) -> tuple[int, int] | None:
    """(lines, separators) of ``data``, or None when quotes, a lone CR or a multi-byte
    separator make byte counts prove nothing."""
    sep_bytes = sep.encode("utf-8")
    if (
        len(sep_bytes) != 1
        or b'"' in data
        or data.count(b"\r") != data.count(b"\r\n")
        or unterminated_extra_field(data[-2:], sep_bytes)
    ):
        return None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return lines, data.count(sep_bytes)


def unterminated_extra_field(tail: bytes, sep: bytes) -> bool:
    """Whether a file ending in ``tail`` has a last line that polars' strict parse lets through
    with one field too many: without a final newline, a trailing separator is not counted."""
    return not tail.endswith(b"\n") and tail.endswith(sep)


def _is_rectangular(counts: tuple[int, int] | None, n_columns: int, height: int) -> bool:
    """True when every line after the header is one record with ``n_columns`` fields.

    Only valid for a parse that rejected lines with too many fields: then no line has more than
    ``n_columns - 1`` separators, so the separator total can only match when each line has exactly
    that many. Without quote characters no field can hide a separator or a newline.
    """
    if counts is None or n_columns < 2:
        return False
    lines, separators = counts
    return lines == height + 1 and separators == (n_columns - 1) * lines


def _parse(
    data: bytes | Path,
    sep: str,
    names: list[str],
    *,
    truncate: bool,
    categorical: bool = False,
) -> pl.DataFrame:
    # Each column gets its own fresh category mapping, so a column's physical codes number
    # exactly its distinct values: see ``read_csv_text``.
    overrides = [pl.Categorical(pl.Categories.random()) for _ in names] if categorical else None
    return pl.read_csv(
        data,
        separator=sep,
        infer_schema=False,
        schema_overrides=overrides,
        new_columns=names,
        truncate_ragged_lines=truncate,
        raise_if_empty=False,
    )


def _parse_python(text: str, sep: str, names: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The records of ``text`` by Python's ``csv`` module: (cells, lineno/fields/blank).

    The fallback for files polars cannot parse or parses into another number of records than
    the line count (stray quote characters): one Python object per cell, so only these files
    pay for it.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    n = len(names)
    rows: list[list[str | None]] = []
    lineno: list[int] = []
    fields: list[int] = []
    spans: list[int] = []
    try:
        next(reader, None)
        previous = reader.line_num
        for row in reader:
            lineno.append(previous + 1)
            spans.append(reader.line_num - previous)
            previous = reader.line_num
            fields.append(len(row))
            cells: list[str | None] = [c if c != "" else None for c in row[:n]]
            rows.append(cells + [None] * (n - len(cells)))
    except csv.Error as exc:
        raise InputError(f"unreadable CSV at line {reader.line_num} ({exc})") from None
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pl.DataFrame(
        {
            name: pl.Series(name, list(col), dtype=pl.String)
            for name, col in zip(names, columns, strict=True)
        }
    )
    blank = [
        f == 0 or (f == 1 and not (r[0] or "").strip()) for f, r in zip(fields, rows, strict=True)
    ]
    facts = pl.DataFrame(
        {"lineno": lineno, "fields": fields, "blank": blank, "lines": spans},
        schema={"lineno": pl.Int64, "fields": pl.Int64, "blank": pl.Boolean, "lines": pl.Int64},
    ).with_columns(pl.lit(False).alias("stray"))
    return frame, facts


def read_csv_text(
    path: Path,
    *,
    label: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    header_row: int = 1,
    categorical: bool = False,
) -> ReadResult:
    """Read a delimited file as text; see the module docstring.

    ``categorical`` reads the text as Categorical columns, each with its own category mapping:
    the parser hands out one code per distinct value as it goes, which ingestion would
    otherwise compute column by column afterwards. The text is unchanged
    (``cast(pl.String)`` gives it back).
    """
    require_file(path)
    check_file_size(path, MAX_TEXT_FILE_BYTES, "a delimited text file")
    label = label or path.name
    if categorical and encoding in (None, "auto", "utf-8", "utf8") and header_row == 1:
        fast = _read_in_one_pass(path, label, delimiter)
        if fast is not None:
            return fast
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    # hashlib releases the GIL on large buffers: the manifest digest is computed while polars
    # parses, from the bytes already in memory instead of a second read of the file.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(lambda: hashlib.sha256(raw).hexdigest())
        result = _read_text(raw, path, label, delimiter, encoding, header_row, categorical)
        result.sha256 = digest.result()
    return result


@dataclass(frozen=True)
class ByteScan:
    """What one streaming pass over a file's bytes tells."""

    sha256: str
    size: int
    lines: int
    separators: int
    has_quotes: bool
    utf8: bool
    tail: bytes  # the last two bytes
    lone_cr: bool = False  # a CR not followed by LF: a line end polars does not see

    def proof(self, separator: str) -> tuple[int, int] | None:
        """(lines, separators) for ``_is_rectangular``, or None when quotes, a lone CR, a
        multi-byte separator or an unterminated last line make the counts prove nothing."""
        sep = separator.encode("utf-8")
        if (
            len(sep) != 1
            or self.has_quotes
            or self.lone_cr
            or unterminated_extra_field(self.tail, sep)
        ):
            return None
        return self.lines, self.separators


def scan_bytes(path: Path, separator: str) -> ByteScan:
    """Digest and counts of ``path``, read in 1 MB blocks into one reused buffer (bounded
    memory, and no fresh pages to fault in per block).

    It runs beside polars' parse of the same file: bytes are counted by numpy, which is several
    times faster than ``bytes.count`` for one byte and lets go of the GIL while it counts.
    """
    digest = hashlib.sha256()
    sep = separator.encode("utf-8")
    sep_byte = sep[0] if len(sep) == 1 else None
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = separators = size = crs = crlfs = 0
    quotes = False
    utf8 = True
    tail = b""
    buffer = bytearray(_BLOCK)
    with path.open("rb") as handle:
        while n := handle.readinto(buffer):
            chunk = buffer if n == _BLOCK else bytes(buffer[:n])  # the last block is short
            digest.update(chunk)
            size += n
            codes = np.frombuffer(chunk, dtype=np.uint8)
            lines += int(np.count_nonzero(codes == _LF))
            if sep_byte is not None:
                separators += int(np.count_nonzero(codes == sep_byte))
            quotes = quotes or b'"' in chunk
            if b"\r" in chunk or tail.endswith(b"\r"):
                crs += chunk.count(b"\r")
                crlfs += chunk.count(b"\r\n") + (tail.endswith(b"\r") and chunk[:1] == b"\n")
            # ASCII blocks skip the decoder, unless it holds the start of a sequence.
            if utf8 and (not chunk.isascii() or decoder.getstate()[0]):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            tail = (tail + chunk[-2:])[-2:]
    if utf8:
        try:
            decoder.decode(b"", final=True)  # a sequence cut off at the end of the file
        except UnicodeDecodeError:
            utf8 = False
    if size and not tail.endswith(b"\n"):
        lines += 1
    return ByteScan(
        digest.hexdigest(), size, lines, separators, quotes, utf8, tail, lone_cr=crs != crlfs
    )


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(_HEAD).removeprefix(b"\xef\xbb\xbf")


def file_separator(path: Path, delimiter: str | None, head: bytes | None = None) -> str | None:
    """The declared delimiter, else the one sniffed from the file's first line; None for a
    file with nothing in its first 64 kB."""
    head = _head(path) if head is None else head
    if not head.strip():
        return None
    return delimiter if delimiter not in (None, "auto") else sniff_delimiter(head)


def file_header(path: Path, separator: str, head: bytes | None = None) -> list[str] | None:
    """The cleaned column names of a plain UTF-8 file's first line, or None when the first
    64 kB do not hold a whole, plain header line (the full reader then decides)."""
    head = _head(path) if head is None else head
    end = head.find(b"\n")
    if end < 0 or b"\x00" in head or b"\r" in head[:end].removesuffix(b"\r"):
        return None
    try:
        line = head[:end].removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None
    return clean_names(header_names(line, separator, path), str(path))


def _read_in_one_pass(path: Path, label: str, delimiter: str | None) -> ReadResult | None:
    """The single-pass read straight from the file, or None when it does not apply.

    polars parses the file itself while a thread scans its bytes block by block for the digest,
    the encoding check and the byte-count proof: the file is not first copied into Python.
    Not UTF-8, not provably rectangular or not parseable: None, and the caller reads the bytes
    as usual.
    """
    try:
        head = _head(path)
    except OSError:
        return None
    sep = file_separator(path, delimiter, head)
    names = file_header(path, sep, head) if sep is not None and len(sep) == 1 else None
    if sep is None or names is None:
        return None
    with ThreadPoolExecutor(max_workers=1) as pool:
        facts = pool.submit(scan_bytes, path, sep)
        try:
            frame: pl.DataFrame | None = _parse(path, sep, names, truncate=False, categorical=True)
        except pl.exceptions.PolarsError:
            frame = None
        scan = facts.result()
    if (
        frame is None
        or not scan.utf8
        or len(frame.columns) != len(names)
        or not _is_rectangular(scan.proof(sep), len(frame.columns), frame.height)
    ):
        return None
    result = ReadResult(
        frame=with_lineage(frame, label, 2), sha256=scan.sha256, records=scan.lines - 1
    )
    check_cell_sizes(result.frame, str(path))
    result.reject(suspicious_rows(result.frame))
    return result


def _drop_title_rows(data: bytes, header_row: int, path: Path) -> bytes:
    if header_row == 1:
        return data
    lines = data.split(b"\n", header_row - 1)
    if len(lines) < header_row or (len(lines) == header_row and not lines[-1].strip()):
        # A final line break ends the last line: it does not begin another.
        written = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        raise InputError(
            f"{path}: header_row is {header_row}, but the file has {written} line(s)",
            hint="set header_row to the line holding the column names",
        )
    return lines[-1]


def _rows_delimiter(records: Records, sep: str, n_columns: int, path: Path) -> None:
    """InputError when the header and most rows use different delimiters (``;`` over ``,``):
    every row would read as one field. Rows short of fields for other reasons are ragged."""
    facts = records.frame.filter(~pl.col("blank"))
    if n_columns < 2 or facts.is_empty():
        return
    single = facts.filter(pl.col("fields") == 1)
    if single.height * 2 <= facts.height:
        return
    sample = single.get_column("text").head(20)
    other = sniff_delimiter(sample.str.join("\n").item().encode("utf-8"))
    fits = (sample.str.count_matches(other, literal=True) == n_columns - 1).sum()
    if other == sep or fits * 2 <= sample.len():
        return
    raise InputError(
        f"{path}: the header is split by {sep!r} but most rows by {other!r}",
        hint="export the file with one delimiter throughout, or set the source's delimiter",
    )


def _read_text(
    raw: bytes,
    path: Path,
    label: str,
    delimiter: str | None,
    encoding: str | None,
    header_row: int,
    categorical: bool = False,
) -> ReadResult:
    data, _ = decode(raw, encoding, path)
    data = normalize_newlines(data)
    data = _drop_title_rows(data, header_row, path)
    if not data.strip():
        raise InputError(f"{path}: file is empty", hint="export the data again")
    sep = delimiter if delimiter not in (None, "auto") else sniff_delimiter(data)
    text = data.decode("utf-8")
    names = clean_names(header_names(text, sep, path), str(path))
    frame: pl.DataFrame | None = None
    # polars 2.1 parses a quoted cell that runs to the end of the file into a Categorical
    # without checking it: the category lost its last byte, half of a UTF-8 character, and
    # reading the categories panicked. Text with quotes is therefore parsed as String.
    coded = categorical and b'"' not in data
    # The byte counts run on a thread while polars parses (outside the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        counts = pool.submit(_byte_counts, data, sep)
        try:
            frame = _parse(data, sep, names, truncate=False, categorical=coded)
        except pl.exceptions.PolarsError:
            # Too many fields on some line (or unreadable): the record-aware path decides.
            frame = None
        proof = counts.result()
    if frame is not None and proof is not None and _is_rectangular(proof, len(names), frame.height):
        result = ReadResult(frame=with_lineage(frame, label, header_row + 1), records=proof[0] - 1)
        check_cell_sizes(result.frame, str(path))
        result.reject(suspicious_rows(result.frame))
        return result
    records = _records(data, sep)
    _rows_delimiter(records, sep, len(names), path)
    try:
        frame = _parse(data, sep, names, truncate=True, categorical=coded)
    except pl.exceptions.PolarsError:
        frame = None
    facts = records.frame.select("lineno", "fields", "blank", "lines", "stray")
    unclosed = records.unclosed
    if frame is None or frame.height != records.frame.height or len(frame.columns) != len(names):
        if len(data) > MAX_IRREGULAR_TEXT_BYTES:
            raise InputError(
                f"{path}: its quoting is irregular (a stray quote?) and at "
                f"{size_text(len(data))} it is too large to read cell by cell "
                f"(limit {size_text(MAX_IRREGULAR_TEXT_BYTES)})",
                hint="quote cells consistently, or remove stray quote characters",
            )
        try:
            frame, facts = _parse_python(text, sep, names)
        except InputError as exc:
            raise InputError(f"{path}: {exc.message}") from None
        facts = _with_stray_quotes(facts, text, sep)
        unclosed = _ends_inside_quotes(facts, text, sep)
    offset = header_row - 1
    frame = pl.concat(
        [
            with_lineage(frame, label, header_row + 1).drop("source_row"),
            facts.with_columns(pl.col("lineno") + offset).rename({"lineno": "source_row"}),
        ],
        how="horizontal",
    )
    frame = frame.filter(~pl.col("blank"))
    result = ReadResult(
        frame=frame.select("source_file", "source_row", *names),
        records=records.count,
    )
    check_cell_sizes(result.frame, str(path))
    result.reject(suspicious_rows(result.frame))
    result.reject(_ragged_rows(frame, unclosed, records.complete, len(names)))
    return result


def _ends_inside_quotes(facts: pl.DataFrame, text: str, delimiter: str) -> bool:
    """Whether the ``csv`` module's last record runs into the end of the file inside a quoted
    cell (a strict re-read of that record reports it; a quote inside a cell does not count)."""
    if facts.is_empty():
        return False
    start = int(facts.get_column("lineno")[-1])
    tail = "\n".join(text.split("\n")[start - 1 :])
    try:
        list(csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _ragged_rows(
    frame: pl.DataFrame, unclosed: bool, complete: bool, n_columns: int
) -> pl.DataFrame:
    """Rejected rows for records with another field count than the header, records holding
    lines swallowed by a stray quote, and the last record of a file that ends inside it (no
    final newline or an unclosed quote)."""
    rows = frame.select("source_row", "fields", "lines", "stray")
    last = rows.get_column("source_row").max() if rows.height else None
    cut = pl.lit(False)
    if last is not None and (unclosed or not complete):
        cut = (pl.col("source_row") == last) & (pl.lit(unclosed) | (pl.col("fields") < n_columns))
    ragged = pl.col("fields") != n_columns
    flagged = rows.filter(cut | ragged | pl.col("stray"))
    if flagged.is_empty():
        return no_rejected()
    last_line = pl.col("source_row") + pl.col("lines") - 1
    return flagged.select(
        "source_row",
        pl.when(cut)
        .then(pl.lit("ING-TRUNCATED"))
        .when(ragged)
        .then(pl.lit("ING-RAGGED"))
        .otherwise(pl.lit("ING-QUOTE"))
        .alias("rule_id"),
        pl.when(cut)
        .then(
            pl.lit(
                "the file ends inside this record (cut off, or a quote never closed); "
                "row quarantined: send the complete file"
            )
        )
        .when(ragged & (pl.col("lines") > 1))
        .then(
            format_text(
                "the record on lines {}-{} has {} fields, the header {} (a stray quote?); "
                "row quarantined: fix the quotes",
                pl.col("source_row"),
                last_line,
                pl.col("fields"),
                pl.lit(n_columns),
            )
        )
        .when(ragged)
        .then(
            format_text(
                "the line has {} fields, the header {}; row quarantined: quote cells that "
                "hold the delimiter or a line break",
                pl.col("fields"),
                pl.lit(n_columns),
            )
        )
        .otherwise(
            format_text(
                "a quote character joins lines {}-{} into one record; row quarantined: "
                "remove the stray quote, or quote the whole cell",
                pl.col("source_row"),
                last_line,
            )
        )
        .alias("message"),
    )
