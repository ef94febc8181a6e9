"""Fuzzing every reader and the mapping loader through ``cartreg ingest`` (see harness.py).

The number of cases per reader comes from ``CARTREG_FUZZ_EXAMPLES`` (default: a small CI
budget); ``make fuzz`` runs 10,000 per reader. Each case is a base site (sites.py) whose data
file or mapping is damaged by a mutator (mutators.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fuzz import mutators
from tests.fuzz.harness import (
    check_contract,
    check_no_identifiers,
    check_reconciliation,
    ingest_args,
    run_in_process,
)
from tests.fuzz.sites import (
    HEADER,
    IDENTIFIER_COLUMNS,
    PATIENTS,
    PLANTED,
    SITES,
    VALUE_DETECTABLE,
    parquet_frame,
)

EXAMPLES = int(os.environ.get("CARTREG_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("CARTREG_FUZZ_SEED") is None and EXAMPLES <= 50,
    database=None,
)


def run_case(reader: str, damage: Callable[[Path], tuple[str, ...]], kind: str = "") -> None:
    """Write the base site of ``reader``, let ``damage`` change it (returning the planted values
    the case can promise to keep out of the outputs), ingest it and check every promise."""
    site = SITES[reader]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cartreg-fuzz-") as tmp:
        folder = site.write(Path(tmp) / "site")
        planted = damage(folder)
        out = Path(tmp) / "out"
        outcome = run_in_process(ingest_args(folder, out))
        check_contract(outcome)
        findings: list[str] = []
        if outcome.code in (0, 1):
            check_reconciliation(out)
            records = json.loads((out / "findings.json").read_text(encoding="utf-8"))
            findings = sorted({f["rule_id"] for f in records})
        check_no_identifiers(out, outcome, planted)
    log_case(kind or reader, outcome.code, time.perf_counter() - started, findings)


def log_case(test: str, code: int, seconds: float, findings: list[str]) -> None:
    """One JSON line per case in ``$CARTREG_FUZZ_LOG`` (make fuzz summarizes it)."""
    log = os.environ.get("CARTREG_FUZZ_LOG")
    if log:
        entry = {"test": test, "exit": code, "seconds": round(seconds, 4), "findings": findings}
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


# Each planted value and the identifier column (or JSON key) it was written under.
PLANTED_COLUMN = {
    value: column
    for row in PATIENTS
    for value, column in zip(row[1:4], IDENTIFIER_COLUMNS, strict=True)
}


def in_place(reader: str, original: bytes, damaged: bytes) -> tuple[str, ...]:
    """The planted values the case can promise to keep out of every output: those still under
    their identifier-named column (header or key intact) everywhere they occur.

    Byte-level damage can also copy a name into a date cell or cut an e-mail into a longer
    value of another column. Recognizing such a value wherever it lands is the identifier
    detection's job (value scans), not the reader's; those values are left out of the promise
    here (see docs/fuzzing.md).
    """
    if reader in ("json", "ndjson"):
        return tuple(
            value
            for value, key in PLANTED_COLUMN.items()
            if damaged.count(value.encode()) == damaged.count(f'"{key}": "{value}"'.encode())
        )
    separator = "\t" if reader == "tsv" else ","
    header = original.split(b"\n", 1)[0].decode()
    text = damaged.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    first, *lines = text.split("\n")
    if first != header:
        return ()
    names = header.split(separator)
    kept = []
    for value, column in PLANTED_COLUMN.items():
        places = [line.split(separator) for line in lines if value in line]
        index = names.index(column)
        if all(len(cells) == len(names) and cells[index] == value for cells in places):
            kept.append(value)
    return tuple(kept)


@pytest.mark.parametrize("reader", ["csv", "tsv", "redcap", "json", "ndjson"])
def test_damaged_text_exports(reader: str) -> None:
    kind = "json" if reader == "json" else reader

    @FUZZ
    @given(edit=mutators.text_mutations(kind))
    def case(edit: mutators.Edits) -> None:
        def damage(folder: Path) -> tuple[str, ...]:
            path = folder / SITES[reader].data_file
            original = path.read_bytes()
            damaged = edit(original)
            path.write_bytes(damaged)
            return in_place(reader, original, damaged)

        run_case(reader, damage)

    case()


# Cases the 10,000-per-reader run of 2026-12-06 found, kept so every run checks them again.
FOUND_WORKBOOK = 16694705  # a zip header asking for version 20.3: exit 3
FOUND_PARQUET = (
    196413,  # patient_name only inside a struct (nested.patient_name): copied to quarantine
    589059387,  # text that is not UTF-8: a date parse panicked (second run)
    470,  # a metadata key that is not UTF-8: polars panicked taking the table (second run)
)
FOUND_MAPPING = 5187  # a 500-byte file name: OSError, exit 3


def test_damaged_workbooks() -> None:
    found = mutators.Built(
        "workbook",
        FOUND_WORKBOOK,
        *mutators.build_workbook(FOUND_WORKBOOK, HEADER, PATIENTS, IDENTIFIER_COLUMNS),
    )

    @FUZZ
    @given(book=mutators.workbooks(HEADER, PATIENTS, IDENTIFIER_COLUMNS))
    @example(book=found)
    def case(book: mutators.Built) -> None:
        def damage(folder: Path) -> tuple[str, ...]:
            (folder / SITES["excel"].data_file).write_bytes(book.data)
            return PLANTED if book.intact else VALUE_DETECTABLE

        run_case("excel", damage)

    case()


def test_damaged_parquet_files() -> None:
    found = [
        mutators.Built("parquet", seed, mutators.build_parquet(seed, parquet_frame()))
        for seed in FOUND_PARQUET
    ]

    @FUZZ
    @given(built=mutators.parquet_files(parquet_frame()))
    @example(built=found[0])
    @example(built=found[1])
    @example(built=found[2])
    def case(built: mutators.Built) -> None:
        def damage(folder: Path) -> tuple[str, ...]:
            (folder / SITES["parquet"].data_file).write_bytes(built.data)
            return PLANTED

        run_case("parquet", damage)

    case()


def _mapping_text(reader: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return (SITES[reader].write(Path(tmp)) / "mapping.yaml").read_text(encoding="utf-8")


def test_damaged_mappings() -> None:
    bases = {reader: _mapping_text(reader) for reader in ("csv", "redcap", "json")}

    @FUZZ
    @given(reader=st.sampled_from(sorted(bases)), seed=st.integers(0, 2**32 - 1))
    @example(reader="redcap", seed=FOUND_MAPPING)
    def case(reader: str, seed: int) -> None:
        text = mutators.mapping_text(seed, bases[reader])

        def damage(folder: Path) -> tuple[str, ...]:
            (folder / "mapping.yaml").write_text(text, encoding="utf-8")
            # A link inside the folder pointing outside it, for mappings that name it.
            (folder / "link_out.csv").symlink_to("/etc/passwd")
            return PLANTED

        run_case(reader, damage, kind=f"mapping ({reader})")

    case()
