"""CSV/TSV as text: encoding and delimiter detection, quoted newlines, ragged-row findings.

The file is decoded once (UTF-8 with or without BOM, else cp1252, else latin-1) and parsed by
``pl.read_csv(infer_schema=False)``. When the file has no quote characters, the parse raised no
"too many fields" error and the byte counts of newlines and separators prove that every line is
one record with exactly the header's field count, record k is line k + 1 and nothing is ragged:
no second pass is needed (the usual case for warehouse exports). Otherwise the text is scanned a
second time as plain lines to learn each record's first physical line and field count. Both
passes are vectorized.
"""

from __future__ import annotations

import codecs
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartreg.errors import InputError
from cartreg.exprs import format_text
from cartreg.findings import findings_frame
from cartreg.ingest.readers.base import ReadResult, drop_blank_rows, require_file, with_lineage

DELIMITERS = (",", ";", "\t", "|")
_BLOCK = 2**20


def decode(data: bytes, encoding: str | None = None) -> tuple[bytes, str]:
    """UTF-8 bytes of ``data`` and the encoding it was read as."""
    if encoding not in (None, "auto"):
        try:
            return data.decode(encoding).encode("utf-8"), encoding
        except (LookupError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot decode as {encoding}: {exc}") from None
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


def _records(data: bytes, delimiter: str, header_row: int) -> pl.DataFrame:
    """Per record after the header: first physical line number and field count."""
    lines = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x1f" if delimiter != "\x1f" else "\x1e",
        quote_char=None,
        infer_schema=False,
        new_columns=["line"],
        empty_string_is_null=False,
    ).with_columns(pl.col("line").fill_null(""))
    lines = lines.with_row_index("lineno", offset=1).filter(pl.col("lineno") > header_row)
    quotes = pl.col("line").str.count_matches('"', literal=True)
    # A line starts a new record when an even number of quotes precede it (not inside a field).
    inside_before = (quotes.cum_sum() - quotes).mod(2) == 1
    lines = lines.with_columns((~inside_before).alias("starts"))
    if lines.get_column("starts").all():
        # No quoted newlines (the usual case): one line per record, no regrouping needed.
        records = lines.rename({"line": "text"})
    else:
        records = lines.with_columns(pl.col("starts").cast(pl.Int64).cum_sum().alias("record"))
        records = records.group_by("record", maintain_order=True).agg(
            pl.col("lineno").first(),
            pl.col("line").str.join("\n").alias("text"),
        )
    text = pl.col("text")
    unquoted = (
        pl.when(text.str.contains('"', literal=True))
        .then(text.str.replace_all(r'"(?:[^"]|"")*"', ""))
        .otherwise(text)
    )
    return records.select(
        "lineno",
        (unquoted.str.count_matches(delimiter, literal=True) + 1).alias("fields"),
        (text.str.strip_chars() == "").alias("blank"),
    )


def _byte_counts(data: bytes, sep: str) -> tuple[int, int] | None:
    """(lines, separators) of ``data``, or None when quotes or a multi-byte separator make
    byte counts prove nothing."""
    sep_bytes = sep.encode("utf-8")
    if len(sep_bytes) != 1 or b'"' in data or unterminated_extra_field(data[-2:], sep_bytes):
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
    data: bytes | Path, sep: str, *, truncate: bool, categorical: bool = False
) -> pl.DataFrame:
    overrides = None
    if categorical:
        # Each column gets its own fresh category mapping, so a column's physical codes number
        # exactly its distinct values: see ``read_csv_text``.
        header = pl.read_csv(data, separator=sep, n_rows=0, infer_schema=False)
        overrides = [pl.Categorical(pl.Categories.random()) for _ in header.columns]
    return pl.read_csv(
        data,
        separator=sep,
        infer_schema=False,
        schema_overrides=overrides,
        truncate_ragged_lines=truncate,
        raise_if_empty=False,
    )


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

    ``categorical`` reads the text of a well-formed file (the single-pass case) as Categorical
    columns, each with its own category mapping: the parser hands out one code per distinct
    value as it goes, which ingestion would otherwise compute column by column afterwards.
    The text is unchanged (``cast(pl.String)`` gives it back); files needing the second pass are
    read as String.
    """
    require_file(path)
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

    def proof(self, separator: str) -> tuple[int, int] | None:
        """(lines, separators) for ``_is_rectangular``, or None when quotes, a multi-byte
        separator or an unterminated last line make the counts prove nothing."""
        sep = separator.encode("utf-8")
        if len(sep) != 1 or self.has_quotes or unterminated_extra_field(self.tail, sep):
            return None
        return self.lines, self.separators


def scan_bytes(path: Path, separator: str) -> ByteScan:
    """Digest and counts of ``path``, read in 1 MB blocks (bounded memory, and cheaper than
    one large read: the blocks reuse the same memory)."""
    digest = hashlib.sha256()
    sep = separator.encode("utf-8")
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = separators = size = 0
    quotes = False
    utf8 = True
    tail = b""
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            size += len(block)
            lines += block.count(b"\n")
            separators += block.count(sep) if len(sep) == 1 else 0
            quotes = quotes or b'"' in block
            # ASCII blocks skip the decoder, unless it holds the start of a sequence.
            if utf8 and (not block.isascii() or decoder.getstate()[0]):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    utf8 = False
            tail = (tail + block)[-2:]
    if utf8:
        try:
            decoder.decode(b"", final=True)  # a sequence cut off at the end of the file
        except UnicodeDecodeError:
            utf8 = False
    if size and not tail.endswith(b"\n"):
        lines += 1
    return ByteScan(digest.hexdigest(), size, lines, separators, quotes, utf8, tail)


def file_separator(path: Path, delimiter: str | None) -> str | None:
    """The declared delimiter, else the one sniffed from the file's first line; None for a
    file with nothing in its first 64 kB."""
    with path.open("rb") as handle:
        head = handle.read(65536).removeprefix(b"\xef\xbb\xbf")
    if not head.strip():
        return None
    return delimiter if delimiter not in (None, "auto") else sniff_delimiter(head)


def _read_in_one_pass(path: Path, label: str, delimiter: str | None) -> ReadResult | None:
    """The single-pass read straight from the file, or None when it does not apply.

    polars parses the file itself while a thread scans its bytes block by block for the digest,
    the encoding check and the byte-count proof: the file is not first copied into Python.
    Not UTF-8, not provably rectangular or not parseable: None, and the caller reads the bytes
    as usual.
    """
    try:
        sep = file_separator(path, delimiter)
    except OSError:
        return None
    if sep is None:
        return None
    with ThreadPoolExecutor(max_workers=1) as pool:
        facts = pool.submit(scan_bytes, path, sep)
        try:
            frame: pl.DataFrame | None = _parse(path, sep, truncate=False, categorical=True)
        except pl.exceptions.PolarsError:
            frame = None
        scan = facts.result()
    if (
        frame is None
        or not scan.utf8
        or not _is_rectangular(scan.proof(sep), len(frame.columns), frame.height)
    ):
        return None
    frame = frame.rename({c: c.strip() for c in frame.columns if c != c.strip()})
    return ReadResult(frame=with_lineage(frame, label, 2), sha256=scan.sha256)


def _read_text(
    raw: bytes,
    path: Path,
    label: str,
    delimiter: str | None,
    encoding: str | None,
    header_row: int,
    categorical: bool = False,
) -> ReadResult:
    data, _ = decode(raw, encoding)
    if header_row > 1:
        data = b"\n".join(data.split(b"\n")[header_row - 1 :])
    if not data[:4096].strip() and not data.strip():
        raise InputError(f"{path}: file is empty")
    sep = delimiter if delimiter not in (None, "auto") else sniff_delimiter(data)
    frame: pl.DataFrame | None = None
    # The byte counts run on a thread while polars parses (outside the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        counts = pool.submit(_byte_counts, data, sep)
        try:
            frame = _parse(data, sep, truncate=False, categorical=categorical)
        except pl.exceptions.PolarsError:
            # Too many fields on some line (or unreadable): the ragged-aware path below decides.
            frame = None
        proof = counts.result()
    if frame is not None and _is_rectangular(proof, len(frame.columns), frame.height):
        frame = frame.rename({c: c.strip() for c in frame.columns if c != c.strip()})
        return ReadResult(frame=with_lineage(frame, label, header_row + 1))
    try:
        frame = _parse(data, sep, truncate=True)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    frame = frame.rename({c: c.strip() for c in frame.columns if c != c.strip()})
    records = _records(data, sep, 1)
    n_columns = len(frame.columns)
    offset = header_row - 1
    if records.height == frame.height:
        lineage = records.select(
            (pl.col("lineno").cast(pl.Int64) + offset).alias("source_row"), "fields", "blank"
        )
        frame = pl.concat(
            [with_lineage(frame, label, header_row + 1).drop("source_row"), lineage],
            how="horizontal",
        )
        ragged = lineage.filter(~pl.col("blank") & (pl.col("fields") != n_columns))
        findings = findings_frame(
            ragged.select(
                pl.lit("ING-RAGGED").alias("rule_id"),
                pl.lit("warning").alias("severity"),
                pl.lit("conformance").alias("category"),
                pl.lit("value").alias("subcategory"),
                pl.lit(label).alias("source_file"),
                pl.col("source_row"),
                format_text(
                    "line has {} fields, the header has {}; "
                    "missing fields read as empty, extra fields dropped",
                    pl.col("fields"),
                    pl.lit(n_columns),
                ).alias("message"),
            )
        )
        if frame.get_column("blank").any():
            frame = frame.filter(~pl.col("blank"))
        frame = frame.drop("fields", "blank")
        columns = [
            "source_file",
            "source_row",
            *[c for c in frame.columns if c not in ("source_file", "source_row")],
        ]
        return ReadResult(frame=frame.select(columns), findings=findings)
    # Blank lines or comments made the two passes disagree: fall back to record numbers.
    frame = drop_blank_rows(with_lineage(frame, label, header_row + 1))
    return ReadResult(frame=frame)
