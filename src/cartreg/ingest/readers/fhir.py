"""HL7 FHIR (R4-style) resources as text, one resourceType at a time.

A bundle (``{"resourceType": "Bundle", "entry": [{"fullUrl": …, "resource": {…}}]}``), a JSON
array of resources or an NDJSON file of them (a bulk-data export) holds records of different
shapes: a Patient and an Observation share almost no field, and an element may be an object in
one resource type and an array in another (``category``). Read together they have no common
type, so a source reads **one resourceType** (``resource: Observation``); within it:

* objects become ``parent.child`` columns and arrays stay list columns, as for JSON; an element
  written as an object in one resource and as an array in another is read as an array;
* every field inside an array of objects is also offered as a list column named by its path
  (``code.coding.code`` holds the codes of every coding of ``code``), so a resource is selected
  by ``contains`` and a single-element list read as one value;
* references (``subject.reference``) are rewritten to ``Type/id`` when they name a resource of
  the bundle by its ``fullUrl`` (``urn:uuid:…``) or by an absolute URL, so
  ``{from: subject.reference, extract: "^Patient/(.+)$"}`` gives the patient id however the
  bundle wrote it, and a ``join`` finds the resource a reference names.

The source row is the entry's 1-based position in the bundle (the line for NDJSON). Numbers and
booleans are read as the text in the file.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cartreg.errors import InputError, did_you_mean
from cartreg.ingest.readers.base import ReadResult, require_file, to_text, with_lineage
from cartreg.ingest.readers.json import REPEATED_KEY_HINT, RepeatedKeyError, _loads
from cartreg.ingest.transforms.reshape import flatten_structs

# Elements of a resource that identify a person: never copied (with every field under them).
IDENTIFYING_ELEMENTS = frozenset(
    {"identifier", "name", "telecom", "address", "contact", "photo", "link"}
)
_RELATIVE = re.compile(r"([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$")
_MAX_DEPTH = 64


@dataclass(frozen=True)
class Entry:
    row: int  # 1-based position in the bundle (line for NDJSON)
    resource: dict[str, Any]


@dataclass(frozen=True)
class Resources:
    """The resources of a file by type, references rewritten, and document-level fields."""

    by_type: dict[str, list[Entry]]
    document: dict[str, Any]

    def types(self) -> list[str]:
        return sorted(self.by_type)


def is_fhir_document(path: Path) -> bool:
    """Whether a JSON file is a FHIR bundle or an array/NDJSON of resources (a quick look)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r'"resourceType"\s*:\s*"[A-Z]', head))


def read_fhir(path: Path, *, resource: str, label: str | None = None) -> ReadResult:
    """The resources of type ``resource`` as a text frame (see the module docstring)."""
    resources = load_resources(path)
    entries = resources.by_type.get(resource, [])
    if not entries and resources.by_type and resource not in resources.by_type:
        found = resources.types()
        hint = did_you_mean(resource, found) or f"resource types: {', '.join(found)}"
        raise InputError(f"{path}: no {resource} resources", hint=hint)
    label = label or f"{path.name}#{resource}"
    records = _as_arrays([e.resource for e in entries], resource, path)
    try:
        frame = pl.from_dicts(records, infer_schema_length=None) if records else pl.DataFrame()
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise InputError(
            f"{path}: {resource} resources of inconsistent shape ({str(exc).splitlines()[0]})"
        ) from None
    frame = with_projections(flatten_structs(to_text(frame)))
    if frame.is_empty():
        frame = pl.DataFrame(schema={"resourceType": pl.String, "id": pl.String})
    rows = pl.Series("source_row", [e.row for e in entries], dtype=pl.Int64)
    frame = with_lineage(frame, label, 1).with_columns(rows)
    return ReadResult(frame=frame)


def identifying_columns(columns: list[str]) -> set[str]:
    """Columns under an element that identifies a person (``name.family``, ``identifier``)."""
    return {c for c in columns if c.split(".", 1)[0] in IDENTIFYING_ELEMENTS}


def resource_reference(frame: pl.DataFrame) -> pl.Expr:
    """Each resource's own reference, ``Type/id``: what other resources' references hold."""
    return pl.concat_str(pl.col("resourceType"), pl.lit("/"), pl.col("id"))


def document_value(path: Path, dotted: str) -> str | None:
    """The text at ``a.b`` of a JSON document, outside its records (None when absent)."""
    value: Any = load_resources(path).document if is_fhir_document(path) else _document(path)
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, dict | list):
        raise InputError(f"{path}: '{dotted}' is not a single value")
    return None if value is None else str(value)


def _document(path: Path) -> Any:
    require_file(path)
    try:
        return _loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    except RepeatedKeyError as exc:
        raise InputError(f"{path}: {exc.describe()}", hint=REPEATED_KEY_HINT) from None


def load_resources(path: Path) -> Resources:
    """The resources of a file, read once per version of the file."""
    require_file(path)
    stat = path.stat()
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load(path_text: str, mtime_ns: int, size: int) -> Resources:
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    entries: list[tuple[int, str | None, Any]] = []
    document: dict[str, Any] = {}
    try:
        if path.suffix.lower() in (".ndjson", ".jsonl"):
            for number, line in enumerate(text.split("\n"), start=1):
                if line.strip():
                    entries.append((number, None, _loads(line)))
        else:
            parsed = _loads(text)
            if isinstance(parsed, list):
                entries = [(i, None, r) for i, r in enumerate(parsed, start=1)]
            elif isinstance(parsed, dict) and parsed.get("resourceType") == "Bundle":
                document = {k: v for k, v in parsed.items() if k != "entry"}
                for i, entry in enumerate(parsed.get("entry") or [], start=1):
                    if not isinstance(entry, dict):
                        raise InputError(f"{path}: entry {i} of the bundle is not an object")
                    entries.append((i, entry.get("fullUrl"), entry.get("resource")))
            elif isinstance(parsed, dict) and "resourceType" in parsed:
                entries = [(1, None, parsed)]
            else:
                raise InputError(
                    f"{path}: not a FHIR bundle, array or NDJSON of resources",
                    hint='a bundle is {"resourceType": "Bundle", "entry": [...]}',
                )
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RepeatedKeyError as exc:
        raise InputError(f"{path}: {exc.describe()}", hint=REPEATED_KEY_HINT) from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None
    keys: dict[str, str] = {}
    for row, full_url, resource in entries:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise InputError(f"{path}: entry {row} has no resource with a resourceType")
        own = f"{resource['resourceType']}/{resource.get('id', '')}"
        keys[own] = own
        if isinstance(full_url, str) and full_url:
            keys[full_url] = own
    by_type: dict[str, list[Entry]] = {}
    for row, _, resource in entries:
        _rewrite_references(resource, keys, 0, path)
        by_type.setdefault(resource["resourceType"], []).append(Entry(row, resource))
    return Resources(by_type, document)


def _rewrite_references(node: Any, keys: dict[str, str], depth: int, path: Path) -> None:
    """References to resources of the bundle, in place, as ``Type/id``."""
    if depth > _MAX_DEPTH:
        raise InputError(f"{path}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str):
            node["reference"] = _canonical(reference, keys)
        for value in node.values():
            if isinstance(value, dict | list):
                _rewrite_references(value, keys, depth + 1, path)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                _rewrite_references(value, keys, depth + 1, path)


def _canonical(reference: str, keys: dict[str, str]) -> str:
    if reference in keys:
        return keys[reference]
    match = _RELATIVE.search(reference)
    if match is not None and match.group(1) in keys:
        return keys[match.group(1)]
    return reference


def _paths(node: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """(path, kind) of every element: kind is object, array or value; array elements share
    their array's path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                continue
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, list):
                yield name, "array"
                for item in value:
                    if isinstance(item, dict):
                        yield from _paths(item, name)
                    elif item is not None:
                        yield f"{name}[]", "array" if isinstance(item, list) else "value"
            elif isinstance(value, dict):
                yield name, "object"
                yield from _paths(value, name)
            else:
                yield name, "value"


def _as_arrays(records: list[dict[str, Any]], resource: str, path: Path) -> list[dict[str, Any]]:
    """Records where an element that is an array in some resource is an array in all."""
    kinds: dict[str, set[str]] = {}
    for record in records:
        for name, kind in _paths(record, ""):
            kinds.setdefault(name, set()).add(kind)
    arrays = {name for name, seen in kinds.items() if "array" in seen}
    for name, seen in kinds.items():
        if {"object", "value"} <= seen:
            raise InputError(
                f"{path}: {resource}.{name} is an object in some resources and a single value "
                "in others",
                hint="export one shape for each element",
            )
    if not any(len(seen) > 1 for seen in kinds.values()):
        return records
    return [_wrapped(record, "", arrays) for record in records]


def _wrapped(node: dict[str, Any], prefix: str, arrays: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            value = _wrapped(value, name, arrays)
            out[key] = [value] if name in arrays else value
        elif isinstance(value, list):
            out[key] = [_wrapped(v, name, arrays) if isinstance(v, dict) else v for v in value]
        elif value is not None and name in arrays:
            out[key] = [value]
        else:
            out[key] = value
    return out


def with_projections(frame: pl.DataFrame) -> pl.DataFrame:
    """``x.f`` list columns for every field ``f`` inside the array of objects ``x``."""
    added: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
            added += [e.alias(n) for n, e in _leaves(pl.col(name), dtype.inner, name)]
    taken = set(frame.columns)
    added = [e for e in added if e.meta.output_name() not in taken]
    return frame.with_columns(added) if added else frame


def _leaves(items: pl.Expr, struct: pl.Struct, prefix: str) -> Iterator[tuple[str, pl.Expr]]:
    """(path, list of values) of every scalar field of a list of objects, arrays flattened."""
    for field in struct.fields:
        name = f"{prefix}.{field.name}"
        inner: Any = field.dtype
        values = items.list.eval(pl.element().struct.field(field.name))
        if isinstance(inner, pl.List):
            values = items.list.eval(pl.element().struct.field(field.name).explode())
            inner = inner.inner
        if isinstance(inner, pl.Struct):
            yield from _leaves(values, inner, name)
        elif not isinstance(inner, pl.List):
            yield name, values.list.drop_nulls()
