"""The registry store: one embedded DuckDB file, a versioned store schema, and a writer lock.

Layout (store schema version 3, documented in docs/registry.md; the query tables of version 2
in docs/queries.md and :mod:`cartreg.queries.schema`; the portal's tables of version 3 in
docs/portal.md and :mod:`cartreg.portal.schema`):

* ``registry_meta(key, value)``: ``store_schema_version``, ``created_at``, ``created_by_cartreg``.
* ``schema_migrations(version, description, applied_at, cartreg_version)``: one row per migration.
* ``submissions``: one row per submit (a stored version, or a no-op record).
* ``submission_files``: input files of a submission with their sha256 and row counts.
* ``submission_tables``: rows stored per CDM table and submission.
* ``submission_findings``: the finding records of a submission.
* ``decisions``: audit log of accept / reject decisions.
* ``cdm_<table>``: harmonized rows of every CDM table, with ``submission_id`` first.

Concurrency: DuckDB lets one process open a file read-write. On top of that, writers take an
exclusive ``flock`` on ``<registry>.lock`` and readers a shared one, waiting up to a timeout, so
two submits serialize instead of colliding, and a reader never meets a half-open writer. The OS
drops an ``flock`` when its process dies, so a killed submit never leaves a stale lock.

Integrity: a file is opened only if it carries DuckDB's magic bytes, on a connection that can
neither load nor install extensions (DuckDB 2 otherwise downloads one for a file it does not
recognise, e.g. an SQLite database). Every writer first reads the whole store
(:func:`verify_store`), so a corrupt file is refused before anything is written; a corrupt block
met later, by a reader or inside a write transaction, is the same one-line error.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from cartreg import __version__
from cartreg.errors import CartregError
from cartreg.portal.schema import PORTAL_TABLES
from cartreg.queries.schema import QUERY_TABLES

if TYPE_CHECKING:
    import polars as pl

    from cartreg.cdm import CDM

DEFAULT_REGISTRY = "registry.duckdb"
STORE_SCHEMA_VERSION = 3
DEFAULT_LOCK_TIMEOUT = 30.0
PAUSE_ENV = "CARTREG_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "CARTREG_TEST_PAUSE_FILE"
NOW_ENV = "CARTREG_TEST_NOW"

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
}


class RegistryError(CartregError):
    """The registry file cannot be used (missing, not a registry, too new, locked)."""


class RegistryLockedError(RegistryError):
    """Another process holds the registry."""


class RegistryCorruptError(RegistryError):
    """The registry file's contents fail DuckDB's checksums or cannot be read back."""


@dataclass(frozen=True)
class Migration:
    """One step of the store schema: applied in order, each in the caller's transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


_V1 = (
    "CREATE TABLE registry_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    """CREATE TABLE schema_migrations (
        version INTEGER PRIMARY KEY, description VARCHAR NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL, cartreg_version VARCHAR NOT NULL)""",
    """CREATE TABLE submissions (
        submission_id BIGINT PRIMARY KEY,
        site_id VARCHAR NOT NULL,
        version INTEGER,
        status VARCHAR NOT NULL,
        noop_of BIGINT,
        submitted_at TIMESTAMPTZ NOT NULL,
        submitted_by VARCHAR NOT NULL,
        cartreg_version VARCHAR NOT NULL,
        cdm_version VARCHAR,
        mapping_version VARCHAR,
        mapping_sha256 VARCHAR,
        mapping_text VARCHAR,
        rule_version VARCHAR,
        fail_on VARCHAR NOT NULL,
        inputs_sha256 VARCHAR NOT NULL,
        n_errors BIGINT NOT NULL,
        n_warnings BIGINT NOT NULL,
        n_info BIGINT NOT NULL,
        decision_reason VARCHAR,
        manifest_json VARCHAR NOT NULL,
        UNIQUE (site_id, version))""",
    """CREATE TABLE submission_files (
        submission_id BIGINT NOT NULL, file VARCHAR NOT NULL, sha256 VARCHAR,
        rows_read BIGINT, rows_harmonized BIGINT, rows_quarantined BIGINT)""",
    """CREATE TABLE submission_tables (
        submission_id BIGINT NOT NULL, table_name VARCHAR NOT NULL, n_rows BIGINT NOT NULL)""",
    """CREATE TABLE submission_findings (
        submission_id BIGINT NOT NULL, finding_id VARCHAR, rule_id VARCHAR, severity VARCHAR,
        category VARCHAR, subcategory VARCHAR, "table" VARCHAR, "column" VARCHAR,
        site_id VARCHAR, source_file VARCHAR, source_row BIGINT, value VARCHAR,
        message VARCHAR)""",
    """CREATE TABLE decisions (
        submission_id BIGINT NOT NULL, decided_at TIMESTAMPTZ NOT NULL,
        decided_by VARCHAR NOT NULL, status VARCHAR NOT NULL, reason VARCHAR)""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial store schema", _V1),
    Migration(2, "queries: state, history and finding fingerprints", QUERY_TABLES),
    Migration(3, "portal: users, sessions, site mappings, uploads, merges, audit", PORTAL_TABLES),
)


def pause_point(stage: str) -> None:
    """Test hook: sleep at ``stage`` when ``CARTREG_TEST_PAUSE_AT`` names it (else no-op).

    Lets the kill test stop a submit at a known point; announces the pause by creating the file
    named by ``CARTREG_TEST_PAUSE_FILE``.
    """
    if os.environ.get(PAUSE_ENV) != stage:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(stage, encoding="utf-8")
    time.sleep(float(os.environ.get("CARTREG_TEST_PAUSE_SECONDS", "60")))


def now_utc() -> datetime:
    """The current time in UTC, or the ISO 8601 instant in ``$CARTREG_TEST_NOW``.

    Test hook (like ``CARTREG_TEST_PAUSE_AT``): tests fix the clock per command so that the
    recorded submission and query history times are exact.
    """
    fixed = os.environ.get(NOW_ENV)
    if not fixed:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(fixed)
    except ValueError:
        raise RegistryError(
            f"${NOW_ENV} is not an ISO 8601 time: {fixed!r}", hint="e.g. 2025-03-01T09:00:00Z"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextmanager
def _file_lock(path: Path, *, exclusive: bool, timeout: float) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise RegistryError(
            "the registry's lock file is a folder",
            where=str(lock_path),
            hint="remove that folder; cartreg creates the lock file itself",
        ) from None
    except OSError as exc:
        raise RegistryError(
            f"cannot open the registry's lock file: {exc.strerror}",
            where=str(lock_path),
            hint="the registry's folder must be writable by every user of the registry",
        ) from None
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise RegistryLockedError(
                        f"registry is in use by another cartreg process (waited {timeout:g} s)",
                        where=str(path),
                        hint="retry when the other submit or merge has finished, "
                        "or raise --lock-timeout",
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# DuckDB writes "DUCK" after the 8-byte header checksum of every database file.
_DUCKDB_MAGIC = (8, b"DUCK")
_SQLITE_MAGIC = b"SQLite format 3\x00"
# DuckDB 2 loads (and first downloads) an extension for a file it does not recognise. A registry
# connection needs none: these settings are given at connect time, before the file is opened,
# and then locked so that no later statement can switch them back on.
_NO_EXTENSIONS = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
}


def _check_file_kind(path: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB sees it."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        return  # a new registry
    except OSError as exc:
        raise RegistryError(f"cannot read registry: {exc.strerror}", where=str(path)) from None
    offset, magic = _DUCKDB_MAGIC
    if head[offset : offset + len(magic)] == magic:
        return
    if head.startswith(_SQLITE_MAGIC):
        what = "an SQLite database"
    elif not head:
        what = "an empty file"
    else:
        what = "not a DuckDB file"
    raise RegistryError(
        f"this is {what}, not a cartreg registry",
        where=str(path),
        hint="give the path of a registry made by `cartreg registry init`",
    )


def connect_duckdb(path: Path | str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that cannot load or install extensions (settings locked)."""
    conn = duckdb.connect(str(path), read_only=read_only, config=dict(_NO_EXTENSIONS))
    conn.execute("SET lock_configuration = true")
    return conn


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    _check_file_kind(path)
    try:
        return connect_duckdb(path, read_only=read_only)
    except duckdb.Error as exc:
        if is_corruption(exc, path):
            raise corrupt_error(exc, path) from None
        if isinstance(exc, duckdb.IOException) and "set lock" in str(exc).lower():
            raise RegistryLockedError(
                "registry file is held open by another process",
                where=str(path),
                hint="close the other program (DuckDB shell, notebook) that has it open",
            ) from None
        raise RegistryError(f"cannot open registry: {_first_line(exc)}", where=str(path)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# DuckDB's words for a damaged database file. A read failure counts only when it names the
# registry file: the same words about a Parquet file being stored are the input's problem.
_CORRUPT_DATABASE = re.compile(
    r"corrupt database file|does not match stored checksum|wal does not match", re.IGNORECASE
)
_READ_FAILURE = re.compile(
    r"could not read enough bytes|failed to read|invalid (?:block|pointer|metadata)|deserializ",
    re.IGNORECASE,
)
_BLOCK = re.compile(r"block at location (\d+)")


def is_corruption(exc: BaseException, path: Path | str) -> bool:
    """Whether a DuckDB error says that the database file ``path`` is damaged."""
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc)
    if _CORRUPT_DATABASE.search(text):
        return True
    name = Path(path).name
    return bool(name) and name in text and bool(_READ_FAILURE.search(text))


def corrupt_error(exc: BaseException, path: Path | str, table: str = "") -> RegistryCorruptError:
    block = _BLOCK.search(str(exc))
    detail = f"bad checksum at byte {block.group(1)}" if block else _first_line(exc)[:80]
    return RegistryCorruptError(
        f"registry file is corrupt ({detail}{f' in {table}' if table else ''}); nothing written",
        where=str(path),
        hint="restore a backup: `cartreg registry restore BACKUP`",
    )


@contextmanager
def reporting_corruption(path: Path | str, table: str = "") -> Iterator[None]:
    """Turn DuckDB's errors about damaged contents into :class:`RegistryCorruptError`."""
    try:
        yield
    except duckdb.Error as exc:
        if is_corruption(exc, path):
            raise corrupt_error(exc, path, table) from None
        raise


def verify_store(
    conn: duckdb.DuckDBPyConnection, path: Path | str = ""
) -> dict[str, tuple[int, tuple[Any, ...]]]:
    """Read every value of every table of the store; return each table's row count and content
    digest (order-independent: a sum of value hashes per column).

    Hashing every value makes DuckDB read, and check the checksum of, every data block. The
    tables come from the catalog, not from a list: tables added by later migrations are covered
    without change. Raises :class:`RegistryCorruptError` on the first damaged block.
    """
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "AND NOT temporary ORDER BY table_name"
        ).fetchall()
    ]
    digests: dict[str, tuple[int, tuple[Any, ...]]] = {}
    for table in tables:
        with reporting_corruption(path, table):
            row = conn.execute(f'SELECT count(*), sum(hash(COLUMNS(*))) FROM "{table}"').fetchone()
        assert row is not None
        digests[table] = (int(row[0]), tuple(row[1:]))
    return digests


class Registry:
    """An open registry. Use :func:`open_registry`; all SQL goes through :attr:`conn`."""

    def __init__(self, path: Path, conn: duckdb.DuckDBPyConnection, *, writable: bool) -> None:
        self.path = path
        self.conn = conn
        self.writable = writable

    def frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a query and return a polars DataFrame."""
        import polars as pl

        rel = self.conn.sql(sql, params=list(params) if params is not None else None)
        result = pl.from_arrow(rel.to_arrow_table())
        assert isinstance(result, pl.DataFrame)
        return result

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.conn.execute(sql, list(params) if params is not None else []).fetchall()
        return rows[0][0] if rows else None

    def first_row(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        """The first row of a query (all rows are fetched: DuckDB 2 refuses unfinished results)."""
        rows = self.conn.execute(sql, list(params) if params is not None else []).fetchall()
        return tuple(rows[0]) if rows else None

    @property
    def schema_version(self) -> int:
        return _stored_version(self.conn) or 0

    def data_tables(self) -> list[str]:
        """Names of the CDM tables present in the store (without the ``cdm_`` prefix)."""
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name LIKE 'cdm\\_%' ESCAPE '\\' ORDER BY table_name"
        ).fetchall()
        return [str(r[0]).removeprefix("cdm_") for r in rows]

    def table_columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [f"cdm_{table}"],
        ).fetchall()
        return [str(r[0]) for r in rows]

    def ensure_cdm_tables(self, cdm: CDM) -> None:
        """Create missing ``cdm_<table>`` tables and add CDM columns they lack (within a txn).

        Columns are only ever added: a newer CDM never deletes stored data.
        """
        for spec in cdm.tables.values():
            existing = set(self.table_columns(spec.name))
            if not existing:
                cols = ", ".join(f'"{c.name}" {_DUCKDB_TYPES[c.dtype]}' for c in spec.columns)
                self.conn.execute(
                    f'CREATE TABLE "cdm_{spec.name}" (submission_id BIGINT NOT NULL, {cols})'
                )
                continue
            for col in spec.columns:
                if col.name not in existing:
                    self.conn.execute(
                        f'ALTER TABLE "cdm_{spec.name}" ADD COLUMN "{col.name}" '
                        f"{_DUCKDB_TYPES[col.dtype]}"
                    )


def _stored_version(conn: duckdb.DuckDBPyConnection) -> int | None:
    tables = {
        r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    if "registry_meta" not in tables:
        return None if tables else 0
    rows = conn.execute(
        "SELECT value FROM registry_meta WHERE key = 'store_schema_version'"
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    try:
        return int(row[0])
    except ValueError:
        return None


def migrate(
    conn: duckdb.DuckDBPyConnection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    path: Path | str = "",
) -> list[int]:
    """Bring the store schema up to the last of ``migrations`` in one transaction.

    Returns the versions applied. Refuses a store newer than ``migrations`` knows, and a
    DuckDB file that holds other tables but no registry metadata.
    """
    target = migrations[-1].version
    current = _stored_version(conn)
    if current is None:
        raise RegistryError(
            "this DuckDB file is not a cartreg registry (no registry_meta table)",
            where=str(path),
            hint="give the path of a registry made by `cartreg registry init`",
        )
    if current > target:
        raise RegistryError(
            f"registry store schema version {current} is newer than this cartreg supports "
            f"({target})",
            where=str(path),
            hint="upgrade cartreg to open it; never downgrade a registry",
        )
    pending = [m for m in migrations if m.version > current]
    if not pending:
        return []
    conn.execute("BEGIN TRANSACTION")
    try:
        for migration in pending:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                [migration.version, migration.description, now_utc(), __version__],
            )
        if current == 0:
            conn.execute(
                "INSERT INTO registry_meta VALUES ('created_at', ?), ('created_by_cartreg', ?)",
                [now_utc().isoformat(), __version__],
            )
        conn.execute(
            "INSERT OR REPLACE INTO registry_meta VALUES ('store_schema_version', ?)",
            [str(target)],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [m.version for m in pending]


def init_registry(path: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[int]:
    """Create a registry file (or upgrade an older one); returns the migrations applied."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise RegistryError("is a folder, expected a registry file path", where=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path, exclusive=True, timeout=lock_timeout):
        conn = _connect(path, read_only=False)
        try:
            with reporting_corruption(path):
                verify_store(conn, path)
                return migrate(conn, path=path)
        finally:
            conn.close()


@contextmanager
def open_registry(
    path: Path | str,
    *,
    write: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> Iterator[Registry]:
    """Open an existing registry for reading (shared lock) or writing (exclusive lock).

    A writer upgrades an older store schema first; a reader refuses an older one with a hint,
    and both refuse a newer one.
    """
    path = Path(path)
    if not path.is_file():
        raise RegistryError(
            "registry not found", where=str(path), hint="create it with `cartreg registry init`"
        )
    with _file_lock(path, exclusive=write, timeout=lock_timeout):
        conn = _connect(path, read_only=not write)
        try:
            # A damaged block met by any query is reported (a write transaction rolled back).
            with reporting_corruption(path):
                current = _stored_version(conn)
                target = migrations[-1].version
                if write:
                    verify_store(conn, path)
                    migrate(conn, migrations=migrations, path=path)
                elif current is None or current == 0:
                    raise RegistryError(
                        "this DuckDB file is not a cartreg registry",
                        where=str(path),
                        hint="give the path of a registry made by `cartreg registry init`",
                    )
                elif current > target:
                    migrate(conn, migrations=migrations, path=path)  # raises the "newer" error
                elif current < target:
                    raise RegistryError(
                        f"registry store schema version {current} is older than this cartreg "
                        f"({target})",
                        where=str(path),
                        hint="run `cartreg registry init` on it once to upgrade",
                    )
                yield Registry(path, conn, writable=write)
        finally:
            conn.close()


@contextmanager
def transaction(registry: Registry) -> Iterator[None]:
    """One DuckDB transaction: committed on success, rolled back on any exception."""
    registry.conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        registry.conn.execute("ROLLBACK")
        raise
    registry.conn.execute("COMMIT")
