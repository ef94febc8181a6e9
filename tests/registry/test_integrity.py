"""A damaged or foreign registry file is refused before anything is written (exit 2, one line).

Faults are made the way they happen: garbage written over the DuckDB file's data blocks, a file
that is an SQLite database, a lock path that is a folder, an empty or truncated file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from cartreg.registry import init_registry, open_registry
from cartreg.registry.store import (
    RegistryCorruptError,
    RegistryError,
    connect_duckdb,
    verify_store,
)
from tests.registry.helpers import MakeOutput, combine, damage, data_blocks, patient

SITE = "SITE_A"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartreg", *args], capture_output=True, text=True, timeout=120
    )


def assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    where = lines[0].removeprefix("error: ").split(": ", 1)[0]  # the file named
    assert len(lines[0]) - len(where) <= 200, lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_garbage_in_any_data_block_is_refused_before_a_write(stored: Path) -> None:
    blocks = data_blocks(stored)
    assert {"cdm_patients", "submissions", "submission_files"} <= set().union(*blocks.values())
    clean = stored.read_bytes()
    for offset, tables in sorted(blocks.items()):
        stored.write_bytes(clean)
        damage(stored, offset)
        before = sha(stored)
        with (
            pytest.raises(RegistryCorruptError, match="registry file is corrupt"),
            open_registry(stored, write=True) as reg,
        ):
            reg.conn.execute("INSERT INTO registry_meta VALUES ('x', 'y')")
        assert sha(stored) == before, tables


def test_a_corrupt_registry_takes_no_submit_and_reads_fail_cleanly(
    stored: Path, make_output: MakeOutput, mapping_file: Path, tmp_path: Path
) -> None:
    offset = next(o for o, t in data_blocks(stored).items() if "cdm_patients" in t)
    damage(stored, offset)
    before = sha(stored)
    out = make_output(SITE, combine(*(patient(SITE, k) for k in "123")))
    registry = ("--registry", str(stored))
    store = cli(
        "registry", "store", str(out), "--site", SITE, "--mapping", str(mapping_file), *registry
    )
    assert_one_line_exit_2(store, "registry file is corrupt", "nothing written")
    merge = cli("registry", "merge", "--out", str(tmp_path / "m"), "--no-pseudonyms", *registry)
    assert_one_line_exit_2(merge, "registry file is corrupt")
    assert_one_line_exit_2(cli("registry", "diff", "--site", SITE, *registry), "corrupt")
    assert_one_line_exit_2(cli("registry", "verify", *registry), "corrupt", "cdm_patients")
    assert sha(stored) == before
    assert not (tmp_path / "m").exists()


def test_a_truncated_registry_is_refused(stored: Path) -> None:
    size = stored.stat().st_size
    with stored.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(RegistryCorruptError), open_registry(stored, write=True):
        pass


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"", "an empty file"), (b"site_id,patient\nA,1\n", "not a DuckDB file")],
)
def test_a_file_that_is_no_duckdb_database_is_refused(
    tmp_path: Path, content: bytes, what: str
) -> None:
    path = tmp_path / "registry.duckdb"
    path.write_bytes(content)
    for write in (False, True):
        with pytest.raises(RegistryError, match=what), open_registry(path, write=write):
            pass
    with pytest.raises(RegistryError, match=what):
        init_registry(path)
    assert path.read_bytes() == content


def test_an_sqlite_database_is_refused_without_touching_the_network(tmp_path: Path) -> None:
    path = tmp_path / "registry.duckdb"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE submissions (id INTEGER)")
    content = path.read_bytes()
    for args in (
        ("registry", "status", "--registry", str(path)),
        ("registry", "init", str(path)),
        ("registry", "backup", str(tmp_path / "b.duckdb"), "--registry", str(path)),
    ):
        assert_one_line_exit_2(cli(*args), "an SQLite database, not a cartreg registry")
    assert path.read_bytes() == content
    # The connections cartreg makes can neither load nor install an extension, and cannot be
    # told to: DuckDB answers "install it first" instead of downloading it.
    conn = connect_duckdb(tmp_path / "fresh.duckdb", read_only=False)
    settings = conn.execute(
        "SELECT current_setting('autoload_known_extensions'), "
        "current_setting('autoinstall_known_extensions'), current_setting('lock_configuration')"
    ).fetchone()
    assert settings == (False, False, True)
    with pytest.raises(duckdb.Error, match=r"(?i)configuration has been locked"):
        conn.execute("SET autoinstall_known_extensions = true")
    with pytest.raises(duckdb.Error) as caught:
        conn.execute("ATTACH ? AS other", [str(path)])
    assert "download" not in str(caught.value).lower()
    conn.close()


def test_a_lock_path_that_is_a_folder_is_a_clear_error(stored: Path) -> None:
    lock = stored.with_name(stored.name + ".lock")
    lock.unlink()
    lock.mkdir()
    for write in (False, True):
        with (
            pytest.raises(RegistryError, match="lock file is a folder"),
            open_registry(stored, write=write),
        ):
            pass
    assert_one_line_exit_2(
        cli("registry", "status", "--registry", str(stored)), "lock file is a folder"
    )


def test_verify_reads_every_table_the_catalog_lists(stored: Path) -> None:
    """Tables added later (by a migration, e.g. query tables) are verified without a list."""
    with open_registry(stored, write=True) as reg:
        reg.conn.execute("CREATE TABLE queries AS SELECT range AS id FROM range(10)")
        digests = verify_store(reg.conn, stored)
    assert digests["queries"][0] == 10
    assert {"submissions", "cdm_patients", "registry_meta"} <= set(digests)
