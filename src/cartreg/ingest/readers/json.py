"""JSON (an array of objects, or an object holding one) and NDJSON as text.

Nested objects become ``parent.child`` columns; arrays stay list columns until a mapping rule
explodes them (``explode: events``). Numbers and booleans are read as the text written in the
file (``1.5``, ``true``). The record number (1-based) is the source row; for NDJSON, the line.

Before anything is parsed, one scan of the bytes finds the nesting depth (a file nested deeper
than ``MAX_JSON_DEPTH`` is refused: the parser recurses per level and the flattening builds a
type per level) and counts the records by their brackets, a count independent of the parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cartreg.errors import InputError
from cartreg.ingest.limits import (
    MAX_CELL_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_FILE_BYTES,
    check_file_size,
    size_text,
)
from cartreg.ingest.readers.base import (
    ReadResult,
    check_cell_sizes,
    check_names,
    require_file,
    to_text,
    with_lineage,
)
from cartreg.ingest.transforms.reshape import flatten_structs
from cartreg.redact import redact_value

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_LONG_STRING = re.compile(rb'"(?:[^"\\]|\\.){%d,}' % MAX_CELL_BYTES, re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_OPEN = frozenset(b"[{")


def _text_scalars(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        k: [_BOOL_TEXT.get(x, x) if isinstance(x, bool) else x for x in v]
        if isinstance(v, list)
        else (_BOOL_TEXT[v] if isinstance(v, bool) else v)
        for k, v in obj.items()
    }


_BOOL_TEXT = {True: "true", False: "false"}


REPEATED_KEY_HINT = "keep one value per key: a JSON reader keeps the last one and drops the other"


class RepeatedKeyError(ValueError):
    """A JSON object names a key twice. Python's parser keeps the last value and drops the
    first without a word: ``"infusions": [...], "infusions": []`` lost the infusion."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def describe(self) -> str:
        return f"the key '{redact_value(self.key[:40])}' appears twice in one object"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKeyError(key)
            seen.add(key)
    return _text_scalars(obj)


def _loads(text: str) -> Any:
    """JSON with every number and boolean as the text written in the file.

    Sites write ``5`` and ``1.5`` (or ``false`` and ``"unknown"``) in one field; typed, those
    records would not fit one column. As text they do, and ``1.50`` stays ``1.50``. An object
    naming a key twice raises :class:`RepeatedKeyError`.
    """
    return json.loads(text, parse_int=str, parse_float=str, object_pairs_hook=_object)


@dataclass(frozen=True)
class Brackets:
    """The brackets of a JSON text outside its strings: ``[{}]`` bytes and their depths."""

    kinds: np.ndarray  # the bracket bytes
    depth: np.ndarray  # depth after each bracket (an opening bracket: the level it opens)

    @property
    def max_depth(self) -> int:
        return int(self.depth.max()) if self.depth.size else 0

    def objects_at(self, level: int) -> int:
        """Objects opened at ``level`` (1: top level)."""
        return int(((self.kinds == ord("{")) & (self.depth == level)).sum())

    def objects_in_array(self, index: int) -> int:
        """Objects directly inside the ``index``-th array of the top-level object."""
        arrays = np.flatnonzero((self.kinds == ord("[")) & (self.depth == 2))
        if index >= arrays.size:
            return 0
        start = int(arrays[index])
        closing = (self.kinds[start:] == ord("]")) & (self.depth[start:] == 2)
        ends = np.flatnonzero(closing)
        window = slice(start, start + int(ends[0]) if ends.size else self.depth.size)
        return int(((self.kinds[window] == ord("{")) & (self.depth[window] == 3)).sum())


def scan_brackets(data: bytes) -> Brackets:
    """Depth of every bracket outside strings: strings are removed, then only brackets kept."""
    stripped = _STRING.sub(b"", data).translate(None, _BRACKETS)
    kinds = np.frombuffer(stripped, dtype=np.uint8)
    step = np.where(np.isin(kinds, list(_OPEN)), 1, -1)
    depth = np.cumsum(step) if kinds.size else step
    # An opening bracket opens the level reached after it; a closing one closes the level
    # before it: report both by the level they belong to.
    level = np.where(step > 0, depth, depth + 1)
    return Brackets(kinds, level)


def _check_shape(data: bytes, path: Path) -> Brackets:
    brackets = scan_brackets(data)
    if brackets.max_depth > MAX_JSON_DEPTH:
        raise InputError(
            f"{path}: nested {brackets.max_depth} levels deep, more than the limit of "
            f"{MAX_JSON_DEPTH} (or not valid JSON)",
            hint="export the records with fewer levels of arrays and objects",
        )
    long = _LONG_STRING.search(data)
    if long is not None:
        raise InputError(
            f"{path}: a value longer than {size_text(MAX_CELL_BYTES)} near byte {long.start()}",
            hint="remove the embedded document or text from the export",
        )
    return brackets


def _ndjson_rows(text: str, path: Path) -> tuple[list[Any], list[int]]:
    """The objects of an NDJSON text and the line each came from (blank lines skipped)."""
    rows: list[Any] = []
    lines: list[int] = []
    # Only \n ends a record: str.splitlines would also split at U+2028 inside a string.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = _loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: line {number}: not valid JSON ({exc.msg}, column {exc.colno})",
                hint="each line of an NDJSON file holds one complete JSON object",
            ) from None
        except RepeatedKeyError as exc:
            raise InputError(
                f"{path}: line {number}: {exc.describe()}", hint=REPEATED_KEY_HINT
            ) from None
        if not isinstance(row, dict):
            raise InputError(
                f"{path}: line {number}: a JSON {type(row).__name__}, not an object",
                hint="each line of an NDJSON file holds one JSON object (one record)",
            )
        rows.append(row)
        lines.append(number)
    return rows, lines


def _kind(value: Any) -> str:
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "value"


def _mixed_field(rows: list[dict[str, Any]], prefix: str = "") -> str | None:
    """The first field (``a.b`` for nested objects) whose values are objects in some records
    and arrays or plain values in others (null fits everything)."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None:
                kinds.setdefault(key, set()).add(_kind(value))
    for key, seen in kinds.items():
        if len(seen) > 1:
            return f"{prefix}{key}"
        if seen == {"object"}:
            nested = [r[key] for r in rows if isinstance(r.get(key), dict)]
            found = _mixed_field(nested, f"{prefix}{key}.")
            if found:
                return found
        if seen == {"array"}:
            items = [v for r in rows if isinstance(r.get(key), list) for v in r[key]]
            item_kinds = {_kind(v) for v in items if v is not None}
            if len(item_kinds) > 1:
                return f"{prefix}{key}"
            objects = [v for v in items if isinstance(v, dict)]
            found = _mixed_field(objects, f"{prefix}{key}.") if objects else None
            if found:
                return found
    return None


def read_json_text(
    path: Path, *, label: str | None = None, records: str | None = None, ndjson: bool | None = None
) -> ReadResult:
    """Read JSON or NDJSON (decided by ``ndjson`` or the ``.ndjson``/``.jsonl`` extension).

    ``records`` names the key holding the record array when the top level is an object.
    """
    require_file(path)
    check_file_size(path, MAX_JSON_FILE_BYTES, "a JSON file")
    if ndjson is None:
        ndjson = path.suffix.lower() in (".ndjson", ".jsonl")
    try:
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
        text = data.decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start})", hint="JSON files are UTF-8"
        ) from None
    brackets = _check_shape(data, path)
    row_numbers: list[int] | None = None
    if ndjson:
        rows, row_numbers = _ndjson_rows(text, path)
        counted = brackets.objects_at(1)
    else:
        try:
            rows = _loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
            ) from None
        except RepeatedKeyError as exc:
            raise InputError(f"{path}: {exc.describe()}", hint=REPEATED_KEY_HINT) from None
        except RecursionError:  # unreachable below the depth limit; kept as a guard
            raise InputError(f"{path}: nested too deeply") from None
        counted = brackets.objects_at(2)
        if isinstance(rows, dict):
            arrays = [k for k, v in rows.items() if isinstance(v, list)]
            if records is None:
                if len(arrays) != 1:
                    raise InputError(
                        f"{path}: top-level object; say which key holds the records",
                        hint="set 'records' on the source",
                    )
                records = arrays[0]
            if records not in arrays:
                raise InputError(
                    f"{path}: no array under the key '{records[:40]}'",
                    hint=f"keys holding arrays: {', '.join(a[:40] for a in arrays[:8])}",
                )
            counted = brackets.objects_in_array(arrays.index(records))
            rows = rows[records]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(
                f"{path}: expected a list of JSON objects (one per record)",
                hint="set 'records' to the key of the record array",
            )
    try:
        frame = pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()
        frame = flatten_structs(to_text(frame))
    except UnicodeEncodeError:
        # JSON may escape half of a UTF-16 pair ("\ud800"), which is no character of any text.
        raise InputError(
            f"{path}: a value holds a lone UTF-16 surrogate escape (such as \\ud800), which is "
            "no character",
            hint="export the file again as UTF-8, with whole characters",
        ) from None
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
        # polars' message quotes the values it could not fit: name the field instead.
        field = _mixed_field(rows)
        raise InputError(
            f"{path}: the records disagree on the shape of "
            + (f"field '{field[:60]}'" if field else "a field"),
            hint="a field holds an object in some records and text or an array in others",
        ) from None
    check_names(frame.columns, str(path))
    frame = with_lineage(frame, label or path.name, 1)
    if row_numbers is not None:
        frame = frame.with_columns(pl.Series("source_row", row_numbers, dtype=pl.Int64))
    result = ReadResult(frame=frame, records=counted)
    check_cell_sizes(result.frame, str(path))
    return result
