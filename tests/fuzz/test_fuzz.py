"""Fuzzing every reader and the mapping loader through ``cartreg ingest`` (see harness.py).

The number of cases per reader comes from ``CARTREG_FUZZ_EXAMPLES`` (default: a small CI
budget); ``make fuzz`` runs 10,000 per reader. Each case is a base site (sites.py) whose data
file or mapping is damaged by a mutator (mutators.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
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


def run_case(reader: str, damage: Callable[[Path], tuple[str, ...]]) -> None:
    """Write the base site of ``reader``, let ``damage`` change it (returning the planted values
    the case can promise to keep out of the outputs), ingest it and check every promise."""
    site = SITES[reader]
    with tempfile.TemporaryDirectory(prefix="cartreg-fuzz-") as tmp:
        folder = site.write(Path(tmp) / "site")
        planted = damage(folder)
        out = Path(tmp) / "out"
        outcome = run_in_process(ingest_args(folder, out))
        check_contract(outcome)
        if outcome.code in (0, 1):
            check_reconciliation(out)
        check_no_identifiers(out, outcome, planted)


def _header_kept(original: bytes, damaged: bytes) -> bool:
    """Whether the identifier columns still have their names (a name is only recognized by
    its column's name)."""
    first = original.split(b"\n", 1)[0]
    return damaged.split(b"\n", 1)[0] == first or damaged.startswith(first + b"\r")


def _keys_kept(original: bytes, damaged: bytes) -> bool:
    return all(
        damaged.count(f'"{k}"'.encode()) == original.count(f'"{k}"'.encode())
        for k in IDENTIFIER_COLUMNS
    )


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
            kept = _keys_kept if reader in ("json", "ndjson") else _header_kept
            return PLANTED if kept(original, damaged) else VALUE_DETECTABLE

        run_case(reader, damage)

    case()


def test_damaged_workbooks() -> None:
    @FUZZ
    @given(book=mutators.workbooks(HEADER, PATIENTS, IDENTIFIER_COLUMNS))
    def case(book: mutators.Built) -> None:
        def damage(folder: Path) -> tuple[str, ...]:
            (folder / SITES["excel"].data_file).write_bytes(book.data)
            return PLANTED if book.intact else VALUE_DETECTABLE

        run_case("excel", damage)

    case()


def test_damaged_parquet_files() -> None:
    @FUZZ
    @given(built=mutators.parquet_files(parquet_frame()))
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
    def case(reader: str, seed: int) -> None:
        text = mutators.mapping_text(seed, bases[reader])

        def damage(folder: Path) -> tuple[str, ...]:
            (folder / "mapping.yaml").write_text(text, encoding="utf-8")
            # A link inside the folder pointing outside it, for mappings that name it.
            (folder / "link_out.csv").symlink_to("/etc/passwd")
            return PLANTED

        run_case(reader, damage)

    case()
