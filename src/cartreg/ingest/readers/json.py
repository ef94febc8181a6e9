"""JSON (an array of objects, or an object holding one) and NDJSON as text.

Nested objects become ``parent.child`` columns; arrays stay list columns until a mapping rule
explodes them (``explode: events``). Numbers and booleans are read as the text written in the
file (``1.5``, ``true``). The record number (1-based) is the source row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import InputError
from cartreg.ingest.readers.base import ReadResult, require_file, to_text, with_lineage
from cartreg.ingest.transforms.reshape import flatten_structs


def _text_scalars(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        k: [_BOOL_TEXT.get(x, x) if isinstance(x, bool) else x for x in v]
        if isinstance(v, list)
        else (_BOOL_TEXT[v] if isinstance(v, bool) else v)
        for k, v in obj.items()
    }


_BOOL_TEXT = {True: "true", False: "false"}


def _loads(text: str) -> Any:
    """JSON with every number and boolean as the text written in the file.

    Sites write ``5`` and ``1.5`` (or ``false`` and ``"unknown"``) in one field; typed, those
    records would not fit one column. As text they do, and ``1.50`` stays ``1.50``.
    """
    return json.loads(text, parse_int=str, parse_float=str, object_hook=_text_scalars)


def read_json_text(
    path: Path, *, label: str | None = None, records: str | None = None, ndjson: bool | None = None
) -> ReadResult:
    """Read JSON or NDJSON (decided by ``ndjson`` or the ``.ndjson``/``.jsonl`` extension).

    ``records`` names the key holding the record array when the top level is an object.
    """
    require_file(path)
    if ndjson is None:
        ndjson = path.suffix.lower() in (".ndjson", ".jsonl")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if ndjson:
            rows: Any = [_loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = _loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    if isinstance(rows, dict):
        if records is None:
            arrays = [k for k, v in rows.items() if isinstance(v, list)]
            if len(arrays) != 1:
                raise InputError(
                    f"{path}: top-level object; say which key holds the records",
                    hint="set 'records' on the source",
                )
            records = arrays[0]
        rows = rows.get(records)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: expected a list of JSON objects")
    try:
        frame = pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise InputError(
            f"{path}: inconsistent JSON records ({str(exc).splitlines()[0]})"
        ) from None
    frame = flatten_structs(to_text(frame))
    return ReadResult(frame=with_lineage(frame, label or path.name, 1))
