"""Verified copies of a registry: ``backup`` (registry → new file) and ``restore`` (back).

A copy is made by DuckDB (``COPY FROM DATABASE``) under the registry lock, so it holds exactly
the committed state, including transactions still in the write-ahead log, and every constraint
and view of the store. It is written to a temporary file next to its destination, checked, and
only then renamed into place. Checked means: the copy opens as a registry of the same store
schema version, every data block of it reads back (:func:`~cartreg.registry.store.verify_store`),
and every table has the same row count and content digest as in the source.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartreg.registry.store import (
    DEFAULT_LOCK_TIMEOUT,
    MIGRATIONS,
    RegistryError,
    _connect,
    _file_lock,
    _stored_version,
    connect_duckdb,
    now_utc,
    open_registry,
    reporting_corruption,
    verify_store,
)
from cartreg.registry.submit import sha256_file

Digests = dict[str, tuple[int, tuple[Any, ...]]]


@dataclass(frozen=True)
class CopyResult:
    """A verified copy: where it is, its tables' row counts, and the file's sha256."""

    path: Path
    rows: dict[str, int]
    sha256: str
    replaced: Path | None = None  # restore: where the registry it replaced was moved

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_verified(source: Path, expected: Digests, target: Path) -> CopyResult:
    """Copy the database ``source`` to ``target`` (which must not exist) and check the copy
    against ``expected``; on any failure the partial copy is removed."""
    temp = Path(tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)[1])
    temp.unlink()  # DuckDB creates the file itself
    try:
        conn = connect_duckdb(":memory:", read_only=False)
        try:
            with reporting_corruption(source):
                conn.execute("ATTACH ? AS cartreg_source (READ_ONLY)", [str(source)])
                conn.execute("ATTACH ? AS cartreg_copy", [str(temp)])
                conn.execute("COPY FROM DATABASE cartreg_source TO cartreg_copy")
                conn.execute("DETACH cartreg_copy")  # checkpoints: one file, no WAL
        finally:
            conn.close()
        got = _file_digests(temp)
        if got != expected:
            differing = sorted(
                set(got) ^ set(expected) | {t for t in got if got[t] != expected.get(t)}
            )
            raise RegistryError(
                f"the copy differs from the registry in {', '.join(differing[:3])}",
                where=str(target),
                hint="nothing was written; check the disk and retry",
            )
        _fsync(temp)
        os.replace(temp, target)
        _fsync(target.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        Path(f"{temp}.wal").unlink(missing_ok=True)
        raise
    return CopyResult(target, {t: n for t, (n, _) in expected.items()}, sha256_file(target))


def _file_digests(path: Path) -> Digests:
    """The digests of a registry file nobody writes (a backup, a fresh copy), without a lock."""
    conn = _connect(path, read_only=True)
    try:
        with reporting_corruption(path):
            version = _stored_version(conn)
            if not version or version > MIGRATIONS[-1].version:
                raise RegistryError(
                    "not a cartreg registry of a store schema version this cartreg knows",
                    where=str(path),
                )
            return verify_store(conn, path)
    finally:
        conn.close()


def _new_file(path: Path) -> Path:
    path = Path(path)
    if path.exists():
        raise RegistryError(
            "backup file exists", where=str(path), hint="give a new file name; backups are kept"
        )
    if not path.parent.is_dir():
        raise RegistryError("folder not found", where=str(path.parent))
    return path


def backup_registry(
    registry: Path | str, target: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> CopyResult:
    """Write a verified copy of ``registry`` to the new file ``target``.

    Runs under the readers' (shared) lock: submits wait until the copy is made, reads go on.
    A registry that fails verification is not copied. A registry of an older store schema
    version is copied as it is (back it up before a newer cartreg upgrades it).
    """
    registry, target = Path(registry), _new_file(Path(target))
    if not registry.is_file():
        raise RegistryError("registry not found", where=str(registry))
    with _file_lock(registry, exclusive=False, timeout=lock_timeout):
        return _copy_verified(registry, _file_digests(registry), target)


def verify_registry(
    registry: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> dict[str, int]:
    """Read every table of ``registry``; its tables' row counts, or RegistryCorruptError."""
    registry = Path(registry)
    with open_registry(registry, lock_timeout=lock_timeout) as reg:
        return {t: n for t, (n, _) in verify_store(reg.conn, registry).items()}


def restore_registry(
    backup: Path | str, registry: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> CopyResult:
    """Replace ``registry`` by a verified copy of ``backup``.

    Under the writers' (exclusive) lock: the backup is verified first; the current registry
    file and its write-ahead log, if any, are moved aside to ``<registry>.replaced-<time>``
    (never deleted: it may hold submissions newer than the backup), then the copy is renamed
    into place. A write-ahead log left behind would be replayed onto the restored file.
    """
    backup, registry = Path(backup), Path(registry)
    if not backup.is_file():
        raise RegistryError("backup file not found", where=str(backup))
    if backup.resolve() == registry.resolve():
        raise RegistryError("the backup is the registry itself", where=str(backup))
    expected = _file_digests(backup)
    with _file_lock(registry, exclusive=True, timeout=lock_timeout):
        stamp = now_utc().strftime("%Y%m%dT%H%M%SZ")
        aside = registry.with_name(f"{registry.name}.replaced-{stamp}")
        staged = registry.with_name(f"{registry.name}.restoring-{stamp}")
        result = _copy_verified(backup, expected, staged)
        replaced: Path | None = None
        if registry.exists():
            os.replace(registry, aside)
            replaced = aside
        wal = Path(f"{registry}.wal")
        if wal.exists():
            os.replace(wal, Path(f"{aside}.wal"))
            replaced = aside
        os.replace(staged, registry)
        _fsync(registry.parent)
    return CopyResult(registry, result.rows, result.sha256, replaced)
