"""The committed corpus of hostile submissions (corpus_cases.py) through ``cartreg ingest``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.corpus_cases import CASES, CORPUS
from tests.fuzz.harness import (
    Outcome,
    check_contract,
    check_no_identifiers,
    check_reconciliation,
    ingest_args,
    run_in_process,
    run_subprocess,
)
from tests.fuzz.sites import PLANTED

INDEX: dict[str, dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text("utf-8"))
# A few cases also run as a real process: the exit code and stderr a shell sees.
SUBPROCESS = (
    "parquet-damaged-pages",
    "json-nested-500-deep",
    "csv-truncated-mid-line",
    "symlink-out-of-the-folder",
)


def test_corpus_index_matches_its_builder() -> None:
    assert sorted(INDEX) == sorted(CASES)
    for name, (_build, expect) in CASES.items():
        assert INDEX[name] == json.loads(json.dumps(expect)), name
        assert (CORPUS / name / "mapping.yaml").is_file(), name


def _prepare(name: str, tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(CORPUS / name, site, symlinks=True)
    for link, target in INDEX[name].get("links", {}).items():
        (site / link).symlink_to(target)
    return site


def _check(name: str, outcome: Outcome, out: Path) -> None:
    expect = INDEX[name]
    check_contract(outcome)
    assert outcome.code in expect["exit"], (outcome, expect)
    if "error" in expect:
        assert expect["error"] in outcome.stderr, outcome.stderr
    if outcome.code in (0, 1):
        check_reconciliation(out)
        found = {f["rule_id"] for f in json.loads((out / "findings.json").read_text("utf-8"))}
        assert set(expect.get("findings", [])) <= found, (found, expect)
        manifest = json.loads((out / "manifest.json").read_text("utf-8"))
        rows = {s["file"]: s["rows_read"] for s in manifest["sources"]}
        for file, count in expect.get("rows", {}).items():
            assert rows[file] == count, rows
    check_no_identifiers(out, outcome, PLANTED)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_corpus_case(name: str, tmp_path: Path) -> None:
    site = _prepare(name, tmp_path)
    out = tmp_path / "out"
    _check(name, run_in_process(ingest_args(site, out)), out)


@pytest.mark.parametrize("name", SUBPROCESS)
def test_corpus_case_in_a_real_process(name: str, tmp_path: Path) -> None:
    site = _prepare(name, tmp_path)
    out = tmp_path / "out"
    _check(name, run_subprocess(ingest_args(site, out)), out)
