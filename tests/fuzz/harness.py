"""Run one fuzz case through the CLI and check the promises every case must keep.

For every case:

* the exit code is 0, 1 or 2 (3 is a bug, and so is a crash);
* stdout and stderr hold no traceback and no ``panicked`` (Rust panic) text; an exit 2 is one
  line of at most 400 characters;
* when ingest succeeds (0 or 1), every source reconciles: rows harmonized + quarantined =
  rows read = the reader's independent record count, or an ``ING-COUNT`` error says they
  do not;
* no planted identifier value appears in any output file (every byte of every file, and every
  text cell and column name of every Parquet file) nor in stdout or stderr.

Cases run in-process through ``cartreg.cli.main.run`` (the exit-code contract itself), with
the process's file descriptors 1 and 2 redirected, so that text Rust writes directly (a panic
message) is captured too. ``run_subprocess`` runs the same case as a real ``cartreg`` process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cartreg.errors import MESSAGE_LIMIT


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _captured_fds() -> Iterator[list[str]]:
    """Redirect file descriptors 1 and 2 (Python and native writes) to temporary files."""
    out: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as f1, tempfile.TemporaryFile() as f2:
        os.dup2(f1.fileno(), 1)
        os.dup2(f2.fileno(), 2)
        try:
            yield out
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for handle in (f1, f2):
                handle.seek(0)
                out.append(handle.read().decode("utf-8", errors="replace"))


@functools.cache
def _cdm(schemas: str | None) -> object:
    from cartreg.cdm import load_cdm

    return load_cdm(schemas)


@contextlib.contextmanager
def _cached_cdm() -> Iterator[None]:
    """Load the CDM (about 80 YAML files) once per process instead of once per case."""
    from cartreg.cli import common

    original = common.cdm_from_context

    def cached(ctx: object) -> object:
        root = ctx.find_root()  # type: ignore[attr-defined]
        return _cdm((root.obj or {}).get("schemas"))

    common.cdm_from_context = cached  # type: ignore[assignment]
    try:
        yield
    finally:
        common.cdm_from_context = original


def run_in_process(args: Sequence[str]) -> Outcome:
    """``cartreg ARGS`` in this process, with stdout and stderr captured at the fd level."""
    from cartreg.cli import main

    # Python-level streams write to the redirected descriptors too (closefd=False: the
    # descriptors outlive the wrappers, which are flushed when the block ends).
    with (
        _cached_cdm(),
        _captured_fds() as texts,
        open(1, "w", closefd=False) as out,
        open(2, "w", closefd=False) as err,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main.run(list(args))
    return Outcome(code, texts[0], texts[1])


def run_subprocess(args: Sequence[str], timeout: float = 120) -> Outcome:
    proc = subprocess.run(
        [sys.executable, "-m", "cartreg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "RUST_BACKTRACE": "0"},
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def ingest_args(site: Path, out: Path, mapping: Path | None = None) -> list[str]:
    mapping = mapping or site / "mapping.yaml"
    return ["ingest", str(site), "--mapping", str(mapping), "--out", str(out), "--quiet"]


def check_contract(outcome: Outcome) -> None:
    text = outcome.stdout + outcome.stderr
    assert outcome.code in (0, 1, 2), f"exit {outcome.code}: {text[-2000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert "panicked" not in text, text[-3000:]
    if outcome.code == 2:
        lines = outcome.stderr.strip().splitlines()
        assert len(lines) == 1, outcome.stderr
        assert len(lines[0]) <= MESSAGE_LIMIT + len("error: "), lines[0]


def check_reconciliation(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    findings = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    mismatched = {
        f["source_file"]
        for f in findings
        if f["rule_id"] == "ING-COUNT" and f["severity"] == "error"
    }
    for source in manifest["sources"]:
        rows = source["rows_harmonized"] + source["rows_quarantined"]
        assert rows == source["rows_read"], source
        counted = source.get("records_counted")
        assert counted is not None, source
        assert counted == rows or source["file"] in mismatched, (source, findings)


def output_texts(out: Path) -> Iterator[tuple[Path, str]]:
    """Every file under ``out`` as text; Parquet files also as their text cells and names."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path, data.decode("utf-8", errors="replace")
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            yield path, "\n".join(frame.columns)
            text = frame.select(pl.col(pl.String, pl.Categorical).cast(pl.String))
            for column in text.columns:
                values = text.get_column(column).drop_nulls()
                if values.len():
                    yield path, "\n".join(values.to_list())


def check_no_identifiers(out: Path, outcome: Outcome, planted: Sequence[str]) -> None:
    texts = [(Path("<stdout>"), outcome.stdout), (Path("<stderr>"), outcome.stderr)]
    if out.is_dir():
        texts += list(output_texts(out))
    for where, text in texts:
        for value in planted:
            assert value not in text, f"planted identifier {value!r} in {where}"
