from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from cartreg.registry.store import (
    MIGRATIONS,
    STORE_SCHEMA_VERSION,
    Migration,
    RegistryError,
    RegistryLockedError,
    _file_lock,
    init_registry,
    open_registry,
)

ALL = [m.version for m in MIGRATIONS]
NEXT = ALL[-1] + 1


def test_init_creates_versioned_store_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "reg.duckdb"
    assert init_registry(path) == ALL
    assert init_registry(path) == []
    with open_registry(path) as reg:
        assert reg.schema_version == STORE_SCHEMA_VERSION == ALL[-1]
        applied = reg.conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert applied == [(v,) for v in ALL]


def test_missing_registry_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(RegistryError, match="registry not found"),
        open_registry(tmp_path / "x.duckdb"),
    ):
        pass


def test_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reg.duckdb"
    init_registry(path)
    conn = duckdb.connect(str(path))
    conn.execute("UPDATE registry_meta SET value = '99' WHERE key = 'store_schema_version'")
    conn.close()
    for write in (False, True):
        with (
            pytest.raises(RegistryError, match="newer than this cartreg"),
            open_registry(path, write=write),
        ):
            pass


def test_foreign_duckdb_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    with pytest.raises(RegistryError, match="not a cartreg registry"), open_registry(path):
        pass
    with pytest.raises(RegistryError, match="not a cartreg registry"):
        init_registry(path)


def test_older_store_is_migrated_by_a_writer_and_refused_by_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "reg.duckdb"
    init_registry(path)
    newer = (*MIGRATIONS, Migration(NEXT, "add notes", ("CREATE TABLE notes (note VARCHAR)",)))
    with (
        pytest.raises(RegistryError, match="older than this cartreg"),
        open_registry(path, migrations=newer),
    ):
        pass
    with open_registry(path, write=True, migrations=newer) as reg:
        assert reg.schema_version == NEXT
        assert reg.scalar("SELECT count(*) FROM notes") == 0
    with open_registry(path, migrations=newer) as reg:
        assert [
            r[0]
            for r in reg.conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        ] == [*ALL, NEXT]


def test_failed_migration_leaves_store_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "reg.duckdb"
    init_registry(path)
    broken = (*MIGRATIONS, Migration(NEXT, "broken", ("CREATE TABLE ok (x INT)", "NOT SQL")))
    with pytest.raises(duckdb.Error), open_registry(path, write=True, migrations=broken):
        pass
    with open_registry(path) as reg:
        assert reg.schema_version == STORE_SCHEMA_VERSION
        tables = {
            r[0]
            for r in reg.conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        assert "ok" not in tables


def test_second_writer_waits_then_fails_clearly_on_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "reg.duckdb"
    init_registry(path)
    with _file_lock(path, exclusive=True, timeout=1):
        with (
            pytest.raises(RegistryLockedError, match="in use by another cartreg process"),
            open_registry(path, write=True, lock_timeout=0.3),
        ):
            pass
        with pytest.raises(RegistryLockedError), open_registry(path, lock_timeout=0.3):
            pass
    with open_registry(path, write=True, lock_timeout=0.3) as reg:  # released
        assert reg.writable


def test_duckdb_file_lock_held_by_another_program_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "reg.duckdb"
    init_registry(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
            " time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with (
            pytest.raises(RegistryLockedError, match="held open by another process"),
            open_registry(path, write=True, lock_timeout=0.1),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
